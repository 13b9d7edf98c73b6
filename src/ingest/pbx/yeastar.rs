//! Yeastar PBXs' call detail reports, in the three dialects Yeastar has shipped, all JSON
//! POSTs to the URL the PBX was given: S-Series / K2 / Cloud PBX API v1 (`"action":
//! "NewCdr"`) and v2 (`"event": "NewCdr"`) with `callid`, `timestart`, `callfrom`,
//! `callto`, `callduraction`, `talkduraction`, `status`, `type`, `didnumber`, `recording`;
//! and the P-Series webhook (`"type": 30012`, "Call End Details") whose `msg` — a JSON
//! object, or a JSON string holding one — has `call_id`, `time_start`, `call_from`,
//! `call_to`, `call_duration`, `talk_duration`, `did_number`, `uid`. Durations are whole
//! seconds as strings or numbers; empty fields may be a single space; `time_start` is the
//! PBX's local time (`pbx.yeastar.timezone`). Other events are answered and ignored. The
//! PBX must get a 2xx or it sends again. The reports are not signed: the URL carries a
//! token (`/pbx/yeastar/<token>`). Source: help.yeastar.com developer guides (k2-developer
//! api_cdr, k2-developer-v2 event-NewCdr, p-series event-new-cdr) — see
//! fixtures/pbx/yeastar/SOURCES.md.

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, url_token_ok,
};

/// The Yeastar adapter: the URL's token and the PBX's zone.
#[derive(Debug, Clone)]
pub struct Yeastar {
    pub token: String,
    pub tz: Tz,
}

/// A field by any of its dialects' names, as text, blank values absent.
fn text(m: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match m.get(*k)? {
        serde_json::Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

impl Yeastar {
    fn time(&self, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, WebhookError> {
        // The layout follows the PBX's display setting.
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
            .ok_or_else(|| WebhookError::invalid("time_start", format!("'{raw}' is not a date and time")))?;
        self.tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(|| WebhookError::invalid("time_start", "not a local time"))
    }
}

impl Adapter for Yeastar {
    fn name(&self) -> &'static str {
        "yeastar"
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !url_token_ok(req, &self.token) {
            return Err(WebhookError::Unauthorized(
                "the URL's token is wrong or missing (/pbx/yeastar/<token>)".into(),
            ));
        }
        let outer: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(req.body)
            .map_err(|e| WebhookError::Malformed(format!("the report is not a JSON object: {e}")))?;
        let kind = text(&outer, &["event", "action", "type"]).unwrap_or_default();
        let m = match kind.as_str() {
            "NewCdr" => outer,
            "30012" => match outer.get("msg") {
                Some(serde_json::Value::Object(o)) => o.clone(),
                Some(serde_json::Value::String(s)) => serde_json::from_str(s)
                    .map_err(|e| WebhookError::invalid("msg", format!("not a JSON object: {e}")))?,
                _ => return Err(WebhookError::missing("msg")),
            },
            other => return Ok(Parsed::Ignored(other.to_string())),
        };
        let call_id = text(&m, &["call_id", "callid"]).ok_or_else(|| WebhookError::missing("callid"))?;
        let secs = |keys: &[&str]| -> Result<i64, WebhookError> {
            match text(&m, keys) {
                Some(v) => v.parse().map_err(|e| WebhookError::invalid(keys[0], e)),
                None => Ok(0),
            }
        };
        let (total, talk) = (secs(&["call_duration", "callduraction"])?, secs(&["talk_duration", "talkduraction"])?);
        let status = text(&m, &["status"]).unwrap_or_default().to_ascii_uppercase();
        let disposition = match status.split_whitespace().collect::<Vec<_>>().join(" ").as_str() {
            "ANSWERED" | "ANSWERD" => Disposition::Answered,
            "NO ANSWER" | "NO ANSWERED" | "NOANSWER" | "VOICEMAIL" | "ABANDONED" => Disposition::Missed,
            "BUSY" => Disposition::Busy,
            "FAILED" => Disposition::Failed,
            other => return Err(WebhookError::invalid("status", format!("unknown value '{other}'"))),
        };
        let direction = match text(&m, &["type", "call_type"]).unwrap_or_default().to_ascii_lowercase().as_str() {
            "outbound" => Direction::Outbound,
            "internal" => Direction::Internal,
            _ => Direction::Inbound,
        };
        let start = match text(&m, &["time_start", "timestart"]) {
            Some(t) => Some(self.time(&t)?),
            None => None,
        };
        let (from, to) = (text(&m, &["call_from", "callfrom"]), text(&m, &["call_to", "callto"]));
        let answered = disposition == Disposition::Answered;
        let mut facts = CallFacts {
            direction: Some(direction),
            did: text(&m, &["did_number", "didnumber"]),
            started_at: start,
            ended_at: start.map(|s| s + chrono::Duration::seconds(total)),
            answered_at: if answered {
                start.map(|s| s + chrono::Duration::seconds((total - talk).max(0)))
            } else {
                None
            },
            duration_secs: Some(if answered { talk } else { 0 }),
            disposition: Some(disposition),
            recording: text(&m, &["recording"]),
            is_final: true,
            rank: 2,
            ..Default::default()
        };
        match direction {
            Direction::Outbound => (facts.extension, facts.external) = (from, to),
            _ => (facts.external, facts.extension) = (from, to),
        }
        let event_id = format!("cdr:{}", text(&m, &["uid", "cdrid"]).unwrap_or_else(|| call_id.clone()));
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}
