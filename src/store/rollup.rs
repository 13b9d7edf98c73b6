//! Values kept outside the writers' transactions, as Dynamics' rollup fields are: on
//! PostgreSQL, `lead.lastactivityon` for the `stale` lead view (R-LD-5, migration 0020),
//! rolled up every minute (`ROLLUP_EVERY`), so the view may be that much behind. SQLite
//! keeps the same column with triggers in the writer's own transaction (0018), which costs
//! it nothing measurable; on PostgreSQL such triggers cost most of the call throughput.

use chrono::{DateTime, Utc};

use super::db::Exec;
use super::{Engine, Result, Store};

/// How often each daemon on PostgreSQL rolls up.
pub const ROLLUP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Every how many roll-ups one is full (a day's worth).
pub const FULL_ROLLUP_EVERY: u32 = 24 * 60;

/// The checkpoint row of the lead roll-up.
const LEAD_ROLLUP: &str = "lead_last_activity";

/// How far before its checkpoint each roll-up reads again: an activity whose transaction
/// commits after a roll-up read past its `modifiedon` (a long transaction, another daemon's
/// clock a little behind) is seen by the next one.
const ROLLUP_OVERLAP_MS: i64 = 2 * 60 * 1000;

/// An arbitrary key for the advisory lock that makes the daemons roll up one at a time.
const ROLLUP_LOCK: i64 = 0x696e_666c_6f77_0014;

impl Store {
    /// Folds the activities modified since the checkpoint into `lead.lastactivityon`
    /// (PostgreSQL; SQLite's triggers keep it already), or, `full`, every activity: what was
    /// written around the daemon (a bulk load, a benchmark's fill, a row stamped long before
    /// it was committed) has a `modifiedon` before the checkpoint. Each daemon's first
    /// roll-up is full, and one a day after (3.6 s at 1,000,000 activities). One daemon at a
    /// time: one whose turn comes while another rolls up waits, then finds little left. A
    /// roll-up that fails (a lead held too long) changes nothing and moves no checkpoint.
    /// Returns how many leads moved.
    pub async fn roll_up_lead_activity(&self, now: DateTime<Utc>, full: bool) -> Result<u64> {
        if self.engine() == Engine::Sqlite {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", vec![ROLLUP_LOCK.into()]).await?;
        // A writer holds a lead only for its own short transaction. Waiting at most this long
        // for one makes the roll-up, not a writer, the side that usually gives up when a
        // writer that locks several leads (a merge) waits on it in turn: PostgreSQL looks for
        // a deadlock only after `deadlock_timeout` (1 s) and may abort either side.
        tx.execute("SET LOCAL lock_timeout = '200ms'", vec![]).await?;
        let upto: i64 = tx
            .fetch_one("SELECT upto FROM rollup_checkpoint WHERE name = $1", vec![LEAD_ROLLUP.into()])
            .await?
            .get("upto")?;
        let from = if full { i64::MIN } else { upto - ROLLUP_OVERLAP_MS };
        let moved = tx
            .execute(
                "UPDATE lead SET lastactivityon = t.m FROM ( \
                    SELECT leadid, MAX(m) AS m FROM ( \
                        SELECT a.regardingobjectid AS leadid, a.modifiedon AS m FROM activity a \
                        WHERE a.modifiedon >= $1 AND a.regardingobjectid IS NOT NULL \
                        UNION ALL \
                        SELECT p.partyid, a.modifiedon FROM activity a JOIN activityparty p ON p.activityid = \
                            a.activityid WHERE a.modifiedon >= $1 AND p.partyid IS NOT NULL \
                    ) e GROUP BY leadid \
                 ) t \
                 WHERE lead.leadid = t.leadid AND (lead.lastactivityon IS NULL OR lead.lastactivityon < t.m)",
                vec![from.into()],
            )
            .await?;
        tx.execute(
            "UPDATE rollup_checkpoint SET upto = GREATEST(upto, $1) WHERE name = $2",
            vec![now.timestamp_millis().into(), LEAD_ROLLUP.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(moved)
    }
}
