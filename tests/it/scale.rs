//! Issue 8 §6: two daemons (real processes) on one PostgreSQL database, sharing one Dovecot
//! mailbox, one SMTP relay and the PBX webhooks. A mailbox of 1,000 messages is ingested
//! exactly once in total, a wave of 2,000 recipients is delivered exactly once across both,
//! overdue alerts are not doubled, the events of one call sent to both make one activity, and
//! when the daemon holding the mailbox is killed (-9) mid-work the other finishes the mailbox
//! (lease takeover) and the wave.

use inflow::crm::status::CallStatus;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use uuid::Uuid;

use inflow::crm::EntityKind;
use inflow::crm::entities::{Activity, Campaign, CampaignActivity, Contact, MarketingList};
use inflow::store::{Exec as _, RecordExt, Store};

use crate::dovecot::{Dovecot, inquiry};
use crate::helpers::{SmtpSink, TestDb, add_user, inflow_bin, now, poll_until};

const MESSAGES: usize = 1000;
const RECIPIENTS: usize = 2000;
const TASKS: usize = 10;
const PBX_TOKEN: &str = "scale-pbx-token";

async fn count(s: &Store, sql: &str) -> i64 {
    s.db.clone().fetch_one(sql, vec![]).await.unwrap().get("n").unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(cfg: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(inflow_bin())
        .arg("--config")
        .arg(cfg)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("inflow binary")
}

async fn wait_http(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    poll_until(&format!("daemon on port {port} ready"), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
}

async fn pbx_event(port: u16, body: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/pbx/generic"))
        .bearer_auth(PBX_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_database() {
    let dv = Dovecot::start();
    let sink = SmtpSink::start(0).await;
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pbx.token"), PBX_TOKEN).unwrap();
    let ports = [free_port(), free_port()];
    let config = |port: u16| {
        format!(
            "[database]\nurl = \"{db}\"\nmax_connections = 6\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
                [daemon]\nshutdown_timeout_secs = 5\n\n\
             [org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.acme.ru\"\n\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"plain\"\nfrom = \"news@crm.example.com\"\n\
             pool_size = 2\n\n\
             [waves]\npoll_interval_ms = 100\nbatch_size = 20\nclaim_lease_secs = 5\n\
             unsubscribe_mailto = \"unsubscribe@crm.example.com\"\n\n\
             [alerts]\nenabled = true\nscan_interval_secs = 2\nescalation_delay_secs = 3600\nmax_level = 1\n\
             working_hours = \"00:00-24:00\"\n\
             working_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
             kinds = [\"task\"]\nnew_lead_notice = false\n\n\
             [pbx]\nfinal_event_timeout_secs = 3600\n\n[[pbx.lines]]\ndid = \"+7 495 123-45-67\"\n\
             owner = \"sales@crm.example.com\"\ncreate_leads = true\n\n\
             [pbx.generic]\ntoken_file = \"{dir}/pbx.token\"\n\n{mailbox}",
            db = db.url,
            smtp = sink.port,
            dir = dir.path().display(),
            mailbox = dv.mailbox_toml(
                "sales",
                "sales",
                crate::dovecot::PASSWORD,
                "owner \
                = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\n\
                processed_folder = \"Processed\"\nbatch_size = 50\nlease_secs = 10\npoll_interval_secs = 1\n"
            ),
        )
    };
    let cfgs: Vec<std::path::PathBuf> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.path().join(format!("inflow-{i}.toml"));
            std::fs::write(&path, config(*p)).unwrap();
            path
        })
        .collect();
    let out = std::process::Command::new(inflow_bin()).arg("--config").arg(&cfgs[0]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&cfgs[0]).unwrap();
    let s = inflow::app::open_store(
        &inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap(),
    )
    .await
    .unwrap();

    // Seed: users (sales, whose manager is the head), overdue tasks, a campaign, a list of
    // 2,000 contacts and its wave, and 1,000 inquiries from distinct senders.
    let head = add_user(&s, "Глеб", "Главный", "head@crm.example.com", None, None).await;
    let sales = add_user(&s, "Сергей", "Продажин", "sales@crm.example.com", Some(head), Some("101")).await;
    for i in 0..TASKS {
        let t = Activity {
            activityid: Uuid::new_v4(),
            activitytypecode: EntityKind::Task,
            subject: Some(format!("ScaleTask-{i:02}-end")),
            scheduledend: Some(now() - chrono::Duration::hours(2)),
            ..Default::default()
        }
        .stamped(sales, EntityKind::Systemuser, now(), None);
        s.insert(&t).await.unwrap();
    }
    let mut camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Scale-out".into(),
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(sales, EntityKind::Systemuser, now(), None);
    camp.statuscode = inflow::crm::campaign::LAUNCHED;
    s.insert(&camp).await.unwrap();
    let list = MarketingList {
        listid: Uuid::new_v4(),
        listname: "Scale-out list".into(),
        createdfromcode: 2,
        ..Default::default()
    }
    .stamped(sales, EntityKind::Systemuser, now(), None);
    s.insert(&list).await.unwrap();
    let mut members = Vec::with_capacity(RECIPIENTS);
    for i in 0..RECIPIENTS {
        let c = Contact {
            contactid: Uuid::new_v4(),
            lastname: format!("Получатель {i}"),
            emailaddress1: Some(format!("r{i:04}@client.example")),
            ..Default::default()
        }
        .stamped(sales, EntityKind::Systemuser, now(), None);
        s.insert(&c).await.unwrap();
        members.push(c.contactid);
    }
    s.add_list_members(list.listid, &members, now()).await.unwrap();
    let wave = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "Scale-out wave".into(),
        channeltypecode: Some(7),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(sales, EntityKind::Systemuser, now(), None);
    s.create_campaign_activity(&wave).await.unwrap();
    s.add_campaign_lists(camp.campaignid, &[list.listid]).await.unwrap();
    s.set_wave_lists(wave.activityid, &[list.listid]).await.unwrap();
    let msgs: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            inquiry(
                &format!("scale-{i}@client.example"),
                &format!("Sender {i} <s{i:04}@client.example>"),
                "Scale-out inquiry",
            )
        })
        .collect();
    dv.append("sales", "INBOX", &msgs).await;
    let sched = inflow::store::waves::WaveSchedule {
        activity_id: wave.activityid,
        start_at: now(),
        timezone: "Europe/Moscow".into(),
        subject: "Новости, {{ last_name }}".into(),
        text: "Здравствуйте!".into(),
        html: None,
        from_address: "news@crm.example.com".into(),
        from_name: None,
        reply_to: None,
        rate_per_minute: None,
        skip_responders_of: None,
    };
    inflow::waves::schedule(&s, &sched, now()).await.unwrap();

    // Both daemons start.
    let mut daemons: Vec<Option<tokio::process::Child>> = cfgs.iter().map(|c| Some(spawn(c))).collect();
    let pids: Vec<u32> = daemons.iter().map(|d| d.as_ref().unwrap().id().unwrap()).collect();
    for p in ports {
        wait_http(p).await;
    }
    // One call, its events split between the daemons (and the final one sent to both).
    let call = |event: &str| {
        serde_json::json!({"call_id": "scale-call-1", "event": event, "direction": "inbound",
            "external_number": "+7 916 555-00-11", "did": "+7 495 123-45-67",
            "extension": "101", "started_at": "2026-11-27T07:00:00Z", "answered_at": "2026-11-27T07:00:05Z",
                "ended_at": "2026-11-27T07:03:00Z", "duration_secs": 175, "disposition": "answered"})
    };
    assert_eq!(pbx_event(ports[0], &call("start")).await, 202);
    assert_eq!(pbx_event(ports[1], &call("end")).await, 202);
    assert_eq!(pbx_event(ports[0], &call("end")).await, 202);
    // Six first calls from one new number, at once, half to each daemon: one lead, linked by all.
    let new_caller = |i: usize| {
        serde_json::json!({"call_id": format!("scale-new-{i}"), "event": "end", "direction": "inbound",
            "external_number": "+7 916 555-77-88", "did": "+7 495 123-45-67",
            "started_at": "2026-11-27T08:00:00Z", "answered_at": "2026-11-27T08:00:03Z",
                "ended_at": "2026-11-27T08:02:00Z", "duration_secs": 117, "disposition": "answered"})
    };
    let sends: Vec<_> = (0..6)
        .map(|i| {
            let b = new_caller(i);
            let port = ports[i % 2];
            tokio::spawn(async move { pbx_event(port, &b).await })
        })
        .collect();
    for s in sends {
        assert_eq!(s.await.unwrap(), 202);
    }

    // Mid-work: the wave is sending and the mailbox partly ingested; kill -9 the daemon that
    // holds the mailbox lease.
    let s2 = s.clone();
    poll_until("both kinds of work under way", || {
        let s = s2.clone();
        async move {
            count(&s, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'").await >= 100
                && count(&s, "SELECT COUNT(*) AS n FROM wave_delivery WHERE state = 'sent'").await >= 100
        }
    })
    .await;
    let holder = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap().lease_holder.expect("a lease holder");
    let victim = pids
        .iter()
        .position(|p| holder.contains(&format!(":{p}:")))
        .unwrap_or_else(|| panic!("holder {holder} is neither of {pids:?}"));
    let mut killed = daemons[victim].take().unwrap();
    killed.kill().await.unwrap(); // SIGKILL
    killed.wait().await.unwrap();
    let ingested_at_kill = count(&s, "SELECT COUNT(*) AS n FROM inbound_event WHERE source = 'imap'").await;
    let sent_at_kill = count(&s, "SELECT COUNT(*) AS n FROM wave_delivery WHERE state = 'sent'").await;

    // The survivor finishes everything.
    let s2 = s.clone();
    poll_until("the mailbox ingested", || {
        let s = s2.clone();
        async move {
            count(
                &s,
                "SELECT COUNT(*) AS n FROM inbound_event WHERE source = \
            'imap'",
            )
            .await
                == MESSAGES as i64
        }
    })
    .await;
    poll_until("INBOX emptied", || async { dv.messages("sales", "INBOX").await.is_empty() }).await;
    let s2 = s.clone();
    let w = wave.activityid;
    poll_until("the wave completed", || {
        let s = s2.clone();
        async move { s.wave_status(w).await.unwrap().wave.state.as_str() == "completed" }
    })
    .await;
    let s2 = s.clone();
    poll_until("every overdue notification sent", || {
        let s = s2.clone();
        async move {
            count(&s, "SELECT COUNT(*) AS n FROM notification_log WHERE status = 'sent'").await == 2 * TASKS as i64
        }
    })
    .await;
    let s2 = s.clone();
    for id in std::iter::once("scale-call-1".to_string()).chain((0..6).map(|i| format!("scale-new-{i}"))) {
        let s = s2.clone();
        poll_until(&format!("call {id} processed"), || {
            let (s, id) = (s.clone(), id.clone());
            async move {
                s.pbx_call("generic", &id)
                    .await
                    .unwrap()
                    .is_some_and(|c| c.status != CallStatus::Open && c.processed_version == c.version)
            }
        })
        .await;
    }

    // Mail: exactly once in total, under the survivor's lease.
    let st = s.mailbox_state("sales", "INBOX").await.unwrap().unwrap();
    assert!(st.lease_holder.as_deref().is_some_and(|h| h != holder), "the survivor took the mailbox over");
    let leads = count(&s, "SELECT COUNT(*) AS n FROM lead WHERE emailaddress1 LIKE 's%@client.example'").await;
    assert_eq!(leads, MESSAGES as i64, "one lead per message");
    assert_eq!(dv.messages("sales", "Processed").await.len(), MESSAGES);
    // Wave: every recipient once; a second copy only for sends in flight at the kill.
    let status = s.wave_status(w).await.unwrap();
    assert_eq!((status.sent, status.failed, status.wave.targeted), (RECIPIENTS as i64, 0, Some(RECIPIENTS as i64)));
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for (r, _) in sink.messages() {
        let r = r.trim().to_lowercase();
        if r.starts_with('r') && r.ends_with("@client.example") {
            *got.entry(r).or_default() += 1;
        }
    }
    let wave_rcpts: Vec<(&String, &usize)> = got.iter().collect();
    assert_eq!(wave_rcpts.len(), RECIPIENTS, "no recipient skipped");
    let doubles: usize = wave_rcpts.iter().map(|(_, n)| **n - 1).sum();
    // In flight per daemon: its claimed batches (2 × batch_size) at most.
    assert!(doubles <= 40, "{doubles} second copies");
    // Alerts: each task once to its owner and once (level 1) to the manager.
    let all_mail: String =
        sink.messages().iter().filter(|(r, _)| r.contains("crm.example.com")).map(|(_, m)| m.clone()).collect();
    for i in 0..TASKS {
        let n = all_mail.matches(&format!("ScaleTask-{i:02}-end")).count();
        assert_eq!(n, 2, "task {i} notified {n} times (owner + manager expected)");
    }
    // PBX: one activity for the call whose events went to both daemons; six calls from one new
    // number processed on both daemons at once made one lead, and every call is on it.
    let acts = count(
        &s,
        "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'phonecall' AND phonenumber = '+79165550011'",
    )
    .await;
    assert_eq!(acts, 1);
    let new_leads = count(&s, "SELECT COUNT(*) AS n FROM lead WHERE telephone1 = '+79165557788'").await;
    assert_eq!(new_leads, 1, "one new caller, one lead");
    let on_lead = count(
        &s,
        "SELECT COUNT(*) AS n FROM activity a JOIN lead l ON l.leadid = \
        a.regardingobjectid WHERE l.telephone1 = '+79165557788' AND a.activitytypecode = 'phonecall'",
    )
    .await;
    assert_eq!(on_lead, 6, "every call regards that lead");
    eprintln!(
        "scale-out: mail {MESSAGES} messages → {leads} leads ({ingested_at_kill} before the kill of daemon \
            {victim}); wave {RECIPIENTS} recipients → {} distinct received, {doubles} second copies \
            ({sent_at_kill} sent before the kill); alerts {} notifications for {TASKS} tasks; call events 3 → \
            {acts} activity; 6 concurrent first calls of one number → {new_leads} lead",
        wave_rcpts.len(),
        2 * TASKS
    );
    for d in daemons.iter_mut().flatten() {
        let _ = std::process::Command::new("kill").args(["-TERM", &d.id().unwrap().to_string()]).status();
        let st = tokio::time::timeout(Duration::from_secs(30), d.wait()).await.expect("stops on SIGTERM").unwrap();
        assert!(st.success());
    }
    s.close().await;
    sink.stop().await;
    db.cleanup().await;
}
