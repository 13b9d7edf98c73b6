//! The operator's lists (issue 19 §3): quarantined and failed inbound mail with a replay
//! button, and the suppression list with the reason for each address. Read through the
//! API's ops pages; replay is the API's replay (`api::replay_mail`).

use crate::crm::status::EventStatus;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value as J, json};

use super::i18n::{self, Lang};
use super::pages::{failed, query_params};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::http::AppState;
use crate::http::api::{Access, Area, replay_mail};
use crate::store::api::OpsSet;

const PAGE: i64 = 50;

/// An instant column as people read it (the store gives RFC 3339).
fn when(lang: Lang, v: &J, tz: chrono_tz::Tz) -> String {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| i18n::datetime(lang, t.with_timezone(&chrono::Utc), tz))
        .unwrap_or_else(|| v.as_str().unwrap_or_default().to_string())
}

fn text(v: &J) -> String {
    match v {
        J::Null => String::new(),
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn page(
    s: &AppState,
    who: &Signed,
    set: OpsSet,
    raw: Option<String>,
) -> Result<(Vec<J>, i64, i64, i64), Response> {
    let params = query_params(raw);
    let page: i64 = params.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    match s.store.ops_page(set, &[], page, PAGE).await {
        Ok(Ok(p)) => Ok((p.items, p.total, page, (p.total + PAGE - 1) / PAGE)),
        Ok(Err(_)) => Err(who.error(StatusCode::BAD_REQUEST, i18n::t(who.lang, "not_found"))),
        Err(e) => Err(failed(who, e)),
    }
}

/// A page of an ops list in the frame: its rows and where the page is.
fn listing(who: &Signed, rows: Vec<J>, total: i64, page: i64, pages: i64) -> serde_json::Map<String, J> {
    let mut m = frame(who, "ops");
    m.insert("items".into(), json!(rows));
    m.insert("total".into(), json!(total));
    m.insert("page".into(), json!(page));
    m.insert("pages".into(), json!(pages));
    m
}

/// `GET /ops/quarantine`
pub async fn quarantine(who: Signed, State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Ops)) {
        return r;
    }
    let params = query_params(raw.clone());
    let (items, total, page, pages) = match page(&s, &who, OpsSet::Quarantine, raw).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (lang, tz) = (who.lang, s.api.tz());
    let rows: Vec<J> = items
        .iter()
        .map(|e| {
            json!({
                "id": text(&e["id"]),
                "received": when(lang, &e["received_at"], tz),
                "sender": text(&e["sender"]),
                "subject": text(&e["subject"]),
                "status": text(&e["status"]),
                "reason": text(&e["reason"]),
                "where": text(&e["raw_location"]),
            })
        })
        .collect();
    let mut m = listing(&who, rows, total, page, pages);
    m.insert("can_replay".into(), json!(who.can(Access::Write(Area::Ops))));
    m.insert("replayed".into(), json!(params.get("replayed")));
    render("quarantine.html", J::Object(m), StatusCode::OK)
}

/// The most of a held message the detail page shows.
const RAW_SHOWN: usize = 256 * 1024;

/// `GET /ops/quarantine/{id}`: one held message as it arrived (headers and body, as text),
/// with why it is held and the replay button: what an operator reads before "process again".
pub async fn held(who: Signed, State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Ops)) {
        return r;
    }
    let not_found = || who.error(StatusCode::NOT_FOUND, i18n::t(who.lang, "not_found"));
    let Ok(id) = id.parse::<uuid::Uuid>() else { return not_found() };
    let ev = match s.store.inbound_event_by_id(id).await {
        Ok(Some(ev)) if matches!(ev.status, EventStatus::Quarantined | EventStatus::Failed | EventStatus::Skipped) => {
            ev
        }
        Ok(_) => return not_found(),
        Err(e) => return failed(&who, e),
    };
    let (lang, tz) = (who.lang, s.api.tz());
    let raw = ev.raw.as_deref().unwrap_or_default();
    let shown = String::from_utf8_lossy(&raw[..raw.len().min(RAW_SHOWN)]).into_owned();
    let mut m = frame(&who, "ops");
    m.insert(
        "event".into(),
        json!({
            "id": ev.id.to_string(),
            "source": ev.source,
            "received": i18n::datetime(lang, ev.received_at, tz),
            "status": ev.status,
            "reason": ev.reason.unwrap_or_default(),
            "where": ev.raw_location.unwrap_or_default(),
        }),
    );
    m.insert("raw".into(), json!(shown));
    m.insert("has_raw".into(), json!(!raw.is_empty()));
    m.insert("raw_bytes".into(), json!(raw.len()));
    m.insert("cut".into(), json!(raw.len() > RAW_SHOWN));
    m.insert("can_replay".into(), json!(who.can(Access::Write(Area::Ops)) && ev.source == crate::store::MAIL_SOURCE));
    render("held.html", J::Object(m), StatusCode::OK)
}

/// `POST /ops/quarantine/{id}/replay` (admins).
pub async fn replay(who: Signed, State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match who.posted(&body, Access::Write(Area::Ops), &id) {
        Ok(p) => p.id,
        Err(r) => return *r,
    };
    match replay_mail(&s, id).await {
        Ok(out) => {
            let status = out["status"].as_str().unwrap_or_default();
            redirect(&format!(
                "/ops/quarantine?{}",
                serde_urlencoded::to_string([("replayed", status)]).unwrap_or_default()
            ))
        }
        Err(e) => who.error(e.status, &e.message),
    }
}

/// `GET /ops/suppression`: addresses and numbers nothing is sent to, and why.
pub async fn suppression(who: Signed, State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Ops)) {
        return r;
    }
    let (items, total, page, pages) = match page(&s, &who, OpsSet::Suppression, raw).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (lang, tz) = (who.lang, s.api.tz());
    let rows: Vec<J> = items
        .iter()
        .map(|e| {
            json!({
                "address": text(&e["address"]),
                "kind": text(&e["kind"]),
                "reason": i18n::suppression_reason(lang, &text(&e["reason"])),
                "source": text(&e["source"]),
                "detail": text(&e["detail"]),
                "since": when(lang, &e["created_on"], tz),
            })
        })
        .collect();
    let m = listing(&who, rows, total, page, pages);
    render("suppression.html", J::Object(m), StatusCode::OK)
}
