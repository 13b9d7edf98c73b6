//! The HTTP listener: health and readiness now; the admin API, webhooks, unsubscribe and
//! metrics mount here as they land. Error bodies are `{"error": {"code", "message"}}` and
//! never carry internals.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::store::{Store, StoreError};

pub mod api;
pub mod client;
pub mod console;
pub mod pbx;
pub mod unsubscribe;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// PBX webhooks, when any provider is configured.
    pub pbx: Option<std::sync::Arc<pbx::PbxWebhooks>>,
    /// Checks the signed unsubscribe links of wave mail.
    pub unsubscribe: Option<crate::waves::LinkSigner>,
    /// Admin API settings (tokens from the config, org time zone, view parameters).
    pub api: std::sync::Arc<api::ApiSettings>,
    /// The wave sender, for test sends (when this daemon sends waves).
    pub waves: Option<std::sync::Arc<crate::waves::WaveRuntime>>,
    /// The daemon's configuration (mailbox rules for quarantine replay).
    pub config: Option<std::sync::Arc<crate::config::Config>>,
    /// `smtp.from`: the default sender of a wave.
    pub smtp_from: Option<String>,
    /// The worker supervisor (for `/healthz`).
    pub health: Option<std::sync::Arc<crate::app::Health>>,
    /// The web console's settings and sign-in limiter.
    pub console: std::sync::Arc<console::ConsoleSettings>,
}

impl AppState {
    /// State over a store alone: no PBX, no waves, default API settings.
    pub fn bare(store: Store) -> AppState {
        AppState {
            store,
            pbx: None,
            unsubscribe: None,
            api: Default::default(),
            waves: None,
            config: None,
            smtp_from: None,
            health: None,
            console: Default::default(),
        }
    }
}

/// An error as the API shows it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub candidates: Vec<crate::crm::EntityRef>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), candidates: Vec::new() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if !self.candidates.is_empty() {
            err["candidates"] = json!(self.candidates);
        }
        let mut resp = (self.status, Json(json!({ "error": err }))).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so this connection cannot carry another
            // request: say so, or a client reuses it and its next request fails.
            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rule(r) => {
                // The rule says what kind of refusal it made (crm::error::Refusal).
                let status = match r.kind {
                    crate::crm::error::Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    crate::crm::error::Refusal::Conflict => StatusCode::CONFLICT,
                    crate::crm::error::Refusal::Forbidden => StatusCode::FORBIDDEN,
                };
                ApiError {
                    status,
                    code: r.code.to_string(),
                    message: format!("{} ({})", r.message, r.rule),
                    candidates: r.candidates,
                }
            }
            StoreError::NotFound { kind, id } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{kind} {id} not found"))
            }
            StoreError::Conflict { kind, id } => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", format!("{kind} {id} was changed concurrently"))
            }
            StoreError::Db(ref db) if db.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "a record with this key already exists")
            }
            StoreError::Db(ref db)
                if db.as_database_error().is_some_and(|d| d.is_foreign_key_violation() || d.is_check_violation()) =>
            {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "constraint",
                    "a value refers to a record that does not exist or is out of range",
                )
            }
            StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable")
            }
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

/// The router with every route of the daemon.
pub fn router(state: AppState, body_limit: usize) -> Router {
    crate::metrics::install();
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::scrape));
    if state.api.enabled {
        r = r.merge(api::routes(state.clone()));
    }
    if state.console.enabled {
        r = r.merge(console::routes(state.clone()));
    }
    r.layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .merge(unsubscribe::routes())
        .merge(pbx::routes())
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// Process is up and every worker alive (a worker that died makes it 503, naming it). An
/// OAuth account that needs a sign-in makes it "degraded", naming the account and the command
/// that fixes it — still 200: restarting the daemon would not help, a person has to sign in.
async fn healthz(State(s): State<AppState>) -> Response {
    let dead = s.health.as_ref().map(|h| h.dead()).unwrap_or_default();
    if !dead.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "dead_workers": dead})))
            .into_response();
    }
    let accounts = s.config.as_deref().map(crate::oauth::accounts).unwrap_or_default();
    // The database's own trouble is /readyz's to report.
    let trouble = crate::oauth::trouble(&s.store, &accounts).await.unwrap_or_default();
    if trouble.is_empty() {
        return Json(json!({"status": "ok"})).into_response();
    }
    let auth_expired: Vec<_> = trouble
        .iter()
        .map(|(a, why)| json!({"account": a.name, "state": "auth_expired", "detail": why, "fix": a.fix()}))
        .collect();
    Json(json!({"status": "degraded", "auth_expired": auth_expired})).into_response()
}

/// Database reachable and migrations applied.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.readiness().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database is unreachable or not migrated")
                .into_response()
        }
    }
}
