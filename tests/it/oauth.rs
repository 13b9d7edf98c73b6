//! OAuth 2.0 mailboxes (issue 17) against real servers: a small authorization server written
//! for the tests (RFC 8628 device endpoint, token endpoint with refresh and rotation, RFC 7662
//! introspection) and Dovecot's `oauth2` passdb checking the XOAUTH2 tokens inflow sends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::dovecot::{Dovecot, inquiry};
use crate::helpers::{TestApp, add_user, poll_until, run_inflow};

#[derive(Default)]
struct Idp {
    refresh: Option<String>,
    access: HashSet<String>,
    issued: u32,
    refreshes: u32,
}

type Shared = Arc<Mutex<Idp>>;

fn issue(idp: &mut Idp) -> Value {
    idp.issued += 1;
    let (r, a) = (format!("refresh-{}", idp.issued), format!("access-{}", idp.issued));
    idp.refresh = Some(r.clone());
    idp.access.insert(a.clone());
    json!({"access_token": a, "token_type": "Bearer", "expires_in": 3600, "refresh_token": r, "scope": "imap"})
}

fn form(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body).expect("a form body")
}

async fn device(body: String) -> Json<Value> {
    let f = form(&body);
    assert!(f.iter().any(|(k, v)| k == "client_id" && v == "inflow-test"), "{f:?}");
    Json(
        json!({"device_code": "dev-1", "user_code": "WDJB-MJHT", "verification_uri": "https://idp.example/device", "expires_in": 600, "interval": 1}),
    )
}

async fn token(State(s): State<Shared>, body: String) -> (StatusCode, Json<Value>) {
    let f = form(&body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut idp = s.lock().unwrap();
    match get("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" if get("device_code") == "dev-1" => {
            (StatusCode::OK, Json(issue(&mut idp)))
        }
        "refresh_token" if Some(get("refresh_token")) == idp.refresh => {
            idp.refreshes += 1;
            (StatusCode::OK, Json(issue(&mut idp)))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": "invalid_grant", "error_description": "AADSTS70008: the refresh token has expired or was revoked"}),
            ),
        ),
    }
}

async fn introspect(State(s): State<Shared>, body: String) -> Json<Value> {
    let f = form(&body);
    let t = f.iter().find(|(n, _)| n == "token").map(|(_, v)| v.clone()).unwrap_or_default();
    let active = s.lock().unwrap().access.contains(&t);
    Json(json!({"active": active, "username": "sales"}))
}

async fn idp() -> (Shared, String) {
    let s: Shared = Arc::default();
    let app = Router::new()
        .route("/device", post(device))
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_device_login_then_xoauth2_ingest_refresh_rotation_and_revocation() {
    let (state, url) = idp().await;
    let dv = Dovecot::start_oauth(&format!("{url}/introspect"));
    let mailbox = format!(
        "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nuser = \"sales\"\nauth = \"oauth2\"\nowner = \"sales@crm.example.com\"\nfilter = 0\nauto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_backoff_secs = 1\n\n[mailboxes.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\ntoken_url = \"{url}/token\"\ndevice_url = \"{url}/device\"\nscopes = [\"imap\"]\n",
        dv.port
    );
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &mailbox).await;
    add_user(&app.store, "", "Sales", "sales@crm.example.com", None, None).await;
    // Before any sign-in the mailbox says what to do, and fetches nothing.
    poll_until("auth_expired before the sign-in", || async {
        app.store.mailbox_state("sales", "INBOX").await.unwrap().is_some_and(|s| s.state == "auth_expired")
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n{mailbox}", app.db_url())).unwrap();
    let (code, out, err) = run_inflow(&cfg, &["oauth", "login", "sales"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("https://idp.example/device") && out.contains("WDJB-MJHT"), "{out}");
    let g = app.store.oauth_grant("sales").await.unwrap().expect("grant stored");
    assert!(!g.refresh_token.contains("refresh-1"), "the refresh token is sealed at rest");

    // The daemon signs in with XOAUTH2 and ingests.
    dv.append("sales", "INBOX", &[inquiry("<oauth-1@client.example>", "ivan@client.example", "Нужна цена")]).await;
    poll_until("the message is ingested over XOAUTH2", || async { dv.messages("sales", "Processed").await.len() == 1 })
        .await;

    // A forced refresh rotates the refresh token and saves the new one.
    let cfg_loaded = inflow::config::Config::load(
        inflow::config::Source::Text { name: "t", text: &std::fs::read_to_string(&cfg).unwrap() },
        &Default::default(),
    )
    .unwrap();
    let o = cfg_loaded.mailboxes[0].oauth.clone().unwrap();
    let tokens = inflow::oauth::Tokens::new(app.store.clone()).await.unwrap();
    let t = tokens.access_token("sales", &o, true).await.unwrap();
    assert_eq!(t, "access-2");
    assert_eq!(state.lock().unwrap().refreshes, 1);
    let t = tokens.access_token("sales", &o, true).await.unwrap();
    assert_eq!(t, "access-3", "the rotated refresh token (refresh-2) was saved and used");
    // Not expiring soon: the stored token is used, no refresh call.
    assert_eq!(tokens.access_token("sales", &o, false).await.unwrap(), "access-3");
    assert_eq!(state.lock().unwrap().refreshes, 2);

    // Revoked at the provider: invalid_grant → the grant records why, no more refresh calls.
    state.lock().unwrap().refresh = None;
    let e = tokens.access_token("sales", &o, true).await.unwrap_err();
    assert!(matches!(e, inflow::oauth::OAuthError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("inflow oauth login sales"), "{e}");
    let (code, out, _) = run_inflow(&cfg, &["oauth", "status"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("sales\tgeneric\timap") && out.contains("AADSTS70008"), "{out}");
    assert!(!out.contains("refresh-") && !out.contains("access-"), "no token in the status: {out}");
    app.stop().await;
}
