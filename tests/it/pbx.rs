//! PBX webhooks through real HTTP against the app on port 0: per provider an answered call,
//! a missed call, an outbound call, a duplicate delivery, bad signatures, oversized and
//! malformed bodies; Mango events out of order; the CRM effects (R-PBX-2..5).
//! Bodies come from `fixtures/pbx/<provider>/` (see each SOURCES.md); signatures are
//! computed here, independently of the adapters.

use base64::Engine as _;
use chrono::Duration;
use hmac::{KeyInit, Mac};
use inflow::crm::entities::*;
use inflow::crm::status::{CallStatus, EventStatus};
use inflow::crm::{EntityKind, Money};
use inflow::store::RecordExt;
use sha2::Digest;
use uuid::Uuid;

use crate::helpers::{TestApp, add_user, now, poll_until};

const ZADARMA_SECRET: &str = "zd-secret-7f3a";
const NOVOFON_SECRET: &str = "novofon-secret-2b1c";
const MANGO_KEY: &str = "vpbx-key-1234";
const MANGO_SALT: &str = "mango-salt-5678";
const VOICEMAIL_TWIML: &str =
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Leave a message after the tone.</Say><Record/></Response>"#;
const TWILIO_TOKEN: &str = "twilio-token-abcd";
const GENERIC_TOKEN: &str = "generic-bearer-token";
const GENERIC_HMAC: &str = "generic-hmac-key";
/// The secret of Placetel's published test vector, so its example body verifies as is.
const PLACETEL_SECRET: &str = "12345";
const CTI_TOKEN: &str = "cti-token-0f9e8d";
const SIPUNI_TOKEN: &str = "sipuni-token-1a2b3c";
const ITOOLABS_TOKEN: &str = "megapbx-crm-token-42";
const UIS_TOKEN: &str = "uis-token-77aa";
const THREECX_TOKEN: &str = "3cx-token-5e6f";
const YEASTAR_TOKEN: &str = "yeastar-token-9c8d";

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{}/fixtures/pbx/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// Ids the seeded data uses.
struct Seed {
    head: Uuid,
    ext101: Uuid,
    ext102: Uuid,
    marketing: Uuid,
    known_contact: Uuid,
    wave: Uuid,
    campaign: Uuid,
}

/// Starts the app with every provider enabled and seeds users, a known contact and a
/// campaign wave behind the tracking number 8 800 555-35-35.
async fn start(engine: &str) -> (TestApp, Seed) {
    let dir = tempfile::tempdir().unwrap();
    for (f, v) in [
        ("zd", ZADARMA_SECRET),
        ("novofon", NOVOFON_SECRET),
        ("salt", MANGO_SALT),
        ("tw", TWILIO_TOKEN),
        ("gt", GENERIC_TOKEN),
        ("gh", GENERIC_HMAC),
        ("voicemail.xml", VOICEMAIL_TWIML),
        ("placetel", PLACETEL_SECRET),
        ("cti", CTI_TOKEN),
        ("sipuni", SIPUNI_TOKEN),
        ("itoolabs", ITOOLABS_TOKEN),
        ("uis", UIS_TOKEN),
        ("3cx", THREECX_TOKEN),
        ("yeastar", YEASTAR_TOKEN),
    ] {
        std::fs::write(dir.path().join(f), v).unwrap();
    }
    let wave = Uuid::new_v4();
    let manifest = env!("CARGO_MANIFEST_DIR");
    let extra = format!(
        r#"[org]
timezone = "Europe/Moscow"
default_phone_region = "RU"

[pbx]
callback_sla_secs = 7200
min_answered_seconds = 10
final_event_timeout_secs = 3600
sweep_interval_secs = 3600
body_limit_bytes = 4096

[[pbx.lines]]
did = "+7 (495) 123-45-67"
owner = "head@acme.ru"
create_leads = true
lead_subject = "Call to the main line"

[[pbx.lines]]
did = "8 800 555-35-35"
owner = "marketing@acme.ru"
campaignactivity_id = "{wave}"
create_leads = true
# Providers without talk times (sipgate, CTI) time an answer by arrival: any answer counts.
min_answered_seconds = 0
lead_subject = "Autumn campaign call"

[pbx.zadarma]
secret_file = "{{dir}}/zd"
timezone = "Europe/Moscow"
# The fixtures carry fixed dates; the replay window is unit-tested in zadarma.rs.
max_event_age_secs = 0

[pbx.novofon]
secret_file = "{{dir}}/novofon"
max_event_age_secs = 0

[pbx.extensions.sipgate]
w7 = "petrova@acme.ru"

[pbx.mango]
api_key = "{MANGO_KEY}"
api_salt_file = "{{dir}}/salt"

[pbx.twilio]
auth_token_file = "{{dir}}/tw"
public_base_url = "https://crm.acme.ru"
# Behind a proxy that maps its own path to /pbx/twilio/recording.
recording_url = "https://calls.acme.ru/hooks/twilio-recording"
dial_action_twiml_file = "{{dir}}/voicemail.xml"

[pbx.generic]
token_file = "{{dir}}/gt"
hmac_secret_file = "{{dir}}/gh"

[pbx.placetel]
secret_file = "{{dir}}/placetel"

[pbx.sipgate]
public_url = "https://crm.acme.ru/pbx/sipgate"
# The pushes are signed with a test key here; sipgate's own key is unit-tested.
public_key_file = "{manifest}/fixtures/pbx/sipgate/test-signing-key.pub.pem"

[pbx.cti]
token_file = "{{dir}}/cti"

[pbx.sipuni]
token_file = "{{dir}}/sipuni"

[pbx.itoolabs]
crm_token_file = "{{dir}}/itoolabs"

[pbx.uis]
token_file = "{{dir}}/uis"

[pbx.3cx]
token_file = "{{dir}}/3cx"

[pbx.yeastar]
token_file = "{{dir}}/yeastar"
"#
    );
    let app = TestApp::spawn(engine, dir, &extra).await;
    let s = &app.store;
    let head = add_user(s, "", "Head", "head@acme.ru", None, None).await;
    let ext101 = add_user(s, "", "Ivanov", "ivanov@acme.ru", None, Some("101")).await;
    let ext102 = add_user(s, "", "Petrova", "petrova@acme.ru", None, Some("102")).await;
    let marketing = add_user(s, "", "Marketing", "marketing@acme.ru", None, None).await;
    let t = now();
    let c = Contact {
        contactid: Uuid::new_v4(),
        lastname: "Sidorov".into(),
        mobilephone: Some("8 (916) 123-45-67".into()),
        ..Default::default()
    }
    .stamped(head, EntityKind::Systemuser, t, None);
    s.insert(&c).await.unwrap();
    let camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Autumn".into(),
        typecode: 1,
        transactioncurrencyid: "RUB".into(),
        budgetedcost: Some(Money(100_000)),
        ..Default::default()
    }
    .stamped(marketing, EntityKind::Systemuser, t, None);
    s.insert(&camp).await.unwrap();
    let w = CampaignActivity {
        activityid: wave,
        regardingobjectid: camp.campaignid,
        subject: "Autumn radio ads".into(),
        channeltypecode: Some(1),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(marketing, EntityKind::Systemuser, t, None);
    s.create_campaign_activity(&w).await.unwrap();
    (app, Seed { head, ext101, ext102, marketing, known_contact: c.contactid, wave, campaign: camp.campaignid })
}

fn zadarma_sig(body: &str) -> String {
    zadarma_sig_with(ZADARMA_SECRET, body)
}

fn zadarma_sig_with(secret: &str, body: &str) -> String {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let event = get("event");
    let s = match event.as_str() {
        "NOTIFY_ANSWER" => format!("{}{}{}", get("caller_id"), get("destination"), get("call_start")),
        "NOTIFY_OUT_START" | "NOTIFY_OUT_END" => {
            format!("{}{}{}", get("internal"), get("destination"), get("call_start"))
        }
        "NOTIFY_RECORD" => format!("{}{}", get("pbx_call_id"), get("call_id_with_rec")),
        _ => format!("{}{}{}", get("caller_id"), get("called_did"), get("call_start")),
    };
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hex::encode(m.finalize().into_bytes()))
}

impl TestApp {
    async fn zadarma(&self, body: &str) -> reqwest::Response {
        self.http
            .post(self.url("/pbx/zadarma"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Signature", zadarma_sig(body))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn mango(&self, path: &str, json: &str) -> reqwest::Response {
        let sign = hex::encode(sha2::Sha256::digest(format!("{MANGO_KEY}{json}{MANGO_SALT}").as_bytes()));
        let body = serde_urlencoded::to_string([("vpbx_api_key", MANGO_KEY), ("sign", sign.as_str()), ("json", json)])
            .unwrap();
        self.http
            .post(self.url(&format!("/pbx/mango{path}")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn twilio(&self, path: &str, body: &str) -> reqwest::Response {
        self.twilio_at(path, &format!("https://crm.acme.ru/pbx/twilio{path}"), body).await
    }

    /// A Twilio callback to inflow's `path` signed for the URL Twilio was given.
    async fn twilio_at(&self, path: &str, signed_url: &str, body: &str) -> reqwest::Response {
        let mut params: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
        params.sort();
        let mut s = signed_url.to_string();
        for (k, v) in &params {
            s.push_str(k);
            s.push_str(v);
        }
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
        m.update(s.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
        self.http
            .post(self.url(&format!("/pbx/twilio{path}")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn placetel(&self, body: &str) -> reqwest::Response {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(PLACETEL_SECRET.as_bytes()).unwrap();
        m.update(body.as_bytes());
        self.placetel_signed(body, &hex::encode(m.finalize().into_bytes())).await
    }

    async fn placetel_signed(&self, body: &str, sig: &str) -> reqwest::Response {
        self.http
            .post(self.url("/pbx/placetel"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-PLACETEL-SIGNATURE", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A sipgate push signed (RSA-SHA256, base64) with the test key the app trusts.
    async fn sipgate(&self, body: &str) -> reqwest::Response {
        let pem = fixture("sipgate/test-signing-key.pem");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), body.as_bytes(), &mut sig)
            .unwrap();
        self.http
            .post(self.url("/pbx/sipgate"))
            .header("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
            .header("X-Sipgate-Signature", base64::engine::general_purpose::STANDARD.encode(sig))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn cti_json(&self, token: &str, json: serde_json::Value) -> reqwest::Response {
        self.http.post(self.url(&format!("/pbx/cti/{token}"))).json(&json).send().await.unwrap()
    }

    /// A CTI event as `curl --form` sends it (multipart/form-data).
    async fn cti_form(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        let boundary = "------------------------d74496d66958873e";
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        self.http
            .post(self.url(&format!("/pbx/cti/{CTI_TOKEN}")))
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A Sipuni event as a GET with its fields in the query.
    async fn sipuni(&self, query: &str) -> reqwest::Response {
        self.http.get(self.url(&format!("/pbx/sipuni?token={SIPUNI_TOKEN}&{query}"))).send().await.unwrap()
    }

    /// An ITooLabs CRM API command, form-encoded with the CRM token.
    async fn itoolabs(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all = fields.to_vec();
        all.push(("crm_token", ITOOLABS_TOKEN));
        self.http
            .post(self.url("/pbx/itoolabs"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&all).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// A UIS notification: a template as UIS fills it in.
    async fn uis(&self, token: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/pbx/uis/{token}")))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn generic(&self, json: &str) -> reqwest::Response {
        self.http
            .post(self.url("/pbx/generic"))
            .header("Authorization", format!("Bearer {GENERIC_TOKEN}"))
            .header("Content-Type", "application/json")
            .body(json.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Waits until the call's latest version is processed, then returns its activity.
    async fn call_activity(&self, provider: &str, call_id: &str) -> Activity {
        let store = self.store.clone();
        let (p, c) = (provider.to_string(), call_id.to_string());
        poll_until(&format!("{provider} call {call_id} processed"), || {
            let (store, p, c) = (store.clone(), p.clone(), c.clone());
            async move {
                store
                    .pbx_call(&p, &c)
                    .await
                    .unwrap()
                    .is_some_and(|call| call.status != CallStatus::Open && call.processed_version == call.version)
            }
        })
        .await;
        let call = self.store.pbx_call(provider, call_id).await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Processed, "{call:?}");
        self.store.load::<Activity>(call.activityid.expect("activity")).await.unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        use inflow::store::Exec;
        self.store
            .db
            .clone()
            .fetch_one(&format!("SELECT COUNT(*) AS n FROM {table}"), vec![])
            .await
            .unwrap()
            .get("n")
            .unwrap()
    }
}

async fn ok(r: reqwest::Response) -> serde_json::Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zadarma_answered_missed_outbound_and_duplicates() {
    let (app, seed) = start("sqlite").await;
    // Answered inbound call from a known contact's mobile.
    for f in ["notify_start", "notify_answer", "notify_end_answered"] {
        ok(app.zadarma(&fixture(&format!("zadarma/{f}.form"))).await).await;
    }
    let a = app.call_activity("zadarma", "in_8b9a2f6c1d").await;
    assert_eq!(a.activitytypecode, EntityKind::Phonecall);
    assert_eq!((a.statecode, a.statuscode), (1, 4), "answered incoming: Completed / Received");
    assert_eq!(a.directioncode, Some(false));
    assert_eq!(a.phonenumber.as_deref(), Some("+79161234567"));
    assert_eq!(a.regardingobjectid, Some(seed.known_contact), "R-DUP-3 matched the contact's mobile");
    assert_eq!(a.ownerid, seed.ext101, "the extension's user owns the call");
    assert_eq!(a.actualdurationminutes, Some(2), "95 s → 2 minutes");
    assert!(a.description.as_deref().unwrap().contains("zadarma:1732690800.123456"), "recording reference kept");
    // The same END delivered again: accepted, reported as a duplicate, nothing new.
    let dup = ok(app.zadarma(&fixture("zadarma/notify_end_answered.form")).await).await;
    assert_eq!(dup["calls"][0]["duplicate"], true);
    assert_eq!(app.count("activity").await, 1);
    assert_eq!(app.count("lead").await, 0, "a known caller makes no lead");
    assert!(
        crate::helpers::metric(
            &app,
            "inflow_pbx_calls_total",
            &[("provider", "zadarma"), ("disposition", "answered"), ("outcome", "processed")]
        )
        .await
            >= 1.0
    );

    // Missed inbound call from an unknown number → open callback for the line owner.
    ok(app.zadarma(&fixture("zadarma/notify_end_missed.form")).await).await;
    let m = app.call_activity("zadarma", "in_77c0e1aa02").await;
    assert_eq!((m.statecode, m.statuscode), (0, 1), "R-PBX-3: an open phone call");
    assert_eq!(m.ownerid, seed.head);
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap().and_hms_opt(8, 15, 0).unwrap().and_utc();
    assert_eq!(m.actualstart, Some(start), "call_start read in Europe/Moscow");
    assert!(m.scheduledend.unwrap() > a.createdon, "due after the SLA");
    assert_eq!(app.count("lead").await, 0, "a missed call makes no lead");

    // Outbound.
    ok(app.zadarma(&fixture("zadarma/notify_out_start.form")).await).await;
    ok(app.zadarma(&fixture("zadarma/notify_out_end.form")).await).await;
    let o = app.call_activity("zadarma", "out_5d1e2b3c4a").await;
    assert_eq!((o.statecode, o.statuscode, o.directioncode), (1, 2, Some(true)));
    assert_eq!(o.phonenumber.as_deref(), Some("+74997654321"));
    assert_eq!(o.ownerid, seed.ext102);
    assert_eq!(app.count("activity").await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zadarma_refuses_bad_input_and_answers_its_checks() {
    let (app, _) = start("sqlite").await;
    // zd_echo: the URL check when it is saved in the cabinet.
    let r = app.http.get(app.url("/pbx/zadarma?zd_echo=abc123")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "abc123");
    let body = fixture("zadarma/notify_end_answered.form");
    // Wrong and missing signatures: 401, nothing written.
    let r =
        app.http.post(app.url("/pbx/zadarma")).header("Signature", "bm9wZQ==").body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.http.post(app.url("/pbx/zadarma")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A signature over other values (tampered duration is not signed, but caller_id is).
    let tampered = body.replace("caller_id=79161234567", "caller_id=79990000000");
    let r = app
        .http
        .post(app.url("/pbx/zadarma"))
        .header("Signature", zadarma_sig(&body))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.count("pbx_event").await, 0);
    // Missing field → 400 naming it.
    let no_id = body.replace("pbx_call_id=in_8b9a2f6c1d&", "");
    let r = app.zadarma(&no_id).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("pbx_call_id"));
    // Oversized body → 413.
    let big = format!("{body}&padding={}", "x".repeat(8000));
    let r = app.zadarma(&big).await;
    assert_eq!(r.status(), 413);
    // Unknown event types → 200, ignored; IVR is signed but unused.
    let v = ok(app.zadarma(&fixture("zadarma/notify_sms.form")).await).await;
    assert_eq!(v["status"], "ignored");
    assert_eq!(app.count("pbx_event").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mango_legs_out_of_order_make_one_call() {
    let (app, seed) = start("sqlite").await;
    // The summary first, then the leg events (they travel in parallel), one twice.
    ok(app.mango("/events/summary", fixture("mango/summary_answered.json").trim()).await).await;
    for f in ["call_disconnected", "call_appeared", "call_connected", "call_connected"] {
        ok(app.mango("/events/call", fixture(&format!("mango/{f}.json")).trim()).await).await;
    }
    let a = app.call_activity("mango", "MTAwMDQ1Njc4OQ==").await;
    assert_eq!((a.statecode, a.statuscode), (1, 4));
    assert_eq!(a.regardingobjectid, Some(seed.known_contact));
    assert_eq!(a.ownerid, seed.ext101);
    assert_eq!(a.actualdurationminutes, Some(2), "talk 06→126 s = 120 s");
    assert_eq!(a.actualstart, chrono::DateTime::from_timestamp(1764226800, 0));
    assert_eq!(app.count("activity").await, 1, "one activity for all legs and redeliveries");
    // The recording arrives after the call was recorded: the same activity gains it.
    ok(app.mango("/events/recording", fixture("mango/recording_completed.json").trim()).await).await;
    let again = app.call_activity("mango", "MTAwMDQ1Njc4OQ==").await;
    assert_eq!(again.activityid, a.activityid);
    assert!(again.description.unwrap().contains("mango:MToxMDAwNDU2Nzg5OjEwMTpyZWM="));
    assert_eq!(app.count("activity").await, 1);

    // Missed (numbers as strings, empty `to`), and outbound.
    ok(app.mango("/events/summary", fixture("mango/summary_missed.json").trim()).await).await;
    let m = app.call_activity("mango", "MjAwMDQ1Njc4OQ==").await;
    assert_eq!(m.statecode, 0, "missed → open callback");
    ok(app.mango("/events/summary", fixture("mango/summary_outbound.json").trim()).await).await;
    let o = app.call_activity("mango", "MzAwMDQ1Njc4OQ==").await;
    assert_eq!((o.statecode, o.statuscode, o.ownerid), (1, 2, seed.ext102));

    // Bad sign, unknown key, malformed JSON, missing field, unknown event path.
    let json = fixture("mango/summary_answered.json");
    let body =
        serde_urlencoded::to_string([("vpbx_api_key", MANGO_KEY), ("sign", "00"), ("json", json.trim())]).unwrap();
    assert_eq!(app.http.post(app.url("/pbx/mango/events/summary")).body(body).send().await.unwrap().status(), 401);
    let r = app.mango("/events/summary", "{\"entry_id\": ").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("json"));
    let r = app.mango("/events/summary", r#"{"call_direction":1}"#).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("entry_id"));
    let v = ok(app.mango("/events/dtmf", r#"{"entry_id":"x"}"#).await).await;
    assert_eq!(v["status"], "ignored");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_and_dial_callbacks() {
    let (app, seed) = start("sqlite").await;
    ok(app.twilio("/status", &fixture("twilio/status_ringing.form")).await).await;
    let r = app.twilio("/dial", &fixture("twilio/dial_completed.form")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), VOICEMAIL_TWIML, "the Dial action gets the configured TwiML");
    ok(app.twilio("/status", &fixture("twilio/status_completed.form")).await).await;
    let a = app.call_activity("twilio", "CA11111111111111111111111111111111").await;
    assert_eq!((a.statecode, a.statuscode), (1, 4));
    assert_eq!(a.regardingobjectid, Some(seed.known_contact));
    assert_eq!(app.count("activity").await, 1);
    // Missed: the caller reached Twilio (parent completed) but the dialled agent never answered.
    ok(app.twilio("/status", &fixture("twilio/status_missed_completed.form")).await).await;
    app.twilio("/dial", &fixture("twilio/dial_no_answer.form")).await;
    let m = app.call_activity("twilio", "CA33333333333333333333333333333333").await;
    assert_eq!(m.statecode, 0, "the Dial result (no-answer) wins over the parent's 'completed'");
    // Outbound.
    ok(app.twilio("/status", &fixture("twilio/status_outbound_completed.form")).await).await;
    let o = app.call_activity("twilio", "CA55555555555555555555555555555555").await;
    assert_eq!((o.statecode, o.statuscode, o.directioncode), (1, 2, Some(true)));
    assert_eq!(o.ownerid, seed.head, "no extension: the line owner of the caller id");
    // A recording callback through the proxy: signed for the URL Twilio was given.
    let rec = "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=CA11111111111111111111111111111111&Record\
        ingSid=RE0123456789abcdef0123456789abcdef&RecordingStatus=completed&RecordingUrl=https%3A%2F%2Fapi.twi\
        lio.com%2F2010-04-01%2FAccounts%2FAC0123456789abcdef0123456789abcdef%2FRecordings%2FRE0123456789abcdef\
        0123456789abcdef";
    assert_eq!(app.twilio("/recording", rec).await.status(), 401, "not the URL Twilio signed");
    ok(app.twilio_at("/recording", "https://calls.acme.ru/hooks/twilio-recording", rec).await).await;
    let again = app.call_activity("twilio", "CA11111111111111111111111111111111").await;
    assert!(
        again.description.unwrap_or_default().contains("RE0123456789abcdef0123456789abcdef"),
        "the recording is on the call"
    );
    // A signature for another URL is refused.
    let body = fixture("twilio/status_completed.form");
    let r = app
        .http
        .post(app.url("/pbx/twilio/status"))
        .header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_json_auth_and_validation() {
    let (app, _) = start("sqlite").await;
    // A ring group: two legs end, one unanswered, one answered; either order, one answered
    // call (before legs were kept apart, the second `end` was dropped as a duplicate).
    for (call, order) in [("rg-1", ["a", "b"]), ("rg-2", ["b", "a"])] {
        for leg in order {
            let (disposition, secs) = if leg == "a" { ("missed", 0) } else { ("answered", 40) };
            let ev = format!(r#"{{"call_id":"{call}","leg_id":"{leg}","event":"end","direction":"inbound","#)
                + r#""external_number":"+79035551000","did":"+74951234567","#
                + &format!(r#""disposition":"{disposition}","duration_secs":{secs}}}"#);
            assert_eq!(app.generic(&ev).await.status(), 202);
        }
        let a = app.call_activity("generic", call).await;
        assert_eq!((a.statecode, a.statuscode), (1, 4), "{call}: answered whatever the order");
    }
    let r = app
        .generic(
            r#"{"call_id":"t-x","event":"end","direction":"inbound","disposition":"answered","duration_secs":"95"}"#,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("duration_secs"), "the field is named");
    // Ids become keys: one too long to be one is refused before anything is stored.
    let long = format!(r#"{{"call_id":"t-y","event_id":"{}","event":"start","direction":"inbound"}}"#, "x".repeat(600));
    let r = app.generic(&long).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("event id"), "the id is named");
    let body = fixture("generic/end_answered.json");
    assert_eq!(app.generic(&body).await.status(), 202);
    assert_eq!(app.generic(&body).await.status(), 202, "redelivery accepted");
    let a = app.call_activity("generic", "asterisk-1764226800.42").await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)));
    assert_eq!(app.count("pbx_event").await, 5, "the four legs above and this one, once");
    // HMAC of the raw body works as well as the bearer token.
    let other = body.replace("asterisk-1764226800.42", "asterisk-2");
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(GENERIC_HMAC.as_bytes()).unwrap();
    m.update(other.as_bytes());
    let sig = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
    assert_eq!(
        app.http
            .post(app.url("/pbx/generic"))
            .header("X-Inflow-Signature", sig)
            .body(other)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    // Wrong token, unknown field, broken JSON, missing field.
    let r = app
        .http
        .post(app.url("/pbx/generic"))
        .header("Authorization", "Bearer nope")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app.generic(&body.replace("\"event\"", "\"colour\":\"red\",\"event\"")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("colour"));
    let r = app.generic("{\"call_id\": \"x\",").await;
    assert_eq!(r.status(), 400);
    let r = app.generic(r#"{"call_id":"x","event":"end","direction":"inbound"}"#).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("disposition"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_number_unknown_callers_ambiguity_and_timeouts() {
    let (app, seed) = start("sqlite").await;
    let ev = |id: &str, from: &str, did: &str, disp: &str, secs: i64| {
        serde_json::json!({"call_id": id, "event": "end", "direction": "inbound", "external_number": from, "did": did,
            "duration_secs": secs, "disposition": disp, "started_at": "2026-11-27T07:00:00Z",
                "ended_at": "2026-11-27T07:03:00Z"})
        .to_string()
    };
    // R-PBX-4 + R-PBX-5: unknown caller to the campaign number → response, lead through it.
    app.generic(&ev("t1", "+7 903 111-22-33", "88005553535", "answered", 120)).await;
    let a = app.call_activity("generic", "t1").await;
    let lead: Lead = app.store.load(a.regardingobjectid.expect("regarding the new lead")).await.unwrap();
    assert_eq!(lead.lastname, "Caller +79031112233");
    assert_eq!((lead.leadsourcecode, lead.campaignid), (Some(100_000_001), Some(seed.campaign)));
    assert_eq!(lead.ownerid, seed.marketing);
    let page = app.store.list::<CampaignResponse>(10, 0).await.unwrap();
    assert_eq!(page.total, 1);
    let r = &page.items[0];
    assert_eq!(
        (r.regardingobjectid, r.campaignactivityid, r.channeltypecode),
        (seed.campaign, Some(seed.wave), Some(2))
    );
    assert_eq!((r.originatingactivityid, r.customerid), (Some(a.activityid), Some(lead.leadid)));
    // R-RS-2: the same caller again → no second response, and no second lead (now known).
    app.generic(&ev("t2", "89031112233", "+78005553535", "answered", 60)).await;
    let a2 = app.call_activity("generic", "t2").await;
    assert_eq!(a2.regardingobjectid, Some(lead.leadid));
    assert_eq!(app.store.list::<CampaignResponse>(10, 0).await.unwrap().total, 1);
    assert_eq!(app.count("lead").await, 1);
    // A short call and a withheld number make no lead.
    app.generic(&ev("t3", "+7 903 000-00-01", "+74951234567", "answered", 5)).await;
    app.generic(&ev("t4", "anonymous", "+74951234567", "answered", 300)).await;
    app.call_activity("generic", "t3").await;
    let anon = app.call_activity("generic", "t4").await;
    assert!(anon.phonenumber.as_deref() == Some("anonymous") && anon.regardingobjectid.is_none());
    assert_eq!(app.count("lead").await, 1);
    // Two contacts sharing a number: one activity, linked to neither, a dup candidate.
    let t = now();
    for last in ["Twin A", "Twin B"] {
        let c = Contact {
            contactid: Uuid::new_v4(),
            lastname: last.into(),
            telephone1: Some("+7 812 333-44-55".into()),
            ..Default::default()
        }
        .stamped(seed.head, EntityKind::Systemuser, t, None);
        app.store.insert(&c).await.unwrap();
    }
    app.generic(&ev("t5", "8 812 333 44 55", "+74951234567", "answered", 60)).await;
    let amb = app.call_activity("generic", "t5").await;
    assert!(amb.regardingobjectid.is_none());
    assert_eq!(app.store.dup_candidates("open").await.unwrap().len(), 1);
    // A call whose final event never comes is closed by the sweep after the timeout.
    let start_only = serde_json::json!({"call_id": "t6", "event": "start", "direction": "inbound",
        "external_number": "+7 903 555-66-77", "did": "+74951234567"})
    .to_string();
    app.generic(&start_only).await;
    let rt = app.running.pbx.clone().unwrap();
    assert_eq!(rt.sweep(chrono::Utc::now()).await.unwrap(), 0, "not due yet");
    assert_eq!(rt.sweep(chrono::Utc::now() + Duration::hours(2)).await.unwrap(), 1);
    let closed = rt.process("generic", "t6", chrono::Utc::now() + Duration::hours(2)).await.unwrap();
    assert!(
        matches!(
            closed,
            inflow::ingest::pbx::process::Outcome::Processed(_) | inflow::ingest::pbx::process::Outcome::Stale
        ),
        "{closed:?}"
    );
    let c = app.call_activity("generic", "t6").await;
    assert!(c.description.unwrap().contains("Closed by timeout"));
    assert_eq!(c.statecode, 0, "no answer known: a callback");
    let call = app.store.pbx_call("generic", "t6").await.unwrap().unwrap();
    assert!(call.timed_out);
    // R-PBX-1: every call has its idempotency/audit row with the refs.
    assert_eq!(app.store.inbound_event("pbx:generic", "t1").await.unwrap().unwrap().status, EventStatus::Processed);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_same_call_events_make_one_activity() {
    let (app, seed) = start("postgres").await;
    for f in ["notify_end_answered", "notify_start", "notify_answer", "notify_end_answered"] {
        ok(app.zadarma(&fixture(&format!("zadarma/{f}.form"))).await).await;
    }
    let a = app.call_activity("zadarma", "in_8b9a2f6c1d").await;
    assert_eq!(a.regardingobjectid, Some(seed.known_contact));
    assert_eq!(app.count("activity").await, 1);
    ok(app.mango("/events/summary", fixture("mango/summary_missed.json").trim()).await).await;
    assert_eq!(app.call_activity("mango", "MjAwMDQ1Njc4OQ==").await.statecode, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_refuses_oversized_and_malformed_bodies_and_ignores_redeliveries() {
    let (app, _) = start("sqlite").await;
    let pad = "x".repeat(5000);
    // 413 above pbx.body_limit_bytes (4096 here), for every endpoint, before any parsing.
    for path in ["/pbx/zadarma", "/pbx/mango/events/summary", "/pbx/twilio/status", "/pbx/generic"] {
        let r = app.http.post(app.url(path)).body(format!("a={pad}")).send().await.unwrap();
        assert_eq!(r.status(), 413, "{path}");
    }
    // Twilio: a body that is no form, and a signed form without CallSid.
    let r = app.twilio("/status", "CallStatus=completed&%zz").await;
    assert_eq!(r.status(), 400);
    let r = app.twilio("/status", "CallStatus=completed&Direction=inbound").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("CallSid"));
    // Twilio redelivers a status callback: one event, one activity.
    for _ in 0..3 {
        ok(app.twilio("/status", &fixture("twilio/status_outbound_completed.form")).await).await;
    }
    app.call_activity("twilio", "CA55555555555555555555555555555555").await;
    // Generic: a missed inbound and an outbound call.
    let missed = concat!(
        r#"{"call_id":"g-m","event":"end","direction":"inbound","external_number":"+79035550099","did":"+74951234"#,
        r#"567","disposition":"missed"}"#,
    );
    let out = concat!(
        r#"{"call_id":"g-o","event":"end","direction":"outbound","external_number":"+74997654321","did":"+7495123"#,
        r#"4567","extension":"102","duration_secs":12,"disposition":"answered"}"#,
    );
    assert_eq!(app.generic(missed).await.status(), 202);
    assert_eq!(app.generic(missed).await.status(), 202);
    assert_eq!(app.generic(out).await.status(), 202);
    assert_eq!(app.call_activity("generic", "g-m").await.statecode, 0);
    let o = app.call_activity("generic", "g-o").await;
    assert_eq!((o.statecode, o.statuscode, o.directioncode), (1, 2, Some(true)));
    assert_eq!(app.count("activity").await, 3);
    assert_eq!(app.count("pbx_event").await, 3);

    // Twilio with the StatusCallback alone: 'completed' with CallDuration > 0 is an answered
    // call with that talk time, not a missed one.
    let status_only = "CallSid=CA66666666666666666666666666666666&CallStatus=completed&Direction=inbound&From=\
        %2B79035550077&To=%2B74951234567&CallDuration=197&SequenceNumber=1";
    ok(app.twilio("/status", status_only).await).await;
    let a = app.call_activity("twilio", "CA66666666666666666666666666666666").await;
    assert_eq!(
        (a.statecode, a.statuscode, a.actualdurationminutes),
        (1, 4, Some(4)),
        "answered, 197 s (minutes rounded up)"
    );
    // Its dialled leg went unanswered: a missed call, a callback for the line owner, in
    // either order.
    let parent = status_only.replace("CA666", "CA667");
    let leg = "CallSid=CA77777777777777777777777777777777&ParentCallSid=CA66766666666666666666666666666666&Cal\
        lStatus=no-answer&Direction=outbound-dial&From=%2B79035550077&To=%2B79160000101&CallDuration=0&Sequenc\
        eNumber=3";
    ok(app.twilio("/status", leg).await).await;
    ok(app.twilio("/status", &parent).await).await;
    let m = app.call_activity("twilio", "CA66766666666666666666666666666666").await;
    assert_eq!(
        (m.statecode, m.ownerid),
        (0, app.store.resolve_user("head@acme.ru").await.unwrap().unwrap()),
        "a callback for the line owner"
    );
    // Mango legs without a summary, closed by the timeout: an outbound leg stays outbound.
    let out_leg = concat!(
        r#"{"entry_id":"NDAw","call_id":"NDAwOjE=","timestamp":1764234000,"seq":1,"call_state":"Appeared","locati"#,
        r#"on":"abonent","from":{"extension":"102","number":"sip:petrova@acme.mangosip.ru"},"to":{"number":"74997"#,
        r#"654321"}}"#,
    );
    ok(app.mango("/events/call", out_leg).await).await;
    let rt = app.running.pbx.clone().unwrap();
    rt.process("mango", "NDAw", chrono::Utc::now() + Duration::hours(2)).await.unwrap();
    let o = app.call_activity("mango", "NDAw").await;
    assert_eq!((o.directioncode, o.statecode), (Some(true), 1), "not a callback to someone we phoned");
    app.stop().await;
}

/// One job's calls are planned one by one and applied together (one transaction per chunk,
/// one multi-row insert per table). Calls that must see each other's records still do: two
/// calls from one new number make one lead, and two numbers of one contact calling the
/// campaign line make one response (R-RS-2). On PostgreSQL a batch this size sends its
/// activity parties through the array (`UNNEST`) insert; on SQLite the first job's calls
/// fit one chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_one_job_are_applied_together_postgres() {
    calls_of_one_job_are_applied_together("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_one_job_are_applied_together_sqlite() {
    calls_of_one_job_are_applied_together("sqlite").await;
}

async fn calls_of_one_job_are_applied_together(engine: &str) {
    use inflow::ingest::pbx::process::{CallRef, Outcome};
    use std::sync::atomic::Ordering;
    let (app, seed) = start(engine).await;
    let t = now();
    let two = Contact {
        contactid: Uuid::new_v4(),
        lastname: "Two Phones".into(),
        telephone1: Some("+7 812 700-00-01".into()),
        mobilephone: Some("+7 921 700-00-02".into()),
        ..Default::default()
    }
    .stamped(seed.head, EntityKind::Systemuser, t, None);
    app.store.insert(&two).await.unwrap();
    // Answer events only: no call is final, so the daemon leaves them to the timeout and
    // this test processes them as one job.
    let calls = [
        ("b1", "+7 903 555-00-01", "+74951234567", "answered", 120),
        ("b2", "8 903 555 00 01", "+74951234567", "answered", 90),
        ("b3", "8 (916) 123-45-67", "+74951234567", "answered", 60),
        ("b4", "+7 903 555-00-04", "+74951234567", "missed", 0),
        ("b5", "+7 903 555-00-05", "+74951234567", "missed", 0),
        ("b6", "+7 812 700-00-01", "88005553535", "answered", 60),
        ("b7", "+7 921 700-00-02", "88005553535", "answered", 60),
        ("b8", "anonymous", "+74951234567", "answered", 300),
        ("b9", "+7 903 555-00-09", "88005553535", "answered", 45),
        ("b10", "+7 903 555-00-10", "+74951234567", "missed", 0),
    ];
    for (id, from, did, disp, secs) in calls {
        let answered = (disp == "answered").then_some("2026-11-27T07:00:05Z");
        let ev = serde_json::json!({"call_id": id, "event": "answer", "direction": "inbound",
            "external_number": from, "did": did,
            "duration_secs": secs, "disposition": disp, "started_at": "2026-11-27T07:00:00Z", "answered_at": answered});
        ok(app.generic(&ev.to_string()).await).await;
    }
    let rt = app.running.pbx.clone().unwrap();
    let refs: Vec<CallRef> =
        calls.iter().map(|c| CallRef { provider: "generic".into(), call_id: c.0.into(), version: 1 }).collect();
    let later = chrono::Utc::now() + Duration::hours(2);
    // Two jobs: b6 and b7 (one contact, two numbers) make the second job's batch refuse
    // itself and fall back to one call at a time; the first job applies as one batch.
    let (second, first): (Vec<CallRef>, Vec<CallRef>) =
        refs.iter().cloned().partition(|c| c.call_id == "b6" || c.call_id == "b7");
    for (job, refused) in [(first, 0), (second, 1)] {
        let before = rt.fallbacks.load(Ordering::Relaxed);
        for (c, r) in rt.process_batch(&job, later).await {
            assert!(matches!(r, Ok(Outcome::Processed(_))), "{c:?}: {r:?}");
        }
        assert_eq!(rt.fallbacks.load(Ordering::Relaxed) - before, refused, "chunks refused as a whole");
    }
    let regarding = |a: &Activity| a.regardingobjectid;
    let (b1, b2) = (app.call_activity("generic", "b1").await, app.call_activity("generic", "b2").await);
    let lead = regarding(&b1).expect("a lead for the new number");
    assert_eq!(regarding(&b2), Some(lead), "the second call from the number links to the first call's lead");
    assert_eq!(regarding(&app.call_activity("generic", "b3").await), Some(seed.known_contact));
    for id in ["b4", "b5", "b10"] {
        let cb = app.call_activity("generic", id).await;
        assert!(cb.statecode == 0 && cb.scheduledend.is_some(), "{id}: a missed call is an open callback: {cb:?}");
    }
    assert_eq!(regarding(&app.call_activity("generic", "b6").await), Some(two.contactid));
    assert_eq!(regarding(&app.call_activity("generic", "b7").await), Some(two.contactid));
    assert!(regarding(&app.call_activity("generic", "b8").await).is_none());
    let b9 = app.call_activity("generic", "b9").await;
    assert_ne!(regarding(&b9), Some(lead));
    assert_eq!(app.count("lead").await, 2, "b1/b2's lead and b9's");
    let responses = app.store.list::<CampaignResponse>(10, 0).await.unwrap();
    let mut customers: Vec<_> = responses.items.iter().map(|r| r.customerid).collect();
    customers.sort();
    let mut want = vec![Some(two.contactid), regarding(&b9)];
    want.sort();
    assert_eq!(customers, want, "one response per caller to the wave");
    assert_eq!(app.count("activity WHERE activitytypecode = 'phonecall'").await, 10);
    assert_eq!(app.count("inbound_event WHERE source = 'pbx:generic' AND status = 'processed'").await, 10);
    // The same job again (a retry after a crash) repeats nothing.
    for (c, r) in rt.process_batch(&refs, later).await {
        assert!(matches!(r, Ok(Outcome::Stale)), "{c:?}: {r:?}");
    }
    assert_eq!(
        (
            app.count("activity WHERE activitytypecode = 'phonecall'").await,
            app.count("lead").await,
            app.count("campaignresponse").await
        ),
        (10, 2, 2)
    );
    app.stop().await;
}

/// Two calls planned at the same time (two daemons, or concurrent jobs) from one number
/// that missed us: each plan sees no open callback and opens one. The second to apply is
/// refused, and planned again it links to the first callback instead (R-PBX-3: one open
/// callback per number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_plans_open_one_callback_per_number() {
    use inflow::ingest::pbx::process::Outcome;
    let (app, _seed) = start("postgres").await;
    for id in ["m1", "m2"] {
        let ev = serde_json::json!({"call_id": id, "event": "answer", "direction": "inbound",
            "external_number": "+7 903 555-77-88", "did": "+74951234567",
            "disposition": "missed", "started_at": "2026-11-27T07:00:00Z"});
        ok(app.generic(&ev.to_string()).await).await;
    }
    let rt = app.running.pbx.clone().unwrap();
    let later = chrono::Utc::now() + Duration::hours(2);
    let first = rt.plan("generic", "m1", later).await.unwrap().expect("m1 is due");
    let second = rt.plan("generic", "m2", later).await.unwrap().expect("m2 is due");
    for p in [&first, &second] {
        let w = p.writes.as_ref().unwrap();
        assert!(
            w.activity.statecode == 0 && w.activity.scheduledend.is_some(),
            "each plan alone opens a callback: {:?}",
            w.activity
        );
    }
    let mut tx = app.store.db.begin().await.unwrap();
    assert_eq!(app.store.apply_pbx_calls(&mut tx, &[&first], later).await.unwrap(), vec![true]);
    tx.commit().await.unwrap();
    let mut tx = app.store.db.begin().await.unwrap();
    let refused = app.store.apply_pbx_calls(&mut tx, &[&second], later).await;
    assert!(matches!(refused, Err(inflow::store::StoreError::Conflict { .. })), "{refused:?}");
    drop(tx);
    assert!(matches!(rt.process("generic", "m2", later).await.unwrap(), Outcome::Processed(_)));
    let (c1, c2) = (app.call_activity("generic", "m1").await, app.call_activity("generic", "m2").await);
    assert_eq!((c1.statecode, c2.statecode), (0, 1), "one open callback; the second missed call is closed");
    assert!(
        c2.description.unwrap_or_default().contains(&c1.activityid.to_string()),
        "the second names the open callback"
    );
    assert_eq!(app.count("activity WHERE statecode = 0 AND scheduledend IS NOT NULL").await, 1);
    app.stop().await;
}

/// R-PBX-3 revised and R-PBX-6 through the generic webhook: a missed call from a known
/// customer gives the callback to the customer's own account manager (not the line owner);
/// our answered call back to that number completes the callback, naming the call; a call
/// that was not answered closes nothing. An unknown number's callback stays with the line.
async fn callbacks_go_to_the_account_manager_and_close_themselves(engine: &str) {
    let (app, seed) = start(engine).await;
    let s = &app.store;
    // Sidorov's account manager is Petrova (extension 102); the main line belongs to Head.
    let mut c: Contact = s.load(seed.known_contact).await.unwrap();
    c.ownerid = seed.ext102;
    s.update(&c).await.unwrap();
    let call =
        |id: &str, dir: &str, number: &str, disp: &str, at: &str, answered: Option<&str>, end: &str, secs: i64| {
            let mut v = serde_json::json!({"call_id": id, "event": "end", "direction": dir, "external_number": number,
            "did": "+7 495 123-45-67", "extension": "101",
            "started_at": at, "ended_at": end, "duration_secs": secs, "disposition": disp});
            if let Some(a) = answered {
                v["answered_at"] = serde_json::json!(a);
            }
            v.to_string()
        };
    assert_eq!(
        app.generic(&call(
            "cb-missed",
            "inbound",
            "8 (916) 123-45-67",
            "missed",
            "2026-11-27T07:00:00Z",
            None,
            "2026-11-27T07:00:20Z",
            0
        ))
        .await
        .status(),
        202
    );
    let cb = app.call_activity("generic", "cb-missed").await;
    assert_eq!(
        (cb.statecode, cb.ownerid),
        (0, seed.ext102),
        "the callback goes to the account manager, not the line owner {}",
        seed.head
    );
    assert!(cb.scheduledend.is_some());
    // Sidorov tries again: still one callback, and it says when he called again.
    assert_eq!(
        app.generic(&call(
            "cb-missed-2",
            "inbound",
            "+79161234567",
            "missed",
            "2026-11-27T07:05:00Z",
            None,
            "2026-11-27T07:05:20Z",
            0
        ))
        .await
        .status(),
        202
    );
    app.call_activity("generic", "cb-missed-2").await;
    let cb_now = s.load::<Activity>(cb.activityid).await.unwrap();
    assert!(
        cb_now
            .description
            .as_deref()
            .unwrap()
            .contains("Missed again at 2026-11-27 10:05 (call cb-missed-2 via generic)."),
        "{:?}",
        cb_now.description
    );
    // A call back that nobody picked up leaves it open.
    assert_eq!(
        app.generic(&call(
            "cb-noanswer",
            "outbound",
            "+79161234567",
            "missed",
            "2026-11-27T07:10:00Z",
            None,
            "2026-11-27T07:10:30Z",
            0
        ))
        .await
        .status(),
        202
    );
    app.call_activity("generic", "cb-noanswer").await;
    assert_eq!(s.load::<Activity>(cb.activityid).await.unwrap().statecode, 0);
    // The answered call back completes it as Made, and says which call did.
    assert_eq!(
        app.generic(&call(
            "cb-back",
            "outbound",
            "+7 916 123 45 67",
            "answered",
            "2026-11-27T07:30:00Z",
            Some("2026-11-27T07:30:05Z"),
            "2026-11-27T07:33:05Z",
            180
        ))
        .await
        .status(),
        202
    );
    app.call_activity("generic", "cb-back").await;
    let closed = s.load::<Activity>(cb.activityid).await.unwrap();
    assert_eq!((closed.statecode, closed.statuscode), (1, 2), "{closed:?}");
    assert_eq!(closed.actualend.map(|t| t.to_rfc3339()), Some("2026-11-27T07:33:05+00:00".into()));
    assert!(
        closed.description.as_deref().unwrap().contains("Completed by the answered outgoing call cb-back"),
        "{:?}",
        closed.description
    );
    // An unknown caller's callback stays with the line's owner.
    assert_eq!(
        app.generic(&call(
            "cb-unknown",
            "inbound",
            "+79035550011",
            "missed",
            "2026-11-27T08:00:00Z",
            None,
            "2026-11-27T08:00:15Z",
            0
        ))
        .await
        .status(),
        202
    );
    let other = app.call_activity("generic", "cb-unknown").await;
    assert_eq!((other.statecode, other.ownerid), (0, seed.head));
    // The customer gets through first: the callback completes as Received.
    assert_eq!(
        app.generic(&call(
            "cb-in",
            "inbound",
            "+79035550011",
            "answered",
            "2026-11-27T08:20:00Z",
            Some("2026-11-27T08:20:04Z"),
            "2026-11-27T08:21:00Z",
            56
        ))
        .await
        .status(),
        202
    );
    app.call_activity("generic", "cb-in").await;
    let got_through = s.load::<Activity>(other.activityid).await.unwrap();
    assert_eq!((got_through.statecode, got_through.statuscode), (1, 4));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_go_to_the_account_manager_and_close_themselves_sqlite() {
    callbacks_go_to_the_account_manager_and_close_themselves("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_go_to_the_account_manager_and_close_themselves_postgres() {
    callbacks_go_to_the_account_manager_and_close_themselves("postgres").await;
}

/// R-QC-2 with R-PBX-6: distributing a phone campaign activity makes a call list (one open
/// outgoing call per member, due at its end date, owned by the member's owner); running it
/// again adds nobody twice; the PBX's answered call to a member's number completes that
/// member's call, and only that one.
async fn call_lists_close_by_the_pbx(engine: &str) {
    let (app, seed) = start(engine).await;
    let s = &app.store;
    let t = now();
    let mut members = Vec::new();
    for (i, phone) in ["+7 903 111-22-01", "+7 903 111-22-02"].iter().enumerate() {
        let c = Contact {
            contactid: Uuid::new_v4(),
            lastname: format!("Участник {i}"),
            telephone1: Some(phone.to_string()),
            ..Default::default()
        }
        .stamped(seed.ext101, EntityKind::Systemuser, t, None);
        s.insert(&c).await.unwrap();
        members.push(c.contactid);
    }
    let list = MarketingList {
        listid: Uuid::new_v4(),
        listname: "Участники".into(),
        createdfromcode: 2,
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(seed.marketing, EntityKind::Systemuser, t, None);
    s.insert(&list).await.unwrap();
    s.add_list_members(list.listid, &members, t).await.unwrap();
    let due = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let ca = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: seed.campaign,
        subject: "Обзвон участников".into(),
        channeltypecode: Some(1),
        scheduledend: Some(due),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(seed.marketing, EntityKind::Systemuser, t, None);
    s.create_campaign_activity(&ca).await.unwrap();
    s.add_campaign_lists(seed.campaign, &[list.listid]).await.unwrap();
    s.set_wave_lists(ca.activityid, &[list.listid]).await.unwrap();
    let tz = chrono_tz::Europe::Moscow;
    // The campaign is still Proposed: nothing is distributed.
    let err = s.distribute_campaign_activity(ca.activityid, seed.marketing, t, tz).await.unwrap_err();
    assert!(err.to_string().contains("campaign_not_launched"), "{err}");
    s.set_campaign_status(seed.campaign, 1, None, t).await.unwrap();
    let run = s.distribute_campaign_activity(ca.activityid, seed.marketing, t, tz).await.unwrap();
    assert_eq!((run.created, run.bulkoperation.operationtypecode), (2, 4));
    let again = s.distribute_campaign_activity(ca.activityid, seed.marketing, t, tz).await.unwrap();
    assert_eq!((again.created, again.excluded.get("already_distributed").copied()), (0, Some(2)));
    let calls = |n: &str| {
        let s = s.clone();
        let n = n.to_string();
        async move { s.phonecalls_for(&n).await.unwrap() }
    };
    let first = calls("+79031112201").await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].statecode, first[0].ownerid, first[0].directioncode), (0, seed.ext101, Some(true)));
    assert_eq!(first[0].scheduledend, Some(inflow::crm::activity::date_only_due(due, tz)));
    // Ivanov calls the first member from extension 101; the PBX reports it answered.
    let body = serde_json::json!({"call_id": "list-1", "event": "end", "direction": "outbound",
        "external_number": "+79031112201", "extension": "101",
        "started_at": (t + Duration::minutes(5)).to_rfc3339(),
            "answered_at": (t + Duration::minutes(5)).to_rfc3339(),
                "ended_at": (t + Duration::minutes(8)).to_rfc3339(), "duration_secs": 180, "disposition": "answered"});
    assert_eq!(app.generic(&body.to_string()).await.status(), 202);
    app.call_activity("generic", "list-1").await;
    let closed = s.load::<Activity>(first[0].activityid).await.unwrap();
    assert_eq!((closed.statecode, closed.statuscode), (1, 2), "{closed:?}");
    assert_eq!(calls("+79031112202").await[0].statecode, 0, "the other member's call stays open");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_lists_close_by_the_pbx_sqlite() {
    call_lists_close_by_the_pbx("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_lists_close_by_the_pbx_postgres() {
    call_lists_close_by_the_pbx("postgres").await;
}

/// R-PBX-4/5 through a provider: the call to the tracking number from an unknown caller made
/// a lead with the campaign and a campaign response.
async fn assert_campaign_lead(app: &TestApp, provider: &str, call_id: &str, seed: &Seed) {
    let a = app.call_activity(provider, call_id).await;
    let lead: Lead = app.store.load(a.regardingobjectid.expect("regarding a new lead")).await.unwrap();
    assert_eq!(lead.campaignid, Some(seed.campaign), "{provider}: the lead has the campaign");
    let responses = app.store.list::<CampaignResponse>(50, 0).await.unwrap().items;
    assert!(
        responses.iter().any(|r| r.originatingactivityid == Some(a.activityid) && r.customerid == Some(lead.leadid)),
        "{provider}: a campaign response for the call"
    );
}

/// Placetel Notify: the published test vector verifies as is; events of one call in any
/// order and redelivered make one activity; missed inbound → callback; outbound busy → no
/// callback; an unknown caller to the campaign number → a response and a lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placetel_notify_calls() {
    let (app, seed) = start("sqlite").await;
    // The README's vector: secret 12345, this body, this signature.
    let vector = fixture("placetel/call_accepted_vector.form");
    let r =
        app.placetel_signed(vector.trim(), "c4f823c5b8806432fe2b83b1fc2ee714422e0cdfb4b5129152a7d0bbcd7792d0").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(app.placetel_signed(vector.trim(), &"0".repeat(64)).await.status(), 401);
    let unsigned = app.http.post(app.url("/pbx/placetel")).body(vector.trim().to_string()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    // Inbound, answered by extension 101: the hangup first, the answer twice.
    let id = "f4591ba315d81671d7a06c2a3b4f963dafd119de39cb26edd8a6476676b2f447";
    let hung =
        format!("call_id={id}&direction=in&duration=95&event=HungUp&from=89161234567&to=84951234567&type=accepted");
    let start_ev = format!("call_id={id}&direction=in&event=IncomingCall&from=89161234567&to=84951234567");
    let accepted = format!("call_id={id}&direction=in&event=CallAccepted&from=89161234567&peer=101&to=84951234567");
    for b in [&hung, &start_ev, &accepted, &accepted] {
        ok(app.placetel(b).await).await;
    }
    let a = app.call_activity("placetel", id).await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)), "answered, 95 s");
    assert_eq!((a.regardingobjectid, a.ownerid), (Some(seed.known_contact), seed.ext101));
    // Missed inbound (voicemail took it): a callback for the line owner; from a withheld
    // number there is nobody to call back.
    let missed = "call_id=aa01&direction=in&duration=0&event=HungUp&from=89035550700&to=84951234567&type=voicemail";
    ok(app.placetel(missed).await).await;
    let m = app.call_activity("placetel", "aa01").await;
    assert_eq!((m.statecode, m.ownerid), (0, seed.head), "an open callback");
    let anon = "call_id=aa04&direction=in&duration=0&event=HungUp&from=anonymous&to=84951234567&type=missed";
    ok(app.placetel(anon).await).await;
    assert_eq!(app.call_activity("placetel", "aa04").await.statecode, 1, "no callback to a withheld number");
    // Outbound, busy: a closed call, no callback.
    ok(app.placetel("call_id=aa02&direction=out&event=OutgoingCall&from=84951234567&peer=102&to=89031234500").await)
        .await;
    ok(app
        .placetel("call_id=aa02&direction=out&duration=0&event=HungUp&from=84951234567&to=89031234500&type=busy")
        .await)
    .await;
    let o = app.call_activity("placetel", "aa02").await;
    assert_eq!((o.statecode, o.directioncode, o.ownerid), (1, Some(true), seed.ext102), "outbound busy: done");
    // An unknown caller to the campaign number: a response and a lead.
    ok(app
        .placetel("call_id=aa03&direction=in&duration=40&event=HungUp&from=89035550123&to=88005553535&type=accepted")
        .await)
    .await;
    assert_campaign_lead(&app, "placetel", "aa03", &seed).await;
    app.stop().await;
}

fn sg(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

/// sipgate.io: a new call is answered with the URLs of its answer and hangup; a forward
/// makes one conversation (grouped by origCallId); an unsigned push is refused; missed
/// inbound → callback; outbound busy → no callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipgate_push_calls() {
    let (app, seed) = start("sqlite").await;
    let first = "54566B150B0C0D3A5D534D5F565D7C5F54";
    let new_call = sg(&[
        ("event", "newCall"),
        ("direction", "in"),
        ("from", "79161234567"),
        ("to", "74951234567"),
        ("callId", first),
        ("origCallId", first),
        ("user[]", "Head"),
        ("xcid", "8419b3450b75cd19"),
    ]);
    let r = app.sipgate(&new_call).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert!(
        r.text().await.unwrap().contains(
            r#"<Response onAnswer="https://crm.acme.ru/pbx/sipgate" onHangup="https://crm.acme.ru/pbx/sipgate"/>"#
        ),
        "newCall subscribes to answer and hangup"
    );
    let unsigned = app.http.post(app.url("/pbx/sipgate")).body(new_call.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    // Forwarded to a colleague who answers: the second leg names the first.
    let second = "54566B150B0C0D3A5D534D5F565D7C5F99";
    let hang = |call: &str, cause: &str| {
        sg(&[
            ("event", "hangup"),
            ("cause", cause),
            ("callId", call),
            ("origCallId", first),
            ("from", "79161234567"),
            ("to", "74951234567"),
            ("direction", "in"),
        ])
    };
    ok(app.sipgate(&hang(first, "forwarded")).await).await;
    let fwd = sg(&[
        ("event", "newCall"),
        ("direction", "in"),
        ("from", "79161234567"),
        ("to", "74951234567"),
        ("callId", second),
        ("origCallId", first),
        ("user[]", "Ivanov"),
        ("diversion", "74951234567"),
    ]);
    ok(app.sipgate(&fwd).await).await;
    let answer = sg(&[
        ("event", "answer"),
        ("callId", second),
        ("origCallId", first),
        ("user", "Petrova"),
        ("userId", "w7"),
        ("from", "79161234567"),
        ("to", "74951234567"),
        ("direction", "in"),
        ("answeringNumber", "74951234567"),
    ]);
    ok(app.sipgate(&answer).await).await;
    ok(app.sipgate(&answer).await).await;
    ok(app.sipgate(&hang(second, "normalClearing")).await).await;
    let a = app.call_activity("sipgate", first).await;
    assert_eq!((a.statecode, a.statuscode), (1, 4), "answered after the forward");
    assert_eq!(
        (a.regardingobjectid, a.ownerid),
        (Some(seed.known_contact), seed.ext102),
        "w7 is Petrova ([pbx.extensions.sipgate])"
    );
    assert_eq!(app.count("activity").await, 1, "one conversation, one activity");
    // Missed: the caller gave up.
    let m_id = "77AA";
    ok(app
        .sipgate(&sg(&[
            ("event", "newCall"),
            ("direction", "in"),
            ("from", "79035550100"),
            ("to", "74951234567"),
            ("callId", m_id),
            ("origCallId", m_id),
        ]))
        .await)
    .await;
    ok(app
        .sipgate(&sg(&[
            ("event", "hangup"),
            ("cause", "cancel"),
            ("callId", m_id),
            ("origCallId", m_id),
            ("from", "79035550100"),
            ("to", "74951234567"),
            ("direction", "in"),
        ]))
        .await)
    .await;
    assert_eq!(app.call_activity("sipgate", m_id).await.statecode, 0, "a callback");
    // Outbound, busy.
    let o_id = "88BB";
    ok(app
        .sipgate(&sg(&[
            ("event", "newCall"),
            ("direction", "out"),
            ("from", "74951234567"),
            ("to", "79035550200"),
            ("callId", o_id),
            ("origCallId", o_id),
            ("userId[]", "102"),
        ]))
        .await)
    .await;
    ok(app
        .sipgate(&sg(&[
            ("event", "hangup"),
            ("cause", "busy"),
            ("callId", o_id),
            ("origCallId", o_id),
            ("from", "74951234567"),
            ("to", "79035550200"),
            ("direction", "out"),
        ]))
        .await)
    .await;
    let o = app.call_activity("sipgate", o_id).await;
    assert_eq!((o.statecode, o.ownerid), (1, seed.ext102), "outbound busy: done, no callback");
    // An unknown caller to the tracking number, answered.
    let t_id = "99CC";
    let ev = |e: &str| {
        sg(&[
            ("event", e),
            ("direction", "in"),
            ("from", "79035552000"),
            ("to", "78005553535"),
            ("callId", t_id),
            ("origCallId", t_id),
            ("userId", "101"),
        ])
    };
    for e in ["newCall", "answer", "hangup"] {
        ok(app.sipgate(&ev(e)).await).await;
    }
    assert_campaign_lead(&app, "sipgate", t_id, &seed).await;
    app.stop().await;
}

/// The Generic CTI push format (Zammad's), as JSON and as `curl --form` sends it: the token
/// in the URL, `{}` back, missed → callback, outbound busy → none (in any order), a
/// redelivered answer changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_cti_calls() {
    let (app, seed) = start("sqlite").await;
    let new_call = serde_json::json!({"event": "newCall", "from": "79161234567", "to": "74951234567", "direction": "in",
        "callId": "307fa962-de8d-4ffc-817b-7f6993204159", "user": ["Ivanov", "Petrova"]});
    assert_eq!(app.cti_json("wrong-token", new_call.clone()).await.status(), 401);
    let r = ok(app.cti_json(CTI_TOKEN, new_call).await).await;
    assert_eq!(r, serde_json::json!({}), "Generic CTI answers {{}}");
    let answer = serde_json::json!({"event": "answer", "from": "79161234567", "to": "74951234567", "direction": "in",
        "callId": "307fa962-de8d-4ffc-817b-7f6993204159", "user": "Ivanov", "answeringNumber": "101"});
    ok(app.cti_json(CTI_TOKEN, answer.clone()).await).await;
    ok(app.cti_json(CTI_TOKEN, answer).await).await;
    let hangup = serde_json::json!({"event": "hangup", "from": "79161234567", "to": "74951234567", "direction": "in",
        "callId": "307fa962-de8d-4ffc-817b-7f6993204159", "cause": "normalClearing", "answeringNumber": "101"});
    ok(app.cti_json(CTI_TOKEN, hangup).await).await;
    let a = app.call_activity("cti", "307fa962-de8d-4ffc-817b-7f6993204159").await;
    assert_eq!(
        (a.statecode, a.statuscode, a.regardingobjectid, a.ownerid),
        (1, 4, Some(seed.known_contact), seed.ext101)
    );
    // Missed, as form-data: hung up while ringing.
    let base = [("from", "79035550300"), ("to", "74951234567"), ("direction", "in"), ("callId", "25641e3f")];
    ok(app.cti_form(&[&[("event", "newCall"), ("user[]", "Ivanov")], &base[..]].concat()).await).await;
    ok(app.cti_form(&[&[("event", "hangup"), ("cause", "cancel")], &base[..]].concat()).await).await;
    assert_eq!(app.call_activity("cti", "25641e3f").await.statecode, 0, "missed: a callback");
    // Outbound, busy: the hangup before the newCall (order does not matter).
    let out = [("from", "74951234567"), ("to", "79035550400"), ("direction", "out"), ("callId", "f0871278")];
    ok(app.cti_form(&[&[("event", "hangup"), ("cause", "busy")], &out[..]].concat()).await).await;
    ok(app.cti_form(&[&[("event", "newCall"), ("user", "102")], &out[..]].concat()).await).await;
    let o = app.call_activity("cti", "f0871278").await;
    assert_eq!((o.statecode, o.ownerid), (1, seed.ext102));
    let t = [("from", "79035552100"), ("to", "78005553535"), ("direction", "in"), ("callId", "t-1")];
    for e in ["newCall", "answer", "hangup"] {
        ok(app.cti_form(&[&[("event", e)], &t[..]].concat()).await).await;
    }
    assert_campaign_lead(&app, "cti", "t-1", &seed).await;
    // A bad direction is named.
    let r =
        app.cti_json(CTI_TOKEN, serde_json::json!({"event": "newCall", "direction": "sideways", "callId": "x"})).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("direction"));
    app.stop().await;
}

/// Sipuni: GET with the fields in the query, `{"success": true}` for every authentic
/// request (a settings ping too), a wrong token refused; the inbound call's legs, then its
/// end, missed → callback; an answered outbound call with its recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipuni_events() {
    let (app, seed) = start("sqlite").await;
    let ping = ok(app.sipuni("").await).await;
    assert_eq!(ping, serde_json::json!({"success": true}), "the settings check");
    let r = app.http.get(app.url("/pbx/sipuni?token=nope&event=1&call_id=1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Inbound to the main line, rung to extension 101, not answered.
    let id = "1774373436.533962";
    let leg1 = format!(
        "call_id={id}&event=1&src_type=1&src_num=79035550600&short_src_num=79035550600&dst_type=1&dst_num=7495\
            1234567_id265648&short_dst_num=74951234567_id265648&pbxdstnum=74951234567&timestamp=1774373436&tre\
            eName=%D0%92%D1%85%D0%BE%D0%B4%D1%8F%D1%89%D0%B0%D1%8F&treeNumber=000-1734442&user_id=070196"
    );
    let leg2 = format!(
        "call_id={id}&event=1&src_type=1&src_num=79035550600&short_src_num=79035550600&dst_type=2&dst_num=0701\
            96101&short_dst_num=101&timestamp=1774373437&user_id=070196"
    );
    let end = format!(
        "call_id={id}&event=2&src_type=1&src_num=79035550600&short_src_num=79035550600&dst_type=1&dst_num=7495\
            1234567_id265648&short_dst_num=74951234567_id265648&pbxdstnum=74951234567&timestamp=1774373455&sta\
            tus=NOANSWER&call_start_timestamp=1774373436&treeName=%D0%92%D1%85%D0%BE%D0%B4%D1%8F%D1%89%D0%B0%D\
            1%8F&treeNumber=000-1734442&user_id=070196&call_record_link=https%3A%2F%2Fsipuni.com%2Fapi%2Fcrm%2\
            Frecord%3Fid%3D1774373436.533962%26hash%3Dab12"
    );
    for q in [&end, &leg1, &leg2, &leg1] {
        assert_eq!(ok(app.sipuni(q).await).await, serde_json::json!({"success": true}));
    }
    let m = app.call_activity("sipuni", id).await;
    assert_eq!((m.statecode, m.ownerid), (0, seed.head), "missed: a callback for the line owner");
    // Outbound from extension 102 to the known contact, answered after 10 s, 95 s of talk.
    let o = "1774372584.533596";
    let start_q = format!(
        "call_id={o}&event=1&src_type=2&src_num=070196102&short_src_num=102&dst_type=1&dst_num=79161234567&pbx\
            dstnum=%2B79161234567&timestamp=1774372584&user_id=070196"
    );
    let answer_q = format!("call_id={o}&event=3&timestamp=1774372594&channel=SIP%2F070196998783337125-000471d4");
    let end_q = format!(
        "call_id={o}&event=2&src_type=2&src_num=070196102&short_src_num=102&dst_type=1&dst_num=79161234567&sta\
            tus=ANSWER&call_start_timestamp=1774372584&call_answer_timestamp=1774372594&timestamp=1774372689&l\
            ast_called=102&call_record_link=https%3A%2F%2Fsipuni.com%2Fapi%2Fcrm%2Frecord%3Fid%3D1774372584.53\
            3596%26hash%3D9324"
    );
    for q in [&start_q, &answer_q, &end_q] {
        ok(app.sipuni(q).await).await;
    }
    let a = app.call_activity("sipuni", o).await;
    assert_eq!((a.statecode, a.statuscode, a.directioncode), (1, 2, Some(true)));
    assert_eq!(
        (a.regardingobjectid, a.ownerid, a.actualdurationminutes),
        (Some(seed.known_contact), seed.ext102, Some(2))
    );
    assert!(a.description.unwrap_or_default().contains("sipuni.com/api/crm/record"), "the recording link");
    let t = "1774374000.600001";
    ok(app
        .sipuni(&format!(
            "call_id={t}&event=2&src_type=1&src_num=79035552200&dst_type=1&dst_num=78005553535_\
        id1&pbxdstnum=78005553535&timestamp=1774374060&status=ANSWER&call_start_timestamp=1774374000&call_answ\
        er_timestamp=1774374010"
        ))
        .await)
    .await;
    assert_campaign_lead(&app, "sipuni", t, &seed).await;
    app.stop().await;
}

/// ITooLabs CRM API (MegaFon, Gravitel …): the live events and the history record of one
/// call in any order make one activity; `contact` is answered with the caller's name and
/// its owner's extension; missed → callback; outbound busy → none; a wrong token → 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn itoolabs_crm_api_calls() {
    let (app, seed) = start("sqlite").await;
    // A client owned by extension 101 calls; the PBX asks who it is while it rings.
    let c = Contact {
        contactid: Uuid::new_v4(),
        firstname: Some("Анна".into()),
        lastname: "Кузнецова".into(),
        telephone1: Some("+7 903 555-01-01".into()),
        ..Default::default()
    }
    .stamped(seed.ext101, EntityKind::Systemuser, now(), None);
    app.store.insert(&c).await.unwrap();
    let card = ok(app.itoolabs(&[("cmd", "contact"), ("phone", "79035550101"), ("callid", "43294397431")]).await).await;
    assert_eq!(card, serde_json::json!({"contact_name": "Анна Кузнецова", "responsible": "101"}));
    let unknown = ok(app.itoolabs(&[("cmd", "contact"), ("phone", "79035559999"), ("callid", "x")]).await).await;
    assert_eq!(unknown, serde_json::json!({}), "not found is an empty object");
    // The call: history first, then the events, one event twice.
    let id = "43294397431";
    let history = [
        ("cmd", "history"),
        ("type", "in"),
        ("user", "ivanov"),
        ("ext", "101"),
        ("phone", "79035550101"),
        ("diversion", "74951234567"),
        ("start", "20261207T090000Z"),
        ("duration", "130"),
        ("wait", "10"),
        ("callid", id),
        ("link", "https://vats.megapbx.ru/rec/43294397431.mp3"),
        ("status", "Success"),
    ];
    ok(app.itoolabs(&history).await).await;
    for t in ["INCOMING", "ACCEPTED", "ACCEPTED", "COMPLETED"] {
        let ev = [
            ("cmd", "event"),
            ("type", t),
            ("phone", "79035550101"),
            ("diversion", "74951234567"),
            ("user", "ivanov"),
            ("ext", "101"),
            ("direction", "in"),
            ("callid", id),
        ];
        ok(app.itoolabs(&ev).await).await;
    }
    let a = app.call_activity("itoolabs", id).await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)), "120 s of talk");
    assert_eq!((a.regardingobjectid, a.ownerid), (Some(c.contactid), seed.ext101));
    assert!(a.description.unwrap_or_default().contains("43294397431.mp3"));
    // Missed (lower-case, as older PBXs write it).
    ok(app
        .itoolabs(&[
            ("cmd", "history"),
            ("type", "in"),
            ("user", "pbx"),
            ("phone", "79035550202"),
            ("diversion", "74951234567"),
            ("start", "20261207T091000Z"),
            ("duration", "25"),
            ("callid", "m-1"),
            ("status", "missed"),
        ])
        .await)
    .await;
    assert_eq!(app.call_activity("itoolabs", "m-1").await.statecode, 0, "missed: a callback");
    // Outbound, busy (Gravitel's test payload).
    ok(app
        .itoolabs(&[
            ("callid", "28187487-edcf-4d23-9f95-c8591fbd9936"),
            ("cmd", "history"),
            ("duration", "0"),
            ("ext", "102"),
            ("phone", "79035550303"),
            ("start", "20170905T150852Z"),
            ("status", "Busy"),
            ("type", "out"),
            ("user", "admin"),
            ("z-flag", "0"),
        ])
        .await)
    .await;
    let o = app.call_activity("itoolabs", "28187487-edcf-4d23-9f95-c8591fbd9936").await;
    assert_eq!((o.statecode, o.directioncode, o.ownerid), (1, Some(true), seed.ext102), "outbound busy: done");
    // Authenticity, and a command inflow does not use.
    let r = app.http.post(app.url("/pbx/itoolabs")).body("cmd=history&crm_token=nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    ok(app
        .itoolabs(&[
            ("cmd", "history"),
            ("type", "in"),
            ("user", "ivanov"),
            ("ext", "101"),
            ("phone", "79035552300"),
            ("diversion", "78005553535"),
            ("start", "20261207T093000Z"),
            ("duration", "70"),
            ("callid", "t-2"),
            ("status", "Success"),
        ])
        .await)
    .await;
    assert_campaign_lead(&app, "itoolabs", "t-2", &seed).await;
    let v = ok(app.itoolabs(&[("cmd", "rating"), ("callid", id), ("rating", "5")]).await).await;
    assert_eq!(v, serde_json::json!({"status": "ok"}));
    app.stop().await;
}

/// UIS / CoMagic: README's templates as UIS fills them in (numbers bare, local time without
/// a zone), in any order and twice; a lost call → callback; an outbound call without an
/// answer → none; a Planfix-style template without "event" and with an unfilled variable;
/// the recording after the call; a wrong token → 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uis_notifications() {
    let (app, seed) = start("sqlite").await;
    let end = concat!(
        r#"{"event": "end", "call_session_id": 998677427, "notification_time": "2026-12-07 12:01:40.234", "contac"#,
        r#"t_phone_number": "79161234567", "virtual_phone_number": "74951234567", "employee_id": 101, "direction""#,
        r#": "in", "talk_time_duration": 95, "total_time_duration": 100}"#,
    );
    let talk = concat!(
        r#"{"event": "talk", "call_session_id": 998677427, "notification_time": "2026-12-07 12:00:05.000", "conta"#,
        r#"ct_phone_number": "79161234567", "virtual_phone_number": "74951234567", "employee_id": 101, "direction"#,
        r#"": "in"}"#,
    );
    let incoming = concat!(
        r#"{"event": "incoming", "call_session_id": 998677427, "notification_time": "2026-12-07 12:00:00.000", "c"#,
        r#"ontact_phone_number": "79161234567", "virtual_phone_number": "74951234567"}"#,
    );
    assert_eq!(app.uis("wrong", end).await.status(), 401);
    for b in [end, talk, incoming, end] {
        ok(app.uis(UIS_TOKEN, b).await).await;
    }
    let a = app.call_activity("uis", "998677427").await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)));
    assert_eq!((a.regardingobjectid, a.ownerid), (Some(seed.known_contact), seed.ext101));
    assert_eq!(a.actualstart.map(|t| t.to_rfc3339()).as_deref(), Some("2026-12-07T09:00:00+00:00"), "Moscow time");
    let rec =
        r#"{"event": "record", "call_session_id": 998677427, "file_link": "https://media.uiscom.ru/998677427/5551"}"#;
    ok(app.uis(UIS_TOKEN, rec).await).await;
    assert!(app.call_activity("uis", "998677427").await.description.unwrap_or_default().contains("media.uiscom.ru"));
    // A lost call: a callback.
    let lost = concat!(
        r#"{"event": "lost", "call_session_id": 998677500, "notification_time": "2026-12-07 12:10:00.000", "conta"#,
        r#"ct_phone_number": "79035550800", "virtual_phone_number": "74951234567"}"#,
    );
    ok(app.uis(UIS_TOKEN, lost).await).await;
    assert_eq!(app.call_activity("uis", "998677500").await.statecode, 0);
    // Planfix's "Завершение звонка" template, outbound, nobody answered, one variable unfilled.
    let planfix = concat!(
        r#"{"notification_name": "crm-out", "notification_mnemonic": {{notification_mnemonic}}, "virtual_phone_nu"#,
        r#"mber": "74951234567", "notification_time": "2026-12-07 12:20:00.000", "external_id": null, "contact_ph"#,
        r#"one_number": "79035550900", "employee_full_name": "Петрова", "employee_id": 102, "call_source": "va", "#,
        r#""direction": "out", "call_session_id": 998677600, "scenario_name": null, "talk_time_duration": 0, "tot"#,
        r#"al_time_duration": 30, "wait_time_duration": 30, "tag_names": null}"#,
    );
    ok(app.uis(UIS_TOKEN, planfix).await).await;
    let o = app.call_activity("uis", "998677600").await;
    assert_eq!((o.statecode, o.directioncode, o.ownerid), (1, Some(true), seed.ext102), "outbound unanswered: done");
    let t = concat!(
        r#"{"event": "end", "call_session_id": 998677700, "notification_time": "2026-12-07 12:30:00.000", "contac"#,
        r#"t_phone_number": "79035552400", "virtual_phone_number": "78005553535", "direction": "in", "talk_time_d"#,
        r#"uration": 60, "total_time_duration": 70}"#,
    );
    ok(app.uis(UIS_TOKEN, t).await).await;
    assert_campaign_lead(&app, "uis", "998677700", &seed).await;
    app.stop().await;
}

/// The people of the AMI and CDR-table tests: the main line's owner, extensions 101 and 102,
/// and a known caller (Sidorov, 8 916 123-45-67).
async fn read_pbx_people(s: &inflow::store::Store) -> (Uuid, Uuid, Uuid, Contact) {
    let head = add_user(s, "", "Head", "head@acme.ru", None, None).await;
    let ext101 = add_user(s, "", "Ivanov", "ivanov@acme.ru", None, Some("101")).await;
    let ext102 = add_user(s, "", "Petrova", "petrova@acme.ru", None, Some("102")).await;
    let c = Contact {
        contactid: Uuid::new_v4(),
        lastname: "Sidorov".into(),
        mobilephone: Some("8 (916) 123-45-67".into()),
        ..Default::default()
    }
    .stamped(head, EntityKind::Systemuser, now(), None);
    s.insert(&c).await.unwrap();
    (head, ext101, ext102, c)
}

/// The settings the PBXs inflow reads (AMI, the CDR table) are tested with: Moscow time, one
/// main line owned by head@acme.ru.
const PBX_READ_BASE: &str = r#"[org]
timezone = "Europe/Moscow"
default_phone_region = "RU"

[pbx]
callback_sla_secs = 7200
final_event_timeout_secs = 3600
sweep_interval_secs = 3600

[[pbx.lines]]
did = "+7 (495) 123-45-67"
owner = "head@acme.ru"
"#;

/// A small Asterisk manager for the tests (Asterisk is not in Debian 12): the banner, a
/// Login checked against a secret, then the frames the test sends it; `CLOSE` drops the
/// connection as a PBX restart would.
struct AmiServer {
    port: u16,
    frames: tokio::sync::mpsc::UnboundedSender<String>,
    logins: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AmiServer {
    async fn start(secret: &'static str) -> AmiServer {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frames, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let logins = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, r) = (logins.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let (rx, l, r) = (rx.clone(), l.clone(), r.clone());
                tokio::spawn(async move {
                    let (read, mut write) = sock.into_split();
                    write.write_all(b"Asterisk Call Manager/5.0.1\r\n").await.unwrap();
                    let mut lines = tokio::io::BufReader::new(read).lines();
                    let mut login = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.is_empty() {
                            break;
                        }
                        login.push(line);
                    }
                    if !login.iter().any(|x| x == &format!("Secret: {secret}")) {
                        r.fetch_add(1, SeqCst);
                        let _ = write
                            .write_all(
                                b"Response: Error\r\nActionID: inflow-login\r\nMessage: Authentication failed\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    write
                        .write_all(
                            b"Response: Success\r\nActionID: inflow-login\r\nMessage: Authentication accepted\r\n\r\n",
                        )
                        .await
                        .unwrap();
                    l.fetch_add(1, SeqCst);
                    // Pings and the like are read and let be.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    let mut rx = rx.lock().await;
                    while let Some(f) = rx.recv().await {
                        if f == "CLOSE" {
                            return;
                        }
                        if write.write_all(f.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        AmiServer { port, frames, logins, refused }
    }

    fn cdr(&self, fields: &[(&str, &str)]) {
        let mut f = String::from("Event: Cdr\r\nPrivilege: cdr,all\r\n");
        for (k, v) in fields {
            f.push_str(&format!("{k}: {v}\r\n"));
        }
        f.push_str("\r\n");
        self.frames.send(f).unwrap();
    }
}

/// Asterisk through its manager interface: the client logs in, each Cdr event becomes a
/// call (answered, missed → callback, a ring group's CDRs grouped by LinkedID), a
/// redelivered CDR changes nothing, a dropped connection is re-made, and a PBX that
/// refuses the login is retried without taking the daemon down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_manager_cdr_events() {
    use std::sync::atomic::Ordering::SeqCst;
    let ami = AmiServer::start("ami-secret").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ami"), "ami-secret").unwrap();
    std::fs::write(dir.path().join("bad"), "not-the-secret").unwrap();
    let extra = format!(
        r#"{PBX_READ_BASE}
[[pbx.asterisk]]
name = "office"
host = "127.0.0.1"
port = {port}
username = "inflow"
secret_file = "{{dir}}/ami"
max_backoff_secs = 1

[[pbx.asterisk]]
name = "misconfigured"
host = "127.0.0.1"
port = {port}
username = "inflow"
secret_file = "{{dir}}/bad"
max_backoff_secs = 1
"#,
        port = ami.port
    );
    let app = TestApp::spawn("sqlite", dir, &extra).await;
    let s = &app.store;
    let (_, ext101, ext102, c) = read_pbx_people(s).await;
    poll_until("the client logged in", || async { ami.logins.load(SeqCst) == 1 }).await;
    let answered = [
        ("Source", "89161234567"),
        ("Destination", "74951234567"),
        ("DestinationContext", "from-trunk"),
        ("Channel", "PJSIP/trunk-00000012"),
        ("DestinationChannel", "PJSIP/101-00000013"),
        ("StartTime", "2026-12-07 12:00:00"),
        ("AnswerTime", "2026-12-07 12:00:06"),
        ("EndTime", "2026-12-07 12:01:41"),
        ("Duration", "101"),
        ("BillableSeconds", "95"),
        ("Disposition", "ANSWERED"),
        ("UniqueID", "1764226800.42"),
    ];
    ami.cdr(&answered);
    ami.cdr(&answered);
    let a = app.call_activity("asterisk", "1764226800.42").await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)));
    assert_eq!((a.regardingobjectid, a.ownerid), (Some(c.contactid), ext101));
    // The PBX restarts: the client comes back and goes on.
    ami.frames.send("CLOSE".into()).unwrap();
    poll_until("the client logged in again", || async { ami.logins.load(SeqCst) == 2 }).await;
    ami.cdr(&[
        ("Source", "89035551100"),
        ("Destination", "74951234567"),
        ("DestinationChannel", "PJSIP/101-00000020"),
        ("StartTime", "2026-12-07 12:10:00"),
        ("EndTime", "2026-12-07 12:10:30"),
        ("Duration", "30"),
        ("BillableSeconds", "0"),
        ("Disposition", "NO ANSWER"),
        ("UniqueID", "1764227400.50"),
    ]);
    assert_eq!(app.call_activity("asterisk", "1764227400.50").await.statecode, 0, "missed: a callback");
    // A ring group: two CDRs of one call (LinkedID mapped), 101 unanswered, 102 answered.
    for (dst, disp, secs, uid) in
        [("PJSIP/101-0031", "NO ANSWER", "0", "1764228000.61"), ("PJSIP/102-0032", "ANSWERED", "40", "1764228000.62")]
    {
        ami.cdr(&[
            ("Source", "89161234567"),
            ("Destination", "74951234567"),
            ("DestinationChannel", dst),
            ("StartTime", "2026-12-07 12:20:00"),
            ("EndTime", "2026-12-07 12:20:50"),
            ("Duration", "50"),
            ("BillableSeconds", secs),
            ("Disposition", disp),
            ("UniqueID", uid),
            ("LinkedID", "1764228000.60"),
        ]);
    }
    let g = app.call_activity("asterisk", "1764228000.60").await;
    assert_eq!((g.statecode, g.ownerid), (1, ext102), "the ring group's answered leg");
    assert_eq!(app.count("activity").await, 3, "one activity per call, the redelivery included");
    // A Cdr no call can be made of is kept with the reason (the quarantine), not dropped.
    ami.cdr(&[
        ("Source", "89035552200"),
        ("Destination", "74951234567"),
        ("StartTime", "2026-12-07 12:30:00"),
        ("Disposition", "WEIRD"),
        ("UniqueID", "1764229000.80"),
    ]);
    poll_until("the unreadable Cdr is quarantined", || async { quarantined_count(&app).await == 1 }).await;
    let held =
        app.store.inbound_event("pbx:asterisk", "cdr:1764229000.80::2026-12-07 12:30:00").await.unwrap().unwrap();
    assert!(held.reason.as_deref().unwrap_or_default().contains("asterisk:office"), "{:?}", held.reason);
    // The misconfigured PBX keeps being refused; the daemon stays healthy.
    poll_until("the wrong secret was tried twice", || async { ami.refused.load(SeqCst) >= 2 }).await;
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    app.stop().await;
}

/// A FreePBX CDR database on the machine's MariaDB (127.0.0.1:3306, root without a password;
/// `INFLOW_TEST_MYSQL_URL` to change it): its own database with FreePBX's `cdr` table, and a
/// user that may only read that table.
struct FreePbxDb {
    admin: sqlx::MySqlConnection,
    name: String,
    user: String,
}

impl FreePbxDb {
    async fn create() -> FreePbxDb {
        use sqlx::Connection;
        let url = std::env::var("INFLOW_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut admin = sqlx::MySqlConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "MariaDB is required for the FreePBX CDR test and is unreachable at {url}: {e}. Run \
                scripts/test-services.sh."
            )
        });
        let tag = format!("{}_{}", std::process::id(), Uuid::new_v4().simple().to_string().get(..8).unwrap());
        let (name, user) = (format!("inflow_cdr_{tag}"), format!("inflow_ro_{tag}"));
        // FreePBX's asteriskcdrdb.cdr, as its installer creates it.
        let table = "(calldate datetime NOT NULL DEFAULT '0000-00-00 00:00:00', clid varchar(80) NOT NULL DEFAULT '', \
             src varchar(80) NOT NULL DEFAULT '', dst varchar(80) NOT NULL DEFAULT '', dcontext varchar(80) \
             NOT NULL DEFAULT '', \
             channel varchar(80) NOT NULL DEFAULT '', dstchannel varchar(80) NOT NULL DEFAULT '', lastapp \
             varchar(80) NOT NULL DEFAULT '', \
             lastdata varchar(80) NOT NULL DEFAULT '', duration int(11) NOT NULL DEFAULT 0, billsec int(11) \
             NOT NULL DEFAULT 0, \
             disposition varchar(45) NOT NULL DEFAULT '', amaflags int(11) NOT NULL DEFAULT 0, accountcode \
             varchar(20) NOT NULL DEFAULT '', \
             uniqueid varchar(32) NOT NULL DEFAULT '', userfield varchar(255) NOT NULL DEFAULT '', did \
             varchar(50) NOT NULL DEFAULT '', \
             recordingfile varchar(255) NOT NULL DEFAULT '', cnum varchar(80) NOT NULL DEFAULT '', cnam \
             varchar(80) NOT NULL DEFAULT '', \
             outbound_cnum varchar(80) NOT NULL DEFAULT '', outbound_cnam varchar(80) NOT NULL DEFAULT '', \
             dst_cnam varchar(80) NOT NULL DEFAULT '', \
             linkedid varchar(32) NOT NULL DEFAULT '', peeraccount varchar(80) NOT NULL DEFAULT '', sequence \
             int(11) NOT NULL DEFAULT 0, \
             KEY calldate (calldate), KEY dst (dst), KEY accountcode (accountcode))";
        for sql in [
            format!("CREATE DATABASE {name}"),
            format!("CREATE TABLE {name}.cdr {table}"),
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'cdr-reader'"),
            format!("GRANT SELECT ON {name}.cdr TO '{user}'@'%'"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
        }
        FreePbxDb { admin, name, user }
    }

    /// A row as Asterisk writes it when a leg ends: `start` is local PBX time.
    #[allow(clippy::too_many_arguments)]
    async fn cdr(
        &mut self,
        start: chrono::NaiveDateTime,
        src: &str,
        dstchannel: &str,
        duration: i64,
        billsec: i64,
        disposition: &str,
        uniqueid: &str,
        linkedid: &str,
    ) {
        let sql = format!(
            "INSERT INTO {}.cdr (calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, duration, \
                billsec, disposition, uniqueid, did, linkedid) \
             VALUES (?, ?, ?, '74951234567', 'from-trunk', 'PJSIP/trunk-00000012', ?, 'Dial', ?, ?, ?, ?, \
             '74951234567', ?)",
            self.name
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(start.format("%Y-%m-%d %H:%M:%S").to_string())
            .bind(format!("\"\" <{src}>"))
            .bind(src)
            .bind(dstchannel)
            .bind(duration)
            .bind(billsec)
            .bind(disposition)
            .bind(uniqueid)
            .bind(linkedid)
            .execute(&mut self.admin)
            .await
            .unwrap();
    }

    fn config(&self, backfill_hours: u64) -> String {
        format!(
            r#"{PBX_READ_BASE}
[[pbx.cdr_table]]
name = "freepbx"
url = "mysql://{user}@127.0.0.1:3306/{name}"
password_file = "{{dir}}/cdr.secret"
poll_interval_secs = 1
backfill_hours = {backfill_hours}
"#,
            user = self.user,
            name = self.name
        )
    }

    async fn drop(mut self) {
        for sql in
            [format!("DROP DATABASE IF EXISTS {}", self.name), format!("DROP USER IF EXISTS '{}'@'%'", self.user)]
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut self.admin).await;
        }
    }
}

/// FreePBX / Issabel: the CDR table, read by a user that may only SELECT it. A call that ended
/// before the first poll (within `backfill_hours`) and calls that end later are stored once
/// each; a long call, whose row is written after later and shorter ones, is found; a ring
/// group's rows make one call; a row that cannot be read is quarantined with its reason; a
/// restarted daemon goes on from its checkpoint and doubles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freepbx_cdr_table_is_polled() {
    let mut pbx = FreePbxDb::create().await;
    let dbdir = tempfile::tempdir().unwrap();
    let db_path = dbdir.path().join("inflow.db");
    let config_dir = || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cdr.secret"), "cdr-reader\n").unwrap();
        dir
    };
    let local_now = || chrono::Utc::now().with_timezone(&chrono_tz::Europe::Moscow).naive_local();
    let ago = |mins: i64| local_now() - Duration::minutes(mins);
    let extra = pbx.config(24);
    let url = format!("sqlite://{}", db_path.display());
    let app = TestApp::spawn_on(crate::helpers::TestDb::sqlite_at(&db_path), &url, config_dir(), &extra).await;
    let s = &app.store;
    let (head, ext101, ext102, c) = read_pbx_people(s).await;
    // A call that ended an hour ago, before any row was read: found through backfill_hours.
    pbx.cdr(ago(60), "89161234567", "PJSIP/101-00000013", 101, 95, "ANSWERED", "1764226800.42", "").await;
    let a = app.call_activity("asterisk", "1764226800.42").await;
    assert_eq!((a.statecode, a.statuscode, a.actualdurationminutes), (1, 4, Some(2)), "answered, 95 s");
    assert_eq!((a.ownerid, a.regardingobjectid), (ext101, Some(c.contactid)));
    let checkpoint = s.cdr_checkpoint("cdr_table:freepbx").await.unwrap().expect("a checkpoint after the first poll");
    // A missed call now: a callback.
    pbx.cdr(ago(1), "89035551100", "PJSIP/101-00000020", 30, 0, "NO ANSWER", "1764227400.50", "").await;
    let missed = app.call_activity("asterisk", "1764227400.50").await;
    assert_eq!((missed.statecode, missed.ownerid), (0, head), "missed: an open callback for the line owner (R-PBX-3)");
    // A call that started 100 minutes ago and has just ended: its calldate is older than
    // every row read so far, its end is not.
    pbx.cdr(
        ago(100),
        "89161234567",
        "PJSIP/102-00000031",
        100 * 60 - 5,
        100 * 60 - 20,
        "ANSWERED",
        "1764221000.70",
        "",
    )
    .await;
    let long = app.call_activity("asterisk", "1764221000.70").await;
    assert_eq!((long.statecode, long.ownerid, long.regardingobjectid), (1, ext102, Some(c.contactid)));
    assert_eq!(long.actualdurationminutes, Some(100), "5,980 s talked, in started minutes");
    // A ring group: 101 did not answer, 102 did; one call under the linkedid.
    pbx.cdr(ago(2), "89161234567", "PJSIP/101-0031", 50, 0, "NO ANSWER", "1764228000.61", "1764228000.60").await;
    pbx.cdr(ago(2), "89161234567", "PJSIP/102-0032", 50, 40, "ANSWERED", "1764228000.62", "1764228000.60").await;
    let group = app.call_activity("asterisk", "1764228000.60").await;
    assert_eq!((group.statecode, group.ownerid), (1, ext102), "the ring group's answered leg");
    // A row no call can be made of: kept with the reason, not dropped.
    pbx.cdr(ago(1), "89035552200", "PJSIP/101-0040", 10, 0, "WEIRD", "1764229000.80", "").await;
    let quarantined = || async {
        use inflow::store::Exec;
        s.db.clone()
            .fetch_all(
                "SELECT reason FROM inbound_event WHERE source = 'pbx:asterisk' AND status = 'quarantined'",
                vec![],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String>("reason").unwrap())
            .collect::<Vec<_>>()
    };
    poll_until("the unreadable row is quarantined", || async { !quarantined().await.is_empty() }).await;
    let reasons = quarantined().await;
    assert!(reasons[0].contains("cdr_table:freepbx") && reasons[0].contains("Disposition"), "{reasons:?}");
    assert_eq!(app.count("activity").await, 4);
    let moved = s.cdr_checkpoint("cdr_table:freepbx").await.unwrap().unwrap();
    assert!(moved > checkpoint, "the checkpoint follows the calls: {checkpoint} → {moved}");
    app.stop().await;

    // Restarted: the rows read again (the overlap before the checkpoint) change nothing, and
    // a new call is stored.
    pbx.cdr(ago(0), "89035553300", "PJSIP/102-0050", 20, 12, "ANSWERED", "1764229500.90", "").await;
    let app = TestApp::spawn_on(crate::helpers::TestDb::sqlite_at(&db_path), &url, config_dir(), &extra).await;
    let next = app.call_activity("asterisk", "1764229500.90").await;
    assert_eq!((next.statecode, next.ownerid), (1, ext102));
    assert_eq!(app.count("activity").await, 5, "nothing read twice became a second activity");
    assert_eq!(quarantined_count(&app).await, 1, "the unreadable row is kept once");
    app.stop().await;
    pbx.drop().await;
}

async fn quarantined_count(app: &TestApp) -> i64 {
    use inflow::store::Exec;
    app.store
        .db
        .clone()
        .fetch_one("SELECT COUNT(*) AS n FROM inbound_event WHERE status = 'quarantined'", vec![])
        .await
        .unwrap()
        .get("n")
        .unwrap()
}

/// The id inflow gives a journaled 3CX call (3CX sends none): computed here independently.
fn threecx_call_id(start: &str, agent: &str, number: &str, call_type: &str) -> String {
    hex::encode(&sha2::Sha256::digest(format!("{start}|{agent}|{number}|{call_type}").as_bytes())[..12])
}

/// 3CX with contrib/3cx/inflow.xml: the lookup answers the one record with the number (and
/// the number itself, which 3CX needs among the phones) or `{}`; ReportCall journals a
/// call once however often it is sent, with literal unfilled `[Variables]` ignored; Missed
/// → callback; Notanswered (outbound) → none; Basic authentication with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threecx_lookup_and_journal() {
    let (app, seed) = start("sqlite").await;
    let basic = |pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("3cx:{pw}")));
    let lookup = |n: &str, pw: &str| {
        app.http.get(app.url(&format!("/pbx/3cx/lookup?number={n}"))).header("Authorization", basic(pw)).send()
    };
    assert_eq!(lookup("89161234567", "wrong").await.unwrap().status(), 401);
    let card = ok(lookup("89161234567", THREECX_TOKEN).await.unwrap()).await;
    assert_eq!(
        (card["id"].as_str(), card["lastName"].as_str(), card["phoneBusiness"].as_str(), card["entityType"].as_str()),
        (Some(seed.known_contact.to_string().as_str()), Some("Sidorov"), Some("89161234567"), Some("contact"))
    );
    assert_eq!(ok(lookup("89035550000", THREECX_TOKEN).await.unwrap()).await, serde_json::json!({}));
    let report = |body: serde_json::Value| {
        app.http.post(app.url("/pbx/3cx/report")).header("Authorization", basic(THREECX_TOKEN)).json(&body).send()
    };
    let inbound = serde_json::json!({"call_type": "Inbound", "direction": "Inbound", "number": "89161234567",
        "name": "Sidorov",
        "agent": "101", "agent_email": "[AgentEmail]", "queue": "", "duration_s": "95",
        "start_utc": "2026-12-07T09:00:00Z", "end_utc": "2026-12-07T09:01:41Z",
            "contact_id": seed.known_contact.to_string()});
    assert_eq!(ok(report(inbound.clone()).await.unwrap()).await, serde_json::json!({}));
    ok(report(inbound).await.unwrap()).await;
    // 3CX gives no call id: the one inflow makes is what `call_activity` looks up.
    let id = threecx_call_id("2026-12-07T09:00:00Z", "101", "89161234567", "Inbound");
    let a = app.call_activity("3cx", &id).await;
    assert_eq!(
        (a.statecode, a.statuscode, a.regardingobjectid, a.ownerid, a.actualdurationminutes),
        (1, 4, Some(seed.known_contact), seed.ext101, Some(2))
    );
    assert_eq!(app.count("activity").await, 1, "one activity for a report sent twice");
    ok(report(serde_json::json!({"call_type": "Missed", "number": "89035551200", "agent": "101", "duration_s": "0",
        "start_utc": "2026-12-07T09:10:00Z", "end_utc": "2026-12-07T09:10:20Z"}))
    .await
    .unwrap())
    .await;
    ok(report(
        serde_json::json!({"call_type": "Notanswered", "number": "89035551300", "agent": "102", "duration_s": "0",
        "start_utc": "2026-12-07T09:20:00Z", "end_utc": "2026-12-07T09:20:30Z"}),
    )
    .await
    .unwrap())
    .await;
    let missed =
        app.call_activity("3cx", &threecx_call_id("2026-12-07T09:10:00Z", "101", "89035551200", "Missed")).await;
    assert_eq!(missed.statecode, 0, "Missed: a callback");
    let out =
        app.call_activity("3cx", &threecx_call_id("2026-12-07T09:20:00Z", "102", "89035551300", "Notanswered")).await;
    assert_eq!(
        (out.statecode, out.directioncode, out.ownerid),
        (1, Some(true), seed.ext102),
        "Notanswered: no callback"
    );
    app.stop().await;
}

/// Yeastar: the S-Series v1 NewCdr (`action`), the v2 one (`event`) and the P-Series
/// webhook (type 30012, `msg` as a JSON string) each make their call; a resent report is
/// one; NO ANSWER inbound → callback; other events are answered and ignored; the URL's
/// token is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yeastar_cdr_reports() {
    let (app, seed) = start("sqlite").await;
    let post = |token: &str, body: String| {
        app.http
            .post(app.url(&format!("/pbx/yeastar/{token}")))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let v1 = concat!(
        r#"{"action":"NewCdr","callid":"1505352445.265","timestart":"2026-12-07 12:00:00","callfrom":"89161234567"#,
        r#"","callto":"101","srctrunkname":"MTT","callduraction":"38","talkduraction":"29","status":"ANSWERED","t"#,
        r#"ype":"Inbound","didnumber":"74951234567","recording":"20261207120009-1505352445.265-89161234567-101-In"#,
        r#"bound.wav","sn":"369362089179"}"#,
    );
    assert_eq!(post("nope", v1.into()).await.unwrap().status(), 401);
    ok(post(YEASTAR_TOKEN, v1.into()).await.unwrap()).await;
    ok(post(YEASTAR_TOKEN, v1.into()).await.unwrap()).await;
    let a = app.call_activity("yeastar", "1505352445.265").await;
    assert_eq!(
        (a.statecode, a.statuscode, a.regardingobjectid, a.ownerid),
        (1, 4, Some(seed.known_contact), seed.ext101)
    );
    assert_eq!(a.actualstart.map(|t| t.to_rfc3339()).as_deref(), Some("2026-12-07T09:00:00+00:00"), "PBX-local time");
    // v2: "event", a missed inbound call.
    let v2 = concat!(
        r#"{"event":"NewCdr","callid":"1547391782.318","timestart":"2026-12-07 12:05:00","callfrom":"89035551400""#,
        r#","callto":"101","callduraction":"21","talkduraction":"0","status":"NO ANSWER","type":"Inbound","didnum"#,
        r#"ber":"74951234567","sn":"369362089179"}"#,
    );
    ok(post(YEASTAR_TOKEN, v2.into()).await.unwrap()).await;
    assert_eq!(app.call_activity("yeastar", "1547391782.318").await.statecode, 0, "missed: a callback");
    // P-Series: msg is a JSON string; blank fields are a single space.
    let msg = concat!(
        r#"{"call_id":"1651057476.362","time_start":"2026-12-07 12:10:00","call_from":"102","call_to":"8903555150"#,
        r#"0","call_duration":24,"talk_duration":0,"src_trunk_name":" ","dst_trunk_name":"MTT","pin_code":" ","st"#,
        r#"atus":"BUSY","type":"Outbound","recording":" ","did_number":" ","agent_ring_time":0,"uid":"20241119135"#,
        r#"94421D77"}"#,
    );
    let p = serde_json::json!({"type": 30012, "sn": "3631A2124XXX", "msg": msg}).to_string();
    ok(post(YEASTAR_TOKEN, p).await.unwrap()).await;
    let o = app.call_activity("yeastar", "1651057476.362").await;
    assert_eq!((o.statecode, o.directioncode, o.ownerid), (1, Some(true), seed.ext102), "outbound busy: no callback");
    let t = concat!(
        r#"{"action":"NewCdr","callid":"1547392000.400","timestart":"2026-12-07 12:30:00","callfrom":"89035552500"#,
        r#"","callto":"101","callduraction":"80","talkduraction":"70","status":"ANSWERED","type":"Inbound","didnu"#,
        r#"mber":"88005553535"}"#,
    );
    ok(post(YEASTAR_TOKEN, t.into()).await.unwrap()).await;
    assert_campaign_lead(&app, "yeastar", "1547392000.400", &seed).await;
    let v = ok(post(
        YEASTAR_TOKEN,
        r#"{"type":30008,"sn":"x","msg":"{\"extension\":\"2002\",\"status\":\"Ringing\"}"}"#.into(),
    )
    .await
    .unwrap())
    .await;
    assert_eq!(v["status"], "ignored");
    app.stop().await;
}

/// Lines are data (DOMAIN §2.13): a marketer adds a campaign's tracking number through the
/// API, pointed at the campaign (its current phone campaign activity), and the next call to
/// it is that campaign's response and lead — no config, no restart; moved to no campaign,
/// the next call is none; bad input is refused by rule; the config's lines are listed as
/// such by the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_managed_through_the_api() {
    use serde_json::json;
    let (app, seed) = start("sqlite").await;
    let tok = format!("test-marketer-{}", Uuid::new_v4().simple());
    app.store
        .add_api_token("m", &inflow::http::api::token_hash(&tok), seed.marketing, "marketer", now())
        .await
        .unwrap();
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let mut r = app.http.request(method, app.url(&path)).bearer_auth(&tok);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.unwrap();
            let st = resp.status().as_u16();
            (st, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    use reqwest::Method;
    let line = json!({"did": "8 (800) \
        700-11-22", "owner": "marketing@acme.ru", "campaignid": seed.campaign, "create_leads": true,
            "min_answered_seconds": 5});
    let (st, created) = call(Method::POST, "/api/v1/pbx-lines".into(), Some(line.clone())).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["did"], "+78007001122", "stored in E.164");
    let id = created["pbx_lineid"].as_str().unwrap().to_string();
    for (body, status, code) in [
        (line.clone(), 409, "line_exists"),
        (json!({"did": "not a number", "owner": "marketing@acme.ru"}), 422, "invalid_did"),
        (json!({"did": "+7 800 700-11-23", "owner": "nobody@acme.ru"}), 422, "unknown_owner"),
        (
            json!({"did": "+7 800 \
                700-11-24", "owner": "marketing@acme.ru", "campaignid": seed.campaign,
                    "campaignactivityid": seed.wave}),
            422,
            "campaign_or_activity",
        ),
    ] {
        let (st, b) = call(Method::POST, "/api/v1/pbx-lines".into(), Some(body)).await;
        assert_eq!((st, b["error"]["code"].as_str()), (status, Some(code)), "{b}");
    }
    // The next call to the new number: the campaign's response and a lead.
    let ev = |id: &str, from: &str| {
        format!(r#"{{"call_id":"{id}","event":"end","direction":"inbound","external_number":"{from}","#)
            + r#""did":"88007001122","disposition":"answered","duration_secs":30}"#
    };
    assert_eq!(app.generic(&ev("ln-1", "+79035553000")).await.status(), 202);
    assert_campaign_lead(&app, "generic", "ln-1", &seed).await;
    // Moved off the campaign: the next call is no response.
    let (st, b) = call(Method::PATCH, format!("/api/v1/pbx-lines/{id}"), Some(json!({"campaignid": null}))).await;
    assert_eq!((st, b["campaignid"].is_null()), (200, true), "{b}");
    let before = app.store.list::<CampaignResponse>(50, 0).await.unwrap().total;
    assert_eq!(app.generic(&ev("ln-2", "+79035553001")).await.status(), 202);
    app.call_activity("generic", "ln-2").await;
    assert_eq!(app.store.list::<CampaignResponse>(50, 0).await.unwrap().total, before, "no campaign, no response");
    let (st, all) = call(Method::GET, "/api/v1/pbx-lines".into(), None).await;
    assert_eq!((st, all["total"].as_i64()), (200, Some(3)), "the two config lines and the new one: {all}");
    let (st, _) = call(Method::DELETE, format!("/api/v1/pbx-lines/{id}"), None).await;
    assert_eq!(st, 200);
    let (st, _) = call(Method::GET, format!("/api/v1/pbx-lines/{id}"), None).await;
    assert_eq!(st, 404);
    // The CLI lists the config's lines as such.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n[org]\ntimezone = \"Europe/Moscow\"\n", app.db_url()))
        .unwrap();
    let (code, out, err) = crate::helpers::run_inflow(&cfg, &["line", "list"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("+74951234567") && out.contains("(config)"), "{out}");
    app.stop().await;
}

/// Two accounts of one provider (issue 20 §3): each `[[pbx.zadarma]]` has its own secret and
/// its own employees. A request is the account's whose secret verifies it; the call is stored
/// with that account, and extension 101 is whoever that account says; a secret of neither
/// is a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_of_one_provider() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("moscow"), "moscow-secret").unwrap();
    std::fs::write(dir.path().join("spb"), "spb-secret").unwrap();
    let extra = r#"[org]
timezone = "Europe/Moscow"
default_phone_region = "RU"

[pbx]
final_event_timeout_secs = 3600
sweep_interval_secs = 3600

[[pbx.lines]]
did = "+7 (495) 123-45-67"
owner = "head@acme.ru"

[[pbx.zadarma]]
name = "moscow"
secret_file = "{dir}/moscow"
max_event_age_secs = 0
[pbx.zadarma.extensions]
101 = "ivanov@acme.ru"

[[pbx.zadarma]]
name = "spb"
secret_file = "{dir}/spb"
max_event_age_secs = 0
[pbx.zadarma.extensions]
101 = "petrova@acme.ru"
"#;
    let app = TestApp::spawn("sqlite", dir, extra).await;
    let s = &app.store;
    add_user(s, "", "Head", "head@acme.ru", None, None).await;
    let ivanov = add_user(s, "", "Ivanov", "ivanov@acme.ru", None, None).await;
    let petrova = add_user(s, "", "Petrova", "petrova@acme.ru", None, None).await;
    let body = fixture("zadarma/notify_end_answered.form");
    let send = |secret: &'static str, body: String| {
        let sig = zadarma_sig_with(secret, &body);
        app.http
            .post(app.url("/pbx/zadarma"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(send("neither-secret", body.clone()).await.unwrap().status(), 401);
    ok(send("moscow-secret", body.clone()).await.unwrap()).await;
    let spb_body = body.replace("in_8b9a2f6c1d", "in_spb_0001");
    ok(send("spb-secret", spb_body).await.unwrap()).await;
    let moscow = app.call_activity("zadarma", "in_8b9a2f6c1d").await;
    let spb = app.call_activity("zadarma", "in_spb_0001").await;
    assert_eq!((moscow.ownerid, spb.ownerid), (ivanov, petrova), "extension 101 is each account's own");
    let account = |id: &'static str| async move { s.pbx_call("zadarma", id).await.unwrap().unwrap().account };
    assert_eq!((account("in_8b9a2f6c1d").await, account("in_spb_0001").await), ("moscow".into(), "spb".into()));
    // Both came in on the main line (issue 19: the console counts calls per line).
    let per_line = s.calls_per_line(now(), chrono_tz::Europe::Moscow, 3650).await.unwrap();
    assert_eq!(per_line, vec![("+74951234567".to_string(), None, 2, 0)]);
    app.stop().await;
}

/// A Novofon classic account beside the Zadarma one: the same format at /pbx/novofon with
/// its own secret, its calls stored as `novofon` (a Zadarma signature is refused there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn novofon_beside_zadarma() {
    let (app, seed) = start("sqlite").await;
    let body = fixture("zadarma/notify_end_answered.form");
    let send = |sig: String| {
        app.http
            .post(app.url("/pbx/novofon"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Signature", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(send(zadarma_sig(&body)).await.unwrap().status(), 401, "the Zadarma account's secret is not Novofon's");
    ok(send(zadarma_sig_with(NOVOFON_SECRET, &body)).await.unwrap()).await;
    let a = app.call_activity("novofon", "in_8b9a2f6c1d").await;
    assert_eq!((a.regardingobjectid, a.ownerid), (Some(seed.known_contact), seed.ext101));
    assert!(app.store.pbx_call("zadarma", "in_8b9a2f6c1d").await.unwrap().is_none(), "stored as novofon, not zadarma");
    app.stop().await;
}
