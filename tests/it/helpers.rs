//! Test fixtures: fresh databases per test on both engines, and the real binary.
//!
//! PostgreSQL: `INFLOW_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! must reach a server that lets us create databases. When it cannot, the PostgreSQL tests
//! fail with a clear message — they never skip (`scripts/test-services.sh` installs and starts
//! a server on a machine without one).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncBufReadExt, BufReader};

use inflow::config::DatabaseConfig;
use inflow::store::{Normalizer, Store};

pub const PG_ADMIN_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn pg_admin_url() -> String {
    std::env::var("INFLOW_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_DEFAULT.to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("inflow.db").display());
        TestDb { url, pg_name: None, _dir: Some(dir) }
    }

    /// An SQLite database file at `path` (on a mount the test controls, say).
    pub fn sqlite_at(path: &std::path::Path) -> TestDb {
        TestDb { url: format!("sqlite://{}", path.display()), pg_name: None, _dir: None }
    }

    /// A fresh PostgreSQL database. Panics (fails the test) if the server is unreachable.
    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for the store suite and is unreachable at {admin}: {e}. Run \
                scripts/test-services.sh or set INFLOW_TEST_PG_URL."
            )
        });
        let now = chrono::Utc::now().timestamp();
        // Leftovers of killed runs (older than an hour) are dropped; names carry their birth time.
        let old: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'inflow_t_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list databases");
        for (name,) in old {
            let born: i64 = name.split('_').nth(2).and_then(|s| s.parse().ok()).unwrap_or(now);
            if now - born > 3600 {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&mut conn)
                    .await;
            }
        }
        let name = format!("inflow_t_{now}_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
        TestDb { url: format!("{base}/{name}"), pg_name: Some(name), _dir: None }
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig { url: self.url.clone(), max_connections: 4, connect_timeout_secs: 5, ..Default::default() }
    }

    /// A migrated store on this database (org region RU).
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.config(), Normalizer::default()).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// Drops a PostgreSQL test database (SQLite files go with their temp dir).
    pub async fn cleanup(self) {
        use sqlx::Connection;
        if let Some(name) = &self.pg_name
            && let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Runs one async test body against a fresh migrated store on the named engine.
pub async fn with_store<F, Fut>(engine: &str, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = if engine == "sqlite" { TestDb::sqlite() } else { TestDb::postgres().await };
    let store = db.store().await;
    body(store.clone()).await;
    store.close().await;
    db.cleanup().await;
}

/// Declares the same test body for SQLite and PostgreSQL:
/// `both_engines!(name, |store| async move { ... });`
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::helpers::with_store("sqlite", $body).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::helpers::with_store("postgres", $body).await;
            }
        }
    };
}

/// Now, truncated to the store's millisecond precision.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

/// The path of the built `inflow` binary.
pub fn inflow_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_inflow"))
}

/// Runs `inflow --config CFG ARGS…` to the end: (exit code, stdout, stderr).
pub async fn run_inflow(cfg: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(inflow_bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("INFLOW_CONFIG")
        .output()
        .await
        .expect("run inflow");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs the real binary on a config file (optionally with `INFLOW_FAILPOINT`); returns the child.
pub fn daemon(cfg: &std::path::Path, failpoint: Option<&str>) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(inflow_bin());
    cmd.arg("--config").arg(cfg).arg("run").stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    if let Some(f) = failpoint {
        cmd.env("INFLOW_FAILPOINT", f);
    }
    cmd.spawn().expect("inflow binary")
}

/// The real app, started in-process on port 0 against a fresh database.
pub struct TestApp {
    pub addr: String,
    pub store: Store,
    pub running: inflow::app::Running,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
    db: Option<TestDb>,
}

/// Polls a condition until it holds or the deadline passes (no fixed sleeps).
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll interval
    }
}

impl TestApp {
    /// Starts the app with `extra` appended to a base config. `{dir}` in `extra` is replaced
    /// by a temp dir where tests put secret files (write them before calling).
    pub async fn spawn(engine: &str, dir: tempfile::TempDir, extra: &str) -> TestApp {
        let db = if engine == "sqlite" { TestDb::sqlite() } else { TestDb::postgres().await };
        let url = db.url.clone();
        TestApp::spawn_on(db, &url, dir, extra).await
    }

    /// Starts the app on `db`, reaching it at `url` (a proxy in front of it, say).
    pub async fn spawn_on(db: TestDb, url: &str, dir: tempfile::TempDir, extra: &str) -> TestApp {
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        // A test's own [http] section gets the listener on a free port added to it.
        let listen = "[http]\nlisten = \"127.0.0.1:0\"\n";
        let (http, extra) = match extra.starts_with("[http]\n") || extra.contains("\n[http]\n") {
            true => ("", extra.replacen("[http]\n", listen, 1)),
            false => (listen, extra),
        };
        let text = format!(
            "[database]\nurl = \"{url}\"\nmax_connections = 4\n\n{http}\n[daemon]\nshutdown_timeout_secs = 5\n\n{extra}"
        );
        let cfg = inflow::config::Config::load(
            inflow::config::Source::Text { name: "test", text: &text },
            &std::collections::BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let running =
            inflow::app::start(cfg.clone(), tokio_util::sync::CancellationToken::new()).await.expect("app starts");
        let store = inflow::app::open_store(&cfg).await.expect("store");
        TestApp {
            addr: running.addr.to_string(),
            store,
            running,
            _dir: dir,
            http: reqwest::Client::new(),
            db: Some(db),
        }
    }

    /// The URL of the app's database (for the CLI run against the same data).
    pub fn db_url(&self) -> String {
        self.db.as_ref().expect("database").url.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        self.running.token.cancel();
        let done = tokio::time::timeout(std::time::Duration::from_secs(30), self.running.done)
            .await
            .expect("app stops in time");
        done.expect("app task").expect("app result");
        self.store.close().await;
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

/// Adds an enabled user; returns its id.
pub async fn add_user(
    store: &Store,
    first: &str,
    last: &str,
    email: &str,
    manager: Option<uuid::Uuid>,
    ext: Option<&str>,
) -> uuid::Uuid {
    use inflow::store::RecordExt;
    let t = now();
    let u = inflow::crm::entities::SystemUser {
        systemuserid: uuid::Uuid::new_v4(),
        firstname: Some(first.into()),
        lastname: last.into(),
        fullname: Some(format!("{first} {last}").trim().to_string()),
        internalemailaddress: Some(email.into()),
        parentsystemuserid: manager,
        pbx_extension: ext.map(str::to_string),
        createdon: t,
        modifiedon: t,
        versionnumber: 1,
        ..Default::default()
    };
    store.insert(&u).await.unwrap();
    u.systemuserid
}

/// The SMTP server of one test.
pub struct SmtpSink {
    child: tokio::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start(fail_first: u32) -> SmtpSink {
        Self::start_with(fail_first, None).await
    }

    /// A sink that requires STARTTLS with a certificate from a private CA in `cert_dir`
    /// (see [`private_ca_and_cert`]).
    pub async fn start_tls(cert_dir: &Path) -> SmtpSink {
        Self::start_with(0, Some(cert_dir)).await
    }

    async fn start_with(fail_first: u32, tls: Option<&Path>) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .arg(fail_first.to_string())
            .args(tls.map(|d| d.display().to_string()))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test-services.sh installs python3-aiosmtpd)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(30), out.next_line()).await;
        assert!(matches!(ready, Ok(Ok(Some(ref l))) if l == "READY"), "smtp sink did not start: {ready:?}");
        SmtpSink { child, port, dir }
    }

    /// Accepted messages so far, in order: (envelope recipients, raw message).
    /// Where the sink writes (its rcpt.log sits here too).
    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    pub fn messages(&self) -> Vec<(String, String)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| (std::fs::read_to_string(p.with_extension("rcpt")).unwrap(), std::fs::read_to_string(p).unwrap()))
            .collect()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        poll_until(&format!("{n} messages at the SMTP server"), || async { self.messages().len() >= n }).await;
        self.messages()
    }

    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().unwrap().to_string()]).status();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The sum of a metric's samples on the app's `/metrics` whose labels include `labels`.
/// Counters are process-wide (tests share the recorder), so callers assert lower bounds.
pub async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes a private CA (`ca.pem`) and a certificate it signs for 127.0.0.1 and localhost
/// (`cert.pem`, `key.pem`) into `d`, with Debian's openssl. (webpki refuses a self-signed CA
/// certificate used as the server's own, hence the two.)
pub fn private_ca_and_cert(d: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(d).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=inflow test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.csr"]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}
