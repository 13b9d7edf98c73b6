//! Sipuni "PBX events" (События на АТС): GET or POST, URL-encoded UTF-8 fields in any
//! order; `event` 1 a leg starts ringing, 3 answered, 4 a leg ends on a transfer, 2 the call
//! ended (with `status`, its times and `call_record_link`). Every leg and event of a call
//! share `call_id`; times are unix seconds. `src_type`/`dst_type` 1 = external, 2 =
//! internal; an inbound call's first leg names the number dialled in `pbxdstnum` (and in
//! `dst_num` as `<DID>_id<n>`). The receiver must answer JSON with `success` — otherwise
//! Sipuni may stop sending — so every authentic request gets `{"success": true}`. Sipuni
//! signs nothing: the URL given to it carries a token (`?token=…` or `/pbx/sipuni/<token>`).
//! Source: doc.sipuni.com "Отправка событий HTTP" (transport, answer); the fields as
//! integrations read them (xoptov/sipuni-bundle and others; see fixtures/pbx/sipuni).

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest, field,
    request_fields, unix_time, url_token_ok,
};

/// The Sipuni adapter: the token in the URL given to Sipuni.
#[derive(Debug, Clone)]
pub struct Sipuni {
    pub token: String,
}

fn status(s: &str) -> Result<Disposition, WebhookError> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "ANSWER" => Disposition::Answered,
        "NOANSWER" | "CANCEL" => Disposition::Missed,
        "BUSY" => Disposition::Busy,
        "CONGESTION" | "CHANUNAVAIL" => Disposition::Failed,
        other => return Err(WebhookError::invalid("status", format!("unknown value '{other}'"))),
    })
}

/// The number dialled, from `pbxdstnum` or a `<DID>_id<n>` destination.
fn dialled(f: &[(String, String)]) -> Option<String> {
    field(f, "pbxdstnum")
        .map(str::to_string)
        .or_else(|| field(f, "dst_num").and_then(|d| d.split_once("_id")).map(|(did, _)| did.to_string()))
}

impl Adapter for Sipuni {
    fn name(&self) -> &'static str {
        "sipuni"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["GET", "POST"]
    }

    fn reply(&self, _req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        Reply::Json(serde_json::json!({"success": true}))
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        if !url_token_ok(req, &self.token) {
            return Err(WebhookError::Unauthorized("the URL's token is wrong or missing (?token=…)".into()));
        }
        let f = request_fields(req)?;
        let event = field(&f, "event").unwrap_or("");
        // Saving the URL in Sipuni's settings pings it without a call.
        let Some(call_id) = field(&f, "call_id") else {
            return Ok(Parsed::Ignored(format!("event {event} without call_id")));
        };
        let at = unix_time(&f, "timestamp")?.unwrap_or(req.received_at);
        let external_src = field(&f, "src_type") != Some("2");
        let external_dst = field(&f, "dst_type") != Some("2");
        let direction = match (external_src, external_dst) {
            (true, _) => Direction::Inbound,
            (false, true) => Direction::Outbound,
            (false, false) => Direction::Internal,
        };
        let num = |k: &str| field(&f, k).map(str::to_string);
        let mut facts = CallFacts { direction: Some(direction), ..Default::default() };
        match direction {
            Direction::Inbound => {
                facts.external = num("src_num");
                facts.did = dialled(&f);
                if !external_dst {
                    facts.extension = num("short_dst_num");
                }
            }
            _ => {
                facts.external = num("pbxdstnum").or(num("dst_num"));
                facts.extension = num("short_src_num");
            }
        }
        match event {
            "1" => facts.started_at = Some(at),
            "3" => {
                facts.answered_at = Some(at);
                facts.rank = 1;
            }
            // A leg ended on a transfer; the call goes on.
            "4" => facts.rank = 1,
            "2" => {
                let d = status(field(&f, "status").unwrap_or("NOANSWER"))?;
                let start = unix_time(&f, "call_start_timestamp")?;
                facts.started_at = start;
                facts.ended_at = Some(at);
                facts.disposition = Some(d);
                if d == Disposition::Answered {
                    // The answer time is unreliable on API-placed calls: never before the start.
                    let answered = unix_time(&f, "call_answer_timestamp")?.filter(|a| start.is_none_or(|s| *a >= s));
                    facts.answered_at = answered;
                    facts.duration_secs = answered.map(|a| (at - a).num_seconds().max(0));
                } else {
                    facts.duration_secs = Some(0);
                }
                if let Some(ext) = field(&f, "last_called").and_then(|l| l.rsplit('&').next()).filter(|l| !l.is_empty())
                {
                    facts.extension = Some(ext.to_string());
                }
                facts.recording = num("call_record_link");
                facts.is_final = true;
                facts.rank = 2;
            }
            other => return Ok(Parsed::Ignored(format!("event {other}"))),
        }
        // A leg's events share call_id; one leg's redelivery repeats everything.
        let leg = field(&f, "short_dst_num").or(field(&f, "dst_num")).unwrap_or("");
        let event_id = format!("{call_id}:{event}:{leg}:{}", field(&f, "timestamp").unwrap_or(""));
        Ok(Parsed::Events(vec![CallEvent { call_id: call_id.to_string(), event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_the_number_dialled() {
        assert_eq!(status("ANSWER").unwrap(), Disposition::Answered);
        assert_eq!(status("NOANSWER").unwrap(), Disposition::Missed);
        assert_eq!(status("CHANUNAVAIL").unwrap(), Disposition::Failed);
        let f = vec![("dst_num".to_string(), "998783337125_id265648".to_string())];
        assert_eq!(dialled(&f).as_deref(), Some("998783337125"));
    }
}
