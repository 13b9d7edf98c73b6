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
        (self.status, Json(json!({ "error": err }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rule(r) => {
                // A conflict with existing data is 409; a request the rules reject is 422.
                let status = if r.code == "duplicate_found" || r.code == "ambiguous_duplicate" || r.code.ends_with("_not_open") || r.code.starts_with("lead_") {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                ApiError { status, code: r.code.to_string(), message: format!("{} ({})", r.message, r.rule), candidates: r.candidates }
            }
            StoreError::NotFound { kind, id } => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{kind} {id} not found")),
            StoreError::Conflict { kind, id } => ApiError::new(StatusCode::CONFLICT, "version_conflict", format!("{kind} {id} was changed concurrently")),
            StoreError::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable"),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

/// The router with every route of the daemon.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let pbx_limit = state.pbx.as_ref().map(|p| p.body_limit).unwrap_or(body_limit);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .merge(unsubscribe::routes())
        .merge(pbx::routes(pbx_limit))
        .with_state(state)
}

/// Process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Database reachable and migrations applied.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.readiness().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()).into_response()
        }
    }
}
