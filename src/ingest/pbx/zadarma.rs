//! Zadarma (and Novofon classic, a rebrand with the same wire format) "notifications about
//! calls in PBX": POST form fields, `Signature` header = base64 of the *hex text* of
//! HMAC-SHA1(API secret, fields of the event concatenated). `GET ?zd_echo=X` must answer X.
//! Source: github zadarma/user-api-v1 lib/Webhook/*.php, lib/Api.php getWebhookEvent,
//! lib/Client.php encodeSignature; zadarma.com/en/support/api/#api_webhooks.

use base64::Engine as _;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::{
    CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, ct_eq, field, form_fields,
    hmac_sha1, required,
};

/// The Zadarma adapter: its name (`zadarma`, or `novofon` for a Novofon classic account
/// beside it, each with its own secret), its secret and the zone `call_start` is written in.
#[derive(Debug, Clone)]
pub struct Zadarma {
    pub name: &'static str,
    pub secret: String,
    pub tz: Tz,
    /// Notifications whose `call_start` is further than this from now are refused
    /// (replay protection; Zadarma signs only a few fields). None = no check.
    pub max_age: Option<chrono::Duration>,
}

/// Which fields form the signed string of each event (lib/Webhook/Notify*.php).
fn signed_fields(event: &str) -> Option<[&'static str; 3]> {
    Some(match event {
        "NOTIFY_START" | "NOTIFY_INTERNAL" | "NOTIFY_END" | "NOTIFY_IVR" => ["caller_id", "called_did", "call_start"],
        "NOTIFY_ANSWER" => ["caller_id", "destination", "call_start"],
        "NOTIFY_OUT_START" | "NOTIFY_OUT_END" => ["internal", "destination", "call_start"],
        "NOTIFY_RECORD" => ["pbx_call_id", "call_id_with_rec", ""],
        _ => return None,
    })
}

/// The string an `event`'s `Signature` is computed over, from its fields (None: an event
/// type that is not signed, and not read).
pub fn signed_string(event: &str, f: &[(String, String)]) -> Option<String> {
    Some(signed_fields(event)?.iter().map(|k| field(f, k).unwrap_or("")).collect())
}

/// base64(hex(HMAC-SHA1(secret, s))), as `encodeSignature` computes it.
pub fn signature(secret: &str, s: &str) -> String {
    let mac = hmac_sha1(secret.as_bytes(), s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hex::encode(mac))
}

fn disposition(d: &str) -> Disposition {
    match d.trim() {
        "answered" => Disposition::Answered,
        "busy" => Disposition::Busy,
        "no answer" | "cancel" => Disposition::Missed,
        _ => Disposition::Failed,
    }
}

impl Zadarma {
    fn call_start(&self, f: &[(String, String)]) -> Result<Option<chrono::DateTime<chrono::Utc>>, WebhookError> {
        let Some(raw) = field(f, "call_start") else { return Ok(None) };
        let naive = NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S")
            .map_err(|e| WebhookError::invalid("call_start", e))?;
        Ok(self.tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&chrono::Utc)))
    }
}

impl super::Adapter for Zadarma {
    fn name(&self) -> &'static str {
        self.name
    }

    /// POST notifications; GET `?zd_echo=` when the URL is saved in the cabinet.
    fn methods(&self) -> &'static [&'static str] {
        &["GET", "POST"]
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if req.method == "GET" {
            // The cabinet's check when the URL is saved: echo the token back, before any auth.
            let q: Vec<(String, String)> = serde_urlencoded::from_str(req.query.unwrap_or("")).unwrap_or_default();
            return match field(&q, "zd_echo") {
                Some(echo) => Ok(Parsed::Echo(echo.to_string())),
                None => Err(WebhookError::missing("zd_echo")),
            };
        }
        let f = form_fields(req.body)?;
        let event = required(&f, "event")?;
        let Some(signed) = signed_string(event, &f) else {
            return Ok(Parsed::Ignored(event.to_string()));
        };
        let given = req
            .headers
            .get("Signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| WebhookError::Unauthorized("missing Signature header".into()))?;
        if !ct_eq(given.trim().as_bytes(), signature(&self.secret, &signed).as_bytes()) {
            return Err(WebhookError::Unauthorized("Signature does not match".into()));
        }
        let call_id = required(&f, "pbx_call_id")?.to_string();
        let event_id = format!("{event}:{call_id}:{signed}:{}", field(&f, "internal").unwrap_or(""));
        let started = self.call_start(&f)?;
        // Zadarma signs only a few fields; a captured notification replayed days later (with
        // other unsigned fields) is refused by its age. The window is wide enough for a
        // misconfigured zone.
        if let (Some(t), Some(max)) = (started, self.max_age) {
            let age = req.received_at - t;
            if age > max || age < -max {
                return Err(WebhookError::invalid(
                    "call_start",
                    format!("{t} is too far from now for a live notification"),
                ));
            }
        }
        let now = req.received_at;
        let duration = match field(&f, "duration") {
            Some(d) => Some(d.trim().parse::<i64>().map_err(|e| WebhookError::invalid("duration", e))?),
            None => None,
        };
        let recording = || {
            (field(&f, "is_recorded") == Some("1"))
                .then(|| field(&f, "call_id_with_rec").map(|r| format!("zadarma:{r}")))
                .flatten()
        };
        // NOTIFY_END / NOTIFY_OUT_END: the final event; `duration` is talk time when answered.
        let end = |direction, external: Option<&str>, did: Option<&str>| -> Result<CallFacts, WebhookError> {
            let d = disposition(required(&f, "disposition")?);
            let answered = d == Disposition::Answered;
            Ok(CallFacts {
                direction: Some(direction),
                external: external.map(str::to_string),
                did: did.map(str::to_string),
                extension: field(&f, "internal").map(str::to_string),
                started_at: started,
                answered_at: answered.then(|| now - chrono::Duration::seconds(duration.unwrap_or(0))),
                ended_at: Some(now),
                duration_secs: Some(if answered { duration.unwrap_or(0) } else { 0 }),
                disposition: Some(d),
                recording: recording(),
                is_final: true,
                rank: 2,
                ..Default::default()
            })
        };
        let facts = match event {
            "NOTIFY_START" | "NOTIFY_IVR" | "NOTIFY_INTERNAL" => {
                required(&f, "call_start")?;
                CallFacts {
                    direction: Some(Direction::Inbound),
                    external: field(&f, "caller_id").map(str::to_string),
                    did: field(&f, "called_did").map(str::to_string),
                    extension: field(&f, "internal").map(str::to_string),
                    started_at: started,
                    rank: 0,
                    ..Default::default()
                }
            }
            "NOTIFY_ANSWER" => CallFacts {
                external: field(&f, "caller_id").map(str::to_string),
                extension: field(&f, "internal").or(field(&f, "destination")).map(str::to_string),
                started_at: started,
                answered_at: Some(now),
                rank: 1,
                ..Default::default()
            },
            "NOTIFY_END" => end(Direction::Inbound, field(&f, "caller_id"), field(&f, "called_did"))?,
            "NOTIFY_OUT_START" => CallFacts {
                direction: Some(Direction::Outbound),
                external: field(&f, "destination").map(str::to_string),
                extension: field(&f, "internal").map(str::to_string),
                started_at: started,
                rank: 0,
                ..Default::default()
            },
            // The caller id shown to the customer is our line.
            "NOTIFY_OUT_END" => end(Direction::Outbound, field(&f, "destination"), field(&f, "caller_id"))?,
            // NOTIFY_RECORD: the recording is ready; it adds a reference, never closes the call.
            _ => CallFacts {
                recording: Some(format!("zadarma:{}", required(&f, "call_id_with_rec")?)),
                rank: 3,
                ..Default::default()
            },
        };
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pbx::Adapter as _;

    #[test]
    fn signature_is_base64_of_hex_hmac_sha1() {
        // base64_encode(hash_hmac('sha1', "79161234567" . "74951234567" . "2026-11-27 10:00:00", "secret"))
        let s = signature("secret", "79161234567749512345672026-11-27 10:00:00");
        let decoded = base64::engine::general_purpose::STANDARD.decode(&s).unwrap();
        assert_eq!(decoded.len(), 40, "base64 of the 40-char hex text, not of the 20 raw bytes");
        assert!(decoded.iter().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn old_notifications_are_refused_as_replays() {
        let z = Zadarma {
            name: "zadarma",
            secret: "s".into(),
            tz: chrono_tz::Europe::Moscow,
            max_age: Some(chrono::Duration::hours(48)),
        };
        let body = "event=NOTIFY_START&call_start=2026-11-27+10%3A00%3A00&pbx_call_id=in_1&caller_id=791612345\
            67&called_did=74951234567";
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("Signature", signature("s", "79161234567749512345672026-11-27 10:00:00").parse().unwrap());
        let at = |d: &str| chrono::DateTime::parse_from_rfc3339(d).unwrap().with_timezone(&chrono::Utc);
        let req = |now| WebhookRequest {
            method: "POST",
            subpath: "",
            query: None,
            headers: &headers,
            body: body.as_bytes(),
            received_at: now,
        };
        assert!(matches!(z.parse(&req(at("2026-11-27T07:00:05Z"))), Ok(Parsed::Events(_))));
        assert!(matches!(z.parse(&req(at("2026-12-05T07:00:00Z"))),
                Err(WebhookError::Malformed(m)) if m.contains("call_start")));
        let lax = Zadarma { max_age: None, ..z };
        assert!(matches!(lax.parse(&req(at("2026-12-05T07:00:00Z"))), Ok(Parsed::Events(_))));
    }

    #[test]
    fn dispositions() {
        assert_eq!(disposition("answered"), Disposition::Answered);
        assert_eq!(disposition("no answer"), Disposition::Missed);
        assert_eq!(disposition("no money, no limit"), Disposition::Failed);
    }
}
