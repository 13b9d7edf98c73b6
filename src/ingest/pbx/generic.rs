//! inflow's own call-event format, for PBXs without an adapter (documented in README,
//! "Generic PBX format"). JSON, unknown fields refused; authenticated by a bearer token or
//! an HMAC-SHA256 of the raw body (`X-Inflow-Signature: sha256=<hex>`).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, ct_eq, hmac_sha256};

/// The generic adapter: whichever of the two secrets is configured.
#[derive(Debug, Clone)]
pub struct Generic {
    pub token: Option<String>,
    pub hmac_secret: Option<String>,
}

/// One call event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericEvent {
    /// The PBX's id of the call; all events of a call share it.
    pub call_id: String,
    /// Unique per event; default `<call_id>:<event>[:<leg_id>]`. Redeliveries must repeat it.
    pub event_id: Option<String>,
    /// One leg of a call that has several (a ring group, a forward): each leg's `end` is its
    /// own event.
    pub leg_id: Option<String>,
    /// start | answer | end | recording
    pub event: String,
    /// inbound | outbound | internal
    pub direction: Option<Direction>,
    /// The customer's number, any format.
    pub external_number: Option<String>,
    /// The number dialled (DID / tracking number), for inbound calls.
    pub did: Option<String>,
    /// The internal extension.
    pub extension: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Talk time in seconds.
    pub duration_secs: Option<i64>,
    /// answered | missed | busy | failed (required on `end`).
    pub disposition: Option<Disposition>,
    pub recording_url: Option<String>,
}

/// Fields holding ids and numbers: a PBX script may write them as JSON numbers.
const TEXT_FIELDS: [&str; 6] = ["call_id", "event_id", "leg_id", "external_number", "did", "extension"];

/// The event, with a type error naming its field (serde's own message names only a line
/// and column).
fn read_event(body: &[u8]) -> Result<GenericEvent, WebhookError> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("the body is not a JSON object: {e}")))?;
    for k in TEXT_FIELDS {
        if let Some(v) = map.get_mut(k).filter(|v| v.is_number()) {
            *v = serde_json::Value::String(v.to_string());
        }
    }
    for (k, v) in &map {
        let fits = match k.as_str() {
            "call_id" | "event" | "event_id" | "leg_id" | "external_number" | "did" | "extension" | "recording_url" => {
                v.is_string() || v.is_null()
            }
            "direction" => serde_json::from_value::<Option<Direction>>(v.clone()).is_ok(),
            "disposition" => serde_json::from_value::<Option<Disposition>>(v.clone()).is_ok(),
            "started_at" | "answered_at" | "ended_at" => {
                serde_json::from_value::<Option<DateTime<Utc>>>(v.clone()).is_ok()
            }
            "duration_secs" => v.is_i64() || v.is_null(),
            _ => return Err(WebhookError::invalid(k, "unknown field")),
        };
        if !fits {
            let shown: String = v.to_string().chars().take(60).collect();
            return Err(WebhookError::invalid(
                k,
                format!("{shown} is not a valid value (see README, \"Generic PBX format\")"),
            ));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| WebhookError::Malformed(format!("invalid call event: {e}")))
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body)))
}

impl Generic {
    fn authorized(&self, req: &WebhookRequest<'_>) -> bool {
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let by_token = match (&self.token, header("Authorization").and_then(|h| h.strip_prefix("Bearer "))) {
            (Some(t), Some(given)) => ct_eq(given.trim().as_bytes(), t.as_bytes()),
            _ => false,
        };
        let by_hmac = match (&self.hmac_secret, header("X-Inflow-Signature")) {
            (Some(s), Some(given)) => ct_eq(given.to_ascii_lowercase().as_bytes(), signature(s, req.body).as_bytes()),
            _ => false,
        };
        by_token || by_hmac
    }
}

impl super::Adapter for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    /// Documented as 202 Accepted (README, "Generic PBX format").
    fn summary_status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::ACCEPTED
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !self.authorized(req) {
            return Err(WebhookError::Unauthorized("a valid bearer token or X-Inflow-Signature is required".into()));
        }
        let ev = read_event(req.body)?;
        if ev.call_id.trim().is_empty() || ev.call_id.len() > 250 {
            return Err(WebhookError::invalid("call_id", "must be 1..250 characters"));
        }
        let mut facts = CallFacts {
            direction: ev.direction,
            external: ev.external_number,
            did: ev.did,
            extension: ev.extension,
            started_at: ev.started_at,
            answered_at: ev.answered_at,
            ended_at: ev.ended_at,
            duration_secs: ev.duration_secs,
            disposition: ev.disposition,
            recording: ev.recording_url,
            ..Default::default()
        };
        match ev.event.as_str() {
            "start" => {
                if facts.direction.is_none() {
                    return Err(WebhookError::missing("direction"));
                }
            }
            "answer" => facts.rank = 1,
            "end" => {
                if facts.disposition.is_none() {
                    return Err(WebhookError::missing("disposition"));
                }
                if facts.direction.is_none() {
                    return Err(WebhookError::missing("direction"));
                }
                facts.is_final = true;
                facts.rank = 2;
            }
            "recording" => {
                if facts.recording.is_none() {
                    return Err(WebhookError::missing("recording_url"));
                }
                facts.rank = 4;
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        }
        if let Some(d) = facts.duration_secs {
            if !(0..=86_400 * 7).contains(&d) {
                return Err(WebhookError::invalid("duration_secs", "must be 0..604800"));
            }
        }
        let event_id = ev.event_id.unwrap_or_else(|| match &ev.leg_id {
            Some(leg) => format!("{}:{}:{leg}", ev.call_id, ev.event),
            None => format!("{}:{}", ev.call_id, ev.event),
        });
        Ok(Parsed::Events(vec![CallEvent { call_id: ev.call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field_and_numbers_pass_as_ids() {
        let e = read_event(br#"{"call_id": "a", "event": "end", "duration_secs": "95"}"#).unwrap_err();
        assert!(e.to_string().contains("'duration_secs'"), "{e}");
        let e = read_event(br#"{"call_id": "a", "event": "end", "disposition": "hung"}"#).unwrap_err();
        assert!(e.to_string().contains("'disposition'"), "{e}");
        let e = read_event(br#"{"call_id": "a", "event": "end", "colour": "red"}"#).unwrap_err();
        assert!(e.to_string().contains("'colour'"), "{e}");
        let ok = read_event(br#"{"call_id": 1764226800, "event": "end", "extension": 101}"#).unwrap();
        assert_eq!((ok.call_id.as_str(), ok.extension.as_deref()), ("1764226800", Some("101")));
    }
}
