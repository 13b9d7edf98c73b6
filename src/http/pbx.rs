//! PBX webhook endpoints: verify and parse with the provider's adapter, persist the events,
//! answer 2xx, and leave the CRM work to the `pbx-call` job.
//!
//! 401 wrong/missing signature (nothing written), 413 body over `pbx.body_limit_bytes`,
//! 400 malformed body or missing field (named), 200 + ignored for event types we do not use.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use super::{ApiError, AppState};
use crate::ingest::pbx::generic::Generic;
use crate::ingest::pbx::mango::Mango;
use crate::ingest::pbx::process::{IngestRequest, PbxRuntime};
use crate::ingest::pbx::twilio::Twilio;
use crate::ingest::pbx::zadarma::Zadarma;
use crate::ingest::pbx::{Parsed, WebhookError, WebhookRequest};
use crate::store::PbxEventRow;

/// The configured adapters and the processing runtime.
pub struct PbxWebhooks {
    pub runtime: Arc<PbxRuntime>,
    /// The group-commit writer's inbox.
    pub writer: tokio::sync::mpsc::Sender<IngestRequest>,
    pub zadarma: Option<Zadarma>,
    pub mango: Option<Mango>,
    pub twilio: Option<Twilio>,
    pub generic: Option<Generic>,
    pub body_limit: usize,
}

pub fn routes(body_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/pbx/zadarma", post(zadarma).get(zadarma))
        .route("/pbx/mango/{*rest}", post(mango))
        .route("/pbx/twilio/{*rest}", post(twilio))
        .route("/pbx/generic", post(generic))
        .layer(DefaultBodyLimit::max(body_limit))
}

fn not_configured(provider: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "provider_not_configured",
        format!("the {provider} endpoint is not enabled in [pbx.{provider}]"),
    )
    .into_response()
}

/// Logs each ignored event type once per process, not once per request.
fn note_ignored(provider: &str, kind: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let key = format!("{provider}:{kind}");
    if SEEN.get_or_init(Default::default).lock().map(|mut s| s.insert(key)).unwrap_or(false) {
        tracing::info!(provider, event = kind, "ignoring PBX events of this type (logged once)");
    }
}

/// Persists the events, enqueues final calls, and answers.
async fn accept(
    state: &AppState,
    provider: &'static str,
    parsed: Parsed,
    body: &[u8],
) -> Result<serde_json::Value, Response> {
    let hooks = state.pbx.as_ref().expect("checked by the caller");
    let events = match parsed {
        Parsed::Echo(text) => return Ok(json!({ "echo": text })), // answered by `ingest`
        Parsed::Ignored(kind) => {
            note_ignored(provider, &kind);
            return Ok(json!({ "status": "ignored", "event": kind }));
        }
        Parsed::Events(e) => e,
    };
    // Ids become keys and index entries: bounded length, no control characters.
    for e in &events {
        for (name, v) in [("call id", &e.call_id), ("event id", &e.event_id)] {
            if v.is_empty() || v.len() > 512 || v.chars().any(char::is_control) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("the {name} must be 1..512 characters without control characters"),
                )
                .into_response());
            }
        }
    }
    let rows: Vec<PbxEventRow> = events
        .iter()
        .map(|e| PbxEventRow {
            call_id: e.call_id.clone(),
            event_id: e.event_id.clone(),
            facts: serde_json::to_string(&e.facts).unwrap_or_default(),
            is_final: e.facts.is_final,
        })
        .collect();
    let raw = String::from_utf8_lossy(body).into_owned();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let unavailable = || {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the event could not be stored; retry later")
            .into_response()
    };
    if hooks.writer.send(IngestRequest { provider, rows, raw, reply }).await.is_err() {
        return Err(unavailable());
    }
    let updates = match answer.await {
        Ok(Ok(u)) => u,
        _ => return Err(unavailable()),
    };
    let calls: Vec<_> = updates.iter().map(|u| json!({ "call_id": u.call_id, "duplicate": !u.new_event, "status": u.status, "activityid": u.activityid })).collect();
    Ok(json!({ "status": "accepted", "calls": calls }))
}

fn request<'a>(
    method: &'a Method,
    uri: &'a Uri,
    prefix: &str,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> WebhookRequest<'a> {
    let path = uri.path();
    WebhookRequest {
        method: method.as_str(),
        subpath: path.strip_prefix(prefix).unwrap_or(path),
        query: uri.query(),
        headers,
        body,
        received_at: Utc::now(),
    }
}

/// Verify + parse with the provider's adapter, then persist: the common path of every
/// provider endpoint. `Err` is a response to send as is: a refusal, or the text a provider's
/// URL check wants echoed (Zadarma `zd_echo`).
async fn ingest(
    s: &AppState,
    provider: &'static str,
    (method, uri, headers, body): (&Method, &Uri, &HeaderMap, &Bytes),
    parse: impl FnOnce(&WebhookRequest<'_>) -> Result<Parsed, WebhookError>,
) -> Result<serde_json::Value, Response> {
    let req = request(method, uri, &format!("/pbx/{provider}"), headers, body);
    let parsed = match parse(&req) {
        Ok(Parsed::Echo(text)) => {
            return Err(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
        }
        Ok(p) => p,
        Err(WebhookError::Unauthorized(why)) => {
            tracing::warn!(provider, %why, "webhook refused");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response());
        }
        Err(WebhookError::Malformed(why)) => {
            tracing::warn!(provider, %why, "malformed webhook");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed", why).into_response());
        }
    };
    accept(s, provider, parsed, body).await
}

async fn zadarma(State(s): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(a) = s.pbx.as_ref().and_then(|p| p.zadarma.as_ref()) else { return not_configured("zadarma") };
    match ingest(&s, "zadarma", (&method, &uri, &headers, &body), |r| a.parse(r)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn mango(State(s): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(a) = s.pbx.as_ref().and_then(|p| p.mango.as_ref()) else { return not_configured("mango") };
    match ingest(&s, "mango", (&method, &uri, &headers, &body), |r| a.parse(r)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn twilio(State(s): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(a) = s.pbx.as_ref().and_then(|p| p.twilio.as_ref()) else { return not_configured("twilio") };
    let dial = uri.path().trim_end_matches('/').ends_with("/dial");
    match ingest(&s, "twilio", (&method, &uri, &headers, &body), |r| a.parse(r)).await {
        // The <Dial action> reply replaces the rest of the call's TwiML: the dial is over.
        Ok(_) if dial => (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>",
        )
            .into_response(),
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn generic(State(s): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(a) = s.pbx.as_ref().and_then(|p| p.generic.as_ref()) else { return not_configured("generic") };
    match ingest(&s, "generic", (&method, &uri, &headers, &body), |r| a.parse(r)).await {
        Ok(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Err(r) => r,
    }
}
