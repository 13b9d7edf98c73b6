//! Database outages (issue 22 item 3). PostgreSQL is reached through a TCP proxy the test
//! can cut: every open connection is dropped and new ones are refused, which is what the
//! daemon sees when the database host goes away. For the outage the daemon must keep
//! running, say so (`inflow_database_up 0`, `/readyz` 503, no dead worker on `/healthz`), and
//! afterwards resume on its own with nothing lost and nothing doubled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use inflow::store::{Exec, Store};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::dovecot::{Dovecot, PASSWORD, inquiry};
use crate::helpers::{SmtpSink, TestApp, TestDb, add_user, metric, now, poll_until};
use crate::waves::{campaign, contact, schedule, smtp_toml, static_list, wait_state, wave};

/// A TCP forwarder whose link can be cut and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Connections refused while the link was down.
    refused: Arc<AtomicU64>,
    /// Bumped on every cut: live connections watch it and close.
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let refused = Arc::new(AtomicU64::new(0));
        let (flag, tx, count) = (up.clone(), cuts.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused while the link is down
                    count.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, refused, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Holds the outage until the daemon has come back for the database `n` more times and
    /// been refused each time (the test itself makes no request meanwhile): it keeps
    /// retrying through the outage instead of giving up.
    async fn hold_until_refused(&self, n: u64) {
        let start = self.refused.load(Ordering::SeqCst);
        poll_until(&format!("{n} refused reconnections"), || async {
            self.refused.load(Ordering::SeqCst) >= start + n
        })
        .await;
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A fresh PostgreSQL database, a store the test reaches it with directly, and a proxy in
/// front of it with the URL the daemon is given.
async fn proxied_postgres() -> (TestDb, Store, Proxy, reqwest::Url) {
    let db = TestDb::postgres().await;
    let direct = db.store().await;
    let mut via = reqwest::Url::parse(&db.url).unwrap();
    let upstream = format!("{}:{}", via.host_str().unwrap(), via.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    (db, direct, proxy, via)
}

/// The config of one mailbox making leads, in batches of five.
fn sales_mailbox(dv: &Dovecot) -> String {
    format!(
        "[org]\ntimezone = \"Europe/Moscow\"\n\n{}",
        dv.mailbox_toml(
            "sales",
            "sales",
            PASSWORD,
            "owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n\
                processed_folder = \"Processed\"\nbatch_size = 5\n"
        )
    )
}

async fn count(store: &Store, sql: &str) -> i64 {
    store.db.clone().fetch_one(sql, vec![]).await.unwrap().get("n").unwrap()
}

async fn status(app: &TestApp, path: &str) -> u16 {
    app.http.get(app.url(path)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_ingest_loses_and_doubles_nothing() {
    let (db, direct, proxy, via) = proxied_postgres().await;

    let dv = Dovecot::start();
    let total = 40;
    let msgs: Vec<Vec<u8>> = (0..total)
        .map(|i| inquiry(&format!("out-{i}@client.example"), &format!("Buyer {i} <buyer{i}@client.example>"), "Offer"))
        .collect();
    let config = sales_mailbox(&dv);
    let first = 10;
    dv.append("sales", "INBOX", &msgs[..first]).await;
    let app = TestApp::spawn_on(db, via.as_str(), tempfile::tempdir().unwrap(), &config).await;
    add_user(&direct, "", "Sales", "sales@crm.example.com", None, None).await;
    let events = || count(&direct, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'");
    assert_eq!(status(&app, "/readyz").await, 200);

    // The first batches land; then the database goes away with the rest still to come.
    poll_until("the first batch", || async { events().await >= 1 }).await;
    proxy.cut();
    dv.append("sales", "INBOX", &msgs[first..]).await;
    poll_until("/readyz reports the outage", || async { status(&app, "/readyz").await == 503 }).await;
    poll_until("inflow_database_up 0", || async { metric(&app, "inflow_database_up", &[]).await == 0.0 }).await;
    // The outage lasts through several of the daemon's retries; its workers stay alive.
    proxy.hold_until_refused(10).await;
    assert_ne!(status(&app, "/healthz").await, 503, "a worker died during the outage");
    assert_eq!(status(&app, "/readyz").await, 503);
    assert!(events().await <= first as i64, "nothing can have been written during the outage");

    proxy.restore();
    poll_until("/readyz ready again", || async { status(&app, "/readyz").await == 200 }).await;
    poll_until("every message ingested after the outage", || async { dv.messages("sales", "INBOX").await.is_empty() })
        .await;
    assert_eq!(events().await, total as i64, "one event per message");
    assert_eq!(count(&direct, "SELECT COUNT(*) AS n FROM lead").await, total as i64, "one lead per sender");
    assert_eq!(count(&direct, "SELECT COUNT(DISTINCT emailaddress1) AS n FROM lead").await, total as i64);
    assert_eq!(
        count(&direct, "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email'").await,
        total as i64,
        "one e-mail activity per message"
    );
    assert_eq!(dv.messages("sales", "Processed").await.len(), total);
    poll_until("inflow_database_up 1", || async { metric(&app, "inflow_database_up", &[]).await == 1.0 }).await;
    assert_eq!(status(&app, "/healthz").await, 200);
    direct.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_wave_sends_each_recipient_once() {
    let (db, direct, proxy, via) = proxied_postgres().await;
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_on(db, via.as_str(), tempfile::tempdir().unwrap(), &smtp_toml(&sink, "")).await;

    let (owner, camp) = campaign(&direct).await;
    let total = 40;
    let mut ids = Vec::new();
    for i in 0..total {
        ids.push(contact(&direct, owner, Some("Клиент"), Some(&format!("c{i}@client.example")), |_| {}).await);
    }
    let list = static_list(&direct, owner, &ids).await;
    let w = wave(&direct, owner, camp, &[list], "Волна во время сбоя").await;
    // Two a second, so the outage falls in the middle of the sending.
    inflow::waves::schedule(&direct, &schedule(w, now(), Some(120)), now()).await.unwrap();
    poll_until("the first messages sent", || async { sink.messages().len() >= 4 }).await;
    proxy.cut();
    poll_until("inflow_database_up 0", || async { metric(&app, "inflow_database_up", &[]).await == 0.0 }).await;
    proxy.hold_until_refused(10).await;
    assert_ne!(status(&app, "/healthz").await, 503, "a worker died during the outage");
    let sent_during = sink.messages().len();
    assert!(sent_during < total, "the wave did not wait for the database: {sent_during}");
    proxy.restore();

    let st = wait_state(&direct, w, "completed").await;
    let got: Vec<String> = sink.messages().iter().map(|(r, _)| r.trim().to_lowercase()).collect();
    let distinct: std::collections::BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), total, "every recipient mailed");
    assert_eq!(got.len(), total, "nobody mailed twice: {got:?}");
    assert_eq!((st.sent, st.failed), (total as i64, 0));
    direct.close().await;
    app.stop().await;
    sink.stop().await;
}

/// A small tmpfs the test fills and empties (the daemon's disk running full).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount(8)")
            .success();
        assert!(ok, "mounting a tmpfs needs root (the test machine runs as root)");
        SmallDisk { dir }
    }

    /// Writes a filler file until the disk refuses another byte.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let one = [0u8; 1];
        while f.write_all(&one).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_corrupts_nothing_and_resumes() {
    let disk = SmallDisk::mount(24);
    let path = disk.dir.path().join("inflow.db");
    let db = TestDb::sqlite_at(&path);
    let url = db.url.clone();
    let dv = Dovecot::start();
    let config = sales_mailbox(&dv);
    let app = TestApp::spawn_on(db, &url, tempfile::tempdir().unwrap(), &config).await;
    let s = app.store.clone();
    add_user(&s, "", "Sales", "sales@crm.example.com", None, None).await;
    let events = || count(&s, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'");
    // Each message carries 40 KB of text, so the database must grow to take it.
    let body = "Здравствуйте! ".repeat(1500);
    let msgs: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            let mut m =
                inquiry(&format!("full-{i}@client.example"), &format!("Buyer {i} <b{i}@client.example>"), "Offer");
            m.extend_from_slice(body.as_bytes());
            m
        })
        .collect();
    dv.append("sales", "INBOX", &msgs[..5]).await;
    poll_until("the first messages", || async { events().await == 5 }).await;

    disk.fill();
    dv.append("sales", "INBOX", &msgs[5..]).await;
    // The state row cannot be written on a full disk: the in-memory counter says it.
    poll_until("the mailbox reports a store error", || async {
        metric(&app, "inflow_mailbox_errors_total", &[("mailbox", "sales"), ("state", "store_error")]).await >= 1.0
    })
    .await;
    assert!(events().await < 30, "nothing fits on a full disk");
    assert_ne!(status(&app, "/healthz").await, 503, "a worker died on the full disk");

    disk.free();
    poll_until("every message ingested once space returns", || async {
        dv.messages("sales", "INBOX").await.is_empty()
    })
    .await;
    assert_eq!(events().await, 30, "one event per message, none lost");
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM lead").await, 30);
    let check: String =
        s.db.clone().fetch_one("PRAGMA integrity_check", vec![]).await.unwrap().get("integrity_check").unwrap();
    assert_eq!(check, "ok");
    app.stop().await;
}
