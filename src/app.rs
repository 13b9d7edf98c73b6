//! Builds the store, the HTTP server and the workers, and runs them under one
//! `CancellationToken` until SIGTERM/SIGINT (or the token is cancelled by a caller).
//!
//! Start-up order is the systemd contract: connect → migrate → bind → READY=1. Shutdown:
//! cancel → servers and workers drain → STOPPING=1 → exit 0, bounded by
//! `daemon.shutdown_timeout_secs`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::store::{Normalizer, Store};

/// Opens the store described by `cfg` (creating a SQLite file if needed).
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let norm = Normalizer {
        email_rules: crate::crm::EmailRules { fold_domains: cfg.org.email_fold_domains.clone() },
        default_region: cfg.org.default_phone_region.to_ascii_uppercase(),
    };
    let mut store = Store::connect(&cfg.database, norm).await.context("cannot open the database")?;
    store.custom_lead_sources = cfg.org.custom_lead_sources.clone();
    store.default_currency = cfg.org.currency.clone();
    Ok(store)
}

/// A started daemon: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub token: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Connects, migrates, binds and starts serving; returns once the daemon is ready.
pub async fn start(cfg: Config, token: CancellationToken) -> anyhow::Result<Running> {
    let store = open_store(&cfg).await?;
    store.migrate().await.context("cannot migrate the database")?;
    let addr: SocketAddr = cfg.http.listen.parse().context("http.listen")?;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let state = AppState { store: store.clone() };
    let app = router(state, cfg.http.body_limit_bytes);
    let server_token = token.clone();
    let limit = Duration::from_secs(cfg.daemon.shutdown_timeout_secs);
    let done = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(server_token.clone().cancelled_owned());
        let mut serve = std::pin::pin!(serve.into_future());
        tokio::select! {
            r = &mut serve => r.context("http server failed")?,
            _ = server_token.cancelled() => {
                // Drain in-flight requests, but never past the shutdown limit.
                match tokio::time::timeout(limit, &mut serve).await {
                    Ok(r) => r.context("http server failed")?,
                    Err(_) => tracing::warn!(limit_secs = limit.as_secs(), "shutdown limit reached; dropping open connections"),
                }
            }
        }
        store.close().await;
        Ok(())
    });
    tracing::info!(%addr, engine = ?open_engine(&cfg), "inflow ready");
    Ok(Running { addr, token, done })
}

fn open_engine(cfg: &Config) -> &'static str {
    if cfg.database.url.starts_with("postgres") { "postgres" } else { "sqlite" }
}

/// `inflow run`: start, notify systemd, wait for a signal, stop cleanly.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    let running = start(cfg, token.clone()).await?;
    // "listening on" is machine-readable for tests and scripts that pass port 0.
    eprintln!("inflow listening on http://{}", running.addr);
    notify(sd_notify::NotifyState::Ready);
    wait_for_signal(&token).await;
    tracing::info!("shutdown requested");
    notify(sd_notify::NotifyState::Stopping);
    token.cancel();
    running.done.await.context("server task panicked")??;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM, SIGINT, or the token being cancelled elsewhere.
async fn wait_for_signal(token: &CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = token.cancelled() => {}
    }
}

/// sd_notify when NOTIFY_SOCKET is set; a no-op otherwise.
fn notify(state: sd_notify::NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, &[state]) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}
