//! Taking turns on SQLite's single writer, in one place (issue 21 item 5).
//!
//! SQLite lets one transaction write at a time. Two writers that simply collide wait in
//! SQLite's busy handler, which sleeps in steps of milliseconds: a wave's claim loop and its
//! recorder, or a webhook batch and the call processing behind it, would lose most of their
//! time there. So writers that know they compete agree on an order here, before they begin:
//!
//! - `turn`: an exclusive turn among background writers that would otherwise meet on the
//!   write lock (the wave claim loop, the recorder and the expansion);
//! - `urgent` / `yield_to_urgent`: a write someone waits on (a webhook batch, whose commit
//!   is the provider's answer) is counted while it runs, and background work (call
//!   processing) lets it go first, for a bounded time.
//!
//! On PostgreSQL, transactions on different rows run side by side: there is no turn to take
//! and nothing to yield to. Every clone of a `Store` shares its gate.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, watch};

use super::Engine;

#[derive(Debug)]
pub struct WriteGate {
    single_writer: bool,
    turn: Mutex<()>,
    urgent: watch::Sender<usize>,
}

/// Counts one urgent write while it lives; dropping it (even by cancelling the write)
/// uncounts it.
pub struct Urgent<'a>(&'a watch::Sender<usize>);

impl Drop for Urgent<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl WriteGate {
    pub fn new(engine: Engine) -> WriteGate {
        WriteGate { single_writer: engine == Engine::Sqlite, turn: Mutex::new(()), urgent: watch::Sender::new(0) }
    }

    /// An exclusive turn among the background writers on SQLite; `None` (no waiting) on
    /// PostgreSQL. Hold it across the transaction.
    pub async fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        if self.single_writer { Some(self.turn.lock().await) } else { None }
    }

    /// Marks an urgent write in progress until the guard is dropped.
    pub fn urgent(&self) -> Urgent<'_> {
        self.urgent.send_modify(|n| *n += 1);
        Urgent(&self.urgent)
    }

    /// On SQLite, waits until no urgent write is in progress, for at most `max`: an urgent
    /// writer with work queued starts its next write at once, so under steady traffic the
    /// count may never be seen at zero, and background work must not wait for the traffic
    /// to stop.
    pub async fn yield_to_urgent(&self, max: Duration) {
        if self.single_writer {
            let mut urgent = self.urgent.subscribe();
            let _ = tokio::time::timeout(max, urgent.wait_for(|n| *n == 0)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_writers_take_turns_and_yield_to_urgent_writes() {
        let gate = WriteGate::new(Engine::Sqlite);
        let first = gate.turn().await.expect("a turn on SQLite");
        assert!(gate.turn.try_lock().is_err(), "a second writer waits for the first turn");
        drop(first);
        assert!(gate.turn().await.is_some());

        let urgent = gate.urgent();
        let started = tokio::time::Instant::now();
        gate.yield_to_urgent(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30), "background work waits while an urgent write runs");
        drop(urgent);
        assert_eq!(*gate.urgent.borrow(), 0, "a finished urgent write is uncounted");
        let started = tokio::time::Instant::now();
        gate.yield_to_urgent(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "nothing to yield to once it is done");
    }

    #[tokio::test]
    async fn postgres_writers_do_not_wait() {
        let gate = WriteGate::new(Engine::Postgres);
        assert!(gate.turn().await.is_none());
        let _urgent = gate.urgent();
        let started = tokio::time::Instant::now();
        gate.yield_to_urgent(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
