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

use std::sync::Arc;

use crate::alerts::AlertsRuntime;
use crate::config::Config;
use crate::http::pbx::PbxWebhooks;
use crate::http::{AppState, router};
use crate::ingest::pbx::cti::Cti;
use crate::ingest::pbx::generic::Generic;
use crate::ingest::pbx::itoolabs::ItooLabs;
use crate::ingest::pbx::mango::Mango;
use crate::ingest::pbx::placetel::Placetel;
use crate::ingest::pbx::process::{self as pbx_process, PbxRuntime, PbxSettings};
use crate::ingest::pbx::sipgate::Sipgate;
use crate::ingest::pbx::sipuni::Sipuni;
use crate::ingest::pbx::threecx::ThreeCx;
use crate::ingest::pbx::twilio::Twilio;
use crate::ingest::pbx::uis::Uis;
use crate::ingest::pbx::yeastar::Yeastar;
use crate::ingest::pbx::zadarma::Zadarma;
use crate::ingest::pbx::{Adapter, PbxAccount};
use crate::jobs::JobQueue;
use crate::store::{Normalizer, Store};

/// The worker supervisor's view: workers that ended while the daemon was not stopping.
#[derive(Debug, Default)]
pub struct Health {
    dead: std::sync::Mutex<Vec<String>>,
}

impl Health {
    /// Workers that stopped on their own (a panic or an early return).
    pub fn dead(&self) -> Vec<String> {
        self.dead.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Watches a worker task: if it ends before shutdown, the daemon is unhealthy.
    fn watch<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        handle: tokio::task::JoinHandle<T>,
        token: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (me, name, token) = (self.clone(), name.to_string(), token.clone());
        tokio::spawn(async move {
            let result = handle.await;
            if !token.is_cancelled() {
                match &result {
                    Err(e) => tracing::error!(worker = %name, error = %e, "worker died"),
                    Ok(_) => tracing::error!(worker = %name, "worker stopped before shutdown"),
                }
                if let Ok(mut d) = me.dead.lock() {
                    d.push(name);
                }
            }
        })
    }
}

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
    /// Which workers are alive (the watchdog pings only while all are, and the database answers).
    pub health: Arc<Health>,
    pub store: Store,
    pub token: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The PBX processing runtime, when PBX webhooks are configured.
    pub pbx: Option<Arc<PbxRuntime>>,
    /// The overdue-alerts runtime, when alerts are enabled.
    pub alerts: Option<Arc<AlertsRuntime>>,
    /// The wave sender, when `[smtp]` has a host and waves are enabled.
    pub waves: Option<Arc<crate::waves::WaveRuntime>>,
}

/// Runs the overdue scan on its cron schedule and the digest sender until the token is
/// cancelled. Every daemon may scan: the claims in notification_log are idempotent.
fn spawn_alerts(
    rt: Arc<AlertsRuntime>,
    cron_expr: &str,
    token: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use apalis::prelude::*;
    use std::str::FromStr;
    let schedule = cron::Schedule::from_str(cron_expr)
        .map_err(|e| anyhow::anyhow!("alerts.scan_interval_secs → '{cron_expr}': {e}"))?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    macro_rules! run {
        ($backend:expr) => {{
            let backend = $backend.poll_with_backoff(Duration::from_millis(200),
                apalis::prelude::BackoffConfig::new(Duration::from_secs(5)));
            let (scan_rt, digest_rt) = (rt.clone(), rt.clone());
            let (scan_name, digest_name) = (format!("overdue-scan-{suffix}"), format!("alert-digest-{suffix}"));
            let monitor = Monitor::new()
                .register(move |_| {
                    WorkerBuilder::new(scan_name.as_str())
                        .backend(apalis_cron::CronScheduler::new(schedule.clone()))
                        .data(scan_rt.clone())
                        .build(crate::alerts::on_tick)
                })
                .register(move |_| {
                    WorkerBuilder::new(digest_name.as_str())
                        .backend(backend.clone())
                        .data(digest_rt.clone())
                        .concurrency(2)
                        .build(crate::alerts::on_digest)
                })
                .shutdown_timeout(Duration::from_secs(10));
            tokio::spawn(async move {
                if let Err(e) = monitor.run_with_signal(async move { token.cancelled().await; Ok(()) }).await {
                    tracing::error!(error = %e, "alert workers stopped with an error");
                }
            })
        }};
    }
    Ok(match &rt.queue {
        JobQueue::Sqlite(s) => run!(s.clone()),
        JobQueue::Postgres(p) => run!(p.clone()),
    })
}

/// The enabled telephony providers, one entry per account: a line per provider section of
/// `[pbx]` (one table, or a list of named accounts).
pub fn pbx_adapters(cfg: &Config) -> Vec<PbxAccount> {
    let p = &cfg.pbx;
    let mut out: Vec<PbxAccount> = Vec::new();
    let mut add = |provider: &'static str,
                   name: &Option<String>,
                   extensions: &std::collections::BTreeMap<String, String>,
                   adapter: Arc<dyn Adapter>| {
        let name = name.clone().unwrap_or_else(|| provider.to_string());
        out.push(PbxAccount { name, adapter, extensions: extensions.clone() });
    };
    // Zadarma and Novofon classic speak one format; each is its own provider.
    for (name, z) in p.zadarma.iter().map(|z| ("zadarma", z)).chain(p.novofon.iter().map(|z| ("novofon", z))) {
        add(
            name,
            &z.name,
            &z.extensions,
            Arc::new(Zadarma {
                name,
                secret: z.secret.clone().unwrap_or_default(),
                tz: z.timezone.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| cfg.tz()),
                max_age: (z.max_event_age_secs > 0).then(|| chrono::Duration::seconds(z.max_event_age_secs as i64)),
            }),
        );
    }
    for m in &p.mango {
        add(
            "mango",
            &m.name,
            &m.extensions,
            Arc::new(Mango { api_key: m.api_key.clone(), api_salt: m.api_salt.clone().unwrap_or_default() }),
        );
    }
    for t in &p.twilio {
        add("twilio", &t.name, &t.extensions, Arc::new(Twilio::from_config(t, cfg.org.public_base_url.as_deref())));
    }
    for g in &p.generic {
        add(
            "generic",
            &g.name,
            &g.extensions,
            Arc::new(Generic { token: g.token.clone(), hmac_secret: g.hmac_secret.clone() }),
        );
    }
    for pt in &p.placetel {
        add("placetel", &pt.name, &pt.extensions, Arc::new(Placetel { secret: pt.secret.clone().unwrap_or_default() }));
    }
    for sg in &p.sipgate {
        let pem = sg.public_key.as_deref().unwrap_or(crate::ingest::pbx::sipgate::SIPGATE_PUBLIC_KEY);
        add(
            "sipgate",
            &sg.name,
            &sg.extensions,
            Arc::new(Sipgate {
                public_key: crate::ingest::pbx::sipgate::rsa_key_from_pem(pem).unwrap_or_default(),
                public_url: sg.public_url.clone().unwrap_or_else(|| {
                    format!("{}/pbx/sipgate", cfg.org.public_base_url.as_deref().unwrap_or("").trim_end_matches('/'))
                }),
            }),
        );
    }
    for c in &p.cti {
        add("cti", &c.name, &c.extensions, Arc::new(Cti { token: c.token.clone().unwrap_or_default() }));
    }
    for c in &p.sipuni {
        add("sipuni", &c.name, &c.extensions, Arc::new(Sipuni { token: c.token.clone().unwrap_or_default() }));
    }
    for u in &p.uis {
        let tz = u.timezone.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| cfg.tz());
        add("uis", &u.name, &u.extensions, Arc::new(Uis { token: u.token.clone().unwrap_or_default(), tz }));
    }
    for y in &p.yeastar {
        let tz = y.timezone.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| cfg.tz());
        add("yeastar", &y.name, &y.extensions, Arc::new(Yeastar { token: y.token.clone().unwrap_or_default(), tz }));
    }
    for c in &p.threecx {
        add("3cx", &c.name, &c.extensions, Arc::new(ThreeCx { token: c.token.clone().unwrap_or_default() }));
    }
    for c in &p.itoolabs {
        add(
            "itoolabs",
            &c.name,
            &c.extensions,
            Arc::new(ItooLabs { crm_token: c.crm_token.clone().unwrap_or_default() }),
        );
    }
    out
}

/// Builds the PBX webhooks from the configuration (None when no provider is configured),
/// with the writer's inbox; the caller runs the writer on the returned receiver.
fn pbx_webhooks(
    cfg: &Config,
    store: &Store,
) -> Option<(Arc<PbxWebhooks>, tokio::sync::mpsc::Receiver<pbx_process::IngestRequest>)> {
    let adapters = pbx_adapters(cfg);
    if adapters.is_empty() && cfg.pbx.asterisk.is_empty() && cfg.pbx.cdr_table.is_empty() {
        return None;
    }
    let runtime = Arc::new(PbxRuntime::new(
        store.clone(),
        PbxSettings::from_config(cfg, &adapters),
        JobQueue::new(&store.db, pbx_process::QUEUE),
    ));
    let (writer, inbox) = tokio::sync::mpsc::channel(4096);
    let hooks = Arc::new(PbxWebhooks {
        runtime,
        writer,
        adapters: adapters.into_iter().fold(std::collections::BTreeMap::new(), |mut by, a| {
            by.entry(a.adapter.name()).or_insert_with(Vec::new).push(a);
            by
        }),
        body_limit: cfg.pbx.body_limit_bytes,
    });
    Some((hooks, inbox))
}

/// Runs the `pbx-call` job worker until the token is cancelled. Worker names are unique per
/// process, so a daemon restarted right after a crash never collides with its old name.
fn spawn_pbx_worker(rt: Arc<PbxRuntime>, token: CancellationToken) -> tokio::task::JoinHandle<()> {
    use apalis::prelude::*;
    let name = format!("pbx-call-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    macro_rules! run {
        ($backend:expr, $concurrency:expr) => {{
            // Idle polling backs off from 100 ms to 2 s (apalis' default backs off to 60 s,
            // which would leave a call unprocessed for up to a minute).
            let backend = $backend.poll_with_backoff(Duration::from_millis(100),
                apalis::prelude::BackoffConfig::new(Duration::from_secs(2)));
            let data = rt.clone();
            let monitor = Monitor::new()
                .register(move |_restarts| {
                    WorkerBuilder::new(name.as_str())
                        .backend(backend.clone())
                        .data(data.clone())
                        .concurrency($concurrency)
                        .build(pbx_process::handle)
                })
                .shutdown_timeout(Duration::from_secs(10));
            tokio::spawn(async move {
                if let Err(e) = monitor.run_with_signal(async move { token.cancelled().await; Ok(()) }).await {
                    tracing::error!(error = %e, "pbx-call worker stopped with an error");
                }
            })
        }};
    }
    match &rt.queue {
        // SQLite has one writer: concurrent jobs would only queue on its lock and delay the
        // webhook writer. PostgreSQL processes calls in parallel.
        JobQueue::Sqlite(s) => run!(s.clone(), 1),
        JobQueue::Postgres(p) => run!(p.clone(), 4),
    }
}

/// Periodically enqueues calls that are due (final but unqueued, or timed out).
fn spawn_pbx_sweep(rt: Arc<PbxRuntime>, every: Duration, token: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = rt.sweep(chrono::Utc::now()).await {
                        tracing::warn!(error = %e, "pbx sweep failed; retrying at the next tick");
                    }
                }
            }
        }
    })
}

/// On PostgreSQL, rolls up what the `stale` lead view reads (`store/rollup.rs`) every
/// `ROLLUP_EVERY`, the first time and once a day fully; the daemons take turns.
fn spawn_rollup(store: Store, token: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::store::ROLLUP_EVERY);
        let mut n: u32 = 0;
        // A full roll-up that failed is tried again at the next tick, not a day later.
        let mut owe_full = true;
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {
                    let full = owe_full || n.is_multiple_of(crate::store::FULL_ROLLUP_EVERY);
                    n = n.wrapping_add(1);
                    match store.roll_up_lead_activity(chrono::Utc::now(), full).await {
                        Ok(_) => owe_full = false,
                        Err(e) => {
                            owe_full = full;
                            tracing::warn!(error = %e, full, "lead activity roll-up failed; retrying at the next tick");
                        }
                    }
                }
            }
        }
    })
}

/// Connects, migrates, binds and starts serving; returns once the daemon is ready.
pub async fn start(cfg: Config, token: CancellationToken) -> anyhow::Result<Running> {
    let store = open_store(&cfg).await?;
    store.migrate().await.context("cannot migrate the database")?;
    let addr: SocketAddr = cfg.http.listen.parse().context("http.listen")?;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let mut workers = Vec::new();
    let health = Arc::new(Health::default());
    if crate::failpoint::is_set("worker-panic") {
        // Crash test of the supervisor: a watched worker that dies at once.
        workers.push(health.watch("failpoint", tokio::spawn(async { panic!("failpoint worker-panic") }), &token));
    }
    if crate::failpoint::is_set("stuck-workers") {
        // Crash test of the shutdown limit: workers that never stop on their own.
        for i in 0..3 {
            workers.push(health.watch(&format!("stuck-{i}"), tokio::spawn(std::future::pending::<()>()), &token));
        }
    }
    let pbx = pbx_webhooks(&cfg, &store).map(|(p, inbox)| {
        // The writer drains its inbox until the server (holding the senders) is gone.
        workers.push(health.watch("pbx-writer", tokio::spawn(p.runtime.clone().run_writer(inbox)), &token));
        p
    });
    if let Some(p) = &pbx {
        // `[[pbx.lines]]` seeds the lines (the API and CLI manage them from there).
        store
            .seed_pbx_lines(&pbx_process::config_lines(&cfg, chrono::Utc::now()))
            .await
            .context("seeding [[pbx.lines]]")?;
        for a in &cfg.pbx.asterisk {
            let client = crate::ingest::pbx::ami::AmiClient {
                name: a.name.clone(),
                host: a.host.clone(),
                port: a.port,
                username: a.username.clone(),
                secret: a.secret.clone().unwrap_or_default(),
                tz: a.timezone.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| cfg.tz()),
                region: cfg.org.default_phone_region.clone(),
                max_backoff: Duration::from_secs(a.max_backoff_secs.max(1)),
                store: store.clone(),
            };
            let task = tokio::spawn(client.run(p.writer.clone(), token.clone()));
            workers.push(health.watch(&format!("asterisk:{}", a.name), task, &token));
        }
        for c in &cfg.pbx.cdr_table {
            let table = crate::ingest::pbx::cdr_table::from_config(c, cfg.tz(), &cfg.org.default_phone_region)
                .map_err(|e| anyhow::anyhow!("pbx.cdr_table {}: url: {e}", c.name))?;
            let name = table.source();
            let task = tokio::spawn(table.run(store.clone(), p.writer.clone(), token.clone()));
            workers.push(health.watch(&name, task, &token));
        }
        workers.push(health.watch("pbx-jobs", spawn_pbx_worker(p.runtime.clone(), token.clone()), &token));
        workers.push(health.watch(
            "pbx-sweep",
            spawn_pbx_sweep(p.runtime.clone(), Duration::from_secs(cfg.pbx.sweep_interval_secs), token.clone()),
            &token,
        ));
    }
    if store.engine() == crate::store::Engine::Postgres {
        workers.push(health.watch("rollup", spawn_rollup(store.clone(), token.clone()), &token));
    }
    let pbx_runtime = pbx.as_ref().map(|p| p.runtime.clone());
    let alerts = if cfg.alerts.enabled {
        let rt = Arc::new(AlertsRuntime::from_config(&cfg, store.clone())?);
        if rt.mailer.is_none() {
            tracing::info!(
                "alerts are enabled but [smtp] has no host: overdue notifications wait until a relay is configured"
            );
        }
        workers.push(health.watch(
            "alerts",
            spawn_alerts(rt.clone(), &crate::alerts::cron_for(cfg.alerts.scan_interval_secs), token.clone())?,
            &token,
        ));
        Some(rt)
    } else {
        None
    };
    // One worker per enabled mailbox, each under its own lease (DESIGN rule 5).
    let holder = crate::lease::holder_id(&crate::lease::hostname());
    for mb in cfg.mailboxes.iter().filter(|m| m.enabled) {
        let rt = Arc::new(crate::ingest::imap::MailboxRuntime::new(&cfg, mb, store.clone(), &holder)?);
        workers.push(health.watch(&format!("mailbox:{}", mb.name), tokio::spawn(rt.run(token.clone())), &token));
    }
    // The unsubscribe links work whether or not this daemon sends waves.
    let signer = crate::waves::link_signer(&cfg, &store).await.context("cannot load the unsubscribe-link key")?;
    let waves = match crate::waves::Relay::from_config(&cfg, &store)? {
        Some(relay) if cfg.waves.enabled => {
            let rt = Arc::new(crate::waves::WaveRuntime::new(
                store.clone(),
                relay,
                crate::waves::WaveSettings::from_config(&cfg)?,
                &holder,
                signer.clone(),
            ));
            workers.push(health.watch("waves", tokio::spawn(rt.clone().run(token.clone())), &token));
            Some(rt)
        }
        _ => None,
    };
    let state = AppState {
        store: store.clone(),
        pbx,
        unsubscribe: Some(signer),
        api: Arc::new(crate::http::api::settings(&cfg)),
        waves: waves.clone(),
        config: Some(Arc::new(cfg.clone())),
        smtp_from: cfg.smtp.from.clone(),
        health: Some(health.clone()),
        console: Arc::new(crate::http::console::ConsoleSettings::from_config(&cfg)),
    };
    let app = router(state, cfg.http.body_limit_bytes);
    let server_token = token.clone();
    let store_for_running = store.clone();
    let limit = Duration::from_secs(cfg.daemon.shutdown_timeout_secs);
    let done = tokio::spawn(async move {
        // One deadline for the whole stop (HTTP drain and every worker), so it stays under
        // systemd's TimeoutStopSec however many workers there are.
        let mut deadline = None;
        {
            let serve = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(server_token.clone().cancelled_owned());
            let mut serve = std::pin::pin!(serve.into_future());
            tokio::select! {
                r = &mut serve => r.context("http server failed")?,
                _ = server_token.cancelled() => {
                    // Drain in-flight requests, but never past the shutdown limit.
                    let at = *deadline.insert(tokio::time::Instant::now() + limit);
                    match tokio::time::timeout_at(at, &mut serve).await {
                        Ok(r) => r.context("http server failed")?,
                        Err(_) => tracing::warn!(limit_secs = limit.as_secs(), "shutdown limit reached; \
                            dropping open connections"),
                    }
                }
            }
            // The server (and with it the writer's senders) is dropped here, so the writer
            // finishes what it holds and ends.
        }
        let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + limit);
        let mut late = 0;
        for w in workers {
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                late += 1;
            }
        }
        if late > 0 {
            tracing::warn!(
                limit_secs = limit.as_secs(),
                workers = late,
                "workers did not stop within the shutdown limit"
            );
        }
        store.close().await;
        Ok(())
    });
    tracing::info!(%addr, engine = ?open_engine(&cfg), "inflow ready");
    Ok(Running { addr, health, store: store_for_running, token, done, pbx: pbx_runtime, alerts, waves })
}

fn open_engine(cfg: &Config) -> &'static str {
    if cfg.database.url.starts_with("postgres") { "postgres" } else { "sqlite" }
}

/// Blocks SIGTERM and SIGINT for this thread and the threads it starts from now on, from the
/// first moment of `inflow run` (before the configuration is read and the runtime built), so
/// a stop request that arrives before `run` has its handlers waits for them instead of
/// killing the process by the default action. `run` lets them through again.
pub fn hold_stop_signals() {
    stop_signals(libc::SIG_BLOCK);
}

fn stop_signals(how: libc::c_int) {
    // SAFETY: plain libc calls on a local, zero-initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// `inflow run`: start, notify systemd, wait for a signal, stop cleanly.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a SIGTERM that arrives while starting (or right after "listening") is a
    // clean stop, never the default action's kill. One held back since `main` (see
    // `hold_stop_signals`) is delivered to them when this thread lets signals through; the
    // runtime's threads keep them blocked, so this thread is where they arrive.
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    stop_signals(libc::SIG_UNBLOCK);
    let token = CancellationToken::new();
    let running = start(cfg, token.clone()).await?;
    // "listening on" is machine-readable for tests and scripts that pass port 0.
    eprintln!("inflow listening on http://{}", running.addr);
    notify(sd_notify::NotifyState::Ready);
    let watchdog = spawn_watchdog(&running, &token);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = token.cancelled() => {}
    }
    tracing::info!("shutdown requested");
    notify(sd_notify::NotifyState::Stopping);
    token.cancel();
    if let Some(w) = watchdog {
        w.abort();
    }
    running.done.await.context("server task panicked")??;
    tracing::info!("stopped");
    Ok(())
}

/// With `WatchdogSec=` (WATCHDOG_USEC set for this process), sends WATCHDOG=1 every third of the
/// period while every worker is alive and the database answers; an unhealthy daemon goes
/// silent and systemd restarts it.
fn spawn_watchdog(running: &Running, token: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    // sd_watchdog_enabled(3): WATCHDOG_USEC set, and WATCHDOG_PID (when set) is this process.
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse().ok()).filter(|u| *u > 0)?;
    if std::env::var("WATCHDOG_PID").ok().is_some_and(|p| p.parse::<u32>().ok() != Some(std::process::id())) {
        return None;
    }
    // A ping every third of the period, and a database check bounded by half a tick, so a
    // slow check never lets the gap between pings reach WatchdogSec.
    let period = Duration::from_micros(usec / 3).max(Duration::from_millis(50));
    let (health, store, token) = (running.health.clone(), running.store.clone(), token.clone());
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => return,
            }
            let dead = health.dead();
            let db = tokio::time::timeout(period / 2, store.readiness()).await;
            match (dead.is_empty(), db) {
                (true, Ok(Ok(()))) => notify(sd_notify::NotifyState::Watchdog),
                (false, _) => tracing::error!(dead = ?dead, "workers are down; withholding the watchdog ping"),
                (_, Ok(Err(e))) => tracing::warn!(error = %e, "database not ready; withholding the watchdog ping"),
                (_, Err(_)) => tracing::warn!("database check timed out; withholding the watchdog ping"),
            }
        }
    }))
}

/// sd_notify when NOTIFY_SOCKET is set; a no-op otherwise.
fn notify(state: sd_notify::NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, &[state]) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}
