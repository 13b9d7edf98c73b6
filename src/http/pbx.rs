//! PBX webhook endpoints: verify and parse with the provider's adapter, persist the events,
//! answer as the provider expects, and leave the CRM work to the `pbx-call` job. Every
//! provider lives under `/pbx/<provider>[/…]` and is one `Adapter`: this file knows none of
//! them by name.
//!
//! 401 wrong/missing signature (nothing written), 413 body over `pbx.body_limit_bytes`,
//! 400 malformed body or missing field (named), 405 a method the provider does not use,
//! 200 + ignored for event types we do not use; every refusal is inflow's JSON error.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::Utc;
use serde_json::json;

use super::{ApiError, AppState};
use crate::ingest::pbx::process::{IngestRequest, PbxRuntime, SubmitError};
use crate::ingest::pbx::{Parsed, PbxAccount, Reply, WebhookError, WebhookRequest};

/// The configured adapters and the processing runtime.
pub struct PbxWebhooks {
    pub runtime: Arc<PbxRuntime>,
    /// The group-commit writer's inbox.
    pub writer: tokio::sync::mpsc::Sender<IngestRequest>,
    /// The enabled providers by name (the first segment below `/pbx/`), each with its
    /// accounts in configuration order.
    pub adapters: BTreeMap<&'static str, Vec<PbxAccount>>,
    pub body_limit: usize,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/pbx/{provider}", any(webhook)).route("/pbx/{provider}/{*rest}", any(webhook))
}

fn not_configured(provider: &str) -> Response {
    let provider: String = provider.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "provider_not_configured",
        format!("no enabled telephony provider is called '{provider}' (see [pbx.{provider}])"),
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
    hooks: &PbxWebhooks,
    provider: &'static str,
    account: &str,
    parsed: Parsed,
    body: &[u8],
) -> Result<serde_json::Value, Response> {
    let events = match parsed {
        // Answered by `webhook`.
        Parsed::Echo(text) => return Ok(json!({ "echo": text })),
        Parsed::Lookup(phone) => return Ok(json!({ "lookup": phone })),
        Parsed::Ignored(kind) => {
            note_ignored(provider, &kind);
            return Ok(json!({ "status": "ignored", "event": kind }));
        }
        Parsed::Events(e) => e,
    };
    let raw = String::from_utf8_lossy(body).into_owned();
    let updates = IngestRequest::submit(&hooks.writer, provider, account, &events, raw).await.map_err(|e| match e {
        SubmitError::Malformed(why) => ApiError::new(StatusCode::BAD_REQUEST, "malformed", why).into_response(),
        SubmitError::Unavailable(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the event could not be stored; retry later")
                .into_response()
        }
    })?;
    let calls: Vec<_> = updates
        .iter()
        .map(|u| {
            json!({ "call_id": u.call_id, "duplicate": !u.new_event,
        "status": u.status, "activityid": u.activityid })
        })
        .collect();
    Ok(json!({ "status": "accepted", "calls": calls }))
}

/// One webhook request: the provider's adapter verifies and parses it, the events are
/// stored, and the provider gets the answer its documentation asks for.
async fn webhook(
    State(s): State<AppState>,
    Path(params): Path<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let name = params.get("provider").map(String::as_str).unwrap_or("");
    let Some(hooks) = s.pbx.as_ref() else { return not_configured(name) };
    let Some(accounts) = hooks.adapters.get(name).filter(|a| !a.is_empty()) else { return not_configured(name) };
    let adapter = &accounts[0].adapter;
    let provider = adapter.name();
    if !adapter.methods().contains(&method.as_str()) {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{provider} notifications use {}", adapter.methods().join(" or ")),
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(body, hooks.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over pbx.body_limit_bytes ({} bytes)", hooks.body_limit),
            )
            .into_response();
        }
    };
    let prefix = format!("/pbx/{name}");
    let path = uri.path();
    let req = WebhookRequest {
        method: method.as_str(),
        subpath: path.strip_prefix(&prefix).unwrap_or(path),
        query: uri.query(),
        headers: &headers,
        body: &body,
        received_at: Utc::now(),
    };
    // The request is the account's whose secret or token verifies it (issue 20 §3); 401 when
    // none does.
    let mut refused = String::new();
    let mut chosen = None;
    for a in accounts {
        match a.adapter.parse(&req) {
            Err(WebhookError::Unauthorized(why)) => refused = why,
            other => {
                chosen = Some((a, other));
                break;
            }
        }
    }
    let (account, parsed) = match chosen {
        Some(c) => c,
        None => (&accounts[0], Err(WebhookError::Unauthorized(refused))),
    };
    let adapter = &account.adapter;
    let parsed = match parsed {
        Ok(Parsed::Echo(text)) => {
            return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
        }
        Ok(p) => p,
        Err(WebhookError::Unauthorized(why)) => {
            tracing::warn!(provider, %why, "webhook refused");
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response();
        }
        Err(WebhookError::Malformed(why)) => {
            tracing::warn!(provider, %why, "malformed webhook");
            return ApiError::new(StatusCode::BAD_REQUEST, "malformed", why).into_response();
        }
    };
    if let Parsed::Lookup(phone) = &parsed {
        return match hooks.runtime.store.caller_card(phone).await {
            Ok(card) => reply_response(adapter.card_reply(phone, card.as_ref())),
            Err(e) => {
                tracing::warn!(provider, error = %e, "caller lookup failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the lookup failed; retry later")
                    .into_response()
            }
        };
    }
    let ignored = matches!(parsed, Parsed::Ignored(_));
    let reply = adapter.reply(&req, &parsed);
    let summary = match accept(hooks, provider, &account.name, parsed, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match reply {
        Reply::Summary => {
            // An ignored event is a plain 200; stored ones get the provider's status.
            let status = if ignored { StatusCode::OK } else { adapter.summary_status() };
            (status, axum::Json(summary)).into_response()
        }
        other => reply_response(other),
    }
}

fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::Body { content_type, body } => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Reply::Json(v) => axum::Json(v).into_response(),
        Reply::Summary => axum::Json(json!({})).into_response(),
    }
}
