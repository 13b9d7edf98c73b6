//! Who is signed in to the console, and how: sign-in with an API token or with a password
//! (Argon2, `inflow user password`), a session cookie (a random id, HttpOnly,
//! SameSite=Strict, Secure when the request came over https; only its SHA-256 is stored,
//! with a server-side expiry), a form token (CSRF) per session that every POST must carry,
//! failed sign-ins limited per client address, and sign-out. The role is the token's or the
//! password login's, checked with the API's matrix (`api::allowed`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::i18n::{self, Lang};
use super::{page_error, redirect, render};
use crate::crm::entities::SystemUser;
use crate::http::AppState;
use crate::http::api::{Access, Role, allowed, resolve_token, token_hash};
use crate::store::RecordExt;

pub const SESSION_COOKIE: &str = "inflow_session";
/// The sign-in form's own token (double-submit: cookie and hidden field must match), since
/// there is no session yet to hold one.
const SIGNIN_COOKIE: &str = "inflow_signin";
const LANG_COOKIE: &str = "inflow_lang";

/// The console's settings and its in-memory sign-in limiter.
#[derive(Debug)]
pub struct ConsoleSettings {
    pub enabled: bool,
    pub session_ttl: chrono::Duration,
    pub attempts_per_minute: u32,
    pub locale: Lang,
    pub currency: String,
    /// `[http] trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            session_ttl: chrono::Duration::hours(12),
            attempts_per_minute: 10,
            locale: Lang::Ru,
            currency: "RUB".into(),
            trusted_proxies: Vec::new(),
            failures: Mutex::default(),
        }
    }
}

impl ConsoleSettings {
    pub fn from_config(cfg: &crate::config::Config) -> ConsoleSettings {
        ConsoleSettings {
            enabled: cfg.console.enabled,
            session_ttl: chrono::Duration::hours(i64::from(cfg.console.session_hours)),
            attempts_per_minute: cfg.console.sign_in_attempts_per_minute,
            locale: Lang::parse(&cfg.org.locale).unwrap_or(Lang::Ru),
            currency: cfg.org.currency.clone(),
            trusted_proxies: cfg
                .http
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::http::client::parse_proxy(p))
                .collect(),
            failures: Mutex::default(),
        }
    }

    /// Whether this address has failed fewer times than allowed in the last minute.
    fn may_try(&self, ip: IpAddr) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let recent = f.entry(ip).or_default();
        recent.retain(|t| t.elapsed() < Duration::from_secs(60));
        (recent.len() as u32) < self.attempts_per_minute
    }

    fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget addresses that have been quiet for a minute, so the map stays small.
        f.retain(|_, v| v.last().is_some_and(|t| t.elapsed() < Duration::from_secs(60)));
        f.entry(ip).or_default().push(Instant::now());
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the browser reached us over https (through a proxy that says so).
fn secure(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    h("x-forwarded-proto") == "https" || h("forwarded").contains("proto=https")
}

fn set_cookie(name: &str, value: &str, max_age: i64, headers: &HeaderMap) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 256 random bits, URL-safe.
fn random_id() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b).expect("the system's random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn same(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// The fields of a form post.
pub fn form(body: &[u8]) -> BTreeMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default().into_iter().collect()
}

/// The language of a request: `?lang=`, else the remembered choice, else `org.locale`.
pub fn lang_of(parts_uri_query: Option<&str>, headers: &HeaderMap, state: &AppState) -> Lang {
    query_lang(parts_uri_query)
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)))
        .unwrap_or(state.console.locale)
}

/// The language a query string's `lang=` asks for.
fn query_lang(query: Option<&str>) -> Option<Lang> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| Lang::parse(&v))
}

/// Remembers a `?lang=` choice in a cookie for the next pages.
/// Keeps every console write that took effect — a form post answered with a redirect, made
/// in a signed-in session — in the API's audit (`GET /api/v1/ops/audit`) with who made it,
/// marked `console`. Sign-in and sign-out are not writes to the CRM.
pub async fn audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
    let write = req.method() == axum::http::Method::POST && !matches!(route.as_deref(), Some("/signin" | "/signout"));
    let Some(route) = route.filter(|_| write) else { return next.run(req).await };
    let session = cookie(req.headers(), SESSION_COOKIE);
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let to_sign_in = resp.headers().get(header::LOCATION).is_some_and(|l| l.as_bytes().starts_with(b"/signin"));
    if resp.status() != StatusCode::SEE_OTHER || to_sign_in {
        return resp;
    }
    let Some(id) = session else { return resp };
    match state.store.console_session(&token_hash(&id), Utc::now()).await {
        Ok(Some(s)) => {
            let w = crate::store::api::ApiWrite {
                user: s.user,
                role: s.role,
                token_name: "console".into(),
                method: "POST".into(),
                route,
                path,
                status: resp.status().as_u16(),
            };
            if let Err(e) = state.store.record_api_write(&w, Utc::now()).await {
                tracing::error!(error = %e, route = %w.route, "could not record the console write in the audit");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "could not record the console write in the audit"),
    }
    resp
}

pub async fn remember_lang(req: Request, next: Next) -> Response {
    let chosen = query_lang(req.uri().query());
    let headers = req.headers().clone();
    let mut resp = next.run(req).await;
    if let Some(l) = chosen {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(LANG_COOKIE, l.code(), 365 * 86_400, &headers));
    }
    resp
}

/// A checked form post about one record: its fields and the record's id.
pub struct Posted {
    pub form: BTreeMap<String, String>,
    pub id: Uuid,
}

/// The signed-in person of a console request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: Uuid,
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub lang: Lang,
}

impl Signed {
    pub fn can(&self, access: Access) -> bool {
        allowed(self.role, access)
    }

    /// A page saying what went wrong, inside the person's usual frame (menu, sign-out).
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        let mut m = super::frame(self, "");
        m.insert("status".into(), json!(status.as_u16()));
        m.insert("message".into(), json!(message));
        render("error.html", serde_json::Value::Object(m), status)
    }

    /// The refusal of a form without this session's token (403, nothing done), if it lacks it.
    pub fn form_refusal(&self, form: &BTreeMap<String, String>) -> Option<Response> {
        match form.get("csrf") {
            Some(t) if same(t, &self.csrf) => None,
            _ => Some(self.error(StatusCode::FORBIDDEN, i18n::t(self.lang, "bad_form"))),
        }
    }

    /// A form post about one record, checked in order: the session's form token, the role's
    /// access, the record's id. The refusal is the page to answer with.
    pub fn posted(&self, body: &[u8], access: Access, id: &str) -> Result<Posted, Box<Response>> {
        let form = form(body);
        if let Some(r) = self.form_refusal(&form).or_else(|| self.refusal(access)) {
            return Err(Box::new(r));
        }
        let id = id
            .parse::<Uuid>()
            .map_err(|_| Box::new(self.error(StatusCode::NOT_FOUND, i18n::t(self.lang, "not_found"))))?;
        Ok(Posted { form, id })
    }

    /// The refusal (403 page) of what the role may not do, if it may not.
    pub fn refusal(&self, access: Access) -> Option<Response> {
        (!self.can(access)).then(|| self.error(StatusCode::FORBIDDEN, i18n::t(self.lang, "forbidden")))
    }
}

fn to_sign_in(parts: &Parts) -> Response {
    let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    redirect(&format!("/signin?{}", serde_urlencoded::to_string([("next", next)]).unwrap_or_default()))
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Signed, Response> {
        let lang = lang_of(parts.uri.query(), &parts.headers, state);
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(to_sign_in(parts)) };
        let err = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "console session lookup failed");
            page_error(lang, StatusCode::SERVICE_UNAVAILABLE, i18n::t(lang, "error"))
        };
        let Some(s) = state.store.console_session(&token_hash(&id), Utc::now()).await.map_err(err)? else {
            return Err(to_sign_in(parts));
        };
        let Some(role) = Role::parse(&s.role) else { return Err(to_sign_in(parts)) };
        Ok(Signed { user: s.user, name: s.user_name, role, csrf: s.csrf, lang })
    }
}

/// `GET /signin`: the form, with a fresh double-submit token.
pub async fn sign_in_page(State(s): State<AppState>, req: Request) -> Response {
    let lang = lang_of(req.uri().query(), req.headers(), &s);
    let next = query_next(req.uri().query());
    sign_in_form(lang, req.headers(), &next, None, StatusCode::OK)
}

fn query_next(q: Option<&str>) -> String {
    q.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|v| v.into_iter().find(|(k, _)| k == "next").map(|(_, v)| v))
        .filter(|n| safe_next(n))
        .unwrap_or_else(|| "/".into())
}

/// Only a path of this site: no scheme, no `//host`, no backslash tricks.
fn safe_next(n: &str) -> bool {
    n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.starts_with("/signin")
}

fn sign_in_form(lang: Lang, headers: &HeaderMap, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let token = random_id();
    let ctx = json!({
        "tr": i18n::words(lang),
        "lang": lang.code(),
        "csrf": token,
        "next": next,
        "error": error,
    });
    let mut resp = render("signin.html", ctx, status);
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, &token, 3600, headers));
    resp
}

fn client_ip(req: &Request, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    crate::http::client::client_address(peer, &forwarded, trusted)
}

/// A hash to verify against when the e-mail is unknown, so the answer takes as long.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| super::password::hash("not a password").unwrap_or_default())
}

/// `POST /signin`: an API token, or an e-mail and password.
pub async fn sign_in(State(s): State<AppState>, req: Request) -> Response {
    let lang = lang_of(req.uri().query(), req.headers(), &s);
    let ip = client_ip(&req, &s.console.trusted_proxies);
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return page_error(lang, StatusCode::PAYLOAD_TOO_LARGE, i18n::t(lang, "bad_form"));
    };
    let f = form(&body);
    let next = f.get("next").filter(|n| safe_next(n)).cloned().unwrap_or_else(|| "/".into());
    match (cookie(&headers, SIGNIN_COOKIE), f.get("csrf")) {
        (Some(c), Some(t)) if same(&c, t) => {}
        _ => return sign_in_form(lang, &headers, &next, Some(i18n::t(lang, "bad_form")), StatusCode::FORBIDDEN),
    }
    if !s.console.may_try(ip) {
        return sign_in_form(lang, &headers, &next, Some(i18n::t(lang, "too_many")), StatusCode::TOO_MANY_REQUESTS);
    }
    let who = match verify(&s, &f).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e.message, "console sign-in failed");
            return page_error(lang, StatusCode::SERVICE_UNAVAILABLE, i18n::t(lang, "error"));
        }
    };
    let Some((user, role)) = who else {
        s.console.failed(ip);
        tracing::warn!(%ip, "console sign-in refused");
        return sign_in_form(lang, &headers, &next, Some(i18n::t(lang, "bad_sign_in")), StatusCode::UNAUTHORIZED);
    };
    let (id, csrf, now) = (random_id(), random_id(), Utc::now());
    if let Err(e) = s
        .store
        .start_console_session(&token_hash(&id), user, role.as_str(), &csrf, now, now + s.console.session_ttl)
        .await
    {
        tracing::error!(error = %e, "console session not stored");
        return page_error(lang, StatusCode::SERVICE_UNAVAILABLE, i18n::t(lang, "error"));
    }
    tracing::info!(%user, role = role.as_str(), "console sign-in");
    let mut resp = redirect(&next);
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, s.console.session_ttl.num_seconds(), &headers));
    h.append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", 0, &headers));
    resp
}

/// The user and role the form proves, if it proves one.
async fn verify(s: &AppState, f: &BTreeMap<String, String>) -> Result<Option<(Uuid, Role)>, crate::http::ApiError> {
    if let Some(token) = f.get("token").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let Some((user, role, _)) = resolve_token(s, token).await? else { return Ok(None) };
        let enabled = s.store.get::<SystemUser>(user).await?.is_some_and(|u| !u.isdisabled);
        return Ok(enabled.then_some((user, role)));
    }
    let (Some(email), Some(password)) = (f.get("email"), f.get("password")) else { return Ok(None) };
    let login = match s.store.resolve_user(email.trim()).await? {
        Some(u) => s.store.console_login(u).await?.map(|(hash, role)| (u, hash, role)),
        None => None,
    };
    let (hash, known) = match &login {
        Some((_, h, _)) => (h.clone(), true),
        None => (dummy_hash().to_string(), false),
    };
    let password = password.clone();
    // Argon2 is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || super::password::verify(&password, &hash)).await.unwrap_or(false);
    Ok(match login {
        Some((u, _, role)) if ok && known => Role::parse(&role).map(|r| (u, r)),
        _ => None,
    })
}

/// `POST /signout`: ends the session (with this session's form token).
pub async fn sign_out(who: Signed, State(s): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 16 * 1024).await else {
        return who.error(StatusCode::PAYLOAD_TOO_LARGE, i18n::t(who.lang, "bad_form"));
    };
    if let Some(r) = who.form_refusal(&form(&body)) {
        return r;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = s.store.end_console_session(&token_hash(&id)).await {
            tracing::error!(error = %e, "console sign-out not stored");
            return who.error(StatusCode::SERVICE_UNAVAILABLE, i18n::t(who.lang, "error"));
        }
    }
    let mut resp = redirect("/signin");
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, &headers));
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert!(safe_next("/waves/1?x=2"));
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "/signin?next=/"] {
            assert!(!safe_next(bad), "{bad}");
        }
        assert_eq!(query_next(Some("next=%2F%2Fevil.example")), "/");
        assert_eq!(query_next(Some("next=%2Fwork")), "/work");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; inflow_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "inflow"), None);
        let c = set_cookie(SESSION_COOKIE, "v", 60, &h);
        assert_eq!(c, "inflow_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(SESSION_COOKIE, "v", 60, &h).to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address() {
        let s = ConsoleSettings { attempts_per_minute: 2, ..Default::default() };
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(s.may_try(a));
        s.failed(a);
        s.failed(a);
        assert!(!s.may_try(a) && s.may_try(b));
    }
}
