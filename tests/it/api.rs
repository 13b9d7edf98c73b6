//! The admin API through real HTTP against the app on port 0, on SQLite and PostgreSQL:
//! the auth matrix over every route, the DOMAIN §7 views on seeded data with known answers
//! (week boundaries in Europe/Moscow), the actions and their errors, bad input, and the
//! marketer CLI (tokens, CSV import of a Windows-1251 exhibition list).

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{Value as J, json};
use uuid::Uuid;

use inflow::crm::EntityKind;
use inflow::crm::entities::{Activity, Lead};
use inflow::crm::views as cal;
use inflow::http::api::{Role, allowed, table, token_hash};
use inflow::store::{RecordExt, Store};

use crate::helpers::{TestApp, add_user, now};

const MSK: chrono_tz::Tz = chrono_tz::Europe::Moscow;

/// An app with one user per role, each with a token.
struct Api {
    app: TestApp,
    admin: Uuid,
    marketer: Uuid,
    tokens: Vec<(Role, String)>,
}

impl Api {
    async fn start(engine: &str) -> Api {
        let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), "").await;
        let admin = add_user(&app.store, "Анна", "Админова", "admin@crm.example.com", None, None).await;
        let marketer = add_user(&app.store, "Марина", "Маркетова", "marketer@crm.example.com", Some(admin), None).await;
        let viewer = add_user(&app.store, "Виктор", "Смотров", "viewer@crm.example.com", Some(admin), None).await;
        let mut tokens = Vec::new();
        for (role, user, name) in
            [(Role::Admin, admin, "admin"), (Role::Marketer, marketer, "marketer"), (Role::Viewer, viewer, "viewer")]
        {
            let tok = format!("test-{name}-{}", Uuid::new_v4().simple());
            app.store.add_api_token(name, &token_hash(&tok), user, name, now()).await.unwrap();
            tokens.push((role, tok));
        }
        Api { app, admin, marketer, tokens }
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(&self, role: Role, method: Method, path: &str, body: Option<J>) -> (u16, J) {
        let mut req = self.app.http.request(method, self.app.url(path)).bearer_auth(self.token(role));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}")))
    }

    async fn get(&self, path: &str) -> J {
        let (s, b) = self.call(Role::Admin, Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    }

    async fn post(&self, path: &str, body: J) -> (u16, J) {
        self.call(Role::Admin, Method::POST, path, Some(body)).await
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn ids(page: &J, key: &str) -> Vec<String> {
    let mut v: Vec<String> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<Uuid>) -> Vec<String> {
    v.sort();
    let mut s: Vec<String> = v.iter().map(Uuid::to_string).collect();
    s.sort();
    s
}

async fn seed_lead(
    s: &Store,
    owner: Uuid,
    subject: &str,
    created: DateTime<Utc>,
    edit: impl FnOnce(&mut Lead),
) -> Uuid {
    let mut l = Lead {
        leadid: Uuid::new_v4(),
        subject: subject.into(),
        lastname: "Тестов".into(),
        leadqualitycode: 2,
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, created, None);
    edit(&mut l);
    s.insert(&l).await.unwrap();
    l.leadid
}

async fn auth_matrix(engine: &str) {
    let api = Api::start(engine).await;
    let routes = table();
    assert!(routes.len() > 40, "{} routes", routes.len());
    let some_id = Uuid::new_v4().to_string();
    for d in &routes {
        let path = d.path.replace("{id}", &some_id);
        let method = Method::from_bytes(d.method.as_str().as_bytes()).unwrap();
        // No token, a malformed header and an unknown token: 401, nothing else.
        for auth in [None, Some("Basic YWRtaW46YWRtaW4=".to_string()), Some("Bearer not-a-token".to_string())] {
            let mut req = api.app.http.request(method.clone(), api.app.url(&path));
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            let resp = req.json(&json!({})).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{} {} with {auth:?}", d.method, d.path);
            let body: J = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        for role in [Role::Admin, Role::Marketer, Role::Viewer] {
            let (status, body) =
                api.call(role, method.clone(), &path, if d.method == "GET" { None } else { Some(json!({})) }).await;
            if allowed(role, d.access) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{role:?} {} {}: {status} {body}",
                    d.method,
                    d.path
                );
            } else {
                assert_eq!(status, 403, "{role:?} {} {}: {body}", d.method, d.path);
                assert_eq!(body["error"]["code"], "forbidden");
            }
        }
    }
    // The document lists exactly the routes of the table.
    let doc = api.get("/api/v1/openapi.json").await;
    let mut listed = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            assert!(
                routes.iter().any(|d| &d.path == path && d.method.as_str().eq_ignore_ascii_case(m)),
                "documented but not routed: {m} {path}"
            );
            listed += 1;
        }
    }
    assert_eq!(listed, routes.len());
    // Requests are counted by route template (ids never become labels), with latency.
    assert!(
        crate::helpers::metric(
            &api.app,
            "inflow_http_requests_total",
            &[("route", "/api/v1/leads/{id}/qualify"), ("status", "403")]
        )
        .await
            >= 1.0
    );
    assert!(
        crate::helpers::metric(&api.app, "inflow_http_request_duration_seconds_count", &[("route", "/api/v1/leads")])
            .await
            >= 1.0
    );
    let text = api.app.http.get(api.app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(&some_id), "a raw path leaked into a label");
    // Health, metrics and the PBX/unsubscribe endpoints keep their own rules: no token needed.
    assert_eq!(api.app.http.get(api.app.url("/healthz")).send().await.unwrap().status(), 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_sqlite() {
    auth_matrix("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_postgres() {
    auth_matrix("postgres").await;
}

async fn lead_views(engine: &str) {
    let api = Api::start(engine).await;
    let s = &api.app.store;
    let me = api.admin;
    let other = api.marketer;
    let t = now();
    let week = cal::week_start(t, MSK);
    let (last_start, _) = cal::last_week(t, MSK);
    let ms = Duration::milliseconds(1);
    // Week boundaries in Moscow: Monday 00:00 belongs to its week, a millisecond before to the last.
    let this_week_first = seed_lead(s, me, "this week, Monday 00:00", week, |_| {}).await;
    let last_week_last = seed_lead(s, me, "last week, Sunday 23:59:59.999", week - ms, |_| {}).await;
    let last_week_first = seed_lead(s, other, "last week, Monday 00:00", last_start, |_| {}).await;
    let before = seed_lead(s, other, "two weeks ago", last_start - ms, |l| {
        l.statecode = 2;
        l.statuscode = 4;
    })
    .await;
    let old_open = seed_lead(s, me, "old open", cal::months_ago(t, MSK, 6) - Duration::days(1), |l| {
        l.industrycode = Some(16);
        l.revenue = Some(inflow::crm::Money(2_000_000_00));
        l.leadsourcecode = Some(3);
    })
    .await;
    let old_closed = seed_lead(s, me, "old qualified", cal::months_ago(t, MSK, 6) - Duration::days(2), |l| {
        l.statecode = 1;
        l.statuscode = 3;
        l.industrycode = Some(16);
        l.revenue = Some(inflow::crm::Money(500_000_00));
    })
    .await;
    // An old open lead with recent activity is not stale.
    let busy = seed_lead(s, other, "busy", t - Duration::days(60), |l| l.leadsourcecode = Some(3)).await;
    let task = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Task,
        subject: Some("call back".into()),
        regardingobjectid: Some(busy),
        regardingobjectidtype: Some(EntityKind::Lead),
        scheduledend: Some(t - Duration::days(2)),
        ..Default::default()
    }
    .stamped(me, EntityKind::Systemuser, t - Duration::days(1), None);
    s.insert(&task).await.unwrap();
    let due_today = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Phonecall,
        subject: Some("today".into()),
        scheduledend: Some(cal::day_bounds(t, MSK).1 - ms),
        ..Default::default()
    }
    .stamped(other, EntityKind::Systemuser, t, None);
    s.insert(&due_today).await.unwrap();

    // The activity was made yesterday: on PostgreSQL a roll-up has run since (a daemon's
    // first is a full one).
    s.roll_up_lead_activity(t, true).await.unwrap();
    let v = |name: &str| format!("/api/v1/leads?view={name}&limit=200");
    assert_eq!(ids(&api.get(&v("opened-this-week")).await, "leadid"), sorted(vec![this_week_first]));
    assert_eq!(ids(&api.get(&v("opened-last-week")).await, "leadid"), sorted(vec![last_week_last, last_week_first]));
    assert_eq!(
        ids(&api.get(&v("open")).await, "leadid"),
        sorted(vec![this_week_first, last_week_last, last_week_first, old_open, busy])
    );
    assert_eq!(ids(&api.get(&v("my-open")).await, "leadid"), sorted(vec![this_week_first, last_week_last, old_open]));
    assert_eq!(ids(&api.get(&v("closed")).await, "leadid"), sorted(vec![before, old_closed]));
    assert_eq!(ids(&api.get(&v("qualified")).await, "leadid"), sorted(vec![old_closed]));
    assert_eq!(ids(&api.get(&v("disqualified")).await, "leadid"), sorted(vec![before]));
    assert_eq!(ids(&api.get(&v("older-than-6-months")).await, "leadid"), sorted(vec![old_open]));
    assert_eq!(
        ids(&api.get(&format!("{}&all_states=true", v("older-than-6-months"))).await, "leadid"),
        sorted(vec![old_open, old_closed])
    );
    assert_eq!(ids(&api.get(&v("stale")).await, "leadid"), sorted(vec![old_open]));
    // Seed 001's filter: industry 16 Financial and revenue over 1 000 000.
    assert_eq!(
        ids(&api.get("/api/v1/leads?view=filter&industrycode=16&revenue_gt=1000000").await, "leadid"),
        sorted(vec![old_open])
    );
    let by_source = api.get("/api/v1/leads?view=by-source").await;
    assert!(
        by_source["groups"].as_array().unwrap().contains(&json!({"key": 3, "label": "External Referral", "count": 2})),
        "{by_source}"
    );
    let by_owner = api.get("/api/v1/leads?group_by=ownerid&view=open").await;
    assert!(
        by_owner["groups"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": me.to_string(), "label": "Анна Админова", "count": 3})),
        "{by_owner}"
    );
    let rate = api.get("/api/v1/leads?view=creation-rate&days=7").await;
    let days = rate["groups"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days.last().unwrap()["key"], json!(cal::today(t, MSK).to_string()));
    // Pagination is stable and capped.
    let p1 = api.get("/api/v1/leads?sort=createdon&limit=3&page=1").await;
    let p3 = api.get("/api/v1/leads?sort=createdon&limit=3&page=3").await;
    assert_eq!(
        (p1["total"].as_i64(), p1["items"].as_array().unwrap().len(), p3["items"].as_array().unwrap().len()),
        (Some(7), 3, 1)
    );
    assert_eq!(p1["items"][0]["leadid"], json!(old_closed.to_string()));
    // Activity views.
    let a = |name: &str| format!("/api/v1/activities?view={name}");
    assert_eq!(ids(&api.get(&a("overdue")).await, "activityid"), sorted(vec![task.activityid]));
    assert_eq!(ids(&api.get(&a("my-open")).await, "activityid"), sorted(vec![task.activityid]));
    assert_eq!(ids(&api.get(&a("due-today")).await, "activityid"), sorted(vec![due_today.activityid]));
    assert_eq!(
        ids(&api.get(&format!("{}&id={busy}", a("by-regarding"))).await, "activityid"),
        sorted(vec![task.activityid])
    );
    let by_owner = api.get(&a("overdue-by-owner")).await;
    assert_eq!(by_owner["groups"], json!([{"key": me.to_string(), "label": "Анна Админова", "count": 1}]));
    assert_eq!(api.get(&a("escalated")).await["total"], 0);
    // Users: the tree and the escalation gaps.
    let tree = api.get("/api/v1/systemusers?view=hierarchy").await;
    let root = tree["items"].as_array().unwrap().iter().find(|u| u["systemuserid"] == json!(me.to_string())).unwrap();
    assert_eq!(root["reports"].as_array().unwrap().len(), 2);
    assert_eq!(ids(&api.get("/api/v1/systemusers?view=without-manager").await, "systemuserid"), sorted(vec![me]));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_and_activity_views_sqlite() {
    lead_views("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_and_activity_views_postgres() {
    lead_views("postgres").await;
}

async fn actions(engine: &str) {
    let api = Api::start(engine).await;
    // Manual create runs the duplicate rules: 409 with candidates, unless told otherwise.
    let (st, lead) = api
        .post(
            "/api/v1/leads",
            json!({"subject": "Выставка \
        ПМЭФ", "lastname": "Петров", "firstname": "Пётр", "companyname": "ООО \
        Вектор", "emailaddress1": "petrov@vector.ru"}),
        )
        .await;
    assert_eq!(st, 201, "{lead}");
    let lead_id = lead["leadid"].as_str().unwrap().to_string();
    assert_eq!(lead["ownerid"], json!(api.admin.to_string()));
    let (st, dup) = api
        .post("/api/v1/leads", json!({"subject": "again", "lastname": "Петров", "emailaddress1": "Petrov@Vector.ru"}))
        .await;
    assert_eq!((st, dup["error"]["code"].as_str()), (409, Some("duplicate_found")), "{dup}");
    assert_eq!(dup["error"]["candidates"][0]["id"], json!(lead_id));
    let (st, _) = api
        .post(
            "/api/v1/leads?duplicates=allow",
            json!({"subject": "again", "lastname": "Петров", "emailaddress1": "Petrov@Vector.ru"}),
        )
        .await;
    assert_eq!(st, 201);
    // Qualify → account, contact, opportunity; a second qualify is a 409 (the lead is closed).
    let (st, q) = api
        .post(
            &format!("/api/v1/leads/{lead_id}/qualify"),
            json!({"create_account": true, "create_contact": true, "create_opportunity": true}),
        )
        .await;
    assert_eq!(st, 200, "{q}");
    assert_eq!(q["lead"]["statecode"], 1);
    let kinds: Vec<&str> = q["created"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 3, "{q}");
    let (st, again) = api
        .post(
            &format!("/api/v1/leads/{lead_id}/qualify"),
            json!({"create_account": false, "create_contact": false, "create_opportunity": false}),
        )
        .await;
    assert_eq!(st, 409, "{again}");
    // Disqualify needs an open lead without an opportunity; reactivate reopens it.
    let (st, e) =
        api.post(&format!("/api/v1/leads/{lead_id}/disqualify"), json!({"statuscode": 6, "reason": "дорого"})).await;
    assert_eq!(st, 409, "{e}");
    let (st, r) = api.post(&format!("/api/v1/leads/{lead_id}/reactivate"), json!({})).await;
    assert_eq!((st, r["statecode"].as_i64()), (200, Some(0)), "{r}");
    let (st, e) =
        api.post(&format!("/api/v1/leads/{lead_id}/disqualify"), json!({"statuscode": 6, "reason": "дорого"})).await;
    assert_eq!(st, 409, "an opportunity is associated: {e}");
    let (st, other) = api
        .post("/api/v1/leads", json!({"subject": "s", "lastname": "Сидоров", "emailaddress1": "sidorov@example.ru"}))
        .await;
    assert_eq!(st, 201);
    let other_id = other["leadid"].as_str().unwrap();
    let (st, d) = api
        .post(&format!("/api/v1/leads/{other_id}/disqualify"), json!({"statuscode": 5, "reason": "не дозвонились"}))
        .await;
    assert_eq!(
        (st, d["statecode"].as_i64(), d["statuscode"].as_i64(), d["qualificationcomments"].as_str()),
        (200, Some(2), Some(5), Some("не дозвонились")),
        "{d}"
    );
    let (st, e) = api.post(&format!("/api/v1/leads/{other_id}/disqualify"), json!({"statuscode": 99})).await;
    assert!(st == 409 || st == 422, "{st} {e}");
    // The marketer may read leads but not change them.
    let (st, _) =
        api.call(Role::Marketer, Method::POST, &format!("/api/v1/leads/{other_id}/reactivate"), Some(json!({}))).await;
    assert_eq!(st, 403);
    let (st, l) = api.call(Role::Marketer, Method::GET, &format!("/api/v1/leads/{other_id}"), None).await;
    assert_eq!((st, l["lastname"].as_str()), (200, Some("Сидоров")));
    // PATCH with a stale version is a conflict; with the current one it updates.
    let (st, p) = api
        .call(
            Role::Admin,
            Method::PATCH,
            &format!("/api/v1/leads/{lead_id}"),
            Some(json!({"jobtitle": "CEO", "versionnumber": 1})),
        )
        .await;
    assert_eq!(st, 409, "{p}");
    let current = api.get(&format!("/api/v1/leads/{lead_id}")).await;
    let (st, p) = api
        .call(
            Role::Admin,
            Method::PATCH,
            &format!("/api/v1/leads/{lead_id}"),
            Some(json!({"jobtitle": "CEO", "versionnumber": current["versionnumber"]})),
        )
        .await;
    assert_eq!((st, p["jobtitle"].as_str()), (200, Some("CEO")), "{p}");

    // Marketing: a campaign, a static list with members, a dynamic list copied to static.
    let (st, c) = api
        .call(
            Role::Marketer,
            Method::POST,
            "/api/v1/campaigns",
            Some(json!({"name": "Зимняя кампания", "budgetedcost": 100000, "expectedresponse": 5})),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let cid = c["campaignid"].as_str().unwrap().to_string();
    let (st, e) = api
        .call(Role::Marketer, Method::POST, &format!("/api/v1/campaigns/{cid}/status"), Some(json!({"statuscode": 2})))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("invalid_campaign_transition")),
        "Proposed cannot jump to Launched: {e}"
    );
    for to in [1, 2] {
        let (st, c) = api
            .call(
                Role::Marketer,
                Method::POST,
                &format!("/api/v1/campaigns/{cid}/status"),
                Some(json!({"statuscode": to})),
            )
            .await;
        assert_eq!((st, c["statuscode"].as_i64()), (200, Some(to)), "{c}");
    }
    let (st, sl) = api
        .call(
            Role::Marketer,
            Method::POST,
            "/api/v1/lists",
            Some(json!({"listname": "Выставка", "createdfromcode": 4})),
        )
        .await;
    assert_eq!(st, 201, "{sl}");
    let sl_id = sl["listid"].as_str().unwrap().to_string();
    let (st, e) = api
        .call(Role::Marketer, Method::PATCH, &format!("/api/v1/lists/{sl_id}"), Some(json!({"createdfromcode": 2})))
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("read_only_field")), "a list's member type is fixed: {e}");
    let (st, e) = api
        .call(Role::Marketer, Method::PATCH, &format!("/api/v1/campaigns/{cid}"), Some(json!({"totalactualcost": 1})))
        .await;
    assert_eq!(st, 400, "roll-ups are the daemon's: {e}");
    let (st, c2) = api
        .call(
            Role::Marketer,
            Method::PATCH,
            &format!("/api/v1/campaigns/{cid}"),
            Some(json!({"othercost": 2500, "description": "зимняя"})),
        )
        .await;
    assert_eq!(
        (st, c2["othercost"].as_f64(), c2["totalactualcost"].as_f64(), c2["description"].as_str()),
        (200, Some(2500.0), Some(2500.0), Some("зимняя")),
        "R-WV-6 roll-up: {c2}"
    );
    let (st, added) = api
        .call(
            Role::Marketer,
            Method::POST,
            &format!("/api/v1/lists/{sl_id}/members"),
            Some(json!({"members": [lead_id, other_id]})),
        )
        .await;
    assert_eq!((st, added["added"].as_i64()), (200, Some(2)), "{added}");
    let members = api.get(&format!("/api/v1/lists/{sl_id}/members")).await;
    assert_eq!(members["total"], 2);
    let (st, removed) =
        api.post(&format!("/api/v1/lists/{sl_id}/members/remove"), json!({"members": [other_id]})).await;
    assert_eq!((st, removed["removed"].as_i64()), (200, Some(1)));
    let (st, dl) = api
        .post(
            "/api/v1/lists",
            json!({"listname": "Петровы", "createdfromcode": 4, "isdynamic": true,
        "query": {"field": "lastname", "op": "eq", "value": "Петров"}}),
        )
        .await;
    assert_eq!(st, 201, "{dl}");
    let dl_id = dl["listid"].as_str().unwrap().to_string();
    let (st, e) = api.post(&format!("/api/v1/lists/{dl_id}/members"), json!({"members": [lead_id]})).await;
    assert!(st == 409 || st == 422, "members of a dynamic list are its query's: {st} {e}");
    let (st, copy) = api.post(&format!("/api/v1/lists/{dl_id}/copy-to-static"), json!({})).await;
    assert_eq!((st, copy["isdynamic"].as_bool()), (201, Some(false)), "{copy}");
    assert_eq!(api.get(&format!("/api/v1/lists/{}/members", copy["listid"].as_str().unwrap())).await["total"], 2);
    // A wave: schedule far ahead, read its status, cancel it; cancelling twice is refused.
    let (st, w) = api
        .post(
            "/api/v1/campaignactivities",
            json!({"regardingobjectid": cid, "subject": "Волна 1", "channeltypecode": 7}),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    let wid = w["activityid"].as_str().unwrap().to_string();
    api.app.store.add_campaign_lists(cid.parse().unwrap(), &[sl_id.parse().unwrap()]).await.unwrap();
    api.app.store.set_wave_lists(wid.parse().unwrap(), &[sl_id.parse().unwrap()]).await.unwrap();
    let (st, e) = api
        .post(
            &format!("/api/v1/campaignactivities/{wid}/schedule"),
            json!({"subject": "s", "text": "x", "from": "news@example.com", "rate_per_minute": 0}),
        )
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("invalid_wave")), "a rate of 0 would never send: {e}");
    let (st, e) = api
        .post(
            &format!("/api/v1/campaignactivities/{wid}/schedule"),
            json!({"start": "2031-03-02 \
        10:00", "timezone": "Europe/Moscow", "subject": "{{ first_name | nope \
        }}", "text": "x", "from": "news@example.com"}),
        )
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("invalid_wave")), "{e}");
    let (st, sch) = api
        .call(
            Role::Marketer,
            Method::POST,
            &format!("/api/v1/campaignactivities/{wid}/schedule"),
            Some(json!({"start": "2031-03-02 10:00", "timezone": "Europe/Moscow",
                "subject": "Привет, {{ first_name | default(\"коллега\") }}", "text": "Текст",
                    "from": "news@example.com"})),
        )
        .await;
    assert_eq!(st, 200, "{sch}");
    assert_eq!(sch["schedule"]["start_at"], json!("2031-03-02T07:00:00Z"));
    let status = api.get(&format!("/api/v1/campaignactivities/{wid}/status")).await;
    assert_eq!(status["wave"]["state"], "scheduled");
    let (st, c1) = api
        .call(Role::Marketer, Method::POST, &format!("/api/v1/campaignactivities/{wid}/cancel"), Some(json!({})))
        .await;
    assert_eq!((st, c1["state"].as_str()), (200, Some("canceled")), "{c1}");
    let (st, e) = api.post(&format!("/api/v1/campaignactivities/{wid}/resume"), json!({})).await;
    assert!(st == 409 || st == 422, "{st} {e}");
    let (st, e) =
        api.post(&format!("/api/v1/campaignactivities/{wid}/test-send"), json!({"to": "me@example.com"})).await;
    assert_eq!((st, e["error"]["code"].as_str()), (409, Some("no_relay")), "no [smtp] in this app: {e}");
    // A response, converted to a new lead (option a).
    let resp = inflow::crm::entities::CampaignResponse {
        activityid: Uuid::new_v4(),
        subject: "Интересно".into(),
        regardingobjectid: cid.parse().unwrap(),
        regardingobjectidtype: EntityKind::Campaign,
        firstname: Some("Ольга".into()),
        lastname: Some("Новикова".into()),
        emailaddress: Some("olga@novik.ru".into()),
        responsecode: 1,
        ..Default::default()
    }
    .stamped(api.marketer, EntityKind::Systemuser, now(), None);
    api.app.store.insert(&resp).await.unwrap();
    let open = api.get("/api/v1/campaignresponses?view=interested-unconverted").await;
    assert_eq!(open["total"], 1);
    let (st, e) = api
        .call(
            Role::Marketer,
            Method::POST,
            &format!("/api/v1/campaignresponses/{}/convert", resp.activityid),
            Some(json!({"option": "existing_lead", "lead_id": lead_id, "reactivate": true})),
        )
        .await;
    assert_eq!(st, 403, "linking to a lead writes the lead: {e}");
    let (st, e) = api
        .call(
            Role::Marketer,
            Method::POST,
            &format!("/api/v1/campaignresponses/{}/convert", resp.activityid),
            Some(json!({"option": "new_customer", "create_account": false, "create_contact": true})),
        )
        .await;
    assert_eq!(st, 403, "a new customer writes sales records: {e}");
    let (st, conv) = api
        .call(
            Role::Marketer,
            Method::POST,
            &format!("/api/v1/campaignresponses/{}/convert", resp.activityid),
            Some(json!({"option": "new_lead"})),
        )
        .await;
    assert_eq!(st, 200, "{conv}");
    assert_eq!(conv["response"]["statecode"], 1);
    let (st, e) =
        api.post(&format!("/api/v1/campaignresponses/{}/convert", resp.activityid), json!({"option": "close"})).await;
    assert_eq!(st, 409, "a closed response cannot be converted again: {e}");
    assert_eq!(api.get("/api/v1/campaignresponses?view=interested-unconverted").await["total"], 0);
    let perf = api.get("/api/v1/campaigns?view=performance").await;
    assert_eq!(perf["items"][0]["responses"], 1);
    assert_eq!(perf["items"][0]["leads"], 1, "{perf}");
    let bva = api.get("/api/v1/campaigns?view=budget-vs-actual").await;
    assert_eq!(bva["items"][0]["budgetedcost"], json!(100000.0));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_sqlite() {
    actions("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_postgres() {
    actions("postgres").await;
}

async fn lead_count(s: &Store) -> i64 {
    s.db.clone().fetch_one("SELECT COUNT(*) AS n FROM lead", vec![]).await.unwrap().get("n").unwrap()
}

use inflow::store::Exec as _;

async fn bad_input(engine: &str) {
    let api = Api::start(engine).await;
    let before = lead_count(&api.app.store).await;
    let cases: Vec<(Method, &str, Option<J>, u16, &str)> = vec![
        (
            Method::POST,
            "/api/v1/leads",
            Some(json!({"subject": "s", "lastname": "x", "password": "x"})),
            400,
            "unknown_field",
        ),
        (
            Method::POST,
            "/api/v1/leads",
            Some(json!({"subject": "s", "lastname": "x", "leadid": Uuid::new_v4()})),
            400,
            "read_only_field",
        ),
        (
            Method::POST,
            "/api/v1/leads",
            Some(json!({"subject": "s", "lastname": "x", "numberofemployees": "many"})),
            400,
            "invalid_body",
        ),
        (Method::POST, "/api/v1/leads", Some(json!(["not", "an", "object"])), 400, "invalid_body"),
        (Method::POST, "/api/v1/leads", Some(json!({"subject": "s"})), 422, "missing_field"),
        (
            Method::POST,
            "/api/v1/leads",
            Some(json!({"subject": "s", "lastname": "x", "leadsourcecode": 77})),
            422,
            "invalid_source",
        ),
        (
            Method::POST,
            "/api/v1/leads",
            Some(json!({"subject": "s", "lastname": "x", "ownerid": Uuid::new_v4()})),
            422,
            "unknown_owner",
        ),
        (Method::GET, "/api/v1/leads?page=0", None, 400, "bad_pagination"),
        (Method::GET, "/api/v1/leads?limit=100000", None, 400, "bad_pagination"),
        (Method::GET, "/api/v1/leads?limit=abc", None, 400, "bad_pagination"),
        (Method::GET, "/api/v1/leads?password=x", None, 400, "unknown_filter"),
        (Method::GET, "/api/v1/leads?statecode=0%20OR%201%3D1", None, 400, "bad_filter"),
        (Method::GET, "/api/v1/leads?sort=createdon%3B%20DROP%20TABLE%20lead", None, 400, "bad_sort"),
        (Method::GET, "/api/v1/leads?view=everything", None, 400, "unknown_view"),
        (Method::GET, "/api/v1/leads?group_by=1%3D1", None, 400, "bad_group_by"),
        (Method::GET, "/api/v1/leads/not-a-uuid", None, 400, "bad_id"),
        (Method::GET, "/api/v1/activities?view=by-regarding", None, 400, "missing_parameter"),
        (Method::GET, "/api/v1/ops/suppression?password=x", None, 400, "unknown_filter"),
        (Method::GET, "/api/v1/ops/pbx-calls?is_final=true", None, 400, "unknown_filter"),
        (Method::GET, "/api/v1/leads?view=creation-rate&group_by=ownerid", None, 400, "bad_group_by"),
        (
            Method::POST,
            "/api/v1/lists",
            Some(json!({"listname": "x", "createdfromcode": 2, "membercount": 5})),
            400,
            "read_only_field",
        ),
        (
            Method::POST,
            "/api/v1/leads/00000000-0000-0000-0000-000000000000/reactivate",
            Some(json!({"force": true})),
            400,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/leads/00000000-0000-0000-0000-000000000000/reactivate",
            Some(json!({})),
            404,
            "not_found",
        ),
    ];
    for (m, path, body, want, code) in cases {
        let (st, b) = api.call(Role::Admin, m.clone(), path, body).await;
        assert_eq!((st, b["error"]["code"].as_str()), (want, Some(code)), "{m} {path}: {b}");
    }
    // SQL in a filter value is data: no match, the table intact.
    let page = api
        .get("/api/v1/leads?lastname=x'%3B%20DROP%20TABLE%20lead%3B%20--&companyname=%27%20OR%20%271%27%3D%271")
        .await;
    assert_eq!(page["total"], 0);
    // A body over http.body_limit_bytes is a 413 with the JSON error body.
    let big = json!({"subject": "s", "lastname": "x", "description": "я".repeat(1024 * 1024)});
    let (st, b) = api.call(Role::Admin, Method::POST, "/api/v1/leads", Some(big.clone())).await;
    assert_eq!((st, b["error"]["code"].as_str()), (413, Some("body_too_large")), "{b}");
    // The unread rest of the body makes the connection unusable: the client is told to close
    // it (else its next request on that connection fails).
    let resp = api
        .app
        .http
        .post(api.app.url("/api/v1/leads"))
        .bearer_auth(api.token(Role::Admin))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.headers().get("connection").and_then(|v| v.to_str().ok())),
        (413, Some("close"))
    );
    // Broken JSON.
    let resp = api
        .app
        .http
        .post(api.app.url("/api/v1/leads"))
        .bearer_auth(api.token(Role::Admin))
        .header("content-type", "application/json")
        .body("{\"subject\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(lead_count(&api.app.store).await, before, "nothing written");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_sqlite() {
    bad_input("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_postgres() {
    bad_input("postgres").await;
}

async fn cli(args: &[&str], cfg: &std::path::Path) -> (Option<i32>, String, String) {
    crate::helpers::run_inflow(cfg, args).await
}

/// Seed 001: "load the exhibition list and turn it into leads" — a Windows-1251 file with
/// semicolons, a duplicate of an existing contact, a duplicate inside the file and bad rows.
async fn csv_import(engine: &str) {
    let api = Api::start(engine).await;
    let s = &api.app.store;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", api.app.db_url())).unwrap();
    let contact = inflow::crm::entities::Contact {
        contactid: Uuid::new_v4(),
        lastname: "Козлов".into(),
        emailaddress1: Some("kozlov@zavod.ru".into()),
        ..Default::default()
    }
    .stamped(api.admin, EntityKind::Systemuser, now(), None);
    s.insert(&contact).await.unwrap();
    let text = "Фамилия;Имя;Компания;E-mail;Телефон;Выручка;Стенд\n\
        Иванов;Иван;ООО Ромашка;ivanov@romashka.ru;+7 495 123-45-67;1 500 000;A1\n\
        Козлов;Кирилл;АО Завод;Kozlov@Zavod.ru;;;A2\n\
        Смирнова;Анна;ИП Смирнова;не-адрес;;;A3\n\
        Иванов;Иван;ООО Ромашка;ivanov@romashka.ru;;;A4\n\
        Орлова;Ольга;ООО Орёл;orlova@orel.ru;;много;A5\n\
        Белов;Борис;ЗАО Бел;belov@bel.ru;;;A6\n";
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(text);
    assert!(!unmappable);
    let file = dir.path().join("vystavka.csv");
    std::fs::write(&file, &bytes).unwrap();
    let before = lead_count(s).await;
    let f = file.to_str().unwrap();
    // All or nothing: two bad rows (lines 4 and 6) stop the import.
    let (code, out, err) =
        cli(&["import", "leads", f, "--owner", "admin@crm.example.com", "--source", "3"], &cfg).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("line 4: error: emailaddress1") && out.contains("line 6: error: revenue"), "{out}");
    assert!(out.contains("nothing imported"), "{out}");
    assert_eq!(lead_count(s).await, before);
    // --skip-bad-rows: the good rows go in; the contact's duplicate is linked, the in-file duplicate skipped.
    let (code, out, err) = cli(
        &[
            "import",
            "leads",
            f,
            "--owner",
            "admin@crm.example.com",
            "--source",
            "3",
            "--duplicates",
            "link",
            "--skip-bad-rows",
        ],
        &cfg,
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("windows-1251") && out.contains("columns not imported: Стенд"), "{out}");
    assert!(
        out.contains(&"line 3: lead".to_string())
            && out.contains(&format!("linked to existing contact {}", contact.contactid)),
        "{out}"
    );
    assert!(out.contains("line 5: duplicate of lead"), "{out}");
    assert!(
        out.contains("imported 3 leads (1 linked to existing contacts), 1 duplicates skipped, 2 bad rows skipped"),
        "{out}"
    );
    assert_eq!(lead_count(s).await, before + 3);
    let page =
        api.get("/api/v1/leads?companyname=%D0%9E%D0%9E%D0%9E%20%D0%A0%D0%BE%D0%BC%D0%B0%D1%88%D0%BA%D0%B0").await;
    assert_eq!(page["total"], 1, "{page}");
    let l = &page["items"][0];
    assert_eq!(
        (l["firstname"].as_str(), l["leadsourcecode"].as_i64(), l["revenue"].as_f64(), l["ownerid"].as_str()),
        (Some("Иван"), Some(3), Some(1_500_000.0), Some(api.admin.to_string().as_str()))
    );
    // Lead actions from the CLI: disqualify one imported lead, then reactivate it.
    let imported = page["items"][0]["leadid"].as_str().unwrap().to_string();
    let (code, out, err) =
        cli(&["lead", "disqualify", &imported, "--status", "6", "--reason", "уже купили"], &cfg).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let l: Lead = s.load(imported.parse().unwrap()).await.unwrap();
    assert_eq!((l.statecode, l.statuscode, l.qualificationcomments.as_deref()), (2, 6, Some("уже купили")));
    let (code, _, err) = cli(&["lead", "disqualify", &imported], &cfg).await;
    assert_eq!(code, Some(1), "a closed lead cannot be disqualified again: {err}");
    let (code, _, err) = cli(&["lead", "reactivate", &imported], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s.load::<Lead>(imported.parse().unwrap()).await.unwrap().statecode, 0);
    // Tokens from the CLI: printed once, only the hash stored, usable at once.
    let (code, token, err) =
        cli(&["token", "create", "--user", "viewer@crm.example.com", "--role", "viewer", "--name", "report"], &cfg)
            .await;
    assert_eq!(code, Some(0), "{err}");
    let token = token.trim().to_string();
    let stored: i64 =
        s.db.clone()
            .fetch_one("SELECT COUNT(*) AS n FROM api_token WHERE token_sha256 = $1", vec![token_hash(&token).into()])
            .await
            .unwrap()
            .get("n")
            .unwrap();
    let clear: i64 =
        s.db.clone()
            .fetch_one("SELECT COUNT(*) AS n FROM api_token WHERE token_sha256 = $1", vec![token.clone().into()])
            .await
            .unwrap()
            .get("n")
            .unwrap();
    assert_eq!((stored, clear), (1, 0));
    let resp = api.app.http.get(api.app.url("/api/v1/leads?view=all")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = api
        .app
        .http
        .post(api.app.url("/api/v1/campaigns"))
        .bearer_auth(&token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Users and managers from the CLI; a manager loop is refused.
    let (code, id, err) =
        cli(&["user", "add", "--first", "Григорий", "--last", "Главный", "--email", "boss@crm.example.com"], &cfg)
            .await;
    assert_eq!(code, Some(0), "{err}");
    let boss: Uuid = id.trim().parse().unwrap();
    let (code, _, err) = cli(&["user", "set-manager", "admin@crm.example.com", "boss@crm.example.com"], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s.load::<inflow::crm::entities::SystemUser>(api.admin).await.unwrap().parentsystemuserid, Some(boss));
    let (code, _, err) = cli(&["user", "set-manager", "boss@crm.example.com", "boss@crm.example.com"], &cfg).await;
    assert_eq!(code, Some(1), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_and_cli_sqlite() {
    csv_import("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_and_cli_postgres() {
    csv_import("postgres").await;
}

/// Tokens listed in the config by their SHA-256 work like stored ones; the clear token
/// appears nowhere in the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_tokens_authenticate_by_hash() {
    let user = Uuid::new_v4();
    let token = "cfg-token-Zq8r";
    let extra = format!(
        "[[api.tokens]]\nname = \"reporting\"\nsha256 = \"{}\"\nuser = \"{user}\"\nrole = \"viewer\"\n",
        token_hash(token)
    );
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &extra).await;
    let unknown = app.http.get(app.url("/api/v1/campaigns")).bearer_auth(token).send().await.unwrap();
    assert_eq!(unknown.status(), 401, "the token's user does not exist yet");
    let mut u = inflow::crm::entities::SystemUser {
        systemuserid: user,
        lastname: "Reporting".into(),
        createdon: now(),
        modifiedon: now(),
        versionnumber: 1,
        ..Default::default()
    };
    app.store.insert(&u).await.unwrap();
    let get = app.http.get(app.url("/api/v1/campaigns?view=active")).bearer_auth(token).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let post = app
        .http
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    let wrong = app.http.get(app.url("/api/v1/campaigns")).bearer_auth(token_hash(token)).send().await.unwrap();
    assert_eq!(wrong.status(), 401, "the hash itself is not a token");
    u.isdisabled = true;
    app.store.update(&u).await.unwrap();
    let disabled = app.http.get(app.url("/api/v1/campaigns")).bearer_auth(token).send().await.unwrap();
    assert_eq!(disabled.status(), 401, "a disabled user's tokens stop working");
    app.stop().await;
}

async fn other_views(engine: &str) {
    use inflow::crm::Money;
    use inflow::crm::entities::{Campaign, CampaignActivity, CampaignResponse, Opportunity};
    let api = Api::start(engine).await;
    let s = &api.app.store;
    let me = api.admin;
    let t = now();
    // Opportunities: two open (one closing this month), one won, one lost.
    let (month_first, next_month) = cal::month_dates(t, MSK);
    let opp = |name: &str, state: i32, value: i64, p: Option<i32>, close: Option<chrono::NaiveDate>| {
        let mut o = Opportunity {
            opportunityid: Uuid::new_v4(),
            name: name.into(),
            estimatedvalue: Some(Money(value * 100)),
            closeprobability: p,
            estimatedclosedate: close,
            opportunityratingcode: 2,
            ..Default::default()
        }
        .stamped(me, EntityKind::Systemuser, t, None);
        o.statecode = state;
        o.statuscode = match state {
            0 => 1,
            1 => 3,
            _ => 4,
        };
        o
    };
    let open_now = opp("closing now", 0, 1000, Some(50), Some(month_first));
    let open_later = opp("later", 0, 3000, Some(10), Some(next_month));
    let won = opp("won", 1, 500, None, None);
    let lost = opp("lost", 2, 700, None, None);
    for o in [&open_now, &open_later, &won, &lost] {
        s.insert(o).await.unwrap();
    }
    let pipe = api.get("/api/v1/opportunities?view=open-pipeline").await;
    assert_eq!(pipe["total"], 2);
    assert_eq!(
        pipe["totals"],
        json!({"open": 2, "estimatedvalue": 4000.0, "weighted": 800.0}),
        "Σ and Σ × probability"
    );
    assert_eq!(
        ids(&api.get("/api/v1/opportunities?view=closing-this-month").await, "opportunityid"),
        sorted(vec![open_now.opportunityid])
    );
    assert_eq!(ids(&api.get("/api/v1/opportunities?view=won").await, "opportunityid"), sorted(vec![won.opportunityid]));
    assert_eq!(
        ids(&api.get("/api/v1/opportunities?view=lost").await, "opportunityid"),
        sorted(vec![lost.opportunityid])
    );
    // Campaigns, waves and responses.
    let mut c1 = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Активная".into(),
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(me, EntityKind::Systemuser, t, None);
    c1.statuscode = 2;
    let c2 = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Предложена".into(),
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(me, EntityKind::Systemuser, t, None);
    s.insert(&c1).await.unwrap();
    s.insert(&c2).await.unwrap();
    assert_eq!(ids(&api.get("/api/v1/campaigns?view=active").await, "campaignid"), sorted(vec![c1.campaignid]));
    let yesterday = cal::today(t, MSK) - chrono::Days::new(1);
    let ca = |subject: &str, end: Option<chrono::NaiveDate>| {
        CampaignActivity {
            activityid: Uuid::new_v4(),
            regardingobjectid: c1.campaignid,
            subject: subject.into(),
            channeltypecode: Some(7),
            scheduledend: end,
            ..Default::default()
        }
        .stamped(me, EntityKind::Systemuser, t, None)
    };
    let late = ca("late", Some(yesterday));
    let due_today = ca("today", Some(cal::today(t, MSK)));
    for a in [&late, &due_today] {
        s.create_campaign_activity(a).await.unwrap();
    }
    assert_eq!(
        ids(&api.get("/api/v1/campaignactivities?view=overdue").await, "activityid"),
        sorted(vec![late.activityid]),
        "DateOnly: overdue once its day has ended in Moscow"
    );
    assert_eq!(
        ids(
            &api.get(&format!("/api/v1/campaignactivities?view=by-campaign&campaign={}", c1.campaignid)).await,
            "activityid"
        ),
        sorted(vec![late.activityid, due_today.activityid])
    );
    let resp = |code: i32, state: i32, wave: Uuid| {
        let mut r = CampaignResponse {
            activityid: Uuid::new_v4(),
            subject: "r".into(),
            regardingobjectid: c1.campaignid,
            regardingobjectidtype: EntityKind::Campaign,
            campaignactivityid: Some(wave),
            responsecode: code,
            ..Default::default()
        }
        .stamped(me, EntityKind::Systemuser, t, None);
        r.statecode = state;
        r.statuscode = if state == 0 { 1 } else { 2 };
        r
    };
    let r1 = resp(1, 0, late.activityid);
    let r2 = resp(3, 1, late.activityid);
    let r3 = resp(1, 1, due_today.activityid);
    for r in [&r1, &r2, &r3] {
        s.insert(r).await.unwrap();
    }
    assert_eq!(ids(&api.get("/api/v1/campaignresponses?view=open").await, "activityid"), sorted(vec![r1.activityid]));
    assert_eq!(
        ids(&api.get("/api/v1/campaignresponses?view=unsubscribes").await, "activityid"),
        sorted(vec![r2.activityid])
    );
    assert_eq!(
        ids(&api.get("/api/v1/campaignresponses?view=interested-unconverted").await, "activityid"),
        sorted(vec![r1.activityid])
    );
    assert_eq!(
        api.get("/api/v1/campaignresponses?view=by-wave").await["groups"][0],
        json!({"key": late.activityid.to_string(), "label": "late", "count": 2})
    );
    assert_eq!(
        api.get("/api/v1/campaignresponses?view=by-responsecode").await["groups"],
        json!([{"key": 1, "label": "Interested", "count": 2}, {"key": 3, "label": "Do Not Send Marketing \
            Materials", "count": 1}])
    );
    assert_eq!(
        api.get("/api/v1/campaignresponses?view=by-campaign").await["groups"],
        json!([{"key": c1.campaignid.to_string(), "label": "Активная", "count": 3}])
    );
    // Escalated: overdue and notified at level ≥ 1 for its current due date.
    let due = t - chrono::Duration::days(2);
    let task = |subject: &str| {
        Activity {
            activityid: Uuid::new_v4(),
            activitytypecode: EntityKind::Task,
            subject: Some(subject.into()),
            scheduledend: Some(due),
            ..Default::default()
        }
        .stamped(me, EntityKind::Systemuser, t, None)
    };
    let (escalated, notified0) = (task("escalated"), task("owner told only"));
    for a in [&escalated, &notified0] {
        s.insert(a).await.unwrap();
    }
    for (a, level) in [(&escalated, 1), (&notified0, 0)] {
        let claim = inflow::store::NotificationClaim {
            activityid: a.activityid,
            activitytype: EntityKind::Task,
            level,
            scheduledend: due,
            ownerid: me,
            recipient: "boss@crm.example.com".into(),
            recipient_userid: None,
            digest_id: None,
            item: None,
            created_at: t,
        };
        assert!(s.claim_notification(&claim).await.unwrap());
    }
    assert_eq!(
        ids(&api.get("/api/v1/activities?view=escalated").await, "activityid"),
        sorted(vec![escalated.activityid])
    );
    // Ops lists: a suppression, filterable by column.
    s.suppress(&inflow::store::Suppression {
        address: "gone@client.example".into(),
        kind: "email".into(),
        reason: "bounce".into(),
        source: "test".into(),
        detail: None,
        created_on: t,
    })
    .await
    .unwrap();
    let sup = api.get("/api/v1/ops/suppression?reason=bounce").await;
    assert_eq!((sup["total"].as_i64(), sup["items"][0]["address"].as_str()), (Some(1), Some("gone@client.example")));
    assert_eq!(api.get("/api/v1/ops/suppression?reason=complaint").await["total"], 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunity_campaign_response_and_ops_views_sqlite() {
    other_views("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunity_campaign_response_and_ops_views_postgres() {
    other_views("postgres").await;
}

/// Issue 22 §6: a token may expire (then it is a 401 like any bad token, counted per route),
/// its last use is recorded, and `inflow token rotate` replaces it in one step — the old one
/// stops at once, the new one works, with the same term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_record_their_last_use_and_rotate() {
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), "").await;
    let admin = add_user(&app.store, "Анна", "Админова", "admin@crm.example.com", None, None).await;
    let t0 = now();
    let live = app
        .store
        .add_api_token_expiring("ci", &token_hash("live-token"), admin, "admin", Some(t0 + Duration::days(30)), t0)
        .await
        .unwrap();
    app.store
        .add_api_token_expiring("old", &token_hash("old-token"), admin, "admin", Some(t0 - Duration::minutes(1)), t0)
        .await
        .unwrap();
    let get = |tok: &'static str| {
        let req = app.http.get(app.url("/api/v1/leads")).bearer_auth(tok);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let failures_before =
        crate::helpers::metric(&app, "inflow_http_auth_failures_total", &[("route", "/api/v1/leads")]).await;
    assert_eq!(get("live-token").await, 200);
    assert_eq!(get("old-token").await, 401, "an expired token is refused");
    let failures = crate::helpers::metric(&app, "inflow_http_auth_failures_total", &[("route", "/api/v1/leads")]).await;
    assert!(failures > failures_before, "the refusal is counted for its route");
    let listed = app.store.api_tokens().await.unwrap();
    let used = listed.iter().find(|t| t.id == live.id).unwrap();
    assert!(used.last_used_on.is_some_and(|u| u >= t0), "{used:?}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", app.db_url())).unwrap();
    let (code, out, err) = crate::helpers::run_inflow(&cfg, &["token", "list"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l.contains("\told\t") && l.contains("expired")), "{out}");
    let (code, out, err) = crate::helpers::run_inflow(&cfg, &["token", "rotate", &live.id.to_string()]).await;
    assert_eq!(code, Some(0), "{err}");
    let fresh = out.trim().to_string();
    assert_eq!(get("live-token").await, 401, "the rotated token stops at once");
    let status = app.http.get(app.url("/api/v1/leads")).bearer_auth(&fresh).send().await.unwrap().status();
    assert_eq!(status, 200, "its replacement works");
    let replacement = app.store.api_tokens().await.unwrap().into_iter().find(|t| t.name == "ci").unwrap();
    let term = replacement.expires_on.unwrap() - replacement.created_on;
    assert_eq!(term, Duration::days(30), "the same term from the rotation");
    let (code, _, err) = crate::helpers::run_inflow(&cfg, &["token", "rotate", &live.id.to_string()]).await;
    assert_ne!(code, Some(0));
    assert!(err.contains("no live token"), "{err}");
    app.stop().await;
}

/// Issue 22 §6: every write that takes effect through the API or the command line is kept with
/// who made it (user, role, token or login), when, and what (method, route, path); a refused
/// write and a read are not; only admins read the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_api_are_audited_for_admins() {
    let api = Api::start("sqlite").await;
    let (status, lead) = api
        .call(Role::Admin, Method::POST, "/api/v1/leads", Some(json!({"subject": "Аудит", "lastname": "Петров"})))
        .await;
    assert_eq!(status, 201, "{lead}");
    let id = lead["leadid"].as_str().unwrap().to_string();
    let (status, _) = api
        .call(Role::Admin, Method::PATCH, &format!("/api/v1/leads/{id}"), Some(json!({"companyname": "ООО Ромашка"})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.call(Role::Admin, Method::POST, "/api/v1/leads", Some(json!({"subject": "no name"}))).await;
    assert_eq!(status, 422, "a refused write");
    let (status, _) = api.call(Role::Viewer, Method::GET, "/api/v1/ops/audit", None).await;
    assert_eq!(status, 403, "viewers do not read the audit");
    let (status, _) = api.call(Role::Marketer, Method::GET, "/api/v1/ops/audit", None).await;
    assert_eq!(status, 403);
    let (status, page) = api.call(Role::Admin, Method::GET, "/api/v1/ops/audit", None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let lines: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|i| (i["method"].as_str().unwrap(), i["route"].as_str().unwrap(), i["path"].as_str().unwrap()))
        .collect();
    let patched = format!("/api/v1/leads/{id}");
    assert_eq!(
        lines,
        [("PATCH", "/api/v1/leads/{id}", patched.as_str()), ("POST", "/api/v1/leads", "/api/v1/leads")],
        "newest first; the refused write and the reads are not there"
    );
    assert_eq!(items[0]["systemuserid"], json!(api.admin.to_string()));
    assert_eq!((items[0]["role"].as_str(), items[0]["token_name"].as_str()), (Some("admin"), Some("admin")));
    assert_eq!(items[1]["status"], json!(201));
    assert!(items[0]["at"].as_str().unwrap().starts_with("20"), "an instant: {}", items[0]["at"]);
    let (_, mine) = api.call(Role::Admin, Method::GET, "/api/v1/ops/audit?method=POST", None).await;
    assert_eq!(mine["total"], json!(1), "filtered by method");

    // The command line writes to the same database: its writes are in the same audit, with
    // the operator's login; its reads and its refused writes are not.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n", api.app.db_url())).unwrap();
    let (code, _, err) = cli(&["user", "add", "--last", "Сидоров", "--email", "sidorov@example.com"], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&["user", "list"], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = cli(&["user", "add", "--last", "Нет", "--email", "not-an-address"], &cfg).await;
    assert_ne!(code, Some(0));
    let (_, page) = api.call(Role::Admin, Method::GET, "/api/v1/ops/audit?method=CLI", None).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one write from the command line: {page}");
    assert_eq!(items[0]["route"], json!("user add"));
    assert_eq!(items[0]["role"], json!("operator"));
    assert!(items[0]["path"].as_str().unwrap().contains("user add --last Сидоров"), "{}", items[0]);
    assert!(items[0]["token_name"].as_str().unwrap().starts_with("cli:"), "{}", items[0]);
    api.app.stop().await;
}
