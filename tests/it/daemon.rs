//! The real binary: start-up, readiness, the sd_notify contract, SIGTERM, and the CLI's
//! handling of bad configuration.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::helpers::inflow_bin;

const DEADLINE: Duration = Duration::from_secs(60);

/// A started daemon and the address it printed.
struct Daemon {
    child: Child,
    addr: String,
    stderr: tokio::task::JoinHandle<Vec<String>>,
}

/// Spawns `inflow <args>` and waits (bounded) for its "listening on" line.
async fn spawn(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(inflow_bin());
    cmd.args(args).current_dir(cwd).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.env_remove("NOTIFY_SOCKET").env_remove("STATE_DIRECTORY").env_remove("INFLOW_CONFIG").env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn inflow");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stderr = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("inflow listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_string());
            }
            seen.push(line);
        }
        seen
    });
    let addr = match tokio::time::timeout(DEADLINE, rx).await {
        Ok(Ok(a)) => a,
        _ => {
            let _ = child.kill().await;
            let log = stderr.await.unwrap_or_default();
            panic!("inflow did not start within {DEADLINE:?}; stderr:\n{}", log.join("\n"));
        }
    };
    Daemon { child, addr, stderr }
}

impl Daemon {
    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("http://{}{path}", self.addr)).await.expect("http request");
        (r.status().as_u16(), r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// SIGTERM, then the exit status (bounded wait) and everything it logged.
    async fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().expect("pid").to_string();
        let st = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(st.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("inflow did not stop after SIGTERM")
            .expect("wait");
        (status.code(), self.stderr.await.unwrap_or_default())
    }
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("inflow.toml");
    let db = dir.join("state.db");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
        [daemon]\nshutdown_timeout_secs = 5\n{extra}",
            db.display()
        ),
    )
    .unwrap();
    path
}

async fn recv_notify(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n =
        tokio::time::timeout(DEADLINE, sock.recv(&mut buf)).await.expect("no sd_notify message in time").expect("recv");
    String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_becomes_ready_notifies_systemd_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // WatchdogSec=0.4 s as systemd passes it: pings are due every 0.2 s while healthy.
    let d = spawn(
        &["--config", cfg.to_str().unwrap(), "run"],
        dir.path(),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    )
    .await;
    assert!(recv_notify(&sock).await.contains("READY=1"));
    for _ in 0..3 {
        assert_eq!(recv_notify(&sock).await, "WATCHDOG=1");
    }
    assert_eq!(d.get("/healthz").await.0, 200);
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert!(dir.path().join("state.db").exists(), "the SQLite file is created and migrated");
    let (code, log) = d.terminate().await;
    assert_eq!(code, Some(0), "exit status after SIGTERM; log:\n{}", log.join("\n"));
    // Pings sent before the signal may still be queued; STOPPING=1 follows them.
    let mut msg = recv_notify(&sock).await;
    while msg == "WATCHDOG=1" {
        msg = recv_notify(&sock).await;
    }
    assert!(msg.contains("STOPPING=1"), "{msg}");
    assert!(log.iter().any(|l| l.contains("stopped")), "{}", log.join("\n"));
}

/// A worker that dies makes the daemon unhealthy: READY=1 still came, but no WATCHDOG=1
/// follows, so systemd's WatchdogSec restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_silences_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let d = spawn(
        &["--config", cfg.to_str().unwrap(), "run"],
        dir.path(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
            ("INFLOW_FAILPOINT", "worker-panic"),
        ],
    )
    .await;
    assert!(recv_notify(&sock).await.contains("READY=1"));
    // Once the supervisor has seen the death (healthz says so), pings stop: pings queued
    // before are drained, then within a second at most the one that may have been under way
    // arrives (a healthy daemon sends one every 0.13 s).
    crate::helpers::poll_until("healthz reports the dead worker", || async { d.get("/healthz").await.0 == 503 }).await;
    let (_, body) = d.get("/healthz").await;
    assert_eq!(body["dead_workers"], serde_json::json!(["failpoint"]), "{body}");
    let mut buf = [0u8; 256];
    while sock.try_recv(&mut buf).is_ok() {}
    let end = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut pings = 0;
    while let Ok(r) = tokio::time::timeout_at(end, sock.recv(&mut buf)).await {
        let n = r.unwrap();
        assert_eq!(String::from_utf8_lossy(&buf[..n]).trim_end(), "WATCHDOG=1");
        pings += 1;
    }
    assert!(pings <= 1, "{pings} pings after the worker died");
    let (code, log) = d.terminate().await;
    assert_eq!(code, Some(0));
    assert!(
        log.iter().any(|l| l.contains("withholding the watchdog ping") && l.contains("failpoint")),
        "{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_config_uses_the_embedded_sqlite_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(&["run"], dir.path(), &[("INFLOW__HTTP__LISTEN", "127.0.0.1:0")]).await;
    assert_eq!(d.get("/readyz").await.0, 200);
    assert!(dir.path().join("inflow.db").exists(), "./inflow.db in the working directory");
    assert_eq!(d.terminate().await.0, Some(0));

    // Under systemd the default lands in $STATE_DIRECTORY.
    let state = tempfile::tempdir().unwrap();
    let d = spawn(
        &["run"],
        dir.path(),
        &[("INFLOW__HTTP__LISTEN", "127.0.0.1:0"), ("STATE_DIRECTORY", state.path().to_str().unwrap())],
    )
    .await;
    assert_eq!(d.get("/readyz").await.0, 200);
    assert!(state.path().join("inflow.db").exists());
    assert_eq!(d.terminate().await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let mut d = spawn(&["--config", cfg.to_str().unwrap(), "run"], dir.path(), &[]).await;
    let pid = d.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let st = tokio::time::timeout(DEADLINE, d.child.wait()).await.expect("stopped in time").unwrap();
    assert_eq!(st.code(), Some(0));
}

/// `daemon.shutdown_timeout_secs` bounds the whole stop, not each worker: with three
/// workers that never stop, SIGTERM still ends the process within about one limit (each
/// waited for in turn, it took four).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_limit_is_one_deadline_for_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inflow.toml");
    let db = dir.path().join("state.db");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
        [daemon]\nshutdown_timeout_secs = 2\n",
            db.display()
        ),
    )
    .unwrap();
    let mut d =
        spawn(&["--config", path.to_str().unwrap(), "run"], dir.path(), &[("INFLOW_FAILPOINT", "stuck-workers")]).await;
    let pid = d.child.id().unwrap().to_string();
    let t0 = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let st = tokio::time::timeout(DEADLINE, d.child.wait()).await.expect("stopped").unwrap();
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0));
    assert!(took < Duration::from_secs(5), "the stop took {took:?} with a 2 s limit and three stuck workers");
}

async fn run_cli(args: &[&str], cwd: &Path) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(inflow_bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("INFLOW_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output(),
    )
    .await
    .expect("inflow finished in time")
    .expect("run inflow");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn check_config_accepts_the_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = run_cli(&["check-config", "config/inflow.example.toml"], root).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("OK"));
}

#[tokio::test]
async fn check_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"sqlite://x.db\"\ncolour = \"blue\"\n\n[http]\nlisten = [1]\n\n\
        [smtp]\nport = \"twenty-five\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check-config", path.to_str().unwrap()], dir.path()).await;
    assert_eq!(code, Some(2), "{err}");
    for needle in ["database.colour (line 3)", "http.listen (line 6)", "smtp.port (line 9)", "3 problem(s)"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    // Semantic problems and a missing secret file, all named.
    std::fs::write(
        &path,
        "[org]\ntimezone = \"Europe/Atlantis\"\ndefault_phone_region = \"XX\"\n\n[[mailboxes]]\n\
            name = \"sales\"\nhost = \"imap.example.com\"\nuser = \"u\"\nowner = \"o\"\n\
            password_file = \"/nonexistent/imap.pass\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check-config", path.to_str().unwrap()], dir.path()).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("org.timezone") && err.contains("org.default_phone_region"), "{err}");
    // Secret files are read only once the rest is valid; fix the rest and the secret is named.
    std::fs::write(
        &path,
        "[[mailboxes]]\nname = \"sales\"\nhost = \"imap.example.com\"\nuser = \"u\"\n\
        owner = \"o\"\npassword_file = \"/nonexistent/imap.pass\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check-config", path.to_str().unwrap()], dir.path()).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("mailboxes[0].password_file") && err.contains("/nonexistent/imap.pass"), "{err}");

    // Broken TOML.
    std::fs::write(&path, "[database\nurl = 1\n").unwrap();
    let (code, _, err) = run_cli(&["check-config", path.to_str().unwrap()], dir.path()).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("line 1"), "{err}");

    // A config that does not exist.
    let (code, _, err) = run_cli(&["check-config", "/nonexistent/inflow.toml"], dir.path()).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read"), "{err}");
}

#[tokio::test]
async fn a_bad_config_never_starts_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:0\"\nunknown_key = true\n").unwrap();
    let (code, _, err) = run_cli(&["--config", path.to_str().unwrap(), "run"], dir.path()).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http.unknown_key"), "{err}");
    assert!(!dir.path().join("inflow.db").exists(), "nothing started half-configured");
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"postgres://inflow:hunter2@127.0.0.1:1/inflow\"\nconnect_timeout_secs = 2\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["--config", path.to_str().unwrap(), "migrate"], dir.path()).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot open the database") && err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "the password never appears: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn migrate_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (code, out, err) = run_cli(&["--config", cfg.to_str().unwrap(), "migrate"], dir.path()).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("migrations applied"));
    let (code, out, _) = run_cli(&["--version"], dir.path()).await;
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), format!("inflow {}", env!("CARGO_PKG_VERSION")));
}

/// Issue 8 §5: a full run at debug level with every kind of secret configured and used —
/// IMAP and SMTP passwords, PBX token and HMAC secret, an API token, a message body — and
/// none of them appears in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_tokens_and_bodies_never_reach_the_log() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let secrets =
        ["imap-Pa55-QxT7", "smtp-Pa55-Lm2K", "pbx-Tok3n-Hh81", "pbx-Hmac-Vv90", "unsub-Key-Rr55", "api-Tok3n-Zz11"];
    for (f, v) in [
        ("imap.pass", secrets[0]),
        ("smtp.pass", secrets[1]),
        ("pbx.token", secrets[2]),
        ("pbx.hmac", secrets[3]),
        ("unsub.key", secrets[4]),
    ] {
        std::fs::write(dir.path().join(f), v).unwrap();
    }
    // The mailbox owner and the token's user: a real CRM user, made with the CLI.
    let pre = write_config(dir.path(), "");
    let (code, out, err) = run_cli(
        &["--config", pre.to_str().unwrap(), "user", "add", "--last", "Ops", "--email", "ops@example.com"],
        dir.path(),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let user: uuid::Uuid = out.trim().parse().unwrap();
    let api_hash = hex::encode(sha2::Sha256::digest(secrets[5].as_bytes()));
    let d = dir.path().display();
    let extra = format!(
        "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = 1\ntls = \"plain\"\nuser = \"sales\"\n\
            password_file = \"{d}/imap.pass\"\nowner = \"ops@example.com\"\npoll_interval_secs = 1\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"plain\"\nuser = \"mailer\"\n\
         password_file = \"{d}/smtp.pass\"\nfrom = \"crm@example.com\"\n\n\
         [pbx.generic]\ntoken_file = \"{d}/pbx.token\"\nhmac_secret_file = \"{d}/pbx.hmac\"\n\n\
         [waves]\nunsubscribe_secret_file = \"{d}/unsub.key\"\n\n\
         [[api.tokens]]\nname = \"ops\"\nsha256 = \"{api_hash}\"\nuser = \"{user}\"\nrole = \"admin\"\n"
    );
    let cfg = write_config(dir.path(), &extra);
    let daemon = spawn(&["--config", cfg.to_str().unwrap(), "run"], dir.path(), &[("RUST_LOG", "debug")]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", daemon.addr);
    let body_marker = "BODY-Marker-Kq42 секретное содержание";
    // A webhook with the right token and a body, one with a wrong one.
    let call = serde_json::json!({"call_id": "c-1", "event_id": "e-1", "direction": "inbound",
        "from": "+74951112233", "to": "+74957654321", "start": "2026-11-27T10:00:00Z",
            "end": "2026-11-27T10:01:00Z", "disposition": "answered", "note": body_marker});
    let ok = http.post(url("/pbx/generic")).bearer_auth(secrets[2]).json(&call).send().await.unwrap();
    assert!(ok.status().is_success() || ok.status().as_u16() == 400, "{}", ok.status());
    let bad = http.post(url("/pbx/generic")).bearer_auth("wrong-token").json(&call).send().await.unwrap();
    assert_eq!(bad.status(), 401);
    // The API with the token: a read, a write whose body carries the marker, a refused write.
    assert_eq!(http.get(url("/api/v1/leads")).bearer_auth(secrets[5]).send().await.unwrap().status(), 200);
    let r = http
        .post(url("/api/v1/leads"))
        .bearer_auth(secrets[5])
        .json(&serde_json::json!({"subject": "s", "lastname": "x", "description": body_marker}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(url("/api/v1/leads"))
        .bearer_auth(secrets[5])
        .json(&serde_json::json!({"subject": "s", "lastname": "x", "password": body_marker}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wait until the mailbox worker has recorded its failed connection (so its errors are logged).
    let store = inflow::store::Store::connect(
        &inflow::config::DatabaseConfig { url: format!("sqlite://{d}/state.db"), ..Default::default() },
        Default::default(),
    )
    .await
    .unwrap();
    crate::helpers::poll_until("the mailbox's failed connection", || async {
        store.mailbox_state("sales", "INBOX").await.ok().flatten().is_some_and(|m| m.state == "unreachable")
    })
    .await;
    store.close().await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0));
    let all = log.join("\n");
    assert!(all.contains("DEBUG"), "a debug-level log was written:\n{all}");
    assert!(all.contains("sales"), "the mailbox's trouble is logged:\n{all}");
    for s in secrets.iter().chain([&body_marker]) {
        assert!(!all.contains(s), "{s} leaked into the log:\n{all}");
    }
    assert!(!all.contains(&api_hash), "not even the token's hash is logged");
}

/// Issue 8 §5: under systemd (JOURNAL_STREAM set) every line carries a syslog priority
/// prefix and no timestamp, so journald keeps the levels; `log.format = "json"` writes one
/// JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_for_journald_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let d = spawn(&["--config", cfg.to_str().unwrap(), "run"], dir.path(), &[("JOURNAL_STREAM", "8:12345")]).await;
    let (code, log) = d.terminate().await;
    assert_eq!(code, Some(0));
    let lines: Vec<&String> = log.iter().filter(|l| !l.starts_with("inflow listening on")).collect();
    assert!(lines.len() >= 2, "{log:?}");
    for l in &lines {
        assert!(
            l.starts_with("<6>") || l.starts_with("<4>") || l.starts_with("<3>") || l.starts_with("<7>"),
            "no priority prefix: {l}"
        );
        assert!(!l.contains(&chrono::Utc::now().format("%Y-%m-%dT").to_string()), "a timestamp under journald: {l}");
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>") && l.contains("inflow ready")), "{log:?}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "\n[log]\nformat = \"json\"\n");
    let d = spawn(&["--config", cfg.to_str().unwrap(), "run"], dir.path(), &[]).await;
    let (code, log) = d.terminate().await;
    assert_eq!(code, Some(0));
    let json: Vec<serde_json::Value> = log
        .iter()
        .filter(|l| !l.starts_with("inflow listening on"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(json.iter().any(|j| j["level"] == "INFO" && j["fields"]["message"] == "inflow ready"), "{json:?}");
    assert!(json.iter().all(|j| j["timestamp"].is_string()));
}

/// Issue 22 §7: on PostgreSQL, CLI commands print no sqlx notices ("relation … already
/// exists, skipping" from idempotent migrations) to stderr — an operator's terminal shows
/// only what the command says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_on_postgresql_print_no_server_notices() {
    let db = crate::helpers::TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", db.config().url)).unwrap();
    for _ in 0..2 {
        let (code, out, err) = crate::helpers::run_inflow(&cfg, &["migrate"]).await;
        assert_eq!(code, Some(0), "{out}\n{err}");
        assert!(!err.contains("skipping") && !err.contains("notice"), "server notices on stderr:\n{err}");
    }
    let (code, _, err) = crate::helpers::run_inflow(&cfg, &["user", "list"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("skipping"), "{err}");
    db.cleanup().await;
}

/// Issue 22 §7: a SIGTERM sent in the daemon's first moments — before its configuration is
/// read, its database opened, its handlers installed — is a clean stop (exit 0), never the
/// signal's default kill. The configuration here is a FIFO, so the daemon waits at that first
/// read with the signal already held back (SIGTERM in /proc's SigBlk) for as long as the test
/// likes; the SIGTERM goes in then, the configuration after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_configuration_is_read_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(write_config(dir.path(), "")).unwrap();
    let fifo = dir.path().join("inflow.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = Command::new(inflow_bin())
        .args(["--config", fifo.to_str().unwrap(), "run"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    crate::helpers::poll_until("the daemon holds SIGTERM back", || async {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
    })
    .await;
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The configuration arrives after the signal (opening the FIFO waits for the daemon's read).
    let fifo2 = fifo.clone();
    tokio::task::spawn_blocking(move || std::fs::write(fifo2, text)).await.unwrap().unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.expect("it stops").unwrap();
    assert_eq!(status.code(), Some(0), "ended by {status:?}, not by a clean stop");
}
