//! Closing the loop (issue 18, DOMAIN §4.9) through the real interfaces, on SQLite and
//! PostgreSQL: a marketer takes an empty database to a sent, completed wave with HTTP calls
//! only, and again with CLI commands only, against a real SMTP server; an overdue task
//! alerts its owner and manager, is completed by its owner, and the next scans send
//! nothing (R-ACT-1, R-TASK-5); reopen and reassignment restart the escalation; deals are
//! created, moved through stages, lost, reopened, won and closed with the Act (R-OPP-1).

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value as J, json};
use uuid::Uuid;

use inflow::crm::EntityKind;
use inflow::crm::entities::{Activity, Opportunity};
use inflow::http::api::token_hash;
use inflow::store::{Exec, RecordExt, Store};

use crate::helpers::{SmtpSink, TestApp, add_user, inflow_bin, now, poll_until};

/// HTTP calls as one token.
struct Client<'a> {
    app: &'a TestApp,
    token: String,
}

impl Client<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<J>) -> (u16, J) {
        let mut req = self.app.http.request(method, self.app.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}")))
    }

    async fn post(&self, path: &str, body: J) -> (u16, J) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// POST that must succeed with `want`; returns the body.
    async fn ok(&self, path: &str, body: J, want: u16) -> J {
        let (s, b) = self.post(path, body).await;
        assert_eq!(s, want, "POST {path}: {b}");
        b
    }

    async fn get(&self, path: &str) -> J {
        let (s, b) = self.call(Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    }
}

async fn token(store: &Store, user: Uuid, role: &str) -> String {
    let tok = format!("test-{role}-{}", Uuid::new_v4().simple());
    store.add_api_token(role, &token_hash(&tok), user, role, now()).await.unwrap();
    tok
}

fn wave_app_toml(sink: &SmtpSink) -> String {
    format!(
        "[org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.acme.ru\"\n\n[smtp]\n\
            host = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"news@crm.example.com\"\n\n\
         [waves]\npoll_interval_ms = 100\nunsubscribe_mailto = \"unsubscribe@crm.example.com\"\n\n[alerts]\n\
         enabled = false\n",
        sink.port
    )
}

fn recipients(sink: &SmtpSink) -> Vec<String> {
    let mut v: Vec<String> = sink.messages().iter().map(|(r, _)| r.trim().to_string()).collect();
    v.sort();
    v
}

/// The marketer's path with HTTP calls only, from a database holding nothing but the two
/// people and their tokens.
async fn marketer_path_http(engine: &str) {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &wave_app_toml(&sink)).await;
    let admin_id = add_user(&app.store, "Анна", "Админова", "admin@crm.example.com", None, None).await;
    let marketer_id =
        add_user(&app.store, "Марина", "Маркетова", "marketer@crm.example.com", Some(admin_id), None).await;
    let admin = Client { app: &app, token: token(&app.store, admin_id, "admin").await };
    let m = Client { app: &app, token: token(&app.store, marketer_id, "marketer").await };

    // The sales side enters three contacts; the marketer builds a list of them.
    let mut contacts = Vec::new();
    for (i, (first, email)) in
        [("Олег", "oleg@client-one.ru"), ("Ирина", "irina@client-two.ru"), ("Pavel", "pavel@client-three.ru")]
            .iter()
            .enumerate()
    {
        let c = admin
            .ok(
                "/api/v1/contacts",
                json!({"firstname": first, "lastname": format!("Клиент {i}"), "emailaddress1": email}),
                201,
            )
            .await;
        contacts.push(c["contactid"].as_str().unwrap().to_string());
    }
    let list = m.ok("/api/v1/lists", json!({"listname": "Клиенты 2026", "createdfromcode": 2}), 201).await["listid"]
        .as_str()
        .unwrap()
        .to_string();
    let other = m.ok("/api/v1/lists", json!({"listname": "Выставка", "createdfromcode": 2}), 201).await["listid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m.ok(&format!("/api/v1/lists/{list}/members"), json!({"members": contacts}), 200).await["added"], 3);

    // A campaign, made ready, with the list linked.
    let camp =
        m.ok("/api/v1/campaigns", json!({"name": "Зимняя рассылка", "expectedresponse": 5}), 201).await["campaignid"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(m.get(&format!("/api/v1/campaigns/{camp}/lists")).await["total"], 0);
    let linked = m.ok(&format!("/api/v1/campaigns/{camp}/lists"), json!({"lists": [list]}), 200).await;
    assert_eq!((linked["total"].as_i64(), linked["items"][0]["listname"].as_str()), (Some(1), Some("Клиенты 2026")));
    // Linking twice changes nothing.
    assert_eq!(m.ok(&format!("/api/v1/campaigns/{camp}/lists"), json!({"lists": [list]}), 200).await["total"], 1);
    m.ok(&format!("/api/v1/campaigns/{camp}/status"), json!({"statuscode": 1}), 200).await;

    // The wave: its lists must be the campaign's (§2.8).
    let wave = m
        .ok(
            "/api/v1/campaignactivities",
            json!({"regardingobjectid": camp, "subject": "Письмо 1", "channeltypecode": 7}),
            201,
        )
        .await["activityid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = m
        .post(
            &format!("/api/v1/campaignactivities/{wave}/schedule"),
            json!({"subject": "Новый год", "text": "Здравствуйте!"}),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("wave_without_lists")), "{b}");
    let (s, b) = m.post(&format!("/api/v1/campaignactivities/{wave}/lists"), json!({"lists": [other]})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("list_not_in_campaign")), "{b}");
    let targets = m.ok(&format!("/api/v1/campaignactivities/{wave}/lists"), json!({"lists": [list]}), 200).await;
    assert_eq!(targets["total"], 1);
    assert_eq!(
        m.get(&format!("/api/v1/campaignactivities/{wave}/lists")).await["items"][0]["listid"].as_str(),
        Some(list.as_str())
    );
    // A list a wave targets stays linked to the campaign.
    let (s, b) = m.post(&format!("/api/v1/campaigns/{camp}/lists/remove"), json!({"lists": [list]})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("list_in_use")), "{b}");
    // A viewer-less marketer cannot write contacts, and an unknown list is a 404.
    let (s, _) = m.post("/api/v1/contacts", json!({"lastname": "x"})).await;
    assert_eq!(s, 403);
    let (s, _) = m.post(&format!("/api/v1/campaigns/{camp}/lists"), json!({"lists": [Uuid::new_v4()]})).await;
    assert_eq!(s, 404);

    m.ok(
        &format!("/api/v1/campaignactivities/{wave}/schedule"),
        json!({"subject": "С Новым годом, {{ first_name }}!", "text": "Здравствуйте, {{ first_name }}!"}),
        200,
    )
    .await;
    let status_path = format!("/api/v1/campaignactivities/{wave}/status");
    poll_until("the wave completes", || async { m.get(&status_path).await["wave"]["state"] == "completed" }).await;
    let st = m.get(&status_path).await;
    assert_eq!((st["sent"].as_i64(), st["failed"].as_i64()), (Some(3), Some(0)), "{st}");
    sink.wait_for(3).await;
    assert_eq!(recipients(&sink), ["irina@client-two.ru", "oleg@client-one.ru", "pavel@client-three.ru"]);
    // Once started, the member set is frozen.
    let (s, b) = m.post(&format!("/api/v1/campaignactivities/{wave}/lists/remove"), json!({"lists": [list]})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("wave_already_started")), "{b}");
    app.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketer_path_http_sqlite() {
    marketer_path_http("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketer_path_http_postgres() {
    marketer_path_http("postgres").await;
}

async fn cli(cfg: &std::path::Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = crate::helpers::run_inflow(cfg, args).await;
    assert_eq!(code, Some(0), "inflow {args:?} failed: {stdout}\n{stderr}");
    stdout
}

/// The first line of a command's output: the id it prints.
async fn cli_id(cfg: &std::path::Path, args: &[&str]) -> String {
    let out = cli(cfg, args).await;
    let id = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(id.parse::<Uuid>().is_ok(), "inflow {args:?} printed no id: {out}");
    id
}

/// The same path with CLI commands only: users, a CSV of leads, a dynamic list of them, a
/// campaign, a wave; the running daemon sends it.
async fn marketer_path_cli(engine: &str) {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &wave_app_toml(&sink)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n[org]\ntimezone = \"Europe/Moscow\"\n", app.db_url()))
        .unwrap();
    cli_id(&cfg, &["user", "add", "--first", "Марина", "--last", "Маркетова", "--email", "marketer@crm.example.com"])
        .await;
    let csv = dir.path().join("expo.csv");
    std::fs::write(
        &csv,
        "Фамилия;Имя;Компания;E-mail\nСидоров;Пётр;ООО Ромашка;petr@romashka.ru\n\
        Кузнецова;Анна;АО Лютик;anna@lutik.ru\n",
    )
    .unwrap();
    let out =
        cli(&cfg, &["import", "leads", csv.to_str().unwrap(), "--owner", "marketer@crm.example.com", "--source", "3"])
            .await;
    assert!(out.contains("imported 2 leads"), "{out}");
    let list = cli_id(
        &cfg,
        &[
            "list",
            "create",
            "--name",
            "Выставка 2026",
            "--members",
            "lead",
            "--owner",
            "marketer@crm.example.com",
            "--query",
            r#"{"all":[{"field":"leadsourcecode","op":"eq","value":3}]}"#,
        ],
    )
    .await;
    let members = cli(&cfg, &["list", "members", &list]).await;
    assert_eq!(members.lines().count(), 2, "{members}");
    let camp = cli_id(
        &cfg,
        &[
            "campaign",
            "create",
            "--name",
            "После выставки",
            "--owner",
            "marketer@crm.example.com",
            "--budget",
            "15000.00",
        ],
    )
    .await;
    let out = cli(&cfg, &["campaign", "add-list", &camp, &list]).await;
    assert!(out.contains("Выставка 2026") && out.contains("dynamic"), "{out}");
    cli(&cfg, &["campaign", "status", &camp, "ready"]).await;
    let wave =
        cli_id(&cfg, &["campaign", "activity", &camp, "--subject", "Спасибо за визит", "--channel", "email"]).await;
    cli(&cfg, &["campaign", "target", &wave, &list]).await;
    let text = dir.path().join("body.txt");
    std::fs::write(&text, "Спасибо, что зашли к нам на стенд!").unwrap();
    cli(
        &cfg,
        &[
            "wave",
            "schedule",
            &wave,
            "--subject",
            "Спасибо за визит",
            "--text-file",
            text.to_str().unwrap(),
            "--from",
            "news@crm.example.com",
        ],
    )
    .await;
    sink.wait_for(2).await;
    poll_until("the wave completes", || async {
        cli(&cfg, &["wave", "status", &wave]).await.contains("state completed")
    })
    .await;
    assert_eq!(recipients(&sink), ["anna@lutik.ru", "petr@romashka.ru"]);
    let st = cli(&cfg, &["wave", "status", &wave]).await;
    assert!(st.contains("sent 2") && st.contains("failed 0"), "{st}");
    // A wrong status name is refused with the names it takes.
    let bad = tokio::process::Command::new(inflow_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["campaign", "status", &camp, "flying"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("launched"));
    app.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketer_path_cli_sqlite() {
    marketer_path_cli("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketer_path_cli_postgres() {
    marketer_path_cli("postgres").await;
}

fn alerts_toml(sink: &SmtpSink) -> String {
    format!(
        "[org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.acme.ru\"\n\n[smtp]\n\
            host = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"crm@acme.ru\"\n\n\
         [alerts]\nenabled = true\nscan_interval_secs = 3600\nescalation_delay_secs = 86400\nmax_level = 1\n\
         fallback_address = \"crm-admin@acme.ru\"\n\
         working_hours = \"00:00-24:00\"\n\
         working_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         kinds = [\"task\", \"phonecall\"]\n",
        sink.port
    )
}

/// R-ACT-1/R-ACT-2 with R-TASK-5: an overdue task alerts its owner and manager; its owner
/// completes it through the API; the next scans send nothing to anyone. Reopen (admin)
/// restarts the escalation at level 0; reassignment gives it to the new owner.
async fn finishing_work_stops_alerts(engine: &str) {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &alerts_toml(&sink)).await;
    let rt = app.running.alerts.clone().unwrap();
    let s = &app.store;
    let boss = add_user(s, "Anna", "Volkova", "anna@acme.ru", None, None).await;
    let owner = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", Some(boss), None).await;
    let stranger = add_user(s, "Pavel", "Sokolov", "pavel@acme.ru", None, None).await;
    let admin = add_user(s, "Ada", "Admin", "ada@acme.ru", None, None).await;
    // The owner and the stranger have viewer tokens: finishing one's own work needs no more.
    let own = Client { app: &app, token: token(s, owner, "viewer").await };
    let other = Client { app: &app, token: token(s, stranger, "viewer").await };
    let boss_c = Client { app: &app, token: token(s, boss, "viewer").await };
    let adm = Client { app: &app, token: token(s, admin, "admin").await };

    let t0 = Utc::now();
    let mk = |subject: &str| {
        Activity {
            activityid: Uuid::new_v4(),
            activitytypecode: EntityKind::Task,
            subject: Some(subject.into()),
            scheduledend: Some(t0 - Duration::hours(30)),
            ..Default::default()
        }
        .stamped(owner, EntityKind::Systemuser, t0 - Duration::hours(40), None)
    };
    let call_back = mk("Call back Romashka");
    let offer = mk("Send the offer");
    s.insert(&call_back).await.unwrap();
    s.insert(&offer).await.unwrap();
    let first = rt.scan(t0).await.unwrap();
    assert_eq!((first.overdue, first.claimed), (2, 4), "owner and manager, two tasks each: {first:?}");
    sink.wait_for(2).await;

    // Nobody else finishes it; the owner does, with a note.
    let path = format!("/api/v1/activities/{}/complete", call_back.activityid);
    let (st, b) = other.post(&path, json!({"note": "not mine"})).await;
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("not_your_activity")), "{b}");
    let done = own.ok(&path, json!({"note": "called, they will order in January"}), 200).await;
    assert_eq!((done["statecode"].as_i64(), done["statuscode"].as_i64()), (Some(1), Some(5)), "{done}");
    assert!(done["description"].as_str().unwrap().ends_with(": called, they will order in January"), "{done}");
    assert!(done["actualend"].is_string());
    // Completed is read-only: a second completion, a cancel and a PATCH are conflicts.
    let (st, b) = own.post(&path, json!({})).await;
    assert_eq!((st, b["error"]["code"].as_str()), (409, Some("activity_closed")), "{b}");
    let (st, _) = adm
        .call(Method::PATCH, &format!("/api/v1/activities/{}", call_back.activityid), Some(json!({"subject": "x"})))
        .await;
    assert_eq!(st, 409);
    // The manager above the owner cancels the other task.
    let canceled = boss_c.ok(&format!("/api/v1/activities/{}/cancel", offer.activityid), json!({}), 200).await;
    assert_eq!((canceled["statecode"].as_i64(), canceled["statuscode"].as_i64()), (Some(2), Some(6)));

    // The next scans send nothing, to the owner or to the manager, a day later too.
    for later in [t0 + Duration::minutes(5), t0 + Duration::hours(25), t0 + Duration::hours(49)] {
        let r = rt.scan(later).await.unwrap();
        assert_eq!((r.overdue, r.claimed, r.digests), (0, 0, 0), "{r:?}");
    }
    assert_eq!(sink.messages().len(), 2, "nothing more was sent");

    // Reopen: admins only; the escalation starts again at level 0 (owner and, being 30 h
    // overdue, the manager).
    let reopen = format!("/api/v1/activities/{}/reopen", call_back.activityid);
    let (st, _) = own.post(&reopen, json!({})).await;
    assert_eq!(st, 403, "reopen is an admin action");
    let back = adm.ok(&reopen, json!({"note": "they did not order"}), 200).await;
    assert_eq!(
        (back["statecode"].as_i64(), back["statuscode"].as_i64(), back["actualend"].is_null()),
        (Some(0), Some(2), true)
    );
    let again = rt.scan(t0 + Duration::minutes(10)).await.unwrap();
    assert_eq!((again.overdue, again.claimed), (1, 2), "{again:?}");
    sink.wait_for(4).await;

    // R-ACT-2: reassigned to Pavel, it alerts Pavel (who has no manager: the fallback).
    let moved = adm
        .call(
            Method::PATCH,
            &format!("/api/v1/activities/{}", call_back.activityid),
            Some(json!({"ownerid": stranger})),
        )
        .await;
    assert_eq!(moved.0, 200, "{}", moved.1);
    let r = rt.scan(t0 + Duration::minutes(15)).await.unwrap();
    assert_eq!((r.claimed, r.told), (3, 1), "level 0 and 1 for Pavel's task, and the notice that it is his: {r:?}");
    let msgs = sink.wait_for(6).await;
    let pavel = msgs[4..]
        .iter()
        .find(|(to, _)| to.trim() == "pavel@acme.ru")
        .map(|(_, m)| m.replace("=\r\n", ""))
        .unwrap_or_else(|| panic!("{:?}", msgs.iter().map(|m| &m.0).collect::<Vec<_>>()));
    assert!(
        pavel.contains("Assigned to you: Call back Romashka (task)"),
        "one mail with the overdue line and the notice: {pavel}"
    );
    // Told once.
    assert_eq!(rt.scan(t0 + Duration::minutes(20)).await.unwrap().claimed, 0);
    // Reassigning to a disabled user is refused.
    let mut gone: inflow::crm::entities::SystemUser = s.load(boss).await.unwrap();
    gone.isdisabled = true;
    s.update(&gone).await.unwrap();
    let (st, b) = adm
        .call(Method::PATCH, &format!("/api/v1/activities/{}", call_back.activityid), Some(json!({"ownerid": boss})))
        .await;
    assert_eq!((st, b["error"]["code"].as_str()), (422, Some("owner_disabled")), "{b}");
    app.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_work_stops_alerts_sqlite() {
    finishing_work_stops_alerts("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_work_stops_alerts_postgres() {
    finishing_work_stops_alerts("postgres").await;
}

/// `inflow task complete` closes a callback; the CLI and the API share the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cli_completes_and_reopens() {
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), "").await;
    let owner = add_user(&app.store, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let call = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Phonecall,
        subject: Some("Missed call: call back".into()),
        directioncode: Some(false),
        scheduledend: Some(now()),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, now(), None);
    app.store.insert(&call).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", app.db_url())).unwrap();
    let id = call.activityid.to_string();
    let out = cli(&cfg, &["task", "complete", &id, "--outcome", "voicemail", "--note", "left a message"]).await;
    assert!(out.contains("Completed (status 2)"), "{out}");
    let a: Activity = app.store.load(call.activityid).await.unwrap();
    assert_eq!((a.statecode, a.statuscode, a.leftvoicemail, a.modifiedby), (1, 2, Some(true), Some(owner)));
    let out = cli(&cfg, &["task", "reopen", &id]).await;
    assert!(out.contains("Open (status 1)"), "{out}");
    let out = cli(&cfg, &["task", "cancel", &id, "--by", "oleg@acme.ru"]).await;
    assert!(out.contains("Canceled (status 3)"), "{out}");
    app.stop().await;
}

/// R-OPP-1 through the API: create for an account, move the stage, lose, reopen, win, sign
/// the Act; the history and the opportunityclose activities are kept; performance counts the win.
async fn deals(engine: &str) {
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), "[org]\ntimezone = \"Europe/Moscow\"\n").await;
    let seller = add_user(&app.store, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let c = Client { app: &app, token: token(&app.store, seller, "admin").await };
    let camp =
        c.ok("/api/v1/campaigns", json!({"name": "Осень"}), 201).await["campaignid"].as_str().unwrap().to_string();
    let acc =
        c.ok("/api/v1/accounts", json!({"name": "ООО Ромашка"}), 201).await["accountid"].as_str().unwrap().to_string();
    // Name and customer are required; the customer must exist and be an account or contact.
    let (s, b) = c.post("/api/v1/opportunities", json!({"name": "Ноутбуки"})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("missing_field")), "{b}");
    let (s, b) = c
        .post(
            "/api/v1/opportunities",
            json!({"name": "Ноутбуки", "customerid": Uuid::new_v4(), "customeridtype": "account"}),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("unknown_customer")), "{b}");
    let o = c
        .ok(
            "/api/v1/opportunities",
            json!({"name": "Поставка 40 \
            ноутбуков", "customerid": acc, "customeridtype": "account", "estimatedvalue": 1200000, "salesstage": 0,
                "campaignid": camp}),
            201,
        )
        .await;
    let id = o["opportunityid"].as_str().unwrap().to_string();
    assert_eq!(
        (o["statecode"].as_i64(), o["statuscode"].as_i64(), o["opportunityratingcode"].as_i64()),
        (Some(0), Some(1), Some(2))
    );
    let (s, _) = c
        .call(
            Method::PATCH,
            &format!("/api/v1/opportunities/{id}"),
            Some(json!({"salesstage": 2, "closeprobability": 60})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) =
        c.call(Method::PATCH, &format!("/api/v1/opportunities/{id}"), Some(json!({"closeprobability": 140}))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("invalid_probability")), "{b}");

    let lost = c
        .ok(&format!("/api/v1/opportunities/{id}/lose"), json!({"statuscode": 5, "reason": "конкурент дешевле"}), 200)
        .await;
    assert_eq!((lost["statecode"].as_i64(), lost["statuscode"].as_i64()), (Some(2), Some(5)));
    let (s, b) = c.call(Method::PATCH, &format!("/api/v1/opportunities/{id}"), Some(json!({"salesstage": 3}))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("opportunity_closed")), "read-only until reopened: {b}");
    let (s, b) = c.post(&format!("/api/v1/opportunities/{id}/close-deal"), json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("deal_not_won")), "{b}");
    c.ok(&format!("/api/v1/opportunities/{id}/reopen"), json!({}), 200).await;
    let won = c.ok(&format!("/api/v1/opportunities/{id}/win"), json!({"actualvalue": 1150000}), 200).await;
    assert_eq!(
        (won["statecode"].as_i64(), won["statuscode"].as_i64(), won["actualvalue"].as_f64()),
        (Some(1), Some(3), Some(1_150_000.0)),
        "{won}"
    );
    let msk_today = Utc::now().with_timezone(&chrono_tz::Europe::Moscow).date_naive().to_string();
    assert_eq!(won["actualclosedate"].as_str(), Some(msk_today.as_str()));
    let (s, b) = c.post(&format!("/api/v1/opportunities/{id}/win"), json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("opportunity_closed")), "{b}");
    let act =
        c.ok(&format!("/api/v1/opportunities/{id}/close-deal"), json!({"deal_closed_on": "2026-12-20"}), 200).await;
    assert_eq!(act["deal_closed_on"].as_str(), Some("2026-12-20"));

    // The record of it: two opportunityclose activities and the history lines, in order.
    let oid: Uuid = id.parse().unwrap();
    let mut db = app.store.db.clone();
    let closes = db
        .fetch_all(
            "SELECT subject, statecode FROM activity WHERE regardingobjectid = $1 AND \
        activitytypecode = 'opportunityclose' ORDER BY createdon",
            vec![oid.into()],
        )
        .await
        .unwrap();
    let subjects: Vec<String> = closes.iter().map(|r| r.get::<String>("subject").unwrap()).collect();
    assert_eq!(subjects, ["Lost: Поставка 40 ноутбуков", "Won: Поставка 40 ноутбуков"]);
    let hist = db
        .fetch_all("SELECT kind, summary FROM record_history WHERE entityid = $1 ORDER BY at, id", vec![oid.into()])
        .await
        .unwrap();
    let kinds: Vec<String> = hist.iter().map(|r| r.get::<String>("kind").unwrap()).collect();
    assert_eq!(kinds, ["created", "stage", "stage", "lost", "reopened", "won", "act"]);
    assert_eq!(hist[1].get::<String>("summary").unwrap(), "Stage: 0 Qualify → 2 Propose");
    // The won views and the campaign's performance count it.
    let won_view = c.get("/api/v1/opportunities?view=won").await;
    assert_eq!(won_view["total"], 1, "{won_view}");
    let perf = c.get("/api/v1/campaigns?view=performance").await;
    let row = perf["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["campaignid"].as_str() == Some(camp.as_str()))
        .unwrap_or_else(|| panic!("{perf}"))
        .clone();
    assert_eq!(row["opportunities"].as_i64(), Some(1), "{row}");
    assert_eq!(row["won_value"].as_f64(), Some(1_150_000.0), "{row}");
    let stored: Opportunity = app.store.load(oid).await.unwrap();
    assert_eq!(stored.deal_closed_on, Some(chrono::NaiveDate::from_ymd_opt(2026, 12, 20).unwrap()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_sqlite() {
    deals("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_postgres() {
    deals("postgres").await;
}

/// R-DEAL-1: an account's history through the API — the lead that started it (a call with a
/// recording), its contact's mail, a completed task, the deal's stage change, win and Act —
/// oldest first, paged; and issue 18 §9: names beside ids in grouped views and lists.
async fn timeline_and_names(engine: &str) {
    use inflow::crm::entities::{Account, Contact, Lead};
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), "[org]\ntimezone = \"Europe/Moscow\"\n").await;
    let s = &app.store;
    let seller = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let c = Client { app: &app, token: token(s, seller, "admin").await };
    let t0 = Utc::now() - Duration::days(10);
    let at = |h: i64| t0 + Duration::hours(h);
    // Day 0: a call from an unknown number made a lead (how the daemon writes it).
    let lead = Lead {
        leadid: Uuid::new_v4(),
        subject: "Call to the main line".into(),
        lastname: "Caller +79161234567".into(),
        leadsourcecode: Some(100_000_001),
        telephone1: Some("+79161234567".into()),
        description: Some("Created from zadarma call z-1 to +74951234567.".into()),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(1), None);
    s.insert(&lead).await.unwrap();
    let mut call = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Phonecall,
        subject: Some("Incoming call from +79161234567".into()),
        directioncode: Some(false),
        regardingobjectid: Some(lead.leadid),
        regardingobjectidtype: Some(EntityKind::Lead),
        actualstart: Some(at(0)),
        actualend: Some(at(0)),
        description: Some(
            "Answered inbound call via zadarma (z-1), talk time 95 s\nRecording: https://pbx.example.com/rec/z-1.mp3"
                .into(),
        ),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(1), None);
    call.statecode = 1;
    call.statuscode = 4;
    s.insert(&call).await.unwrap();
    // Qualified into an account and a contact (as §3.1 leaves them).
    let acc = Account {
        accountid: Uuid::new_v4(),
        name: "ООО Ромашка".into(),
        originatingleadid: Some(lead.leadid),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(2), None);
    s.insert(&acc).await.unwrap();
    let contact = Contact {
        contactid: Uuid::new_v4(),
        firstname: Some("Пётр".into()),
        lastname: "Сидоров".into(),
        parentcustomerid: Some(acc.accountid),
        parentcustomeridtype: Some(EntityKind::Account),
        originatingleadid: Some(lead.leadid),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(3), None);
    s.insert(&contact).await.unwrap();
    // Day 1: mail in from the contact; a task, completed through the API.
    let mail = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Email,
        subject: Some("Re: коммерческое предложение".into()),
        directioncode: Some(false),
        regardingobjectid: Some(contact.contactid),
        regardingobjectidtype: Some(EntityKind::Contact),
        senton: Some(at(24)),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(24), None);
    s.insert(&mail).await.unwrap();
    let task = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Task,
        subject: Some("Send the contract".into()),
        regardingobjectid: Some(acc.accountid),
        regardingobjectidtype: Some(EntityKind::Account),
        scheduledend: Some(at(48)),
        ..Default::default()
    }
    .stamped(seller, EntityKind::Systemuser, at(25), None);
    s.insert(&task).await.unwrap();
    c.ok(&format!("/api/v1/activities/{}/complete", task.activityid), json!({"note": "sent"}), 200).await;
    // The deal: created, moved, won, the Act.
    let o = c
        .ok(
            "/api/v1/opportunities",
            json!({"name": "Поставка", "customerid": acc.accountid,
        "customeridtype": "account", "estimatedvalue": 500000, "salesstage": 1}),
            201,
        )
        .await;
    let oid = o["opportunityid"].as_str().unwrap().to_string();
    c.call(Method::PATCH, &format!("/api/v1/opportunities/{oid}"), Some(json!({"salesstage": 2}))).await;
    c.ok(&format!("/api/v1/opportunities/{oid}/win"), json!({}), 200).await;
    c.ok(&format!("/api/v1/opportunities/{oid}/close-deal"), json!({}), 200).await;

    let tl = c.get(&format!("/api/v1/accounts/{}/timeline?limit=200", acc.accountid)).await;
    let kinds: Vec<&str> = tl["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    // The call that brought the lead, the lead, the account and contact, the mail, the
    // task, then the deal's life (created, stage, close activity, won, act).
    assert_eq!(kinds[..6], ["phonecall", "lead", "account", "contact", "email", "task"], "{tl}");
    assert_eq!(kinds[6..], ["opportunity", "stage", "opportunityclose", "won", "act"], "{tl}");
    let item = |k: &str| tl["items"].as_array().unwrap().iter().find(|i| i["kind"] == k).unwrap().clone();
    assert_eq!(item("phonecall")["recording"].as_str(), Some("https://pbx.example.com/rec/z-1.mp3"));
    assert_eq!(item("phonecall")["direction"].as_str(), Some("incoming"));
    assert_eq!(
        item("lead")["detail"].as_str(),
        Some("Source: Phone call. Created from zadarma call z-1 to +74951234567.")
    );
    assert_eq!(item("task")["state"].as_str(), Some("Completed"));
    assert_eq!(item("task")["who_name"].as_str(), Some("Oleg Ivanov"));
    assert_eq!(item("email")["about"]["kind"].as_str(), Some("contact"));
    assert_eq!(item("stage")["subject"].as_str(), Some("Stage: 1 Develop → 2 Propose"));
    assert_eq!(
        item("task")["link"].as_str().map(str::to_string),
        Some(format!("/api/v1/activities/{}", task.activityid))
    );
    // Paged: the second page of 5 starts where the first ended.
    let p2 = c.get(&format!("/api/v1/accounts/{}/timeline?limit=5&page=2", acc.accountid)).await;
    assert_eq!((p2["total"].as_u64(), p2["items"].as_array().unwrap().len()), (Some(11), 5));
    assert_eq!(p2["items"][0]["kind"], "task");
    // The deal's own timeline has the lead it came from only through the account; the
    // lead's has the call and the deal's qualification link is absent (it was direct).
    let deal = c.get(&format!("/api/v1/opportunities/{oid}/timeline")).await;
    assert_eq!(deal["total"], 5, "{deal}");
    let lt = c.get(&format!("/api/v1/leads/{}/timeline", lead.leadid)).await;
    assert_eq!(
        lt["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect::<Vec<_>>(),
        ["phonecall", "lead"]
    );
    let (st, _) = c.call(Method::GET, &format!("/api/v1/contacts/{}/timeline", Uuid::new_v4()), None).await;
    assert_eq!(st, 404);
    let (st, _) = c.call(Method::GET, &format!("/api/v1/accounts/{}/timeline?limit=0", acc.accountid), None).await;
    assert_eq!(st, 400);

    // Names beside ids.
    let by_owner = c.get("/api/v1/leads?view=by-owner").await;
    assert_eq!(by_owner["groups"][0]["label"].as_str(), Some("Oleg Ivanov"), "{by_owner}");
    let by_source = c.get("/api/v1/leads?view=by-source").await;
    assert_eq!(by_source["groups"][0]["label"].as_str(), Some("Phone call"), "{by_source}");
    let tasks = c.get(&format!("/api/v1/activities?view=by-regarding&id={}", acc.accountid)).await;
    assert_eq!(tasks["items"][0]["ownerid_name"].as_str(), Some("Oleg Ivanov"), "{tasks}");
    assert_eq!(tasks["items"][0]["regardingobjectid_name"].as_str(), Some("ООО Ромашка"), "{tasks}");
    let contacts = c.get("/api/v1/contacts").await;
    assert_eq!(contacts["items"][0]["parentcustomerid_name"].as_str(), Some("ООО Ромашка"), "{contacts}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_and_names_sqlite() {
    timeline_and_names("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_and_names_postgres() {
    timeline_and_names("postgres").await;
}

/// R-DUP-5 through the API: two contacts with one address are an ambiguous match; merged,
/// the survivor keeps its values, takes the other's phone and title, and the other's task,
/// e-mail, response and list membership follow; the number now matches the survivor alone.
/// A dismissed candidate is never proposed again; a resolved one is not resolved twice.
async fn duplicates_merge_and_dismiss(engine: &str) {
    use inflow::crm::entities::{CampaignResponse, Contact, MarketingList};
    use inflow::crm::matching::MatchOutcome;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), "").await;
    let s = &app.store;
    let admin = add_user(s, "Ada", "Admin", "ada@acme.ru", None, None).await;
    let c = Client { app: &app, token: token(s, admin, "admin").await };
    let t = now();
    let contact = |last: &str, email: &str, mobile: Option<&str>, title: Option<&str>| {
        Contact {
            contactid: Uuid::new_v4(),
            lastname: last.into(),
            emailaddress1: Some(email.into()),
            mobilephone: mobile.map(str::to_string),
            jobtitle: title.map(str::to_string),
            ..Default::default()
        }
        .stamped(admin, EntityKind::Systemuser, t, None)
    };
    let keep = contact("Сидоров", "petr@romashka.ru", None, None);
    let other = contact("Сидоров П.", "Petr@Romashka.ru", Some("+7 916 123-45-67"), Some("Директор"));
    s.insert(&keep).await.unwrap();
    s.insert(&other).await.unwrap();
    // What hangs on the other: a task regarding it, a mail naming it, a response, a list.
    let task = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Task,
        subject: Some("Call Petr".into()),
        regardingobjectid: Some(other.contactid),
        regardingobjectidtype: Some(EntityKind::Contact),
        ..Default::default()
    }
    .stamped(admin, EntityKind::Systemuser, t, None);
    s.insert(&task).await.unwrap();
    let mut db = s.db.clone();
    db.execute(
        "INSERT INTO activityparty (activityid, participationtypemask, partyid, partyidtype, \
        addressused) VALUES ($1, 2, $2, 'contact', \
        'Petr@Romashka.ru')",
        vec![task.activityid.into(), other.contactid.into()],
    )
    .await
    .unwrap();
    let camp = inflow::crm::entities::Campaign {
        campaignid: Uuid::new_v4(),
        name: "Осень".into(),
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(admin, EntityKind::Systemuser, t, None);
    s.insert(&camp).await.unwrap();
    let resp = CampaignResponse {
        activityid: Uuid::new_v4(),
        subject: "Re: Осень".into(),
        regardingobjectid: camp.campaignid,
        regardingobjectidtype: EntityKind::Campaign,
        customerid: Some(other.contactid),
        customeridtype: Some(EntityKind::Contact),
        responsecode: 1,
        ..Default::default()
    }
    .stamped(admin, EntityKind::Systemuser, t, None);
    s.insert(&resp).await.unwrap();
    let list = MarketingList {
        listid: Uuid::new_v4(),
        listname: "Клиенты".into(),
        createdfromcode: 2,
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(admin, EntityKind::Systemuser, t, None);
    s.insert(&list).await.unwrap();
    s.add_list_members(list.listid, &[other.contactid], t).await.unwrap();

    let m = s.match_or_queue(Some("petr@romashka.ru"), None, "test:1", t).await.unwrap();
    assert!(matches!(m, MatchOutcome::Ambiguous(ref v) if v.len() == 2), "{m:?}");
    let open = c.get("/api/v1/ops/dup-candidates?status=open").await;
    let cand = open["items"][0]["id"].as_str().unwrap().to_string();
    let (st, b) =
        c.post(&format!("/api/v1/ops/dup-candidates/{cand}/merge"), json!({"survivor": Uuid::new_v4()})).await;
    assert_eq!((st, b["error"]["code"].as_str()), (422, Some("not_a_candidate")), "{b}");
    let out = c.ok(&format!("/api/v1/ops/dup-candidates/{cand}/merge"), json!({"survivor": keep.contactid}), 200).await;
    assert_eq!(out["merged"][0]["id"].as_str().map(str::to_string), Some(other.contactid.to_string()), "{out}");

    let k: Contact = s.load(keep.contactid).await.unwrap();
    assert_eq!(
        (k.lastname.as_str(), k.emailaddress1.as_deref()),
        ("Сидоров", Some("petr@romashka.ru")),
        "the survivor keeps its values"
    );
    assert_eq!(
        (k.mobilephone.as_deref(), k.jobtitle.as_deref()),
        (Some("+7 916 123-45-67"), Some("Директор")),
        "and fills its gaps"
    );
    let o: Contact = s.load(other.contactid).await.unwrap();
    assert_eq!((o.statecode, o.masterid), (1, Some(keep.contactid)));
    assert_eq!(s.load::<Activity>(task.activityid).await.unwrap().regardingobjectid, Some(keep.contactid));
    let party: Uuid = db
        .fetch_one("SELECT partyid FROM activityparty WHERE activityid = $1", vec![task.activityid.into()])
        .await
        .unwrap()
        .get("partyid")
        .unwrap();
    assert_eq!(party, keep.contactid);
    assert_eq!(s.load::<CampaignResponse>(resp.activityid).await.unwrap().customerid, Some(keep.contactid));
    let members = s.list_members(list.listid, t).await.unwrap();
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![keep.contactid]);
    assert_eq!(s.load::<MarketingList>(list.listid).await.unwrap().membercount, Some(1));
    assert_eq!(
        s.match_party(None, Some("+79161234567")).await.unwrap(),
        MatchOutcome::Unique(inflow::crm::EntityRef::new(EntityKind::Contact, keep.contactid)),
        "the number follows"
    );
    assert!(
        matches!(s.match_party(Some("petr@romashka.ru"), None).await.unwrap(), MatchOutcome::Unique(_)),
        "one active contact has the address now"
    );
    let (st, b) =
        c.post(&format!("/api/v1/ops/dup-candidates/{cand}/merge"), json!({"survivor": keep.contactid})).await;
    assert_eq!((st, b["error"]["code"].as_str()), (409, Some("candidate_resolved")), "{b}");

    // Dismiss: two different people sharing an office address stay apart, and are not
    // proposed again when their address comes in once more.
    let a1 = contact("Орлова", "office@lutik.ru", None, None);
    let a2 = contact("Лебедев", "office@lutik.ru", None, None);
    s.insert(&a1).await.unwrap();
    s.insert(&a2).await.unwrap();
    s.match_or_queue(Some("office@lutik.ru"), None, "test:2", t).await.unwrap();
    let cand2 = c.get("/api/v1/ops/dup-candidates?status=open").await["items"][0]["id"].as_str().unwrap().to_string();
    c.ok(&format!("/api/v1/ops/dup-candidates/{cand2}/dismiss"), json!({}), 200).await;
    s.match_or_queue(Some("office@lutik.ru"), None, "test:3", t).await.unwrap();
    assert_eq!(c.get("/api/v1/ops/dup-candidates?status=open").await["total"], 0);
    assert_eq!(c.get("/api/v1/ops/dup-candidates?status=ignored").await["total"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_merge_and_dismiss_sqlite() {
    duplicates_merge_and_dismiss("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_merge_and_dismiss_postgres() {
    duplicates_merge_and_dismiss("postgres").await;
}

/// R-QC-1 through the API and the CLI: a quick campaign makes one call per member of a
/// list, owned by each member's owner, with the members left out counted by reason; a
/// marketer may run it, a viewer may not (e-mail: `quick_email_campaign`).
async fn quick_campaigns(engine: &str) {
    use inflow::crm::entities::{BulkOperation, Contact, MarketingList};
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), "[org]\ntimezone = \"Europe/Moscow\"\n").await;
    let s = &app.store;
    let marketer = add_user(s, "Марина", "Маркетова", "marketer@acme.ru", None, None).await;
    let rep = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let m = Client { app: &app, token: token(s, marketer, "marketer").await };
    let v = Client { app: &app, token: token(s, rep, "viewer").await };
    let t = now();
    let mut ids = Vec::new();
    for (i, (phone, donotphone, state)) in [
        (Some("8 916 000-00-01"), false, 0),
        (Some("+7 916 000-00-02"), false, 0),
        (None, false, 0),
        (Some("+79160000004"), true, 0),
        (Some("+79160000005"), false, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = Contact {
            contactid: Uuid::new_v4(),
            lastname: format!("Клиент {i}"),
            telephone1: phone.map(str::to_string),
            donotphone,
            ..Default::default()
        }
        .stamped(rep, EntityKind::Systemuser, t, None);
        c.statecode = state;
        c.statuscode = if state == 0 { 1 } else { 2 };
        s.insert(&c).await.unwrap();
        ids.push(c.contactid);
    }
    let list = MarketingList {
        listid: Uuid::new_v4(),
        listname: "Обзвон".into(),
        createdfromcode: 2,
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(marketer, EntityKind::Systemuser, t, None);
    s.insert(&list).await.unwrap();
    s.add_list_members(list.listid, &ids, t).await.unwrap();
    let path = format!("/api/v1/lists/{}/quick-campaign", list.listid);
    let (st, _) = v.post(&path, json!({"activity": "phonecall", "subject": "Пригласить"})).await;
    assert_eq!(st, 403);
    let due = "2026-12-10T12:00:00Z";
    let out = m.ok(&path, json!({"activity": "phonecall", "subject": "Пригласить на выставку", "due": due}), 201).await;
    assert_eq!(out["created"], 2, "{out}");
    assert_eq!(out["excluded"], json!({"donotphone": 1, "inactive": 1, "no_phone": 1}), "{out}");
    let bulk_id: Uuid = out["bulkoperation"]["activityid"].as_str().unwrap().parse().unwrap();
    let b: BulkOperation = s.load(bulk_id).await.unwrap();
    assert_eq!(
        (b.operationtypecode, b.createdrecordtypecode, b.targetmemberscount, b.successcount, b.statuscode),
        (7, Some(1), Some(5), Some(2), 4)
    );
    let calls = v.get(&format!("/api/v1/activities?view=by-regarding&id={bulk_id}")).await;
    assert_eq!(calls["total"], 2, "{calls}");
    for c in calls["items"].as_array().unwrap() {
        assert_eq!(
            (c["activitytypecode"].as_str(), c["directioncode"].as_bool(), c["statecode"].as_i64()),
            (Some("phonecall"), Some(true), Some(0))
        );
        assert_eq!(c["ownerid"].as_str().map(str::to_string), Some(rep.to_string()), "the member's owner calls");
        assert_eq!(c["scheduledend"].as_str(), Some("2026-12-10T12:00:00Z"));
    }
    let numbers: Vec<&str> =
        calls["items"].as_array().unwrap().iter().map(|c| c["phonenumber"].as_str().unwrap()).collect::<Vec<_>>();
    assert!(numbers.contains(&"+79160000001") && numbers.contains(&"+79160000002"), "{numbers:?}");
    // The CLI runs the same thing: tasks this time, all owned by the chosen owner.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n[org]\ntimezone = \"Europe/Moscow\"\n", app.db_url()))
        .unwrap();
    let out = cli(
        &cfg,
        &[
            "list",
            "quick-campaign",
            &list.listid.to_string(),
            "--activity",
            "task",
            "--subject",
            "Отправить каталог",
            "--owner",
            "marketer@acme.ru",
            "--by",
            "marketer@acme.ru",
            "--due",
            "2026-12-11 10:00",
        ],
    )
    .await;
    assert!(out.contains("members 5  created 4  excluded: inactive 1"), "{out}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_campaigns_sqlite() {
    quick_campaigns("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_campaigns_postgres() {
    quick_campaigns("postgres").await;
}

/// R-QC-1 by e-mail: a quick campaign over one list goes through the wave sender against
/// the real SMTP server: each address once, the members left out counted by reason, the
/// quick campaign's bulkoperation is the run with its books, its e-mails and responses
/// regard it; one scheduled from the CLI is canceled through the API before it starts.
async fn quick_email_campaign(engine: &str) {
    use inflow::crm::entities::{BulkOperation, Contact, MarketingList};
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &wave_app_toml(&sink)).await;
    let s = &app.store;
    let marketer = add_user(s, "Марина", "Маркетова", "marketer@crm.example.com", None, None).await;
    let rep = add_user(s, "Oleg", "Ivanov", "oleg@crm.example.com", None, None).await;
    let m = Client { app: &app, token: token(s, marketer, "marketer").await };
    let v = Client { app: &app, token: token(s, rep, "viewer").await };
    let t = now();
    let mut ids = Vec::new();
    // (first name, address, donotbulkemail, statecode)
    for (first, email, opted_out, state) in [
        ("Олег", Some("oleg@client-one.ru"), false, 0),
        ("Ирина", Some("irina@client-two.ru"), true, 0),
        ("Павел", Some("pavel@client-three.ru"), false, 1),
        ("Без", None, false, 0),
        ("Дубль", Some("OLEG@Client-One.ru"), false, 0),
        ("Анна", Some("anna@client-four.ru"), false, 0),
    ] {
        let mut c = Contact {
            contactid: Uuid::new_v4(),
            firstname: Some(first.into()),
            lastname: "Клиент".into(),
            emailaddress1: email.map(str::to_string),
            donotbulkemail: opted_out,
            ..Default::default()
        }
        .stamped(rep, EntityKind::Systemuser, t, None);
        c.statecode = state;
        c.statuscode = if state == 0 { 1 } else { 2 };
        s.insert(&c).await.unwrap();
        ids.push(c.contactid);
    }
    let list =
        MarketingList {
            listid: Uuid::new_v4(), listname: "Клиенты".into(), createdfromcode: 2, ..Default::default()
        }
        .stamped(marketer, EntityKind::Systemuser, t, None);
    s.insert(&list).await.unwrap();
    s.add_list_members(list.listid, &ids, t).await.unwrap();
    let path = format!("/api/v1/lists/{}/quick-campaign", list.listid);
    for (body, code) in [
        (json!({"activity": "email", "subject": "Новости"}), "required_field"),
        (json!({"activity": "email", "subject": "Новости {{", "description": "x"}), "invalid_wave"),
        (
            json!({"activity": "email", "subject": "Новости", "description": "x", "due": "2026-12-10T12:00:00Z"}),
            "not_for_email",
        ),
        (json!({"activity": "task", "subject": "Новости", "from": "news@crm.example.com"}), "email_only_field"),
    ] {
        let (st, b) = m.post(&path, body.clone()).await;
        assert_eq!((st, b["error"]["code"].as_str()), (422, Some(code)), "{body}: {b}");
    }
    let (st, _) = v.post(&path, json!({"activity": "email", "subject": "S", "description": "x"})).await;
    assert_eq!(st, 403, "a viewer runs no campaign");
    let out = m
        .ok(
            &path,
            json!({"activity": "email", "subject": "Новости, {{ first_name | default(\"коллега\") \
                }}", "description": "Здравствуйте, {{ first_name }}!"}),
            201,
        )
        .await;
    assert_eq!((out["wave"]["state"].as_str(), out["created"].as_i64()), (Some("scheduled"), Some(0)), "{out}");
    let bulk: Uuid = out["bulkoperation"]["activityid"].as_str().unwrap().parse().unwrap();
    let status_path = format!("/api/v1/quick-campaigns/{bulk}/status");
    poll_until("the quick campaign's wave completes", || async {
        m.get(&status_path).await["wave"]["state"] == "completed"
    })
    .await;
    let st = m.get(&status_path).await;
    assert_eq!((st["sent"].as_i64(), st["failed"].as_i64()), (Some(2), Some(0)), "{st}");
    assert_eq!(st["campaign_name"].as_str(), Some("Новости, {{ first_name | default(\"коллега\") }}"));
    let excluded = json!({"duplicate_address": 1, "inactive": 1, "no_valid_email": 1, "opted_out": 1});
    assert_eq!(st["wave"]["excluded"], excluded, "{st}");
    let got = sink.wait_for(2).await;
    // Олег and Дубль share an address (in other case): one of them gets the message.
    let mut lower: Vec<String> = recipients(&sink).iter().map(|r| r.to_lowercase()).collect();
    lower.sort();
    assert_eq!(lower, ["anna@client-four.ru", "oleg@client-one.ru"], "each address once");
    assert!(
        got.iter().any(|(r, msg)| r.trim() == "anna@client-four.ru" && msg.contains("Здравствуйте, Анна!")),
        "{got:?}"
    );
    // The quick campaign is the run, with its books.
    let b: BulkOperation = s.load(bulk).await.unwrap();
    assert_eq!(
        (b.operationtypecode, b.createdrecordtypecode, b.statecode, b.statuscode),
        (7, Some(4), 1, 4),
        "a completed e-mail quick campaign"
    );
    assert_eq!((b.targetmemberscount, b.successcount, b.failurecount), (Some(6), Some(2), Some(0)));
    assert_eq!(b.excluded, Some(excluded));
    let mails = v.get(&format!("/api/v1/activities?view=by-regarding&id={bulk}")).await;
    assert_eq!(mails["total"], 2, "{mails}");
    for a in mails["items"].as_array().unwrap() {
        assert_eq!(
            (a["activitytypecode"].as_str(), a["statuscode"].as_i64(), a["regardingobjectidtype"].as_str()),
            (Some("email"), Some(3), Some("bulkoperation"))
        );
        assert_eq!(a["ownerid"].as_str(), Some(marketer.to_string().as_str()), "sent on the runner's behalf");
    }
    let l: MarketingList = s.load(list.listid).await.unwrap();
    assert!(l.lastusedon.is_some(), "the list was used");
    // An unsubscribe through the link is a response to the quick campaign.
    let mail_id: Uuid = mails["items"][0]["activityid"].as_str().unwrap().parse().unwrap();
    s.unsubscribe_delivery(mail_id, "link", Utc::now()).await.unwrap();
    assert_eq!(m.get(&status_path).await["responded"], 1);
    let resp = m.get("/api/v1/campaignresponses?view=unsubscribes").await;
    assert_eq!(resp["total"], 1, "{resp}");
    assert_eq!(
        (resp["items"][0]["regardingobjectid"].as_str(), resp["items"][0]["regardingobjectidtype"].as_str()),
        (Some(bulk.to_string().as_str()), Some("bulkoperation")),
        "{resp}"
    );

    // From the CLI, for later; canceled through the API before it starts.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n[org]\ntimezone = \"Europe/Moscow\"\n", app.db_url()))
        .unwrap();
    let text = dir.path().join("body.txt");
    std::fs::write(&text, "Здравствуйте, {{ first_name | default(\"коллега\") }}!").unwrap();
    let args =
        ["list", "quick-campaign", &list.listid.to_string(), "--activity", "email", "--subject", "Весной", "--by"];
    let out = cli(
        &cfg,
        &[
            &args[..],
            &[
                "marketer@crm.example.com",
                "--text-file",
                text.to_str().unwrap(),
                "--from",
                "news@crm.example.com",
                "--start",
                "2030-03-01 10:00",
            ],
        ]
        .concat(),
    )
    .await;
    assert!(out.contains("wave scheduled for 2030-03-01T07:00:00+00:00 (Europe/Moscow)"), "{out}");
    let later: Uuid = out.lines().next().unwrap().trim().parse().unwrap();
    let w = m.ok(&format!("/api/v1/quick-campaigns/{later}/cancel"), json!({}), 200).await;
    assert_eq!(w["state"].as_str(), Some("canceled"), "{w}");
    let b: BulkOperation = s.load(later).await.unwrap();
    assert_eq!((b.statecode, b.statuscode), (2, 5), "a canceled quick campaign is closed");
    assert_eq!(sink.messages().len(), 2, "nothing more was sent");
    app.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_email_campaign_sqlite() {
    quick_email_campaign("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_email_campaign_postgres() {
    quick_email_campaign("postgres").await;
}

/// R-LD-6 and R-WV-6b through the digests: the owner of a lead the daemon made hears of it
/// once, in one mail with anything else for them; a lead a person entered tells nobody; a
/// campaign going over budget tells its owner once per crossing, and its views flag it.
async fn notices_in_the_digest(engine: &str) {
    use inflow::crm::entities::Lead;
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &alerts_toml(&sink)).await;
    let rt = app.running.alerts.clone().unwrap();
    let s = &app.store;
    let owner = add_user(s, "Oleg", "Ivanov", "oleg@acme.ru", None, None).await;
    let marketer = add_user(s, "Marina", "Marketova", "marina@acme.ru", None, None).await;
    let c = Client { app: &app, token: token(s, marketer, "admin").await };
    let t0 = Utc::now();
    // The daemon made one lead (no createdby); a person entered another.
    let auto = Lead {
        leadid: Uuid::new_v4(),
        subject: "Call to the main line".into(),
        lastname: "Caller +79161234567".into(),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t0, None);
    let manual = Lead {
        leadid: Uuid::new_v4(),
        subject: "Met at the expo".into(),
        lastname: "Орлова".into(),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t0, Some(marketer));
    s.insert(&auto).await.unwrap();
    s.insert(&manual).await.unwrap();
    // A campaign with a budget of 1000, an activity costing 800: under.
    let camp = c.ok("/api/v1/campaigns", json!({"name": "Выставка", "budgetedcost": 1000}), 201).await["campaignid"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = c
        .ok(
            "/api/v1/campaignactivities",
            json!({"regardingobjectid": camp, "subject": "Стенд", "actualcost": 800}),
            201,
        )
        .await["activityid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = rt.scan(t0 + Duration::minutes(1)).await.unwrap();
    assert_eq!((r.overdue, r.told, r.digests), (0, 1, 1), "{r:?}");
    let msgs = sink.wait_for(1).await;
    let body = msgs[0].1.replace("=\r\n", "");
    assert_eq!(msgs[0].0.trim(), "oleg@acme.ru");
    assert!(
        body.contains("Subject: 1 new for you") && body.contains("New lead for you: Call to the main line"),
        "{body}"
    );
    assert!(
        body.contains(&format!("https://crm.acme.ru/api/v1/leads/{}", auto.leadid))
            && !body.contains("Met at the expo"),
        "{body}"
    );
    // Over budget: the othercost takes it to 1100. Its owner is told once.
    let (st, b) = c.call(Method::PATCH, &format!("/api/v1/campaigns/{camp}"), Some(json!({"othercost": 300}))).await;
    assert_eq!(st, 200, "{b}");
    let bva = c.get("/api/v1/campaigns?view=budget-vs-actual").await;
    assert_eq!(bva["items"][0]["over_budget"], true, "{bva}");
    let r = rt.scan(t0 + Duration::minutes(2)).await.unwrap();
    assert_eq!(r.told, 1, "{r:?}");
    let msgs = sink.wait_for(2).await;
    assert_eq!(msgs[1].0.trim(), "marina@acme.ru");
    let told = msgs[1].1.replace("=\r\n", "");
    assert!(
        told.contains("Over budget: actual cost 1100.00 exceeds the budget 1000.00")
            && told.contains(&format!("/api/v1/campaigns/{camp}")),
        "{told}"
    );
    // Still over after another change: no new crossing, nothing told; under and over again: told again.
    c.call(Method::PATCH, &format!("/api/v1/campaignactivities/{ca}"), Some(json!({"actualcost": 900}))).await;
    assert_eq!(rt.scan(t0 + Duration::minutes(3)).await.unwrap().told, 0);
    c.call(Method::PATCH, &format!("/api/v1/campaigns/{camp}"), Some(json!({"budgetedcost": 5000}))).await;
    c.call(Method::PATCH, &format!("/api/v1/campaigns/{camp}"), Some(json!({"budgetedcost": 1000}))).await;
    assert_eq!(rt.scan(t0 + Duration::minutes(4)).await.unwrap().told, 1);
    sink.wait_for(3).await;
    app.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_in_the_digest_sqlite() {
    notices_in_the_digest("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_in_the_digest_postgres() {
    notices_in_the_digest("postgres").await;
}
