//! Real-world mail through the real IMAP path (issue 16), on both engines: Sisimai's corpus
//! of bounces, auto-replies, complaints and look-alikes makes no lead, contact or inquiry;
//! `From: <>` notices are read as bounces; the loop guard loses nothing on a backlog and
//! keeps what it holds back for replay; charsets; a NUL-bearing body; replay keeps ids.

use inflow::crm::status::EventStatus;
use inflow::store::{Exec, Store};

use crate::dovecot::{Dovecot, PASSWORD};
use crate::helpers::{TestApp, add_user, poll_until};

async fn count(store: &Store, sql: &str) -> i64 {
    store.db.clone().fetch_one(sql, vec![]).await.unwrap().get("n").unwrap()
}

fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/sisimai");
    let mut out = Vec::new();
    // Machine mail only: not-bounce/ holds two messages people wrote (leads are right there).
    for sub in ["eml"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .expect("the Sisimai corpus in ../shared")
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn config(dv: &Dovecot) -> String {
    format!(
        "[org]\ntimezone = \"Europe/Moscow\"\n\n{}",
        dv.mailbox_toml(
            "sales",
            "sales",
            PASSWORD,
            "owner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nbatch_size = 40\n"
        )
    )
}

async fn events(s: &Store) -> i64 {
    count(s, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'").await
}

async fn machine_mail_makes_nothing(engine: &str) {
    let dv = Dovecot::start();
    let files = corpus_files();
    let msgs: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
    dv.append("sales", "INBOX", &msgs).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &config(&dv)).await;
    let s = app.store.clone();
    add_user(&s, "", "Sales", "sales@crm.example.com", None, None).await;
    poll_until("every corpus message handled", || async { dv.messages("sales", "INBOX").await.is_empty() }).await;
    // Nothing lost: every message was moved only after its event committed.
    assert_eq!(dv.messages("sales", "Processed").await.len(), files.len());
    println!("corpus through IMAP ({engine}): {:?}", s.mail_event_counts().await.unwrap());
    for r in s.db.clone().fetch_all("SELECT emailaddress1, subject FROM lead", vec![]).await.unwrap() {
        println!(
            "lead from machine mail: {:?} {:?}",
            r.get::<Option<String>>("emailaddress1").unwrap(),
            r.get::<String>("subject").unwrap()
        );
    }
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM lead").await, 0, "no lead from machine mail");
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM contact").await, 0, "no contact from machine mail");
    assert_eq!(
        count(&s, "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email'").await,
        0,
        "no inquiry e-mail from machine mail"
    );
    let by_class = s.mail_event_counts().await.unwrap();
    assert!(!by_class.iter().any(|(_, class, _)| class == "inquiry" || class == "reply"), "{by_class:?}");
    // `From: <>` notices (SurfControl, m-FILTER, McAfee) are bounces, not quarantined.
    for file in ["lhost-surfcontrol-02.eml", "lhost-mfilter-03.eml", "lhost-mcafee-04.eml"] {
        let raw = &files.iter().find(|(n, _)| n == file).unwrap().1;
        let key = inflow::ingest::mail::parse(raw, 1 << 24).unwrap_or_else(|e| panic!("{file}: {e}")).key;
        let ev = s.inbound_event("imap", &key).await.unwrap().unwrap_or_else(|| panic!("{file}: no event"));
        assert_eq!(ev.status, EventStatus::Processed, "{file}: {ev:?}");
    }
    // The corpus reuses Message-IDs: each repeat is counted as a duplicate of the mailbox.
    let dups = count(&s, "SELECT duplicates AS n FROM mailbox_state WHERE mailbox = 'sales'").await;
    assert_eq!(dups + events(&s).await, files.len() as i64, "every message is an event or a counted duplicate");
    assert!(dups > 0);
    // Every bounce row carries its reason.
    // (The corpus reuses its 242 distinct recipients across its files.)
    assert!(count(&s, "SELECT COUNT(*) AS n FROM mail_bounce").await >= 200);
    let r =
        s.db.clone()
            .fetch_one(
                "SELECT last_reason, hard_count FROM mail_bounce WHERE address = 'userunknown@bouncehammer.jp'",
                vec![],
            )
            .await
            .unwrap();
    assert_eq!(r.get::<Option<String>>("last_reason").unwrap().as_deref(), Some("userunknown"));
    assert!(r.get::<i64>("hard_count").unwrap() >= 1);
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM mail_bounce WHERE last_reason IS NULL").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_mail_makes_nothing_sqlite() {
    machine_mail_makes_nothing("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_mail_makes_nothing_postgres() {
    machine_mail_makes_nothing("postgres").await;
}

/// A plain message from `from`, dated `date` (RFC 5322).
fn message(id: &str, from: &str, date: &str, subject_header: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: sales@crm.example.com\r\nSubject: {subject_header}\r\nDate: {date}\r\n\
        Message-ID: <{id}>\r\nMIME-Version: 1.0\r\n{body}"
    )
    .into_bytes()
}

async fn backlog_charsets_nul_and_replay(engine: &str) {
    let dv = Dovecot::start();
    let mut msgs = Vec::new();
    // A first poll of a mailbox with history: 100 messages from one sender, an hour apart.
    let start = chrono::DateTime::parse_from_rfc2822("Mon, 2 Nov 2026 09:00:00 +0300").unwrap();
    for i in 0..100 {
        let d = (start + chrono::Duration::hours(i)).to_rfc2822();
        msgs.push(message(
            &format!("hist-{i}@client.example"),
            "Kate <kate@client.example>",
            &d,
            &format!("Order {i}"),
            "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease ship.\r\n",
        ));
    }
    // A real loop: 25 messages from one robot within minutes.
    for i in 0..25 {
        let d = (start + chrono::Duration::minutes(i)).to_rfc2822();
        msgs.push(message(
            &format!("loop-{i}@robot.example"),
            "Robot <robot@robot.example>",
            &d,
            &format!("Ticket {i}"),
            "Content-Type: text/plain; charset=utf-8\r\n\r\nAuto ticket.\r\n",
        ));
    }
    let d = "Fri, 27 Nov 2026 10:00:00 +0300";
    // Charsets of subjects and names.
    msgs.push(message(
        "gb@cn.example",
        "=?GB2312?B?1cXI/Q==?= <zhang@cn.example>",
        d,
        "=?GB2312?B?xOO6ww==?=",
        "Content-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\nxOO6ww==\r\n",
    ));
    msgs.push(message(
        "jp@jp.example",
        "=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@jp.example>",
        d,
        "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=",
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n",
    ));
    msgs.push(message(
        "u7@de.example",
        "Hans <hans@de.example>",
        d,
        "=?UTF-7?Q?Gr+APw-sse?=",
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n",
    ));
    let mut latin1 = b"From: Fr\xf6sche <frog@de.example>\r\nTo: sales@crm.example.com\r\n\
        Subject: Fr\xf6sche und K\xe4se\r\nDate: Fri, 27 Nov 2026 10:00:00 +0300\r\n\
        Message-ID: <l1@de.example>\r\n\r\nHallo\r\n"
        .to_vec();
    msgs.push(std::mem::take(&mut latin1));
    msgs.push(message(
        "cp@ru.example",
        "=?windows-1251?B?yOLg7SDP5fLw7uI=?= <ivan@ru.example>",
        d,
        "=?windows-1251?B?x+Dv8O7x?=",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
    ));
    msgs.push(message(
        "koi@ru.example",
        "=?koi8-r?B?8MXU0s/XIOnXwc4=?= <petrov@ru.example>",
        d,
        "=?koi8-r?B?+sHQ0s/T?=",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
    ));
    // A quoted-printable body that decodes to a NUL (PostgreSQL refuses NUL in text).
    msgs.push(message(
        "nul@client.example",
        "Nul Sender \
        <nul@client.example>",
        d,
        "With a \
        NUL",
        "Content-Type: text/plain; charset=us-ascii\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\r\nbefore=00after\r\n",
    ));
    // Unparsable: no From at all.
    msgs.push(b"Subject: nobody\r\nMessage-ID: <nofrom@x.example>\r\n\r\nbody\r\n".to_vec());
    dv.append("sales", "INBOX", &msgs).await;
    let total = msgs.len() as i64;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &config(&dv)).await;
    let s = app.store.clone();
    add_user(&s, "", "Sales", "sales@crm.example.com", None, None).await;
    poll_until("every message handled", || {
        let s = s.clone();
        async move { events(&s).await == total }
    })
    .await;

    // The backlog: all 100 e-mails recorded, none held back.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email' AND sender = 'kate@client.example'"
        )
        .await,
        100
    );
    // The loop: 20 recorded, 5 held back with their bytes, listed for replay.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email' AND sender = 'robot@robot.example'"
        )
        .await,
        20
    );
    let held = s.quarantined_mail().await.unwrap();
    let loops: Vec<_> = held.iter().filter(|e| e.status == EventStatus::Skipped).collect();
    assert_eq!(loops.len(), 5, "{held:?}");
    assert!(loops.iter().all(|e| e.raw.is_some()), "skipped mail keeps its bytes");

    // Names and subjects in every charset.
    let lead = |email: &'static str| {
        let s = s.clone();
        async move {
            let r =
                s.db.clone()
                    .fetch_one(
                        "SELECT subject, firstname, lastname, description FROM lead WHERE emailaddress1 = $1",
                        vec![email.into()],
                    )
                    .await
                    .unwrap();
            (
                r.get::<String>("subject").unwrap(),
                r.get::<Option<String>>("firstname").unwrap(),
                r.get::<String>("lastname").unwrap(),
                r.get::<Option<String>>("description").unwrap(),
            )
        }
    };
    assert_eq!(lead("zhang@cn.example").await.0, "你好");
    assert_eq!(lead("zhang@cn.example").await.2, "张三");
    assert_eq!(lead("yamada@jp.example").await.0, "こんにちは");
    assert_eq!(lead("yamada@jp.example").await.2, "山田");
    assert_eq!(lead("hans@de.example").await.0, "Grüsse");
    let frog = lead("frog@de.example").await;
    assert_eq!((frog.0.as_str(), frog.2.as_str()), ("Frösche und Käse", "Frösche"));
    let ivan = lead("ivan@ru.example").await;
    assert_eq!((ivan.0.as_str(), ivan.1.as_deref(), ivan.2.as_str()), ("Запрос", Some("Иван"), "Петров"));
    let petrov = lead("petrov@ru.example").await;
    assert_eq!((petrov.0.as_str(), petrov.1.as_deref(), petrov.2.as_str()), ("Запрос", Some("Петров"), "Иван"));
    // The NUL-bearing body is stored (without the NUL) on both engines.
    assert_eq!(lead("nul@client.example").await.3.as_deref(), Some("beforeafter"));

    // Replay keeps ids: the unparsable message stays quarantined under the same id; a held
    // back message replays into an e-mail, still under its id.
    let bad = held.iter().find(|e| e.status == EventStatus::Quarantined).expect("the From-less message");
    let text = config(&dv);
    let rt_cfg = inflow::config::Config::load(
        inflow::config::Source::Text { name: "test", text: &text },
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    let mb = &rt_cfg.mailboxes[0];
    let rt = inflow::ingest::imap::MailboxRuntime::new(&rt_cfg, mb, s.clone(), "test").unwrap();
    let out = rt.replay(bad).await.unwrap();
    assert_eq!((out.status.as_str(), out.event_id), ("quarantined", Some(bad.id)));
    let out = rt.replay(loops[0]).await.unwrap();
    assert_eq!((out.status.as_str(), out.event_id), ("processed", Some(loops[0].id)));
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email' AND sender = 'robot@robot.example'"
        )
        .await,
        21
    );
    assert_eq!(s.quarantined_mail().await.unwrap().len(), held.len() - 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_charsets_nul_and_replay_sqlite() {
    backlog_charsets_nul_and_replay("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_charsets_nul_and_replay_postgres() {
    backlog_charsets_nul_and_replay("postgres").await;
}
