//! 3CX's server-side CRM integration: 3CX runs the XML template it is given (inflow ships
//! `contrib/3cx/inflow.xml`) and makes two kinds of request. The contact lookup,
//! `GET /pbx/3cx/lookup?number=[Number]` while a call rings, is answered with the one
//! record the number matches as a flat JSON object (`id`, `firstName`, `lastName`,
//! `company`, `phoneBusiness`, `entityType`), or `{}`. Call journaling, `POST
//! /pbx/3cx/report` once a call has ended (the template's `ReportCall` scenario), carries
//! the call as JSON: `call_type` (Inbound, Outbound, Missed — inbound unanswered —,
//! Notanswered — outbound unanswered), `number`, `agent` (the extension), `duration_s`,
//! `start_utc`, `end_utc`, `queue`. 3CX gives a journaled call no id, so one is made of its
//! start, agent, number and type; a variable 3CX could not fill arrives as its literal
//! `[Name]` and reads as absent. Authenticity: the template's Basic authentication with the
//! token as password. Source: 3cx.com/docs/server-side-crm-template-xml-description; working
//! templates (tierklinik-dobersberg/customer-service contrib/3cx/3cx-crm.xml, Pipedrive's,
//! Zammad's) — see fixtures/pbx/3cx/SOURCES.md.

use sha2::Digest;

use super::{
    Adapter, CallEvent, CallFacts, CallerCard, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest,
    request_fields, url_token_ok,
};

/// The 3CX adapter: the token of the template's authentication.
#[derive(Debug, Clone)]
pub struct ThreeCx {
    pub token: String,
}

fn time(f: &[(String, String)], key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, WebhookError> {
    match value(f, key) {
        None => Ok(None),
        Some(v) => chrono::DateTime::parse_from_rfc3339(v.trim())
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .map_err(|e| WebhookError::invalid(key, e)),
    }
}

/// A value 3CX filled in: empty, and literal `[Variable]` text it could not fill, are absent.
fn value<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let unfilled = |v: &str| v.starts_with('[') && v.ends_with(']');
    super::field(f, key).map(str::trim).filter(|v| !v.is_empty() && !unfilled(v))
}

impl Adapter for ThreeCx {
    fn name(&self) -> &'static str {
        "3cx"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["GET", "POST"]
    }

    fn reply(&self, _req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        Reply::Json(serde_json::json!({}))
    }

    fn card_reply(&self, number: &str, card: Option<&CallerCard>) -> Reply {
        let Some(c) = card else { return Reply::Json(serde_json::json!({})) };
        let (first, last) = match c.name.split_once(' ') {
            Some((f, l)) if c.record.kind != crate::crm::EntityKind::Account => (f, l),
            _ => ("", c.name.as_str()),
        };
        // 3CX drops a contact unless the number it looked up is among its phones.
        Reply::Json(serde_json::json!({
            "id": c.record.id.to_string(),
            "firstName": first,
            "lastName": last,
            "company": if c.record.kind == crate::crm::EntityKind::Account { c.name.as_str() } else { "" },
            "phoneBusiness": number,
            "entityType": c.record.kind.as_str(),
            "owner": c.owner_extension,
        }))
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !url_token_ok(req, &self.token) {
            return Err(WebhookError::Unauthorized("the template's token is wrong or missing".into()));
        }
        let f = request_fields(req)?;
        match req.subpath.trim_end_matches('/') {
            "/lookup" => {
                let number = value(&f, "number").ok_or_else(|| WebhookError::missing("number"))?;
                return Ok(Parsed::Lookup(number.to_string()));
            }
            "/report" => {}
            other => return Ok(Parsed::Ignored(format!("path {other}"))),
        }
        let call_type = value(&f, "call_type").ok_or_else(|| WebhookError::missing("call_type"))?;
        let (direction, disposition) = match call_type.to_ascii_lowercase().as_str() {
            "inbound" => (Direction::Inbound, Disposition::Answered),
            "missed" => (Direction::Inbound, Disposition::Missed),
            "outbound" => (Direction::Outbound, Disposition::Answered),
            "notanswered" => (Direction::Outbound, Disposition::Missed),
            other => return Err(WebhookError::invalid("call_type", format!("'{other}' is not a 3CX call type"))),
        };
        let secs: i64 = match value(&f, "duration_s") {
            Some(v) => {
                v.split('.').next().unwrap_or("0").parse().map_err(|e| WebhookError::invalid("duration_s", e))?
            }
            None => 0,
        };
        let (start, end) = (time(&f, "start_utc")?, time(&f, "end_utc")?);
        let answered = disposition == Disposition::Answered;
        let facts = CallFacts {
            direction: Some(direction),
            external: value(&f, "number").map(str::to_string),
            extension: value(&f, "agent").map(str::to_string),
            line: value(&f, "queue").map(str::to_string),
            started_at: start,
            ended_at: end,
            answered_at: if answered { end.map(|e| e - chrono::Duration::seconds(secs)) } else { None },
            duration_secs: Some(if answered { secs } else { 0 }),
            disposition: Some(disposition),
            is_final: true,
            rank: 3,
            ..Default::default()
        };
        // No call id in 3CX's journaling: one made of what identifies the call.
        let key = format!(
            "{}|{}|{}|{call_type}",
            value(&f, "start_utc").unwrap_or(""),
            value(&f, "agent").unwrap_or(""),
            value(&f, "number").unwrap_or("")
        );
        let call_id = match value(&f, "call_id") {
            Some(id) => id.to_string(),
            None => hex::encode(&sha2::Sha256::digest(key.as_bytes())[..12]),
        };
        let event_id = format!("{call_id}:report");
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}
