//! UIS / CoMagic (and Novofon 2.0, on the same platform) event notifications. The account
//! administrator adds one HTTP notification per event type (Уведомления → Добавить; needs
//! the "API Базовый" option) with a method, a URL and a body template of `{{variables}}`,
//! which UIS fills in as JSON literals (strings quoted, numbers bare, `null`). UIS signs
//! nothing: the URL carries a token (`/pbx/uis/<token>`). inflow ships the templates to
//! paste (README, "UIS / CoMagic templates"); each names its event in a literal `"event"`:
//! `incoming` (Входящий звонок на виртуальный номер), `outgoing` (Исходящий звонок),
//! `talk` (Начало разговора), `end` (Завершение звонка), `lost` (Потерянный звонок),
//! `record` (Записанный разговор). Templates written otherwise are read too: the event is
//! then told by the fields present, nested objects are flattened, and a variable UIS left
//! unfilled (`{{talk_time_duration}}`) reads as absent. `notification_time` has no zone:
//! it is the account's local time (`pbx.uis.timezone`, default the org's).
//! Source: uiscom.ru academy "Уведомления о событиях"; the variables as CRM vendors'
//! templates use them (Planfix "Интеграция с UIS") and a real payload quoted in
//! fixtures/pbx/uis/SOURCES.md.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, url_token_ok,
};

/// The UIS adapter: the URL's token and the account's time zone.
#[derive(Debug, Clone)]
pub struct Uis {
    pub token: String,
    pub tz: Tz,
}

/// Every scalar in a JSON document by its key, nested objects flattened (the first value of
/// a key wins; arrays are joined with ", ").
fn flatten(v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    if let serde_json::Value::Object(o) = v {
        for (k, v) in o {
            let text = match v {
                serde_json::Value::Object(_) => {
                    flatten(v, out);
                    continue;
                }
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            if !text.is_empty() {
                out.entry(k.clone()).or_insert(text);
            }
        }
    }
}

/// The body as UIS filled in the template: variables left unfilled become `null`.
fn body_json(body: &[u8]) -> Result<BTreeMap<String, String>, WebhookError> {
    let text = String::from_utf8_lossy(body);
    static UNFILLED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#""?\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}"?"#).expect("a valid pattern")
    });
    let text = UNFILLED.replace_all(&text, "null");
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| WebhookError::Malformed(format!("the notification body is not JSON (check the template): {e}")))?;
    let mut out = BTreeMap::new();
    flatten(&v, &mut out);
    Ok(out)
}

impl Uis {
    fn time(&self, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, WebhookError> {
        let raw = raw.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
            return Ok(t.with_timezone(&chrono::Utc));
        }
        let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f")
            .map_err(|e| WebhookError::invalid("notification_time", e))?;
        self.tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(|| WebhookError::invalid("notification_time", "not a local time"))
    }
}

impl Adapter for Uis {
    fn name(&self) -> &'static str {
        "uis"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["GET", "POST"]
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !url_token_ok(req, &self.token) {
            return Err(WebhookError::Unauthorized("the URL's token is wrong or missing (/pbx/uis/<token>)".into()));
        }
        let f = match req.body.trim_ascii() {
            b"" => serde_urlencoded::from_str::<Vec<(String, String)>>(req.query.unwrap_or(""))
                .map_err(|e| WebhookError::Malformed(format!("the query string is not URL-encoded: {e}")))?
                .into_iter()
                .filter(|(_, v)| !v.starts_with("{{"))
                .collect(),
            body => body_json(body)?,
        };
        let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(call_id) = get("call_session_id") else { return Ok(Parsed::Ignored("no call_session_id".into())) };
        let secs = |k: &str| -> Result<Option<i64>, WebhookError> {
            get(k).map(|v| v.trim().parse::<i64>().map_err(|e| WebhookError::invalid(k, e))).transpose()
        };
        let talk = secs("talk_time_duration")?;
        let total = secs("total_time_duration")?;
        let event = match get("event") {
            Some(e) => e.to_ascii_lowercase(),
            // A template of someone else's: told by what it carries.
            None if get("file_link").is_some() => "record".into(),
            None if total.is_some() => "end".into(),
            None if get("employee_ids").is_some() || (get("wait_time_duration").is_some() && talk.is_none()) => {
                "lost".into()
            }
            None => "incoming".into(),
        };
        let at = match get("notification_time") {
            Some(t) => self.time(t)?,
            None => req.received_at,
        };
        let direction = match (get("direction"), event.as_str()) {
            (Some("out"), _) | (None, "outgoing") => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let mut facts = CallFacts {
            direction: Some(direction),
            external: get("contact_phone_number").map(str::to_string),
            did: get("virtual_phone_number").map(str::to_string),
            extension: get("extension_phone_number").or(get("employee_id")).map(str::to_string),
            ..Default::default()
        };
        match event.as_str() {
            "incoming" | "outgoing" => facts.started_at = Some(at),
            "talk" | "talk_start" => {
                facts.answered_at = Some(at);
                facts.rank = 1;
            }
            "end" | "call_end" => {
                let talk = talk.unwrap_or(0);
                let d = if talk > 0 { Disposition::Answered } else { Disposition::Missed };
                facts.disposition = Some(d);
                facts.duration_secs = Some(talk);
                facts.ended_at = Some(at);
                facts.started_at = total.map(|t| at - chrono::Duration::seconds(t));
                if d == Disposition::Answered {
                    facts.answered_at = Some(at - chrono::Duration::seconds(talk));
                }
                facts.is_final = true;
                facts.rank = 2;
            }
            "lost" => {
                facts.disposition = Some(Disposition::Missed);
                facts.duration_secs = Some(0);
                facts.ended_at = Some(at);
                facts.is_final = true;
                facts.rank = 3;
            }
            "record" | "record_call" => {
                facts = CallFacts { recording: get("file_link").map(str::to_string), rank: 4, ..Default::default() };
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        }
        let event_id = format!("{call_id}:{event}");
        Ok(Parsed::Events(vec![CallEvent { call_id: call_id.to_string(), event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_template_with_gaps_and_nesting_reads() {
        let body = br#"{"event": "end", "notification_time": "2019-12-16 14:40:47.234", "call_session_id": 998677427,
            "contact_info": {"contact_phone_number": "79508418541"}, "talk_time_duration": {{talk_time_duration}},
            "tag_names": null, "employee_ids": [1, 2]}"#;
        let f = body_json(body).unwrap();
        assert_eq!(f.get("call_session_id").map(String::as_str), Some("998677427"));
        assert_eq!(f.get("contact_phone_number").map(String::as_str), Some("79508418541"), "nested objects flatten");
        assert!(!f.contains_key("talk_time_duration"), "an unfilled variable is absent");
        assert_eq!(f.get("employee_ids").map(String::as_str), Some("1, 2"));
        let u = Uis { token: "t".into(), tz: chrono_tz::Europe::Moscow };
        assert_eq!(u.time("2019-12-16 14:40:47.234").unwrap().to_rfc3339(), "2019-12-16T11:40:47.234+00:00");
    }
}
