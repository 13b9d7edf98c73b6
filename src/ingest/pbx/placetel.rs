//! Placetel "Notify" call notifications: one `application/x-www-form-urlencoded` POST per
//! event (`IncomingCall`, `OutgoingCall`, `CallAccepted` — incoming calls only — and
//! `HungUp` with `type` and `duration`), all to one URL; `X-PLACETEL-SIGNATURE` = lowercase
//! hex HMAC-SHA256(shared secret, raw body). No event carries a time: the arrival time is
//! used. Numbers are national (`022129191999`), `anonymous`, or SIP ids on internal calls.
//! Source: github.com/Placetel/call-control-notify-api README (events, hangup types, the
//! signature and its test vector).

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, WebhookError, WebhookRequest, ct_eq, field,
    form_fields, hmac_sha256, required,
};

/// The Placetel adapter: the shared secret set in Placetel's external API settings.
#[derive(Debug, Clone)]
pub struct Placetel {
    pub secret: String,
}

/// Lowercase hex HMAC-SHA256 of the raw body, as Placetel sends it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), body))
}

/// `HungUp.type`: `accepted` is a conversation; voicemail, missed, blocked and (outbound)
/// canceled reached nobody; busy; unavailable and congestion failed.
fn hangup_disposition(t: &str) -> Result<Disposition, WebhookError> {
    Ok(match t {
        "accepted" => Disposition::Answered,
        "voicemail" | "missed" | "blocked" | "canceled" | "cancelled" => Disposition::Missed,
        "busy" => Disposition::Busy,
        "unavailable" | "congestion" => Disposition::Failed,
        other => return Err(WebhookError::invalid("type", format!("unknown hangup type '{other}'"))),
    })
}

impl Adapter for Placetel {
    fn name(&self) -> &'static str {
        "placetel"
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        let given = req
            .headers
            .get("X-PLACETEL-SIGNATURE")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| WebhookError::Unauthorized("missing X-PLACETEL-SIGNATURE".into()))?;
        if !ct_eq(given.trim().to_ascii_lowercase().as_bytes(), signature(&self.secret, req.body).as_bytes()) {
            return Err(WebhookError::Unauthorized("X-PLACETEL-SIGNATURE does not match".into()));
        }
        let f = form_fields(req.body)?;
        let event = required(&f, "event")?;
        let call_id = required(&f, "call_id")?.to_string();
        let now = req.received_at;
        // `direction` arrived in 2019; before it the event named it.
        let direction = match (field(&f, "direction"), event) {
            (Some("out"), _) | (None, "OutgoingCall") => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let (from, to) = (field(&f, "from").map(str::to_string), field(&f, "to").map(str::to_string));
        let mut facts = CallFacts::between(direction, from, to);
        match event {
            "IncomingCall" | "OutgoingCall" => {
                facts.started_at = Some(now);
                facts.extension = field(&f, "peer").map(str::to_string);
            }
            "CallAccepted" => {
                facts.answered_at = Some(now);
                facts.extension = field(&f, "peer").map(str::to_string);
                facts.rank = 1;
            }
            "HungUp" => {
                let d = hangup_disposition(required(&f, "type")?)?;
                let duration = match field(&f, "duration") {
                    Some(v) => v.trim().parse::<i64>().map_err(|e| WebhookError::invalid("duration", e))?,
                    None => 0,
                };
                facts.disposition = Some(d);
                facts.duration_secs = Some(if d == Disposition::Answered { duration } else { 0 });
                if d == Disposition::Answered && duration > 0 {
                    facts.answered_at = Some(now - chrono::Duration::seconds(duration));
                }
                facts.ended_at = Some(now);
                facts.is_final = true;
                facts.rank = 2;
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        }
        let event_id = format!("{call_id}:{event}");
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vector() {
        // Placetel/call-control-notify-api README, "Verifying the signature".
        let body = "call_id=4a4cbb39578170aed9a2761a7bec8c7e704a541f52291ef603d6f5f152980c3c&event=CallAccepte\
            d&from=0123456789&to=0987654321";
        assert_eq!(
            signature("12345", body.as_bytes()),
            "c4f823c5b8806432fe2b83b1fc2ee714422e0cdfb4b5129152a7d0bbcd7792d0"
        );
    }

    #[test]
    fn hangup_types_map_to_dispositions() {
        assert_eq!(hangup_disposition("accepted").unwrap(), Disposition::Answered);
        assert_eq!(hangup_disposition("voicemail").unwrap(), Disposition::Missed, "voicemail reached nobody");
        assert_eq!(hangup_disposition("busy").unwrap(), Disposition::Busy);
        assert_eq!(hangup_disposition("congestion").unwrap(), Disposition::Failed);
        assert!(hangup_disposition("exploded").is_err());
    }
}
