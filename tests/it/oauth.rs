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
use inflow::store::Exec as _;

#[derive(Default)]
struct Idp {
    refresh: Option<String>,
    access: HashSet<String>,
    issued: u32,
    refreshes: u32,
    /// The browser sign-in in progress: its PKCE challenge and redirect address.
    pending: Option<(String, String)>,
    /// The person declines the consent screen.
    decline: bool,
    /// Whose tokens these are (introspection's `username`): `sales` unless set.
    user: Option<String>,
    /// The sign-in's first access token is already dead at the server (revoked early).
    first_access_dead: bool,
    /// The app's secret no longer works (app-only sign-in), and how often it was refused.
    secret_expired: bool,
    refused_secrets: u32,
    /// Holds the next refresh at the provider until released.
    gate: Option<Arc<Gate>>,
    /// Every refresh token ever issued stays valid (Microsoft's way; default: only the latest).
    lenient: bool,
    issued_refresh: HashSet<String>,
    /// Access tokens live 200 s: less than inflow's margin, so every use refreshes.
    short_access: bool,
}

#[derive(Default)]
struct Gate {
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

type Shared = Arc<Mutex<Idp>>;

fn issue(idp: &mut Idp) -> Value {
    idp.issued += 1;
    let (r, a) = (format!("refresh-{}", idp.issued), format!("access-{}", idp.issued));
    idp.refresh = Some(r.clone());
    idp.issued_refresh.insert(r.clone());
    idp.access.insert(a.clone());
    let expires = if idp.short_access { 200 } else { 3600 };
    json!({"access_token": a, "token_type": "Bearer", "expires_in": expires, "refresh_token": r, "scope": "imap"})
}

fn form(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body).expect("a form body")
}

async fn device(body: String) -> Json<Value> {
    let f = form(&body);
    assert!(f.iter().any(|(k, v)| k == "client_id" && v == "inflow-test"), "{f:?}");
    Json(json!({"device_code": "dev-1", "user_code": "WDJB-MJHT", "verification_uri": "https://idp.example/device",
            "expires_in": 600, "interval": 1}))
}

async fn token(State(s): State<Shared>, body: String) -> (StatusCode, Json<Value>) {
    let f = form(&body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    if get("grant_type") == "refresh_token" {
        let gate = s.lock().unwrap().gate.take();
        if let Some(g) = gate {
            g.arrived.notify_one();
            g.release.notified().await;
        }
    }
    let mut idp = s.lock().unwrap();
    match get("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" if get("device_code") == "dev-1" => {
            let t = issue(&mut idp);
            if idp.first_access_dead {
                idp.access.clear();
            }
            (StatusCode::OK, Json(t))
        }
        "client_credentials" if get("client_secret") == "app-secret" && !idp.secret_expired => {
            assert_eq!(get("scope"), "imap");
            let mut t = issue(&mut idp);
            t.as_object_mut().unwrap().remove("refresh_token");
            // Good for 4 s: the session must sign in again within 2 (half a short life).
            t["expires_in"] = json!(4);
            (StatusCode::OK, Json(t))
        }
        "client_credentials" => {
            idp.refused_secrets += 1;
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": "AADSTS7000222: the provided client \
                        secret keys are expired"})),
            )
        }
        // RFC 7636 §4.6: the verifier must hash to the challenge sent with the authorization.
        "authorization_code" if get("code") == "code-1" => {
            let (challenge, redirect) = idp.pending.take().expect("an authorization came first");
            use base64::Engine as _;
            use sha2::Digest as _;
            let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            if hashed != challenge || get("redirect_uri") != redirect {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "PKCE or redirect_uri mismatch"})),
                );
            }
            (StatusCode::OK, Json(issue(&mut idp)))
        }
        "refresh_token"
            if Some(get("refresh_token")) == idp.refresh
                || (idp.lenient && idp.issued_refresh.contains(&get("refresh_token"))) =>
        {
            idp.refreshes += 1;
            (StatusCode::OK, Json(issue(&mut idp)))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "AADSTS70008: the refresh token has \
                    expired or was revoked"})),
        ),
    }
}

/// The consent page, approved at once: redirects to the client's loopback address.
async fn authorize(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    assert_eq!(get("response_type"), "code");
    assert_eq!(get("client_id"), "inflow-test");
    assert_eq!(get("code_challenge_method"), "S256", "PKCE with SHA-256");
    assert_eq!(get("scope"), "imap");
    let redirect = get("redirect_uri");
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let mut idp = s.lock().unwrap();
    let state = get("state");
    let to = if idp.decline {
        format!("{redirect}/?error=access_denied&error_description=the+user+declined&state={state}")
    } else {
        idp.pending = Some((get("code_challenge"), redirect.clone()));
        format!("{redirect}/?code=code-1&state={state}")
    };
    (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
}

async fn introspect(State(s): State<Shared>, body: String) -> Json<Value> {
    let f = form(&body);
    let t = f.iter().find(|(n, _)| n == "token").map(|(_, v)| v.clone()).unwrap_or_default();
    let idp = s.lock().unwrap();
    let active = idp.access.contains(&t);
    Json(json!({"active": active, "username": idp.user.as_deref().unwrap_or("sales")}))
}

async fn idp() -> (Shared, String) {
    let s: Shared = Arc::default();
    let app = Router::new()
        .route("/device", post(device))
        .route("/authorize", axum::routing::get(authorize))
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_device_login_then_xoauth2_ingest_refresh_rotation_and_revocation_sqlite() {
    device_login_then_ingest_refresh_rotation_and_revocation("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_device_login_then_xoauth2_ingest_refresh_rotation_and_revocation_postgres() {
    device_login_then_ingest_refresh_rotation_and_revocation("postgres").await;
}

async fn device_login_then_ingest_refresh_rotation_and_revocation(engine: &str) {
    let (state, url) = idp().await;
    let dv = Dovecot::start_oauth(&format!("{url}/introspect"));
    let mailbox = format!(
        "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n\
            user = \"sales\"\nauth = \"oauth2\"\nowner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_backoff_secs = 1\n\n\
            [mailboxes.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\n\
            token_url = \"{url}/token\"\ndevice_url = \"{url}/device\"\nscopes = [\"imap\"]\n",
        dv.port
    );
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &mailbox).await;
    add_user(&app.store, "", "Sales", "sales@crm.example.com", None, None).await;
    // Before any sign-in the mailbox says what to do, and fetches nothing.
    poll_until("auth_expired before the sign-in", || async {
        app.store.mailbox_state("sales", "INBOX").await.unwrap().is_some_and(|s| s.state == "auth_expired")
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n{mailbox}", app.db_url())).unwrap();
    let (code, out, _) = run_inflow(&cfg, &["oauth", "status"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("sales\t-\t-\t-\t-\tnever signed in: inflow oauth login sales"), "{out}");
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
    let tokens = inflow::oauth::Tokens::new(app.store.clone(), None).await.unwrap();
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

    // The daemon says so: /healthz names the account and the fix, the gauge is 0.
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["auth_expired"][0]["account"], "sales", "{h}");
    assert_eq!(h["auth_expired"][0]["fix"], "inflow oauth login sales", "{h}");
    assert!(h["auth_expired"][0]["detail"].as_str().unwrap().contains("AADSTS70008"), "{h}");
    assert_eq!(crate::helpers::metric(&app, "inflow_oauth_grant_up", &[("account", "sales")]).await, 0.0);

    // The operator gets one alert a day with the command, however often the scan runs.
    let sink = crate::helpers::SmtpSink::start(0).await;
    let alerts_cfg = inflow::config::Config::load(
        inflow::config::Source::Text {
            name: "t",
            text: &format!(
                "{mailbox}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"crm@acme.ru\"\n\n\
                 [alerts]\nfallback_address = \"ops@acme.ru\"\n",
                sink.port
            ),
        },
        &Default::default(),
    )
    .unwrap();
    let alerts = inflow::alerts::AlertsRuntime::from_config(&alerts_cfg, app.store.clone()).unwrap();
    let t0 = crate::helpers::now();
    assert_eq!(alerts.scan(t0).await.unwrap().sign_in_alerts, 1);
    assert_eq!(alerts.scan(t0 + chrono::Duration::hours(3)).await.unwrap().sign_in_alerts, 0);
    let msgs = sink.wait_for(1).await;
    assert_eq!(msgs[0].0.trim(), "ops@acme.ru");
    assert!(msgs[0].1.contains("inflow oauth login sales") && msgs[0].1.contains("AADSTS70008"), "{}", msgs[0].1);
    assert_eq!(alerts.scan(t0 + chrono::Duration::hours(25)).await.unwrap().sign_in_alerts, 1, "a day later");
    assert_eq!(sink.wait_for(2).await.len(), 2);
    sink.stop().await;
    app.stop().await;
}

/// `inflow oauth login --browser` as a child with its stdin and stdout piped; returns it with
/// the sign-in address it printed.
async fn browser_login(
    cfg: &std::path::Path,
) -> (tokio::process::Child, String, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(crate::helpers::inflow_bin())
        .arg("--config")
        .arg(cfg)
        .args(["oauth", "login", "sales", "--browser"])
        .env_remove("INFLOW_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("inflow binary");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("the sign-in address is printed");
        if line.starts_with("http") {
            break line;
        }
    };
    (child, url, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_browser_sign_in_with_pkce_by_loopback_redirect_and_by_pasted_address() {
    use tokio::io::AsyncWriteExt as _;
    let (state, url) = idp().await;
    let dv = Dovecot::start_oauth(&format!("{url}/introspect"));
    // No device_url: the browser sign-in is the only one (as for Google). The sealing key
    // comes from a file (a systemd credential in production), not from the database.
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("oauth.key"), "a key that lives outside the database\n").unwrap();
    let mailbox = format!(
        "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n\
            user = \"sales\"\nauth = \"oauth2\"\nowner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_backoff_secs = 1\n\n\
            [mailboxes.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\n\
            authorization_url = \"{url}/authorize\"\ntoken_url = \"{url}/token\"\nscopes = [\"imap\"]\n\n\
            [oauth]\nkey_file = \"{}/oauth.key\"\n",
        dv.port,
        keys.path().display()
    );
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &mailbox).await;
    add_user(&app.store, "", "Sales", "sales@crm.example.com", None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n{mailbox}", app.db_url())).unwrap();

    // 1. The browser is on this machine: the provider's redirect reaches the loopback listener.
    let (child, sign_in, _lines) = browser_login(&cfg).await;
    assert!(sign_in.starts_with(&format!("{url}/authorize?")) && sign_in.contains("code_challenge="), "{sign_in}");
    let page = reqwest::get(&sign_in).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("inflow received the sign-in"));
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(state.lock().unwrap().issued, 1, "the code was exchanged with its PKCE verifier");
    let g = app.store.oauth_grant("sales").await.unwrap().expect("grant stored");
    assert!(!g.refresh_token.contains("refresh-1"), "sealed at rest");
    dv.append("sales", "INBOX", &[inquiry("<pkce-1@client.example>", "ivan@client.example", "Нужна цена")]).await;
    poll_until("ingested with the browser sign-in's token", || async {
        dv.messages("sales", "Processed").await.len() == 1
    })
    .await;
    // The database alone does not open the grant: its own key is not the file's.
    let o = inflow::config::Config::load(
        inflow::config::Source::Text { name: "t", text: &std::fs::read_to_string(&cfg).unwrap() },
        &Default::default(),
    )
    .unwrap()
    .mailboxes[0]
        .oauth
        .clone()
        .unwrap();
    let without_key = inflow::oauth::Tokens::new(app.store.clone(), None).await.unwrap();
    let e = without_key.access_token("sales", &o, true).await.unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");

    // 2. The browser is elsewhere: the person pastes the address the provider sent it to; an
    // address from another attempt is not taken.
    let (mut child, sign_in, mut lines) = browser_login(&cfg).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirects.get(&sign_in).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let landed = r.headers()["location"].to_str().unwrap().to_string();
    let mut stdin = child.stdin.take().unwrap();
    let stale = landed.replace("state=", "state=old");
    stdin.write_all(format!("{stale}\n{landed}\n").as_bytes()).await.unwrap();
    let mut said = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        said.push_str(&l);
        said.push('\n');
    }
    let code = child.wait().await.unwrap().code();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("not from this sign-in"), "{said}");
    assert!(said.contains("signed in"), "{said}");
    assert_eq!(state.lock().unwrap().issued, 2);

    // 3. Consent declined: the provider's words, a failing exit, the stored grant untouched.
    state.lock().unwrap().decline = true;
    let (child, sign_in, _lines) = browser_login(&cfg).await;
    // The page may not load: the sign-in ends as soon as the refusal arrives.
    let _ = reqwest::get(&sign_in).await;
    let out = child.wait_with_output().await.unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access_denied") && err.contains("the user declined"), "{err}");
    assert!(app.store.oauth_grant("sales").await.unwrap().is_some());
    app.stop().await;
}

/// The `[smtp]` relay signs in with XOAUTH2 or OAUTHBEARER (Dovecot's submission server checks the token
/// with the same introspection as IMAP, then relays to an SMTP sink). Without a grant a wave
/// waits — nobody fails — and the relay's row says which command fixes it; after the sign-in
/// it goes out; a token the server stops taking gets one refresh and the wave carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_signs_in_with_xoauth2_and_a_wave_waits_for_the_grant_sqlite() {
    relay_signs_in_and_a_wave_waits_for_the_grant("sqlite", "xoauth2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_signs_in_with_oauthbearer_and_a_wave_waits_for_the_grant_postgres() {
    relay_signs_in_and_a_wave_waits_for_the_grant("postgres", "oauthbearer").await;
}

async fn relay_signs_in_and_a_wave_waits_for_the_grant(engine: &str, mechanism: &str) {
    use crate::waves::{campaign, contact, schedule, static_list, wait_state, wave};
    let (state, url) = idp().await;
    state.lock().unwrap().user = Some("news".into());
    let sink = crate::helpers::SmtpSink::start(0).await;
    let dv = Dovecot::start_oauth_submission(&format!("{url}/introspect"), sink.port);
    let toml = format!(
        "[org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.acme.ru\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"news@crm.example.com\"\n\
         user = \"news\"\nauth = \"oauth2\"\npool_size = 1\n\n\
         [smtp.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\ntoken_url = \"{url}/token\"\n\
         device_url = \"{url}/device\"\nscopes = [\"smtp\"]\nmechanism = \"{mechanism}\"\n\n\
         [waves]\npoll_interval_ms = 100\nthrottle_backoff_secs = 1\n\
         unsubscribe_mailto = \"unsubscribe@crm.example.com\"\n\n\
         [alerts]\nenabled = false\n",
        dv.submission_port.unwrap()
    );
    let app = TestApp::spawn(engine, tempfile::tempdir().unwrap(), &toml).await;
    let s = app.store.clone();
    let (owner, camp) = campaign(&s).await;
    let mut members = Vec::new();
    for i in 0..6 {
        members.push(contact(&s, owner, None, Some(&format!("relay{i}@client.example")), |_| {}).await);
    }
    let list = static_list(&s, owner, &members).await;
    let w = wave(&s, owner, camp, &[list], "OAuth relay").await;
    inflow::waves::schedule(&s, &schedule(w, crate::helpers::now(), None), crate::helpers::now()).await.unwrap();

    // No grant yet: the relay's row names the fix; nothing is failed, nothing sent.
    let relay_reply = || async {
        let r = s.db.clone().fetch_optional("SELECT last_reply FROM smtp_relay", vec![]).await.unwrap();
        r.and_then(|r| r.get::<Option<String>>("last_reply").unwrap()).unwrap_or_default()
    };
    poll_until("the relay says a sign-in is needed", || async {
        relay_reply().await.contains("inflow oauth login smtp")
    })
    .await;
    poll_until("the wave says why it waits", || async {
        s.wave_status(w).await.unwrap().relay_held.is_some_and(|r| r.contains("inflow oauth login smtp"))
    })
    .await;
    let st = s.wave_status(w).await.unwrap();
    assert_eq!((st.sent, st.failed), (0, 0), "{st:?}");
    assert!(sink.messages().is_empty());

    // The operator signs the relay in; the stored access token then stops being taken by the
    // server (revoked early): one refresh, one retry, and the wave goes out.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n{toml}", app.db_url())).unwrap();
    state.lock().unwrap().first_access_dead = true;
    let (code, out, err) = run_inflow(&cfg, &["oauth", "login", "smtp"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let done = wait_state(&s, w, "completed").await;
    assert_eq!((done.sent, done.failed), (6, 0), "{done:?}");
    let msgs = sink.wait_for(6).await;
    let mut rcpts: Vec<String> = msgs.iter().map(|(r, _)| r.trim().to_string()).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 6, "each recipient exactly once: {rcpts:?}");
    assert_eq!(state.lock().unwrap().refreshes, 1, "the refused token was refreshed once");

    // A dead grant: system mail fails transiently with the command that fixes it.
    {
        let mut idp = state.lock().unwrap();
        idp.refresh = None;
        idp.access.clear();
    }
    let appcfg = inflow::config::Config::load(inflow::config::Source::File(&cfg), &Default::default()).unwrap();
    let mailer = inflow::alerts::Mailer::from_config(&appcfg, &s).unwrap().unwrap();
    match mailer.send("oleg@acme.ru", "1 overdue activity", "body".into()).await {
        Err(inflow::alerts::SendError::Transient(e)) => assert!(e.contains("inflow oauth login smtp"), "{e}"),
        other => panic!("a dead relay grant is a transient failure naming the fix: {other:?}"),
    }
    app.stop().await;
    sink.stop().await;
}

/// Microsoft's app-only sign-in (client credentials): no person, no refresh token — the
/// app's secret gets a token, here sent with OAUTHBEARER. An expired secret is said in
/// words, the mailbox waits with nothing marked processed, and /healthz names the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_only_client_credentials_sign_in_over_oauthbearer_and_an_expired_secret_is_named() {
    let (state, url) = idp().await;
    let dv = Dovecot::start_oauth(&format!("{url}/introspect"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.secret"), "app-secret\n").unwrap();
    let mailbox = format!(
        "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n\
            user = \"sales\"\nauth = \"oauth2\"\nowner = \"sales@crm.example.com\"\nfilter = 0\n\
            auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_backoff_secs = 1\n\n\
            [mailboxes.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\n\
            client_secret_file = \"{}/app.secret\"\ntoken_url = \"{url}/token\"\nscopes = [\"imap\"]\n\
            grant = \"client_credentials\"\nmechanism = \"oauthbearer\"\n",
        dv.port,
        dir.path().display()
    );
    let app = TestApp::spawn("sqlite", tempfile::tempdir().unwrap(), &mailbox).await;
    add_user(&app.store, "", "Sales", "sales@crm.example.com", None, None).await;
    dv.append("sales", "INBOX", &[inquiry("<app-1@client.example>", "ivan@client.example", "Нужна цена")]).await;
    poll_until("ingested with an app-only token", || async { dv.messages("sales", "Processed").await.len() == 1 })
        .await;
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    let g = app.store.oauth_grant("sales").await.unwrap().expect("the app's token is kept");
    assert!(g.refresh_token.is_empty() && g.last_error.is_none());

    let cfg = dir.path().join("inflow.toml");
    std::fs::write(&cfg, format!("[database]\nurl = \"{}\"\n\n{mailbox}", app.db_url())).unwrap();
    let (code, out, err) = run_inflow(&cfg, &["oauth", "login", "sales"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("app-only"), "{out}");

    // The secret expires and the server stops taking the old tokens. The session does not
    // outlive its token: it signs in again before the token's end, and is refused.
    {
        let mut idp = state.lock().unwrap();
        idp.secret_expired = true;
        idp.access.clear();
    }
    poll_until("auth_expired naming the secret", || async {
        app.store.mailbox_state("sales", "INBOX").await.unwrap().is_some_and(|s| {
            s.state == "auth_expired"
                && s.state_detail.as_deref().is_some_and(|d| d.contains("client secret keys are expired"))
        })
    })
    .await;
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["auth_expired"][0]["fix"].as_str().unwrap().contains("client_secret_file"), "{h}");
    // New mail waits on the server while the secret is refused (two more refused attempts)…
    dv.append("sales", "INBOX", &[inquiry("<app-2@client.example>", "ivan@client.example", "Ещё вопрос")]).await;
    let refused = state.lock().unwrap().refused_secrets;
    poll_until("two more refused attempts", || async { state.lock().unwrap().refused_secrets >= refused + 2 }).await;
    assert_eq!(dv.messages("sales", "INBOX").await.len(), 1, "nothing is fetched or marked processed");
    // …and is read once a working secret is in place (here: the provider takes it again).
    state.lock().unwrap().secret_expired = false;
    poll_until("read after the fix", || async { dv.messages("sales", "Processed").await.len() == 2 }).await;
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    app.stop().await;
}

fn generic_client(url: &str) -> inflow::config::OAuthConfig {
    inflow::config::OAuthConfig {
        provider: inflow::config::OAuthProvider::Generic,
        client_id: "inflow-test".into(),
        token_url: Some(format!("{url}/token")),
        device_url: Some(format!("{url}/device")),
        scopes: vec!["imap".into()],
        ..Default::default()
    }
}

/// Two daemons on one PostgreSQL database refresh the same grant at once: one calls the
/// provider, the other waits on the grant's row and uses that result — a rotating provider
/// never sees the spent refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_refreshing_one_grant_at_once_make_one_refresh_call_on_postgresql() {
    use inflow::store::Exec as _;
    let (state, url) = idp().await;
    let db = crate::helpers::TestDb::postgres().await;
    let o = generic_client(&url);
    let a = inflow::oauth::Tokens::new(db.store().await, None).await.unwrap();
    a.device_login("sales", &o, |_| {}).await.unwrap();
    // The second daemon: its own pool, its own token source.
    let b_store = db.store().await;
    let b = inflow::oauth::Tokens::new(b_store.clone(), None).await.unwrap();
    let gate = Arc::new(Gate::default());
    state.lock().unwrap().gate = Some(gate.clone());

    // Both were refused the current token at the same moment (fresh = true).
    let (o1, o2) = (o.clone(), o.clone());
    let first = tokio::spawn(async move { a.access_token("sales", &o1, true).await });
    gate.arrived.notified().await;
    let second = tokio::spawn(async move { b.access_token("sales", &o2, true).await });
    poll_until("the second daemon waits on the grant's row", || async {
        let r = b_store
            .db
            .clone()
            .fetch_one(
                "SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database()",
                vec![],
            )
            .await
            .unwrap();
        r.get::<i64>("n").unwrap() > 0
    })
    .await;
    gate.release.notify_one();
    let (t1, t2) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_eq!(t1, "access-2");
    assert_eq!(t2, "access-2", "the waiting daemon used the other's fresh token");
    assert_eq!(state.lock().unwrap().refreshes, 1, "one refresh call");
    db.cleanup().await;
}

/// kill -9 between the provider's answer to a refresh and its commit: the grant on record
/// is the one before the refresh, and with a provider that keeps earlier refresh tokens
/// valid until they expire (Microsoft) the restarted daemon refreshes again and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_refresh_and_save_loses_no_grant() {
    let (state, url) = idp().await;
    {
        let mut idp = state.lock().unwrap();
        idp.lenient = true;
        idp.short_access = true;
    }
    let dv = Dovecot::start_oauth(&format!("{url}/introspect"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("inflow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}/inflow.db\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\n\
             user = \"sales\"\nauth = \"oauth2\"\nowner = \"sales@crm.example.com\"\nfilter = 0\n\
             auto_create = \"leads\"\nprocessed_folder = \"Processed\"\nmax_backoff_secs = 1\n\n\
             [mailboxes.oauth]\nprovider = \"generic\"\nclient_id = \"inflow-test\"\n\
             token_url = \"{url}/token\"\ndevice_url = \"{url}/device\"\nscopes = [\"imap\"]\n",
            dir.path().display(),
            dv.port
        ),
    )
    .unwrap();
    let (code, out, err) = run_inflow(&cfg, &["oauth", "login", "sales"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let loaded =
        inflow::config::Config::load(inflow::config::Source::Text { name: "t", text: &text }, &Default::default())
            .unwrap();
    let store = inflow::app::open_store(&loaded).await.unwrap();
    add_user(&store, "", "Sales", "sales@crm.example.com", None, None).await;
    dv.append("sales", "INBOX", &[inquiry("<crash-1@client.example>", "ivan@client.example", "Нужна цена")]).await;

    // The access token is near its end: the daemon refreshes at connect, and dies there.
    let mut child = crate::helpers::daemon(&cfg, Some("oauth-after-refresh"));
    let status = tokio::time::timeout(std::time::Duration::from_secs(90), child.wait()).await.unwrap().unwrap();
    assert!(!status.success(), "the failpoint aborts the daemon");
    assert_eq!(state.lock().unwrap().refreshes, 1);
    assert_eq!(dv.messages("sales", "INBOX").await.len(), 1, "nothing was read before the crash");
    let g = store.oauth_grant("sales").await.unwrap().expect("the grant is still on record");
    assert!(g.last_error.is_none() && g.last_refresh_at.is_none(), "the grant from the sign-in, untouched");

    // Restarted (at debug level, its log kept): the refresh token on record still works;
    // mail is read.
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(crate::helpers::inflow_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    poll_until("read after the restart", || async { dv.messages("sales", "Processed").await.len() == 1 }).await;
    let _ = child.kill().await;
    // Tokens shorter than inflow's 5-minute margin are used for half their life, not
    // refreshed in a loop: the refresh that crashed, and one after the restart.
    assert_eq!(state.lock().unwrap().refreshes, 2);
    // No token reaches the log, at any level (issue 8's secrets-in-log rule, for OAuth).
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("DEBUG") && logged.contains("sales"), "a debug log was written:\n{logged}");
    for t in ["access-", "refresh-", "Bearer"] {
        assert!(!logged.contains(t), "{t} leaked into the log:\n{logged}");
    }
    // The latest rotation was saved: with only the latest refresh token valid, it works.
    {
        let mut idp = state.lock().unwrap();
        idp.lenient = false;
    }
    let tokens = inflow::oauth::Tokens::new(store.clone(), None).await.unwrap();
    let o = loaded.mailboxes[0].oauth.clone().unwrap();
    tokens.access_token("sales", &o, true).await.expect("the saved refresh token is the provider's latest");
}
