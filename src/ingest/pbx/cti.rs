//! The "Generic CTI" push format that Zammad defined and many PBXs speak (Asterisk and
//! FreePBX scripts, 3CX and Yeastar connectors, …): POST `newCall`, `answer` and `hangup`
//! as JSON or a form to a URL that carries a secret token (`/pbx/cti/<token>`); fields
//! `event`, `from`, `to`, `direction` (`in`/`out`), `callId` (or `call_id`), `user`,
//! `answeringNumber`, and on hangup a `cause`. No times, no durations: arrival times are
//! used. The answer is `{}`. A hangup with no answer before it is a missed call, unless the
//! call was `forwarded` elsewhere (Zammad counts that as handled).
//! Source: zammad/zammad-documentation api/generic-cti/{new-call,answer,hangup}.rst;
//! zammad/zammad app/controllers/integration/cti_controller.rb, app/models/cti/log.rb.

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest, field,
    request_fields, required, url_token_ok,
};

/// The CTI adapter: the token in the URL given to the PBX.
#[derive(Debug, Clone)]
pub struct Cti {
    pub token: String,
}

impl Adapter for Cti {
    fn name(&self) -> &'static str {
        "cti"
    }

    fn reply(&self, _req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        Reply::Json(serde_json::json!({}))
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !url_token_ok(req, &self.token) {
            return Err(WebhookError::Unauthorized("the URL's token is wrong or missing (/pbx/cti/<token>)".into()));
        }
        let f = request_fields(req)?;
        let event = required(&f, "event")?;
        let call_id = field(&f, "callId").or(field(&f, "call_id")).ok_or_else(|| WebhookError::missing("callId"))?;
        if call_id.len() > 250 {
            return Err(WebhookError::invalid("callId", "longer than 250 characters"));
        }
        let direction = match required(&f, "direction")? {
            "in" => Direction::Inbound,
            "out" => Direction::Outbound,
            other => return Err(WebhookError::invalid("direction", format!("'{other}' is neither in nor out"))),
        };
        let now = req.received_at;
        let (from, to) = (field(&f, "from").map(str::to_string), field(&f, "to").map(str::to_string));
        let mut facts = CallFacts::between(direction, from, to);
        match event {
            "newCall" => {
                facts.started_at = Some(now);
                if direction == Direction::Outbound {
                    facts.extension = field(&f, "user").map(str::to_string);
                }
            }
            "answer" => {
                // Answered by the voicemail: nobody took it (as Zammad counts it).
                if field(&f, "user") == Some("voicemail") {
                    facts.disposition = Some(Disposition::Missed);
                    facts.rank = 3;
                } else {
                    facts.answered_at = Some(now);
                    facts.extension =
                        field(&f, "answeringNumber").or(field(&f, "user_id")).or(field(&f, "user")).map(str::to_string);
                    facts.rank = 1;
                }
            }
            "hangup" => {
                facts.disposition = match field(&f, "cause").unwrap_or("normalClearing") {
                    // After an answer: the conversation ended; before one: missed.
                    "normalClearing" => None,
                    // Handed on to another party: not a call anyone here missed.
                    "forwarded" => Some(Disposition::Answered),
                    "busy" => Some(Disposition::Busy),
                    "cancel" | "noAnswer" => Some(Disposition::Missed),
                    _ => Some(Disposition::Failed),
                };
                facts.ended_at = Some(now);
                facts.is_final = true;
                facts.rank = 2;
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        }
        let event_id = format!("{call_id}:{event}");
        Ok(Parsed::Events(vec![CallEvent { call_id: call_id.to_string(), event_id, facts }]))
    }
}
