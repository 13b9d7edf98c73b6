//! Overdue alerts against a real SMTP server on loopback (aiosmtpd, tests/support/smtp_sink.py):
//! owner digest, manager escalation after the delay (time driven through `scan(now)`),
//! grouping, no repeats, quiet hours, a 4xx then success, recovery of claimed-but-unsent
//! digests after a restart.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use inflow::crm::EntityKind;
use inflow::crm::entities::*;
use inflow::store::{NotificationClaim, RecordExt, Store};
use uuid::Uuid;

use crate::helpers::{SmtpSink, TestApp, add_user, now, poll_until};

/// Decodes a quoted-printable or 8bit text body enough to search it.
fn body(raw: &str) -> String {
    let msg = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let bytes = msg.as_bytes();
    let mut i = 0;
    let mut buf = Vec::new();
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            buf.push(u8::from_str_radix(&msg[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            buf.push(bytes[i]);
            i += 1;
        }
    }
    out.push_str(&String::from_utf8_lossy(&buf));
    out
}

async fn task(store: &Store, owner: Uuid, subject: &str, due: DateTime<Utc>) -> Activity {
    let a = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Task,
        subject: Some(subject.into()),
        scheduledend: Some(due),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, now(), None);
    store.insert(&a).await.unwrap();
    a
}

async fn start(engine: &str, smtp: &SmtpSink, hours: &str, days: &str) -> TestApp {
    let extra = format!(
        "[org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.acme.ru\"\n\n[smtp]\n\
            host = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"crm@acme.ru\"\n\n\
         [alerts]\nenabled = true\nscan_interval_secs = 3600\nescalation_delay_secs = 86400\nmax_level = 1\n\
         fallback_address = \"crm-admin@acme.ru\"\n\
         working_hours = \"{hours}\"\nworking_days = {days}\nkinds = [\"task\", \"phonecall\", \"campaignactivity\"]\n",
        smtp.port
    );
    TestApp::spawn(engine, tempfile::tempdir().unwrap(), &extra).await
}

const ALL_DAYS: &str = "[\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]";

async fn owner_then_manager(engine: &str) {
    let smtp = SmtpSink::start(0).await;
    let app = start(engine, &smtp, "00:00-24:00", ALL_DAYS).await;
    let rt = app.running.alerts.clone().unwrap();
    let s = &app.store;
    let boss = add_user(s, "Anna", "Volkova", "anna@acme.ru", None, None).await;
    let owner = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", Some(boss), None).await;
    let other = add_user(s, "Pavel", "Sokolov", "pavel@acme.ru", Some(boss), None).await;
    // Noon in Moscow today: the plan task below is due by date, so how long it has been
    // overdue depends on the time of day (run just after midnight in Moscow, it had been
    // overdue for minutes, and did not reach level 1 within the 23 hours this test allows).
    let moscow = chrono_tz::Europe::Moscow;
    let t0 = moscow
        .from_local_datetime(&now().with_timezone(&moscow).date_naive().and_hms_opt(12, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let fresh = task(s, owner, "Send the offer", t0 - Duration::hours(2)).await;
    task(s, owner, "Call back Romashka", t0 - Duration::hours(50)).await;
    task(s, other, "Prepare the demo", t0 - Duration::hours(30)).await;
    task(s, owner, "Not yet due", t0 + Duration::hours(5)).await;
    let mut done = task(s, owner, "Already done", t0 - Duration::hours(70)).await;
    done.statecode = 1;
    done.statuscode = 5;
    s.update(&done).await.unwrap();
    // A campaign plan task whose DateOnly due date was yesterday in Moscow.
    let camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Expo".into(),
        typecode: 1,
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t0, None);
    s.insert(&camp).await.unwrap();
    let yesterday = (t0.with_timezone(&chrono_tz::Europe::Moscow) - Duration::days(1)).date_naive();
    let plan = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "Print the booklets".into(),
        scheduledend: Some(yesterday),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t0, None);
    s.create_campaign_activity(&plan).await.unwrap();

    let r = rt.scan(t0).await.unwrap();
    // Owners: Oleg (3 items), Pavel (1); manager Anna: the two items 24 h+ overdue.
    assert_eq!(r.overdue, 4, "{r:?}");
    assert_eq!((r.digests, r.claimed), (3, 6), "{r:?}");
    let msgs = smtp.wait_for(3).await;
    let to = |addr: &str| {
        msgs.iter()
            .find(|(rcpt, _)| rcpt.trim() == addr)
            .map(|(_, m)| body(m))
            .unwrap_or_else(|| panic!("no digest to {addr}: {msgs:?}"))
    };
    let oleg = to("oleg@acme.ru");
    assert!(oleg.contains("Subject: 3 overdue activities"), "{oleg}");
    for s in ["Send the offer", "Call back Romashka", "Print the booklets"] {
        assert!(oleg.contains(s), "{s} missing:\n{oleg}");
    }
    assert!(!oleg.contains("Already done") && !oleg.contains("Not yet due"));
    assert!(oleg.find("Call back Romashka").unwrap() < oleg.find("Send the offer").unwrap(), "oldest first");
    let anna = to("anna@acme.ru");
    assert!(anna.contains("Escalation:") && anna.contains("Oleg Ivanov") && anna.contains("Pavel Sokolov"), "{anna}");
    assert!(anna.find("Oleg Ivanov").unwrap() < anna.find("Pavel Sokolov").unwrap(), "grouped by owner");
    assert!(
        anna.contains("Call back Romashka") && anna.contains("Prepare the demo") && !anna.contains("Send the offer"),
        "{anna}"
    );
    assert!(anna.contains("https://crm.acme.ru/api/v1/activities/"), "a link per line");

    // The next scans repeat nothing.
    let again = rt.scan(t0 + Duration::minutes(5)).await.unwrap();
    assert_eq!((again.claimed, again.digests), (0, 0));
    // 23 hours later: the fresh task and the plan task reach level 1 (to Anna, one digest),
    // and the task due at +5 h is now overdue (level 0, to Oleg).
    let later = rt.scan(t0 + Duration::hours(23)).await.unwrap();
    assert_eq!((later.claimed, later.digests), (3, 2), "{later:?}");
    let msgs = smtp.wait_for(5).await;
    let anna2 = msgs[3..].iter().find(|(r, _)| r.trim() == "anna@acme.ru").map(|(_, m)| body(m)).unwrap();
    assert!(
        anna2.contains("Send the offer")
            && anna2.contains("Print the booklets")
            && !anna2.contains("Call back Romashka"),
        "{anna2}"
    );
    // A new due date restarts at level 0; completing a task stops it.
    let mut moved = s.load::<Activity>(fresh.activityid).await.unwrap();
    moved.scheduledend = Some(t0 + Duration::hours(23) - Duration::minutes(1));
    s.update(&moved).await.unwrap();
    let restarted = rt.scan(t0 + Duration::hours(23)).await.unwrap();
    assert_eq!(restarted.claimed, 1, "level 0 again for the new due date: {restarted:?}");
    smtp.wait_for(6).await;
    let mut closed = s.load::<Activity>(fresh.activityid).await.unwrap();
    closed.statecode = 1;
    closed.statuscode = 5;
    s.update(&closed).await.unwrap();
    // At +48 h only the +5 h task escalates; the completed one (whose level 1 for the new
    // due date would be due now) sends nothing.
    assert_eq!(rt.scan(t0 + Duration::hours(48)).await.unwrap().claimed, 1, "completed: no more alerts");
    app.stop().await;
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_digest_then_manager_escalation_sqlite() {
    owner_then_manager("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_digest_then_manager_escalation_postgres() {
    owner_then_manager("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_wait_for_the_next_working_period() {
    let smtp = SmtpSink::start(0).await;
    let app = start("sqlite", &smtp, "09:00-18:00", "[\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]").await;
    let rt = app.running.alerts.clone().unwrap();
    let owner = add_user(&app.store, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    // Friday 2030-11-22 20:00 MSK: after hours; Saturday: weekend; Monday 09:00 MSK: open.
    let msk = |d: u32, h: u32| {
        chrono_tz::Europe::Moscow
            .from_local_datetime(&NaiveDate::from_ymd_opt(2030, 11, d).unwrap().and_hms_opt(h, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    task(&app.store, owner, "Friday task", msk(22, 12)).await;
    assert!(rt.scan(msk(22, 20)).await.unwrap().quiet);
    assert!(rt.scan(msk(23, 11)).await.unwrap().quiet);
    // Monday: the owner's alert and, 69 h after the due time, the escalation (no manager:
    // the fallback address).
    let monday = rt.scan(msk(25, 9)).await.unwrap();
    assert_eq!((monday.quiet, monday.claimed, monday.digests), (false, 2, 2));
    let msgs = smtp.wait_for(2).await;
    assert!(msgs.iter().all(|(_, m)| body(m).contains("Friday task")));
    assert!(msgs.iter().any(|(r, _)| r.trim() == "crm-admin@acme.ru"));
    app.stop().await;
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_smtp_failure_is_retried_and_a_crash_after_claiming_loses_nothing() {
    // The relay answers 451 to the first message.
    let smtp = SmtpSink::start(1).await;
    let app = start("sqlite", &smtp, "00:00-24:00", ALL_DAYS).await;
    let rt = app.running.alerts.clone().unwrap();
    let owner = add_user(&app.store, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let t0 = now();
    let a = task(&app.store, owner, "Retry me", t0 - Duration::hours(1)).await;
    assert_eq!(rt.scan(t0).await.unwrap().digests, 1);
    let msgs = smtp.wait_for(1).await;
    assert!(body(&msgs[0].1).contains("Retry me"));
    assert_eq!(smtp.messages().len(), 1, "sent once after the 4xx");

    // A daemon that died after claiming a digest but before sending it: the rows are
    // pending in notification_log. The next scan past the resend window sends them once.
    let digest = Uuid::new_v4();
    let b = task(&app.store, owner, "Claimed before the crash", t0 - Duration::hours(3)).await;
    let claim = NotificationClaim {
        activityid: b.activityid,
        activitytype: EntityKind::Task,
        level: 0,
        scheduledend: b.scheduledend.unwrap(),
        ownerid: owner,
        recipient: "oleg@acme.ru".into(),
        recipient_userid: Some(owner),
        digest_id: Some(digest),
        item: Some(
            serde_json::json!({"owner": "Oleg \
            Ivanov", "line": {"kind": "task", "id": b.activityid, "subject": "Claimed before the \
            crash", "due": "2026-01-01 \
            10:00", "overdue_hours": 3, "level": 0, "regarding": null, "link": "x"}})
            .to_string(),
        ),
        created_at: t0,
    };
    assert_eq!(app.store.claim_notifications(&[claim]).await.unwrap(), vec![true]);
    // Past the resend window (two scan intervals here) the pending digest goes out once.
    let r = rt.scan(t0 + Duration::hours(3)).await.unwrap();
    assert_eq!((r.requeued, r.claimed), (1, 0), "{r:?}");
    let msgs = smtp.wait_for(2).await;
    assert!(body(&msgs[1].1).contains("Claimed before the crash"));
    // The server has the message; the job marks its rows sent right after (a scan in
    // between would rightly see them pending).
    poll_until("the digest recorded as sent", || {
        let s = app.store.clone();
        async move { s.stale_digests(t0 + Duration::hours(6)).await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(rt.scan(t0 + Duration::hours(6)).await.unwrap().requeued, 0, "sent rows are not requeued");
    let _ = a;
    app.stop().await;
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_nothing_is_claimed_until_one_is_configured() {
    let app = TestApp::spawn(
        "sqlite",
        tempfile::tempdir().unwrap(),
        "[alerts]\nenabled = true\nworking_hours = \"00:00-24:00\"\n",
    )
    .await;
    let owner = add_user(&app.store, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    task(&app.store, owner, "Waits for a relay", now() - Duration::hours(1)).await;
    let r = app.running.alerts.clone().unwrap().scan(now()).await.unwrap();
    assert!(r.no_relay && r.claimed == 0, "{r:?}");
    use inflow::store::Exec;
    let n: i64 = app
        .store
        .db
        .clone()
        .fetch_one("SELECT COUNT(*) AS n FROM notification_log", vec![])
        .await
        .unwrap()
        .get("n")
        .unwrap();
    assert_eq!(n, 0);
    app.stop().await;
}

/// One SMTP client for every sender (issue 21): alert digests go through a relay that
/// requires STARTTLS with a certificate from a private CA once `smtp.tls_ca_file` names it,
/// and fail with a TLS error (transient: retried) when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_reach_a_starttls_relay_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    crate::helpers::private_ca_and_cert(certs.path());
    let smtp = SmtpSink::start_tls(certs.path()).await;
    let cfg = |ca: bool| {
        let ca_line = if ca { format!("tls_ca_file = \"{}/ca.pem\"\n", certs.path().display()) } else { String::new() };
        let text = format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nfrom = \"crm@acme.ru\"\n{ca_line}",
            smtp.port
        );
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap()
    };
    let db = crate::helpers::TestDb::sqlite();
    let store = db.store().await;
    let without = inflow::alerts::Mailer::from_config(&cfg(false), &store).unwrap().unwrap();
    match without.send("oleg@acme.ru", "1 overdue activity", "body".into()).await {
        Err(inflow::alerts::SendError::Transient(e)) => {
            assert!(e.to_lowercase().contains("certificate") || e.contains("TLS"), "{e}")
        }
        other => panic!("a relay whose CA is not trusted must fail transiently: {other:?}"),
    }
    assert!(smtp.messages().is_empty());
    let with = inflow::alerts::Mailer::from_config(&cfg(true), &store).unwrap().unwrap();
    with.send("oleg@acme.ru", "1 overdue activity", "Send the offer".into()).await.unwrap();
    let msgs = smtp.wait_for(1).await;
    assert_eq!(msgs[0].0.trim(), "oleg@acme.ru");
    assert!(msgs[0].1.contains("Subject: 1 overdue activity"), "{}", msgs[0].1);
    smtp.stop().await;
}

/// A digest has one sender at a time (issue 22): a job re-pushed while another is still
/// sending it skips it, so the recipient gets it once; a claim left by a sender that died
/// runs out, and the digest goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_being_sent_is_not_sent_again_by_a_second_job() {
    use inflow::store::Exec;
    let smtp = SmtpSink::start(0).await;
    let app = start("sqlite", &smtp, "00:00-24:00", ALL_DAYS).await;
    let rt = app.running.alerts.clone().unwrap();
    let s = &app.store;
    let owner = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let t0 = now();
    task(s, owner, "Send the offer", t0 - Duration::hours(2)).await;
    // Claim without the job: the scan's rows, then a sender that holds the digest.
    let claims = rt.scan(t0).await.unwrap();
    assert_eq!(claims.claimed, 1);
    let digest: Uuid =
        s.db.clone()
            .fetch_one("SELECT digest_id FROM notification_log", vec![])
            .await
            .unwrap()
            .get("digest_id")
            .unwrap();
    // Let the scan's own job send it first, then make it pending again, held by a sender.
    smtp.wait_for(1).await;
    poll_until("the scan's job finished", || async {
        s.db.clone()
            .fetch_one("SELECT status FROM notification_log", vec![])
            .await
            .unwrap()
            .get::<String>("status")
            .unwrap()
            == "sent"
    })
    .await;
    s.db.clone().execute("UPDATE notification_log SET status = 'pending', sent_at = NULL", vec![]).await.unwrap();
    let before = smtp.messages().len();
    assert!(s.claim_digest(digest, t0 + Duration::minutes(5), t0).await.unwrap(), "the first sender holds it");
    assert!(!rt.send_digest(digest, t0 + Duration::minutes(1)).await.unwrap(), "a second job skips it");
    assert_eq!(smtp.messages().len(), before, "nothing sent twice");
    // The first sender died: its claim runs out and the digest goes.
    assert!(rt.send_digest(digest, t0 + Duration::minutes(6)).await.unwrap());
    smtp.wait_for(before + 1).await;
    app.stop().await;
    smtp.stop().await;
}
