//! Mango Office VPBX API notifications: POST form fields `vpbx_api_key`, `sign`, `json` to
//! `<base>/events/call`, `/events/summary`, `/events/recording`; `sign` = lowercase hex
//! SHA-256 of api_key + json (as received) + api_salt. Legs of one call share `entry_id`;
//! events arrive in parallel and out of order (ordered by `seq`); `/events/summary` closes
//! the call. Numeric fields arrive as JSON numbers or strings.
//! Source: "MANGO OFFICE API ВАТС" v1.9/1.10 §3.1.2 (/events/call), §3.1.4
//! (/events/recording), §3.1.6 (/events/summary), §2.4.3 (signature).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::Digest;

use super::{
    CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, ct_eq, form_fields, required,
};

/// The Mango adapter: the VPBX API key and salt.
#[derive(Debug, Clone)]
pub struct Mango {
    pub api_key: String,
    pub api_salt: String,
}

/// sha256_hex(api_key + json + api_salt).
pub fn sign(api_key: &str, json: &str, salt: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(api_key.as_bytes());
    h.update(json.as_bytes());
    h.update(salt.as_bytes());
    hex::encode(h.finalize())
}

/// A number that may be a JSON number or a numeric string.
fn num(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string that may arrive as a number; empty strings are absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn at(v: Option<&Value>) -> Option<DateTime<Utc>> {
    num(v).filter(|t| *t > 0).and_then(|t| DateTime::from_timestamp(t, 0))
}

fn req_text(j: &Value, key: &str) -> Result<String, WebhookError> {
    text(j.get(key)).ok_or_else(|| WebhookError::missing(&format!("json.{key}")))
}

/// The dialled number: a call-tracking number (dct.type 1 or 2) is tried first, the PBX
/// line second (a dynamic tracking pool number is often configured nowhere).
fn did(j: &Value, line: Option<String>) -> (Option<String>, Option<String>) {
    let dct = j.get("dct");
    match (num(dct.and_then(|d| d.get("type"))), text(dct.and_then(|d| d.get("number")))) {
        (Some(1 | 2), Some(n)) => (Some(n), line),
        _ => (line, None),
    }
}

impl super::Adapter for Mango {
    fn name(&self) -> &'static str {
        "mango"
    }
    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        let kind = req.subpath.trim_end_matches('/');
        if !matches!(kind, "/events/call" | "/events/summary" | "/events/recording") {
            // dtmf, sms, record/added, command results, the cabinet's connection test.
            return Ok(Parsed::Ignored(kind.to_string()));
        }
        let f = form_fields(req.body)?;
        let key =
            required(&f, "vpbx_api_key").map_err(|_| WebhookError::Unauthorized("missing vpbx_api_key".into()))?;
        let given = required(&f, "sign").map_err(|_| WebhookError::Unauthorized("missing sign".into()))?;
        let json = required(&f, "json")?;
        if !ct_eq(key.as_bytes(), self.api_key.as_bytes()) {
            return Err(WebhookError::Unauthorized("unknown vpbx_api_key".into()));
        }
        if !ct_eq(given.trim().to_ascii_lowercase().as_bytes(), sign(key, json, &self.api_salt).as_bytes()) {
            return Err(WebhookError::Unauthorized("sign does not match".into()));
        }
        let j: Value = serde_json::from_str(json).map_err(|e| WebhookError::invalid("json", e))?;
        if !j.is_object() {
            return Err(WebhookError::invalid("json", "expected an object"));
        }
        let entry = req_text(&j, "entry_id")?;
        let from = j.get("from");
        let to = j.get("to");
        let (event_id, facts) = match kind {
            "/events/call" => {
                let call = req_text(&j, "call_id")?;
                let state = req_text(&j, "call_state")?;
                let seq = num(j.get("seq")).ok_or_else(|| WebhookError::missing("json.seq"))?;
                let ts = at(j.get("timestamp"));
                let from_ext = text(from.and_then(|v| v.get("extension")));
                let to_ext = text(to.and_then(|v| v.get("extension")));
                let line = text(to.and_then(|v| v.get("line_number")));
                // A leg that starts at an employee and leaves through no line is outbound or
                // internal; the summary says which for sure.
                let inbound = line.is_some() || from_ext.is_none();
                // The heuristic direction stands until the summary (rank 3) says for sure, so a
                // call whose summary never comes is still closed the right way round.
                let mut facts = CallFacts {
                    seq,
                    rank: 0,
                    direction: Some(if inbound { Direction::Inbound } else { Direction::Outbound }),
                    ..Default::default()
                };
                if inbound {
                    facts.external = text(from.and_then(|v| v.get("number")));
                    (facts.did, facts.line) = did(&j, line);
                } else {
                    facts.external = text(to.and_then(|v| v.get("number")));
                    facts.extension = from_ext.clone();
                }
                match state.as_str() {
                    "Appeared" => facts.started_at = ts,
                    "Connected" => {
                        facts.answered_at = ts;
                        facts.rank = 1;
                        if inbound {
                            facts.extension = to_ext;
                        }
                    }
                    // OnHold, Disconnected: nothing new for the record; the summary closes it.
                    _ => {}
                }
                (format!("call:{entry}:{call}:{seq}:{state}"), facts)
            }
            "/events/summary" => {
                let direction = match num(j.get("call_direction")) {
                    Some(1) => Direction::Inbound,
                    Some(2) => Direction::Outbound,
                    Some(0) => Direction::Internal,
                    _ => return Err(WebhookError::invalid("json.call_direction", "expected 0, 1 or 2")),
                };
                let talk = at(j.get("talk_time"));
                let end = at(j.get("end_time"));
                // talk_time > 0 means a conversation happened (entry_result is 1 even for IVR-only calls).
                let answered = talk.is_some();
                let (external, extension) = match direction {
                    Direction::Inbound => {
                        (text(from.and_then(|v| v.get("number"))), text(to.and_then(|v| v.get("extension"))))
                    }
                    _ => (text(to.and_then(|v| v.get("number"))), text(from.and_then(|v| v.get("extension")))),
                };
                // Inbound: the tracking number or the dialled line; outbound: the line used.
                let (did_n, line_n) = if direction == Direction::Inbound {
                    did(&j, text(j.get("line_number")))
                } else {
                    (text(j.get("line_number")), None)
                };
                let facts = CallFacts {
                    direction: Some(direction),
                    external,
                    did: did_n,
                    line: line_n,
                    extension,
                    started_at: at(j.get("create_time")),
                    answered_at: talk,
                    ended_at: end,
                    duration_secs: Some(match (talk, end) {
                        (Some(t), Some(e)) if answered => (e - t).num_seconds().max(0),
                        _ => 0,
                    }),
                    disposition: Some(if answered {
                        Disposition::Answered
                    } else if num(j.get("disconnect_reason")) == Some(1121) {
                        Disposition::Busy
                    } else {
                        Disposition::Missed
                    }),
                    is_final: true,
                    rank: 3,
                    ..Default::default()
                };
                (format!("summary:{entry}"), facts)
            }
            _ => {
                let rec = req_text(&j, "recording_id")?;
                let state = req_text(&j, "recording_state")?;
                let facts = CallFacts {
                    recording: (state == "Completed").then(|| format!("mango:{rec}")),
                    seq: num(j.get("seq")).unwrap_or(0),
                    rank: 4,
                    ..Default::default()
                };
                (format!("recording:{rec}:{state}"), facts)
            }
        };
        Ok(Parsed::Events(vec![CallEvent { call_id: entry, event_id, facts }]))
    }
}
