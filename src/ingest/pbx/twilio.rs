//! Twilio Programmable Voice callbacks: POST form params, `X-Twilio-Signature` =
//! base64(HMAC-SHA1(Auth Token, full URL + each param name+value in sorted order)).
//! `/status` is the call's StatusCallback, `/dial` the `<Dial action>` (answered with the
//! configured TwiML),
//! `/recording` the recordingStatusCallback. Child legs group under `ParentCallSid`.
//! Source: twilio.com/docs/usage/webhooks/webhooks-security, /docs/voice/api/call-resource
//! (StatusCallback), /docs/voice/twiml/dial (action), twilio-python request_validator.py.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::{
    CallEvent, CallFacts, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest, ct_eq, field,
    form_fields, hmac_sha1, required,
};

/// The Twilio adapter: the Auth Token, the URLs Twilio calls, and the TwiML the
/// `<Dial action>` is answered with.
#[derive(Debug, Clone)]
pub struct Twilio {
    pub auth_token: String,
    /// e.g. `https://crm.example.com`; the path below it is `/pbx/twilio/...`.
    pub public_base_url: String,
    /// The exact URL configured in Twilio per route (`/status`, `/dial`, `/recording`),
    /// when a proxy makes it differ from `public_base_url` + `/pbx/twilio/<route>`.
    pub urls: BTreeMap<String, String>,
    /// The answer to `<Dial action>`: what the call does next.
    pub dial_action_twiml: String,
}

/// An empty TwiML document: nothing more to do (Twilio ends the call when its TwiML runs out).
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

impl Twilio {
    pub fn from_config(t: &crate::config::TwilioConfig, org_base: Option<&str>) -> Twilio {
        let urls = [("/status", &t.status_url), ("/dial", &t.dial_url), ("/recording", &t.recording_url)]
            .into_iter()
            .filter_map(|(route, u)| u.clone().map(|u| (route.to_string(), u)))
            .collect();
        Twilio {
            auth_token: t.auth_token.clone().unwrap_or_default(),
            public_base_url: t.public_base_url.clone().or(org_base.map(str::to_string)).unwrap_or_default(),
            urls,
            dial_action_twiml: t.dial_action_twiml.clone().unwrap_or_else(|| EMPTY_TWIML.to_string()),
        }
    }

    /// The URL Twilio signed for a request to `subpath` with `query`: the configured URL of
    /// the route, else the public base URL and inflow's path; the request's query string is
    /// part of it either way (unless the configured URL has its own).
    fn signed_url(&self, subpath: &str, query: Option<&str>) -> String {
        let route = subpath.trim_end_matches('/');
        let url = match self.urls.get(route) {
            Some(u) => u.clone(),
            None => format!("{}/pbx/twilio{subpath}", self.public_base_url.trim_end_matches('/')),
        };
        match query.filter(|q| !q.is_empty()) {
            Some(q) if !url.contains('?') => format!("{url}?{q}"),
            _ => url,
        }
    }
}

/// The signature of `url` with `params` (sorted by name, then value).
pub fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = url.to_string();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1(token.as_bytes(), s.as_bytes()))
}

/// The URL with its default port added or removed: Twilio signs either form.
fn port_variants(url: &str) -> Vec<String> {
    let mut v = vec![url.to_string()];
    let (scheme, rest) = match url.split_once("://") {
        Some(p) => p,
        None => return v,
    };
    let default = if scheme == "https" { ":443" } else { ":80" };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if let Some(h) = host.strip_suffix(default) {
        v.push(format!("{scheme}://{h}{path}"));
    } else if !host.contains(':') {
        v.push(format!("{scheme}://{host}{default}{path}"));
    }
    v
}

fn status_disposition(status: &str, duration: i64) -> Option<Disposition> {
    Some(match status {
        "completed" => {
            if duration > 0 {
                Disposition::Answered
            } else {
                Disposition::Missed
            }
        }
        "answered" => Disposition::Answered,
        "busy" => Disposition::Busy,
        "no-answer" | "canceled" => Disposition::Missed,
        "failed" => Disposition::Failed,
        _ => return None,
    })
}

impl super::Adapter for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }
    /// The `<Dial action>` request is answered with TwiML: what the call does next.
    fn reply(&self, req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        if req.subpath.trim_end_matches('/') == "/dial" {
            return Reply::Body { content_type: "text/xml; charset=utf-8", body: self.dial_action_twiml.clone() };
        }
        Reply::Summary
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        let f = form_fields(req.body)?;
        let given = req
            .headers
            .get("X-Twilio-Signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| WebhookError::Unauthorized("missing X-Twilio-Signature".into()))?;
        let url = self.signed_url(req.subpath, req.query);
        let ok = port_variants(&url)
            .iter()
            .any(|u| ct_eq(given.trim().as_bytes(), signature(&self.auth_token, u, &f).as_bytes()));
        if !ok {
            return Err(WebhookError::Unauthorized("X-Twilio-Signature does not match".into()));
        }
        let sid = required(&f, "CallSid")?.to_string();
        let call_id = field(&f, "ParentCallSid").unwrap_or(&sid).to_string();
        let direction = match field(&f, "Direction") {
            Some("inbound") => Some(Direction::Inbound),
            Some(d) if d.starts_with("outbound") => Some(Direction::Outbound),
            _ => None,
        };
        let num = |k: &str| -> Result<Option<i64>, WebhookError> {
            field(&f, k).map(|v| v.trim().parse::<i64>().map_err(|e| WebhookError::invalid(k, e))).transpose()
        };
        let now = req.received_at;
        let seq = num("SequenceNumber")?.unwrap_or(0);
        let is_child = field(&f, "ParentCallSid").is_some();
        let (event_id, facts) = match req.subpath.trim_end_matches('/') {
            "/status" => {
                let status = required(&f, "CallStatus")?;
                let duration = num("CallDuration")?.unwrap_or(0);
                let mut facts = CallFacts { seq, ..Default::default() };
                if !is_child {
                    facts.direction = direction;
                    // Inbound: the caller is From and the dialled number To; outbound the reverse.
                    match direction {
                        Some(Direction::Outbound) => {
                            facts.external = field(&f, "To").map(str::to_string);
                            // Our caller id names the line (and so the owner) of an outbound call.
                            facts.did = field(&f, "From").map(str::to_string);
                        }
                        _ => {
                            facts.external = field(&f, "From").map(str::to_string);
                            facts.did = field(&f, "To").map(str::to_string);
                        }
                    }
                }
                // On an inbound call Twilio answers the parent leg itself (TwiML, IVR), so the
                // parent's in-progress says nothing about a person answering. Its completion
                // with a duration is read as answered (all a StatusCallback-only setup tells);
                // a dialled child leg's result or the <Dial action> result, when they come,
                // say better and win (rank 3).
                let inbound_parent = !is_child && direction != Some(Direction::Outbound);
                match status {
                    "queued" | "initiated" | "ringing" => facts.started_at = Some(now),
                    "in-progress" => {
                        if !inbound_parent {
                            facts.answered_at = Some(now);
                        }
                        facts.rank = 1;
                    }
                    terminal => {
                        let Some(d) = status_disposition(terminal, duration) else {
                            return Err(WebhookError::invalid("CallStatus", format!("unknown value '{terminal}'")));
                        };
                        if is_child {
                            // A dialled leg ending says whether an agent answered, not that the
                            // call is over; one answered leg of a ring group beats the others.
                            let answered = d == Disposition::Answered;
                            facts.disposition = Some(if answered { d } else { Disposition::Missed });
                            facts.duration_secs = Some(if answered { duration } else { 0 });
                            facts.answered_at = answered.then(|| now - chrono::Duration::seconds(duration));
                            facts.rank = 3;
                            facts.seq = i64::from(answered);
                        } else {
                            facts.ended_at = Some(now);
                            facts.duration_secs = Some(if d == Disposition::Answered { duration } else { 0 });
                            facts.disposition = Some(d);
                            if d == Disposition::Answered {
                                facts.answered_at = Some(now - chrono::Duration::seconds(duration));
                            }
                            facts.is_final = true;
                            facts.rank = 2;
                        }
                        if let Some(r) = field(&f, "RecordingUrl") {
                            facts.recording = Some(r.to_string());
                        }
                    }
                }
                (format!("status:{sid}:{status}:{seq}"), facts)
            }
            "/dial" => {
                let status = required(&f, "DialCallStatus")?;
                let duration = num("DialCallDuration")?.unwrap_or(0);
                let d = status_disposition(status, duration.max(1))
                    .ok_or_else(|| WebhookError::invalid("DialCallStatus", format!("unknown value '{status}'")))?;
                let (external, did) = match direction {
                    Some(Direction::Outbound) => (field(&f, "To"), field(&f, "From")),
                    _ => (field(&f, "From"), field(&f, "To")),
                };
                let facts = CallFacts {
                    direction,
                    external: external.map(str::to_string),
                    did: did.map(str::to_string),
                    disposition: Some(d),
                    duration_secs: Some(if d == Disposition::Answered { duration } else { 0 }),
                    answered_at: (d == Disposition::Answered).then(|| now - chrono::Duration::seconds(duration)),
                    ended_at: Some(now),
                    recording: field(&f, "RecordingUrl").map(str::to_string),
                    is_final: true,
                    // The dial's own result beats what its legs said.
                    rank: 3,
                    seq: i64::MAX,
                    ..Default::default()
                };
                (format!("dial:{sid}:{}", field(&f, "DialCallSid").unwrap_or("")), facts)
            }
            "/recording" => {
                let rec = required(&f, "RecordingSid")?;
                let status = field(&f, "RecordingStatus").unwrap_or("completed");
                let facts = CallFacts {
                    recording: (status == "completed").then(|| field(&f, "RecordingUrl").unwrap_or(rec).to_string()),
                    rank: 4,
                    ..Default::default()
                };
                (format!("recording:{rec}:{status}"), facts)
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        };
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn official_test_vectors() {
        // twilio-python tests/unit/test_request_validator.py
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            signature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", &params),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        let dup = p(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]);
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &dup),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn default_ports_are_tried_both_ways() {
        assert!(port_variants("https://a.example/x").contains(&"https://a.example:443/x".to_string()));
        assert!(port_variants("http://a.example:80/x").contains(&"http://a.example/x".to_string()));
        assert_eq!(port_variants("http://a.example:1234/x").len(), 1);
    }
}
