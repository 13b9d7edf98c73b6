//! The ITooLabs virtual-PBX "CRM API" (REST API ВАТС (CRM)): MegaFon «Виртуальная АТС»
//! (megapbx.ru), Gravitel, Kcell, Moldcell and other ITooLabs-platform PBXs. One URL gets
//! every command as form fields (JSON accepted too), told apart by `cmd`, authenticated by
//! the `crm_token` set in the PBX's cabinet:
//! - `history` after each call: `type` in/out, `phone` (the client), `diversion` (our number
//!   the call came to), `user`/`ext`/`telnum` (the employee), `start` (UTC
//!   `YYYYmmddTHHMMSSZ`), `duration` (seconds, whole call; newer PBXs add `wait`), `status`
//!   (Success, missed/Missed, Cancel, Busy, NotAvailable, NotAllowed, NotFound — any case),
//!   `link` (the recording), `callid` (shared by a call's related legs);
//! - `event` while it rings: `type` INCOMING, OUTGOING, ACCEPTED, COMPLETED, CANCELLED (one
//!   ringing employee stopped: someone else may take it), TRANSFERRED; no time fields;
//! - `contact` while it rings: the PBX asks whose number this is and is answered
//!   `{"contact_name", "responsible"}` (the owner's extension), or `{}` when unknown.
//!
//! Everything else is answered 200. Sources: the ITooLabs document's contents as
//! republished by resellers; the field texts quoted in Gravitel's PHP SDK
//! (maxim-oleinik/gravitel src/Callback/*Cmd.php) and MegaFon clients
//! (brandup-online/megafon-ats, skytecs/MegafonPbxApiClient, mikopbx/ModuleMegafonPbx).

use chrono::{NaiveDateTime, TimeZone, Utc};

use super::{
    Adapter, CallEvent, CallFacts, CallerCard, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest,
    ct_eq, field, request_fields, required,
};

/// The ITooLabs adapter: the CRM token set in the PBX's cabinet.
#[derive(Debug, Clone)]
pub struct ItooLabs {
    pub crm_token: String,
}

fn status(s: &str) -> Result<Disposition, WebhookError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "success" => Disposition::Answered,
        "missed" | "cancel" => Disposition::Missed,
        "busy" => Disposition::Busy,
        "notavailable" | "notallowed" | "notfound" => Disposition::Failed,
        other => return Err(WebhookError::invalid("status", format!("unknown value '{other}'"))),
    })
}

/// `start`: compact UTC (`20170905T150852Z`) as pushed, or the extended form some PBXs use.
fn start(raw: &str) -> Result<chrono::DateTime<Utc>, WebhookError> {
    let raw = raw.trim();
    NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%SZ")
        .map(|n| Utc.from_utc_datetime(&n))
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .map_err(|e| WebhookError::invalid("start", e))
}

impl Adapter for ItooLabs {
    fn name(&self) -> &'static str {
        "itoolabs"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["GET", "POST"]
    }

    fn reply(&self, _req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        Reply::Json(serde_json::json!({"status": "ok"}))
    }

    fn card_reply(&self, _number: &str, card: Option<&CallerCard>) -> Reply {
        Reply::Json(match card {
            Some(CallerCard { name, owner_extension: Some(ext), .. }) => {
                serde_json::json!({"contact_name": name, "responsible": ext})
            }
            Some(CallerCard { name, owner_extension: None, .. }) => serde_json::json!({"contact_name": name}),
            None => serde_json::json!({}),
        })
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        let f = request_fields(req)?;
        let given = field(&f, "crm_token").ok_or_else(|| WebhookError::Unauthorized("missing crm_token".into()))?;
        if !ct_eq(given.as_bytes(), self.crm_token.as_bytes()) {
            return Err(WebhookError::Unauthorized("crm_token does not match".into()));
        }
        let cmd = required(&f, "cmd")?;
        if cmd == "contact" {
            return Ok(Parsed::Lookup(required(&f, "phone")?.to_string()));
        }
        if !matches!(cmd, "history" | "event") {
            return Ok(Parsed::Ignored(cmd.to_string()));
        }
        let call_id = required(&f, "callid")?.to_string();
        let kind = required(&f, "type")?;
        let num = |k: &str| field(&f, k).map(str::to_string);
        let now = req.received_at;
        let direction = match (cmd, kind.to_ascii_lowercase().as_str(), field(&f, "direction")) {
            (_, _, Some("out")) | ("history", "out", _) | ("event", "outgoing", _) => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let mut facts = CallFacts {
            direction: Some(direction),
            external: num("phone"),
            // The number an inbound call came to; an employee's own number names the line
            // of an outbound one.
            did: num("diversion").or(num("telnum")),
            line: num("telnum"),
            extension: num("ext").or(num("user")),
            ..Default::default()
        };
        let user = field(&f, "user").unwrap_or("");
        let event_id = match cmd {
            "history" => {
                let d = status(required(&f, "status")?)?;
                let started = start(required(&f, "start")?)?;
                let total: i64 =
                    required(&f, "duration")?.trim().parse().map_err(|e| WebhookError::invalid("duration", e))?;
                let wait: i64 = match field(&f, "wait") {
                    Some(w) => w.trim().parse().map_err(|e| WebhookError::invalid("wait", e))?,
                    None => 0,
                };
                let talk = if d == Disposition::Answered { (total - wait).max(0) } else { 0 };
                facts.started_at = Some(started);
                facts.ended_at = Some(started + chrono::Duration::seconds(total.max(0)));
                if d == Disposition::Answered {
                    facts.answered_at = Some(started + chrono::Duration::seconds(wait.clamp(0, total.max(0))));
                }
                facts.duration_secs = Some(talk);
                facts.disposition = Some(d);
                facts.recording = num("link");
                facts.is_final = true;
                // The record after the call outranks what the live events said.
                facts.rank = 3;
                format!("{call_id}:history:{user}")
            }
            _ => {
                match kind.to_ascii_uppercase().as_str() {
                    "INCOMING" | "OUTGOING" => facts.started_at = Some(now),
                    "ACCEPTED" => {
                        facts.answered_at = Some(now);
                        facts.rank = 1;
                    }
                    "COMPLETED" => {
                        facts.ended_at = Some(now);
                        facts.is_final = true;
                        facts.rank = 2;
                    }
                    // One ringing employee stopped (another may answer); a transfer goes on.
                    "CANCELLED" | "TRANSFERRED" => {
                        facts.extension = None;
                        facts.rank = 1;
                    }
                    other => return Ok(Parsed::Ignored(format!("event {other}"))),
                }
                format!("{call_id}:event:{}:{user}", kind.to_ascii_uppercase())
            }
        };
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_any_case_and_both_time_forms() {
        assert_eq!(status("Success").unwrap(), Disposition::Answered);
        assert_eq!(status("missed").unwrap(), Disposition::Missed);
        assert_eq!(status("Missed").unwrap(), Disposition::Missed);
        assert_eq!(status("NotAvailable").unwrap(), Disposition::Failed);
        assert_eq!(start("20170905T150852Z").unwrap().to_rfc3339(), "2017-09-05T15:08:52+00:00");
        assert_eq!(start("2017-09-05T15:08:52Z").unwrap().to_rfc3339(), "2017-09-05T15:08:52+00:00");
        assert!(start("05.09.2017").is_err());
    }
}
