//! IMAP ingest against a real Dovecot (tests/it/dovecot.rs): every message class through
//! the worker, idempotency on re-delivery, IDLE, a server restart, wrong credentials next to
//! a working mailbox, a crash between commit and checkpoint (real binary + failpoint),
//! UIDVALIDITY change, quarantine and replay, two daemons sharing a mailbox on PostgreSQL.

use inflow::crm::status::EventStatus;
use std::process::Stdio;

use inflow::crm::EntityKind;
use inflow::crm::entities::*;
use inflow::store::{Exec, RecordExt, Store};
use uuid::Uuid;

use crate::dovecot::{Dovecot, PASSWORD, fixture, inquiry};
use crate::helpers::{TestApp, add_user, daemon, inflow_bin, now, poll_until};

/// The outbound wave message the fixtures reply to / bounce (X-header in bounce-postfix-dsn.eml).
const BOUNCED_ACTIVITY: &str = "6f1c2a9e-4b1d-4c57-9a3e-1f0e8d7c6b5a";

async fn count(store: &Store, sql: &str) -> i64 {
    store.db.clone().fetch_one(sql, vec![]).await.unwrap().get("n").unwrap()
}

async fn event_ids(store: &Store) -> std::collections::BTreeSet<String> {
    let rows = store.db.clone().fetch_all("SELECT id FROM inbound_event", vec![]).await.unwrap();
    rows.iter().map(|r| r.get::<String>("id").unwrap()).collect()
}

async fn events(store: &Store) -> i64 {
    count(store, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'").await
}

struct Seed {
    sales: Uuid,
    marketing: Uuid,
    contact: Uuid,
    wave: Uuid,
    campaign: Uuid,
    reply_target: Uuid,
}

/// Users, a known contact (maria@client.example), a campaign with a wave, and two outbound
/// wave e-mails as the wave sender stores them (Message-ID without brackets, token, X-header id).
async fn seed(s: &Store) -> Seed {
    let marketing = add_user(s, "", "Marketing", "marketing@crm.example.com", None, None).await;
    let t = now();
    let c = Contact {
        contactid: Uuid::new_v4(),
        firstname: Some("Maria".into()),
        lastname: "Ivanova".into(),
        emailaddress1: Some("Maria@Client.Example".into()),
        ..Default::default()
    }
    .stamped(marketing, EntityKind::Systemuser, t, None);
    s.insert(&c).await.unwrap();
    let camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "November news".into(),
        typecode: 1,
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(marketing, EntityKind::Systemuser, t, None);
    s.insert(&camp).await.unwrap();
    let wave = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "November e-mail".into(),
        channeltypecode: Some(7),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(marketing, EntityKind::Systemuser, t, None);
    s.create_campaign_activity(&wave).await.unwrap();
    let outbound = |id: Uuid, mid: &str, token: &str| {
        let mut a = Activity {
            activityid: id,
            activitytypecode: EntityKind::Email,
            subject: Some("November news".into()),
            regardingobjectid: Some(wave.activityid),
            regardingobjectidtype: Some(EntityKind::Campaignactivity),
            directioncode: Some(true),
            messageid: Some(mid.into()),
            trackingtoken: Some(token.into()),
            ..Default::default()
        }
        .stamped(marketing, EntityKind::Systemuser, t, None);
        a.statecode = 1;
        a.statuscode = 3;
        a
    };
    let reply_target = Uuid::new_v4();
    s.insert(&outbound(reply_target, "wave-1.rcpt-2@crm.example.com", "CRM:W1R2TOKEN")).await.unwrap();
    s.insert(&outbound(BOUNCED_ACTIVITY.parse().unwrap(), "wave-1.rcpt-1@crm.example.com", "CRM:W1R1TOKEN"))
        .await
        .unwrap();
    // The wave message the ARF complaint fixture returns.
    s.insert(&outbound(Uuid::new_v4(), "wave-1.rcpt-9@crm.example.com", "CRM:W1R9TOKEN")).await.unwrap();
    // The mailbox owner last: workers resolve it per connection, so they start only now.
    let sales = add_user(s, "", "Sales", "sales@crm.example.com", None, None).await;
    Seed { sales, marketing, contact: c.contactid, wave: wave.activityid, campaign: camp.campaignid, reply_target }
}

fn config(dv: &Dovecot, mailbox_extra: &str) -> String {
    format!(
        "[org]\ntimezone = \"Europe/Moscow\"\n\n[waves]\n\
            unsubscribe_mailto = \"unsubscribe@news.crm.example.com\"\n\n{}",
        dv.mailbox_toml(
            "sales",
            "sales",
            PASSWORD,
            &format!(
                "owner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_message_bytes = 20000\n\
            auto_unsubscribe = true\n{mailbox_extra}"
            )
        )
    )
}

async fn lead_by_email(s: &Store, email: &str) -> Vec<Uuid> {
    let rows =
        s.db.clone().fetch_all("SELECT leadid FROM lead WHERE emailaddress1 = $1", vec![email.into()]).await.unwrap();
    rows.iter().map(|r| r.get("leadid").unwrap()).collect()
}

async fn every_class(engine: &str) {
    let dv = Dovecot::start();
    let big = {
        let mut m = inquiry("big-1@client.example", "Big <big@client.example>", "Huge attachment")
            .into_iter()
            .collect::<Vec<u8>>();
        m.extend(std::iter::repeat_n(b'A', 30_000));
        m
    };
    let msgs: Vec<Vec<u8>> = [
        "inquiry-koi8r.eml",
        "reply-to-wave.eml",
        "unsubscribe-mailto.eml",
        "bounce-postfix-dsn.eml",
        "bounce-alias-dsn.eml",
        "autoreply-rfc3834.eml",
        "malformed-no-from.eml",
        "newsletter-bulk.eml",
        "inquiry-cp1251.eml",
        "complaint-arf.eml",
    ]
    .iter()
    .map(|f| fixture(f))
    .chain([big])
    .collect();
    dv.append("sales", "INBOX", &msgs).await;
    let dir = tempfile::tempdir().unwrap();
    // Seed before the worker can run: the owner is resolved per connection, so start the
    // app against an owner that exists only after seeding — the worker waits for it.
    let app = TestApp::spawn(engine, dir, &config(&dv, "")).await;
    let s = app.store.clone();
    let seed = seed(&s).await;
    poll_until("all ten messages handled", || {
        let s = s.clone();
        async move { events(&s).await == 11 }
    })
    .await;
    poll_until("processed mail moved out of INBOX", || async { dv.messages("sales", "INBOX").await.is_empty() }).await;
    let moved = dv.messages("sales", "Processed").await;
    assert_eq!(moved.len(), 11, "never deleted: all moved to Processed");
    assert!(
        moved.iter().all(|(_, flags)| !flags.iter().any(|f| f.contains("Seen"))),
        "BODY.PEEK leaves \\Seen unset: {moved:?}"
    );
    assert!(
        crate::helpers::metric(&app, "inflow_mail_messages_total", &[("mailbox", "sales"), ("class", "bounce")]).await
            >= 1.0
    );
    assert!(crate::helpers::metric(&app, "inflow_mail_quarantined_total", &[("mailbox", "sales")]).await >= 2.0);
    assert!(
        crate::helpers::metric(&app, "inflow_mailbox_last_poll_timestamp_seconds", &[("mailbox", "sales")]).await
            > 1.7e9
    );

    // New inquiry in KOI8-R → a lead with decoded text (R-EM-6 mapping).
    let ivan = lead_by_email(&s, "ivan.petrov@zavod.example").await;
    assert_eq!(ivan.len(), 1);
    let lead: Lead = s.load(ivan[0]).await.unwrap();
    assert_eq!(
        (lead.subject.as_str(), lead.firstname.as_deref(), lead.lastname.as_str()),
        ("Запрос цены на оборудование", Some("Иван"), "Петров")
    );
    assert_eq!((lead.ownerid, lead.leadsourcecode, lead.leadqualitycode), (seed.sales, Some(10), 2));
    let olga = lead_by_email(&s, "olga@torg.example").await;
    let lead: Lead = s.load(olga[0]).await.unwrap();
    assert_eq!((lead.subject.as_str(), lead.lastname.as_str()), ("Коммерческое предложение", "Сидоренко"));
    assert!(lead.description.unwrap().contains("Добрый день"));

    // Reply to the wave from a known contact → an open response on the campaign, the e-mail on the wave.
    let r =
        s.db.clone()
            .fetch_one("SELECT activityid FROM campaignresponse WHERE campaignactivityid = $1", vec![seed.wave.into()])
            .await
            .unwrap();
    let resp: CampaignResponse = s.load(r.get("activityid").unwrap()).await.unwrap();
    assert_eq!(
        (resp.regardingobjectid, resp.customerid, resp.originatingactivityid),
        (seed.campaign, Some(seed.contact), Some(seed.reply_target))
    );
    assert_eq!(
        (resp.responsecode, resp.channeltypecode, resp.statecode, resp.ownerid),
        (1, Some(1), 0, seed.marketing)
    );
    // R-RS-3: a known customer's response stays open and its wave owner gets a task due now.
    let t =
        s.db.clone()
            .fetch_one(
                "SELECT activityid FROM activity WHERE activitytypecode = 'task' AND regardingobjectid = $1",
                vec![resp.activityid.into()],
            )
            .await
            .unwrap();
    let task: Activity = s.load(t.get("activityid").unwrap()).await.unwrap();
    assert_eq!((task.ownerid, task.statecode), (seed.marketing, 0));
    let e =
        s.db.clone()
            .fetch_one("SELECT activityid FROM activity WHERE messageid = 'reply-1@client.example'", vec![])
            .await
            .unwrap();
    let email: Activity = s.load(e.get("activityid").unwrap()).await.unwrap();
    assert_eq!(
        (email.regardingobjectid, email.correlationmethod, email.statecode, email.statuscode),
        (Some(seed.wave), Some(3), 1, 4)
    );

    // List-Unsubscribe mailto → suppression; bounce → suppression + delivery failed.
    assert_eq!(
        s.suppression("petr@client.example").await.unwrap().expect("unsubscribed").reason,
        "unsubscribe: List-Unsubscribe mailto"
    );
    let sup = s.suppression("nobody@client.example").await.unwrap().expect("hard bounce suppressed");
    assert!(sup.reason.contains("5.1.1"), "{sup:?}");
    // An alias that expanded to a dead mailbox: the address we mailed (Original-Recipient)
    // and the mailbox (Final-Recipient) are both suppressed.
    for address in ["sales-olga@client.example", "olga.s@mbox.client.example"] {
        let sup = s.suppression(address).await.unwrap().unwrap_or_else(|| panic!("{address} suppressed"));
        assert_eq!(sup.reason, "bounce: hard, userunknown 5.1.1", "{address}");
    }
    assert_eq!(
        s.suppression("angry@mail.example").await.unwrap().expect("complaint").reason,
        "complaint: ARF abuse report"
    );
    let bounced: Activity = s.load(BOUNCED_ACTIVITY.parse().unwrap()).await.unwrap();
    assert_eq!((bounced.statecode, bounced.statuscode), (0, 8), "the delivery is marked failed");

    // Auto-reply recorded, newsletter kept without a lead, malformed and oversized quarantined.
    let ev = s.inbound_event("imap", "<ooo-1@client.example>").await.unwrap().unwrap();
    assert_eq!(ev.status, EventStatus::Processed);
    assert!(ev.reason.unwrap().contains("auto-reply"));
    assert!(lead_by_email(&s, "boris@client.example").await.is_empty());
    assert!(lead_by_email(&s, "digest@lists.vendor.example").await.is_empty());
    let q = s.quarantined_mail().await.unwrap();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q.iter().any(|e| e.reason.as_deref().is_some_and(|r| r.contains("no usable From")) && e.raw.is_some()));
    assert!(q.iter().any(|e| e.reason.as_deref().is_some_and(|r| r.contains("over the mailbox limit"))
        && e.raw_location.as_deref().is_some_and(|l| l.contains(";UID="))));

    // The same messages again (another copy in the folder) and one new: nothing doubles.
    dv.append(
        "sales",
        "INBOX",
        &[
            fixture("inquiry-koi8r.eml"),
            fixture("reply-to-wave.eml"),
            inquiry("new-2@client.example", "New <new@client.example>", "Second"),
        ],
    )
    .await;
    poll_until("the new message handled", || {
        let s = s.clone();
        async move { s.inbound_event("imap", "<new-2@client.example>").await.unwrap().is_some() }
    })
    .await;
    poll_until("INBOX emptied again", || async { dv.messages("sales", "INBOX").await.is_empty() }).await;
    assert_eq!(events(&s).await, 12);
    assert_eq!(lead_by_email(&s, "ivan.petrov@zavod.example").await.len(), 1);
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM campaignresponse").await, 1);
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM activity WHERE messageid = 'reply-1@client.example'").await, 1);
    let st = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap();
    assert_eq!(st.last_uid, 14, "checkpoint after the last UID");
    assert_eq!(st.state, "connected");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_sqlite() {
    every_class("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_postgres() {
    every_class("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_delivers_mail_appended_while_waiting() {
    let dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    // An hour between polls: only IDLE can bring the message in before the test's deadline.
    let app = TestApp::spawn("sqlite", dir, &config(&dv, "poll_interval_secs = 3600\nlease_secs = 10800")).await;
    let s = app.store.clone();
    seed(&s).await;
    poll_until("the worker connected and polled once", || {
        let s = s.clone();
        async move {
            s.mailbox_state("sales", "INBOX")
                .await
                .unwrap()
                .is_some_and(|st| st.state == "connected" && st.last_poll_at.is_some())
        }
    })
    .await;
    // Mail appended between the poll and IDLE is announced when IDLE starts (EXISTS), so
    // there is no window to wait out here.
    dv.append("sales", "INBOX", &[inquiry("idle-1@client.example", "Idle <idle@client.example>", "Via IDLE")]).await;
    poll_until("IDLE delivered the message", || {
        let s = s.clone();
        async move { !lead_by_email(&s, "idle@client.example").await.is_empty() }
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported_and_restart_recovers() {
    let mut dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}\n{}",
        config(&dv, "poll_interval_secs = 1"),
        dv.mailbox_toml(
            "wrong",
            "other",
            "not-the-password",
            "owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n"
        )
    );
    let app = TestApp::spawn("sqlite", dir, &extra).await;
    let s = app.store.clone();
    seed(&s).await;
    poll_until("the wrong password is reported as such", || {
        let s = s.clone();
        async move { s.mailbox_state("wrong", "INBOX").await.unwrap().is_some_and(|st| st.state == "login_rejected") }
    })
    .await;
    dv.append("sales", "INBOX", &[inquiry("r-1@client.example", "One <one@client.example>", "Before restart")]).await;
    poll_until("the good mailbox works beside the bad one", || {
        let s = s.clone();
        async move { !lead_by_email(&s, "one@client.example").await.is_empty() }
    })
    .await;
    dv.stop();
    poll_until("the outage is noticed", || {
        let s = s.clone();
        async move {
            s.mailbox_state("sales", "INBOX")
                .await
                .unwrap()
                .is_some_and(|st| st.state == "connection_lost" || st.state == "unreachable")
        }
    })
    .await;
    dv.restart();
    dv.append("sales", "INBOX", &[inquiry("r-2@client.example", "Two <two@client.example>", "After restart")]).await;
    poll_until("the worker is back after the restart", || {
        let s = s.clone();
        async move { !lead_by_email(&s, "two@client.example").await.is_empty() }
    })
    .await;
    assert_eq!(s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().state, "connected");
    poll_until("the bad mailbox is back to reporting its credentials", || {
        let s = s.clone();
        async move { s.mailbox_state("wrong", "INBOX").await.unwrap().is_some_and(|st| st.state == "login_rejected") }
    })
    .await;
    assert_eq!(lead_by_email(&s, "one@client.example").await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_checkpoint_loses_and_doubles_nothing() {
    let dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inflow.db");
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n{}",
            db.display(),
            // A lease far longer than the test may wait: the restarted daemon must take over
            // the dead one's lease at once (same host, process gone), not wait it out.
            config(&dv, "lease_secs = 300")
        ),
    )
    .unwrap();
    // Migrate and seed through the same database file.
    let out = std::process::Command::new(inflow_bin()).arg("--config").arg(&cfg).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = format!("sqlite://{}", db.display());
    let store = inflow::app::open_store(
        &inflow::config::Config::load(
            inflow::config::Source::Text { name: "t", text: &format!("[database]\nurl = \"{url}\"\n") },
            &Default::default(),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    seed(&store).await;
    dv.append(
        "sales",
        "INBOX",
        &(1..=3)
            .map(|i| {
                inquiry(&format!("crash-{i}@client.example"), &format!("C{i} <c{i}@client.example>"), "Crash test")
            })
            .collect::<Vec<_>>(),
    )
    .await;

    let mut child = daemon(&cfg, Some("imap-after-commit"));
    let status = tokio::time::timeout(std::time::Duration::from_secs(90), child.wait())
        .await
        .expect("the failpoint fires")
        .unwrap();
    assert!(!status.success(), "aborted at the failpoint");
    // Committed, but neither moved nor checkpointed.
    assert_eq!(events(&store).await, 3);
    assert_eq!(dv.messages("sales", "INBOX").await.len(), 3);
    assert_eq!(store.mailbox_state("sales", "INBOX").await.unwrap().map(|s| s.last_uid).unwrap_or(0), 0);

    let restarted = std::time::Instant::now();
    let mut child = daemon(&cfg, None);
    poll_until("the restarted daemon finishes the batch", || async { dv.messages("sales", "INBOX").await.is_empty() })
        .await;
    let took = restarted.elapsed();
    println!("restart to the batch finished: {took:?}");
    assert!(took < std::time::Duration::from_secs(60), "the dead daemon's 300 s lease was waited out: {took:?}");
    poll_until("checkpoint advanced", || {
        let store = store.clone();
        async move { store.mailbox_state("sales", "INBOX").await.unwrap().is_some_and(|s| s.last_uid == 3) }
    })
    .await;
    assert_eq!(events(&store).await, 3, "no doubles");
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM lead").await, 3, "no loss, no doubles");
    assert_eq!(dv.messages("sales", "Processed").await.len(), 3);
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().unwrap().to_string()]).status();
    let st = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(st.success());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_rescans_without_doubles() {
    let dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    // Flag mode: processed mail stays in INBOX, so a rescan really sees it again.
    let cfg = config(&dv, "poll_interval_secs = 1\nidle = false").replace("processed_folder = \"Processed\"\n", "");
    let app = TestApp::spawn("sqlite", dir, &cfg).await;
    let s = app.store.clone();
    seed(&s).await;
    dv.append(
        "sales",
        "INBOX",
        &[
            inquiry("u-1@client.example", "U1 <u1@client.example>", "One"),
            inquiry("u-2@client.example", "U2 <u2@client.example>", "Two"),
        ],
    )
    .await;
    poll_until("both handled", || {
        let s = s.clone();
        async move { s.mailbox_state("sales", "INBOX").await.unwrap().is_some_and(|st| st.last_uid == 2) }
    })
    .await;
    let flagged = dv.messages("sales", "INBOX").await;
    assert!(flagged.iter().all(|(_, f)| f.iter().any(|x| x.contains("InflowProcessed"))), "{flagged:?}");
    let old = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().uidvalidity.unwrap();
    dv.set_uidvalidity("sales", "INBOX", (old as u32).wrapping_add(1000));
    dv.append("sales", "INBOX", &[inquiry("u-3@client.example", "U3 <u3@client.example>", "Three")]).await;
    poll_until("rescanned under the new UIDVALIDITY", || {
        let s = s.clone();
        async move {
            s.mailbox_state("sales", "INBOX")
                .await
                .unwrap()
                .is_some_and(|st| st.uidvalidity == Some(old + 1000) && st.last_uid == 3)
        }
    })
    .await;
    assert_eq!(events(&s).await, 3, "the two old messages were recognised, the new one added");
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM lead").await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_is_listed_and_replayed_from_the_cli() {
    let dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inflow.db");
    let cfg_path = dir.path().join("inflow.toml");
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n{}",
        db.display(),
        config(&dv, "")
    );
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap();
    let running = inflow::app::start(cfg.clone(), tokio_util::sync::CancellationToken::new()).await.unwrap();
    let s = inflow::app::open_store(&cfg).await.unwrap();
    seed(&s).await;
    dv.append("sales", "INBOX", &[fixture("malformed-no-from.eml")]).await;
    poll_until("quarantined", || {
        let s = s.clone();
        async move { s.quarantined_mail().await.unwrap().len() == 1 }
    })
    .await;
    // The admin API lists it and replays it (still broken: it stays quarantined, not doubled).
    let admin = add_user(&s, "", "Admin", "admin@crm.example.com", None, None).await;
    s.add_api_token("ops", &inflow::http::api::token_hash("ops-token"), admin, "admin", now()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.addr);
    let listed: serde_json::Value = http
        .get(format!("{base}/api/v1/ops/quarantine"))
        .bearer_auth("ops-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    assert!(listed["items"][0]["reason"].as_str().unwrap().contains("no usable From"), "{listed}");
    let r = http
        .post(format!("{base}/api/v1/ops/quarantine/{id}/replay"))
        .bearer_auth("ops-token")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "quarantined");
    let r = http
        .post(format!("{base}/api/v1/ops/quarantine/{}/replay", uuid::Uuid::new_v4()))
        .bearer_auth("ops-token")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.quarantined_mail().await.unwrap().len(), 1);
    running.token.cancel();
    running.done.await.unwrap().unwrap();
    let q = s.quarantined_mail().await.unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(inflow_bin()).arg("--config").arg(&cfg_path).args(args).output().unwrap()
    };
    let out = run(&["mail", "quarantine"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&q[0].id.to_string()) && listing.contains("no usable From"), "{listing}");
    // Still broken: replay keeps it quarantined with the reason.
    let out = run(&["mail", "replay", &q[0].id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quarantined"));
    let q = s.quarantined_mail().await.unwrap();
    assert_eq!(q.len(), 1, "replaced, not doubled");
    // "After a fix": the stored bytes are repaired (as an operator would after fixing the
    // cause), then replay processes them into a lead.
    let fixed =
        [b"From: Fixed Sender <fixed@client.example>\r\n".as_slice(), &fixture("malformed-no-from.eml")].concat();
    s.db.clone()
        .execute("UPDATE inbound_event SET raw = $1 WHERE id = $2", vec![Some(fixed).into(), q[0].id.into()])
        .await
        .unwrap();
    let out = run(&["mail", "replay", "--all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.quarantined_mail().await.unwrap().is_empty());
    assert_eq!(lead_by_email(&s, "fixed@client.example").await.len(), 1);
    assert_eq!(
        s.inbound_event("imap", "<broken-1@nowhere.example>").await.unwrap().unwrap().status,
        EventStatus::Processed
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_a_mailbox_under_a_lease() {
    let dv = Dovecot::start();
    let msgs: Vec<Vec<u8>> = (0..200)
        .map(|i| inquiry(&format!("lease-{i}@client.example"), &format!("L{i} <l{i}@client.example>"), "Lease test"))
        .collect();
    dv.append("sales", "INBOX", &msgs).await;
    let db = crate::helpers::TestDb::postgres().await;
    let text = format!(
        "[database]\nurl = \"{}\"\nmax_connections = 4\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[daemon]\n\
            shutdown_timeout_secs = 5\n\n{}",
        db.url,
        config(&dv, "batch_size = 20\nlease_secs = 10\npoll_interval_secs = 1")
    );
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap();
    let a = inflow::app::start(cfg.clone(), tokio_util::sync::CancellationToken::new()).await.unwrap();
    let s = inflow::app::open_store(&cfg).await.unwrap();
    seed(&s).await;
    let b = inflow::app::start(cfg.clone(), tokio_util::sync::CancellationToken::new()).await.unwrap();
    poll_until("some mail handled", || {
        let s = s.clone();
        async move { events(&s).await >= 40 }
    })
    .await;
    // The first daemon took the lease at start (the second waits in standby); stop it
    // mid-work and the second takes over.
    let holder = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().lease_holder.expect("a holder");
    a.token.cancel();
    a.done.await.unwrap().unwrap();
    poll_until("the other daemon finishes the mailbox", || {
        let s = s.clone();
        async move { events(&s).await == 200 }
    })
    .await;
    poll_until("INBOX emptied", || async { dv.messages("sales", "INBOX").await.is_empty() }).await;
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM lead").await, 200, "each message ingested exactly once");
    let st = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap();
    assert_eq!(st.last_uid, 200);
    assert!(
        st.lease_holder.clone().is_some_and(|h| h != holder),
        "the second daemon took the lease over: {holder} vs {:?}",
        st.lease_holder
    );
    b.token.cancel();
    b.done.await.unwrap().unwrap();
    s.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_a_private_ca_and_a_clear_tls_failure() {
    let dv = Dovecot::start_tls();
    let ca = dv.ca_file();
    let tls_port = dv.tls_port.unwrap();
    let boxes = format!(
        "[[mailboxes]]\nname = \"starttls\"\nhost = \"127.0.0.1\"\nport = {p}\ntls = \"starttls\"\n\
            tls_ca_file = \"{ca}\"\nuser = \"sales\"\npassword = \"{PASSWORD}\"\n\
            owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n\n\
         [[mailboxes]]\nname = \"implicit\"\nhost = \"127.0.0.1\"\nport = {tls_port}\ntls = \"implicit\"\n\
         tls_ca_file = \"{ca}\"\nuser = \"news\"\npassword = \"{PASSWORD}\"\n\
         owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n\n\
         [[mailboxes]]\nname = \"untrusted\"\nhost = \"127.0.0.1\"\nport = {tls_port}\ntls = \"implicit\"\n\
         user = \"other\"\npassword = \"{PASSWORD}\"\nowner = \"sales@crm.example.com\"\nmax_backoff_secs = 2\n",
        p = dv.port,
        ca = ca.display()
    );
    dv.append("sales", "INBOX", &[inquiry("tls-1@client.example", "T1 <t1@client.example>", "Over STARTTLS")]).await;
    dv.append("news", "INBOX", &[inquiry("tls-2@client.example", "T2 <t2@client.example>", "Over implicit TLS")]).await;
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &boxes).await;
    let s = app.store.clone();
    seed(&s).await;
    poll_until("both TLS mailboxes ingest", || {
        let s = s.clone();
        async move {
            !lead_by_email(&s, "t1@client.example").await.is_empty()
                && !lead_by_email(&s, "t2@client.example").await.is_empty()
        }
    })
    .await;
    poll_until("the private CA's certificate is refused without tls_ca_file", || {
        let s = s.clone();
        async move {
            s.mailbox_state("untrusted", "INBOX").await.unwrap().is_some_and(|st| {
                st.state == "tls_failed"
                    && st.state_detail.as_deref().is_some_and(|d| d.to_lowercase().contains("certificate"))
            })
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_taken_over_after_its_lease_expires() {
    let dv = Dovecot::start();
    let db = crate::helpers::TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("inflow.toml");
    let text = format!(
        "[database]\nurl = \"{}\"\nmax_connections = 4\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n{}",
        db.url,
        config(&dv, "batch_size = 10\nlease_secs = 10\npoll_interval_secs = 1")
    );
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap();
    let s = inflow::app::open_store(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    seed(&s).await;
    // The first daemon, a real process, is killed (SIGKILL) while it holds the lease.
    let mut first = daemon(&cfg_path, None);
    poll_until("the first daemon holds the lease", || {
        let s = s.clone();
        async move {
            s.mailbox_state("sales", "INBOX")
                .await
                .unwrap()
                .is_some_and(|st| st.lease_holder.is_some() && st.state == "connected")
        }
    })
    .await;
    let holder = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().lease_holder.unwrap();
    first.kill().await.unwrap();
    first.wait().await.unwrap();
    // Mail that arrives after the death; the second daemon must take the mailbox over once
    // the dead holder's lease runs out (it is never released).
    dv.append(
        "sales",
        "INBOX",
        &(0..30)
            .map(|i| {
                inquiry(&format!("k-{i}@client.example"), &format!("K{i} <k{i}@client.example>"), "After the kill")
            })
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(
        s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().lease_holder.as_deref(),
        Some(holder.as_str()),
        "a killed holder releases nothing"
    );
    let mut second = daemon(&cfg_path, None);
    poll_until("the second daemon ingests the mailbox", || {
        let s = s.clone();
        async move { events(&s).await == 30 }
    })
    .await;
    let st = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap();
    assert!(st.lease_holder.is_some_and(|h| h != holder));
    assert_eq!(count(&s, "SELECT COUNT(*) AS n FROM lead").await, 30);
    let _ = std::process::Command::new("kill").args(["-TERM", &second.id().unwrap().to_string()]).status();
    assert!(tokio::time::timeout(std::time::Duration::from_secs(30), second.wait()).await.unwrap().unwrap().success());
    s.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_in_two_mailboxes_is_one_event() {
    let dv = Dovecot::start();
    let msg = inquiry("both-1@client.example", "Both <both@client.example>", "Sent to two addresses");
    dv.append("sales", "INBOX", std::slice::from_ref(&msg)).await;
    dv.append("news", "INBOX", std::slice::from_ref(&msg)).await;
    let extra = format!(
        "{}\n{}",
        config(&dv, ""),
        dv.mailbox_toml(
            "news",
            "news",
            PASSWORD,
            "owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\nprocessed_folder = \"Processed\"\n"
        )
    );
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &extra).await;
    let s = app.store.clone();
    seed(&s).await;
    poll_until("both mailboxes worked through", || async {
        dv.messages("sales", "Processed").await.len() == 1 && dv.messages("news", "Processed").await.len() == 1
    })
    .await;
    assert_eq!(events(&s).await, 1);
    assert_eq!(lead_by_email(&s, "both@client.example").await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trouble_is_logged_once_per_change_not_per_retry() {
    use tokio::io::AsyncReadExt;
    let dv = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inflow.db");
    let cfg_path = dir.path().join("inflow.toml");
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n{}",
        db.display(),
        dv.mailbox_toml("wrong", "sales", "not-the-password", "owner = \"sales@crm.example.com\"\n")
    );
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap();
    let s = inflow::app::open_store(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    add_user(&s, "", "Sales", "sales@crm.example.com", None, None).await;
    let mut child = tokio::process::Command::new(inflow_bin())
        .arg("--config")
        .arg(&cfg_path)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Several rejected logins on the server's side…
    poll_until("at least three failed logins", || async { dv.log().matches("auth failed").count() >= 3 }).await;
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().unwrap().to_string()]).status();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    // …and one line about it in ours, naming the cause.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("login rejected")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("wrong user or password"), "{}", lines[0]);
    assert!(!err.contains("not-the-password"), "the password never reaches the log");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mailboxes_one_unknown_sender_one_lead_on_postgres() {
    // Different messages (different Message-IDs) from one unknown sender reach two mailboxes
    // worked at the same time: R-DUP-3 must still see one sender, so one lead, not two.
    let dv = Dovecot::start();
    for (user, n) in [("sales", 0), ("news", 100)] {
        let msgs: Vec<Vec<u8>> = (n..n + 20)
            .map(|i| {
                inquiry(
                    &format!("same-{i}@client.example"),
                    "Same Sender <same@client.example>",
                    &format!("Message {i}"),
                )
            })
            .collect();
        dv.append(user, "INBOX", &msgs).await;
    }
    let extra = format!(
        "{}\n{}",
        config(&dv, "batch_size = 5\nsender_hourly_limit = 1000"),
        dv.mailbox_toml(
            "news",
            "news",
            PASSWORD,
            "owner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nbatch_size = 5\nsender_hourly_limit = 1000\n"
        )
    );
    let app = TestApp::spawn("postgres", tempfile::tempdir().unwrap(), &extra).await;
    let s = app.store.clone();
    seed(&s).await;
    poll_until("all 40 messages handled", || {
        let s = s.clone();
        async move { events(&s).await == 40 }
    })
    .await;
    assert_eq!(lead_by_email(&s, "same@client.example").await.len(), 1, "one lead for one sender");
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email' AND sender = 'same@client.example'"
        )
        .await,
        40
    );
    assert!(s.dup_candidates("open").await.unwrap().is_empty(), "never ambiguous with itself");
    app.stop().await;
}

/// Issue 22 §4: `inflow backup PATH` while the daemon ingests: the copy opens, passes
/// `integrity_check`, is at the latest schema, and holds every message committed before the
/// backup began; a second backup to the same path is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_during_ingest_holds_every_committed_message() {
    let dv = Dovecot::start();
    let app = TestApp::spawn(
        "sqlite",
        tempfile::tempdir().unwrap(),
        &dv.mailbox_toml(
            "sales",
            "sales",
            PASSWORD,
            "owner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n\
                processed_folder = \"Processed\"\nbatch_size = 5\n",
        ),
    )
    .await;
    add_user(&app.store, "", "Sales", "sales@crm.example.com", None, None).await;
    let msgs: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            inquiry(&format!("backup-{i}@client.example"), &format!("c{i}@client.example"), &format!("Вопрос {i}"))
        })
        .collect();
    dv.append("sales", "INBOX", &msgs).await;
    poll_until("ingest under way", || async { events(&app.store).await >= 10 }).await;
    let committed = event_ids(&app.store).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", app.db_url())).unwrap();
    let copy = dir.path().join("copy.db");
    let (code, out, err) = crate::helpers::run_inflow(&cfg, &["backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("integrity ok"), "{out}");

    let copied = Store::connect(
        &inflow::config::DatabaseConfig { url: format!("sqlite://{}", copy.display()), ..Default::default() },
        Default::default(),
    )
    .await
    .unwrap();
    copied.readiness().await.expect("the copy is at the latest schema");
    let in_copy = event_ids(&copied).await;
    let missing: Vec<&String> = committed.iter().filter(|id| !in_copy.contains(*id)).collect();
    assert!(missing.is_empty(), "committed before the backup but not in it: {missing:?}");
    assert!(in_copy.len() <= 300);
    let leads: i64 =
        copied.db.clone().fetch_one("SELECT COUNT(*) AS n FROM lead", vec![]).await.unwrap().get("n").unwrap();
    assert_eq!(leads as usize, in_copy.len(), "each copied event's lead is in the copy too (one snapshot)");
    copied.close().await;

    let (code, _, err) = crate::helpers::run_inflow(&cfg, &["backup", copy.to_str().unwrap()]).await;
    assert_ne!(code, Some(0));
    assert!(err.contains("exists already"), "{err}");
    poll_until("the rest is ingested", || async { events(&app.store).await == 300 }).await;
    app.stop().await;
}
