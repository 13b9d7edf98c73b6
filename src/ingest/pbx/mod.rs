//! PBX call-record webhooks: one adapter per provider turns its events into `CallEvent`s
//! (verify the signature, parse, map fields); events of one call merge into one record
//! (`merge`), order-independently, and the merged record becomes CRM records in a job
//! (`process`). Adapters do no I/O beyond reading the request they are given.

pub mod ami;
pub mod cdr_table;
pub mod cti;
pub mod generic;
pub mod itoolabs;
pub mod mango;
pub mod placetel;
pub mod process;
pub mod sipgate;
pub mod sipuni;
pub mod threecx;
pub mod twilio;
pub mod uis;
pub mod yeastar;
pub mod zadarma;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::crm::calls::{CallerCard, Direction, Disposition};

/// What one provider event says about its call. Every field is optional: events carry
/// different parts of the picture, and `merge` puts them together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallFacts {
    pub direction: Option<Direction>,
    /// The external party's number, raw (normalised later with the org region).
    pub external: Option<String>,
    /// The number dialled (DID, call-tracking number), raw.
    pub did: Option<String>,
    /// Another number naming the line, tried when `did` matches no configured line (Mango:
    /// the PBX line behind a dynamic call-tracking number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// The internal extension that took or made the call.
    pub extension: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Talk time in seconds.
    pub duration_secs: Option<i64>,
    pub disposition: Option<Disposition>,
    /// A recording URL or provider recording id.
    pub recording: Option<String>,
    /// This event closes the call (the provider's end/summary event).
    pub is_final: bool,
    /// Precedence when events disagree: start 0 < answer 1 < end 2 < summary/dial result 3.
    pub rank: u8,
    /// The provider's own ordering within a rank (Mango `seq`, Twilio `SequenceNumber`).
    pub seq: i64,
}

impl CallFacts {
    /// A call between `from` and `to` as a provider writes them: the customer is the caller
    /// of an inbound call and the callee of an outbound one; the other number is ours (the
    /// number dialled, or our caller id, which names the line either way).
    pub fn between(direction: Direction, from: Option<String>, to: Option<String>) -> CallFacts {
        let (external, did) = match direction {
            Direction::Outbound => (to, from),
            _ => (from, to),
        };
        CallFacts { direction: Some(direction), external, did, ..Default::default() }
    }
}

/// One accepted event of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    /// The provider's id of the whole call (legs grouped: Mango entry_id, Twilio parent CallSid).
    pub call_id: String,
    /// Unique per event: a redelivery has the same id.
    pub event_id: String,
    pub facts: CallFacts,
}

/// What an adapter made of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Events(Vec<CallEvent>),
    /// A well-formed, authentic event of a type we do not use (answered 200).
    Ignored(String),
    /// A provider check that wants this text back (Zadarma `zd_echo`).
    Echo(String),
    /// The PBX asks who is calling (ITooLabs `cmd=contact`): answered from the CRM with
    /// `Adapter::card_reply`, nothing stored.
    Lookup(String),
}

/// What a provider is answered once its events are stored (or ignored).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// inflow's JSON summary of the stored events (`{"status", "calls"}`).
    Summary,
    /// A JSON body the provider's documentation asks for (Sipuni `{"success": true}`).
    Json(serde_json::Value),
    /// Any other body with its content type (Twilio's TwiML).
    Body { content_type: &'static str, body: String },
}

/// One telephony provider, in one file: the name it is served under (`/pbx/<name>[/…]`,
/// also stored on its events), the methods it calls with, how a request is verified and
/// read into call events, and what the provider must be answered. Adding a provider is
/// that file, its fixtures, its config section and one line in `app::pbx_adapters`.
pub trait Adapter: Send + Sync {
    fn name(&self) -> &'static str;
    /// The HTTP methods the provider uses.
    fn methods(&self) -> &'static [&'static str] {
        &["POST"]
    }
    /// Verifies authenticity, then reads the request. No I/O beyond the request.
    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError>;
    /// The answer once the events are stored.
    fn reply(&self, _req: &WebhookRequest<'_>, _parsed: &Parsed) -> Reply {
        Reply::Summary
    }
    /// The answer to a `Parsed::Lookup` of `number` (None: no single record has it).
    fn card_reply(&self, _number: &str, _card: Option<&CallerCard>) -> Reply {
        Reply::Json(serde_json::json!({}))
    }
    /// The status of a summary answer for stored events (ignored ones are always 200).
    fn summary_status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::OK
    }
}

/// One configured account of a provider: its name (stored on its calls), its adapter (which
/// holds the account's secret) and its own names for employees (`extensions`).
pub struct PbxAccount {
    pub name: String,
    pub adapter: std::sync::Arc<dyn Adapter>,
    pub extensions: std::collections::BTreeMap<String, String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature/token → 401, nothing written.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Unreadable body or a missing/invalid field → 400 naming it.
    #[error("{0}")]
    Malformed(String),
}

impl WebhookError {
    pub fn missing(field: &str) -> Self {
        WebhookError::Malformed(format!("missing required field '{field}'"))
    }
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        WebhookError::Malformed(format!("invalid field '{field}': {why}"))
    }
}

/// A webhook request as the adapters see it.
#[derive(Debug, Clone)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    /// The path below the provider's prefix, e.g. `/events/summary` or `/status`.
    pub subpath: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// When the request arrived (for providers whose events carry no time).
    pub received_at: DateTime<Utc>,
}

/// Merges the facts of all events of one call. The result does not depend on the order the
/// events arrived in: they are applied by (rank, seq), later ones overriding earlier ones.
pub fn merge(events: &[CallFacts]) -> CallFacts {
    let mut sorted: Vec<&CallFacts> = events.iter().collect();
    // Ties (two legs' ends, a ring group) go to the answered one, whatever the arrival order.
    sorted.sort_by_key(|f| (f.rank, f.seq, f.disposition == Some(Disposition::Answered)));
    let mut m = CallFacts::default();
    for f in sorted {
        macro_rules! take {
            ($($field:ident),*) => { $( if f.$field.is_some() { m.$field = f.$field.clone(); } )* };
        }
        take!(direction, external, did, line, extension, ended_at, duration_secs, disposition, recording);
        // The earliest start and answer seen win: later legs do not move them.
        m.started_at = match (m.started_at, f.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        m.answered_at = match (m.answered_at, f.answered_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        m.is_final |= f.is_final;
        m.rank = m.rank.max(f.rank);
    }
    if m.disposition.is_none() && m.answered_at.is_some() && m.is_final {
        m.disposition = Some(Disposition::Answered);
    }
    // Providers that send no talk time (sipgate, CTI): from the answer to the end.
    if m.duration_secs.is_none() && m.disposition == Some(Disposition::Answered) {
        if let (Some(a), Some(e)) = (m.answered_at, m.ended_at) {
            m.duration_secs = Some((e - a).num_seconds().max(0));
        }
    }
    m
}

/// The fields of a request from every place a provider may put them: the query string,
/// then an `application/x-www-form-urlencoded` body, or a flat JSON object body (arrays
/// become repeated keys; numbers and booleans their text).
pub fn request_fields(req: &WebhookRequest<'_>) -> Result<Vec<(String, String)>, WebhookError> {
    let mut out: Vec<(String, String)> = match req.query.filter(|q| !q.is_empty()) {
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| WebhookError::Malformed(format!("the query string is not URL-encoded: {e}")))?,
        None => Vec::new(),
    };
    let body = req.body.trim_ascii();
    if body.starts_with(b"{") {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| WebhookError::Malformed(format!("the body is not a JSON object: {e}")))?;
        for (k, v) in v {
            let items = match v {
                serde_json::Value::Array(a) => a,
                other => vec![other],
            };
            for item in items {
                let text = match item {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                out.push((k.clone(), text));
            }
        }
    } else if let Some(ct) = content_type(req).filter(|c| c.to_ascii_lowercase().starts_with("multipart/form-data")) {
        out.extend(multipart_fields(ct, body)?);
    } else if !body.is_empty() {
        out.extend(form_fields(body)?);
    }
    Ok(out)
}

fn content_type<'a>(req: &'a WebhookRequest<'_>) -> Option<&'a str> {
    req.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// The fields of a `multipart/form-data` body (`curl --form`), read with the MIME parser
/// the mail ingest uses: a form is a MIME multipart whose parts are named by their
/// `Content-Disposition`.
pub fn multipart_fields(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    use mail_parser::MimeHeaders as _;
    let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    raw.extend_from_slice(body);
    let msg = mail_parser::MessageParser::default()
        .parse(&raw)
        .ok_or_else(|| WebhookError::Malformed("the body is not multipart/form-data".into()))?;
    let mut out = Vec::new();
    for part in msg.parts.iter().skip(1) {
        let Some(name) = part.content_disposition().and_then(|d| d.attribute("name")) else { continue };
        let value = String::from_utf8_lossy(part.contents()).into_owned();
        out.push((name.to_string(), value));
    }
    if out.is_empty() {
        return Err(WebhookError::Malformed("the multipart/form-data body has no named fields".into()));
    }
    Ok(out)
}

/// A shared secret for a provider that signs nothing, given in the URL the provider was
/// configured with: the last path segment (`/pbx/cti/<token>`), a `token` query parameter,
/// or the password of HTTP Basic authentication (`https://crm:<token>@host/…`).
pub fn url_token_ok(req: &WebhookRequest<'_>, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let t = token.as_bytes();
    let in_path = req.subpath.trim_end_matches('/').rsplit('/').next().is_some_and(|seg| ct_eq(seg.as_bytes(), t));
    let in_query = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query.unwrap_or(""))
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "token" && ct_eq(v.as_bytes(), t));
    let in_basic = req
        .headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(_, pw)| ct_eq(pw.as_bytes(), t)))
        .unwrap_or(false);
    in_path || in_query || in_basic
}

/// A provider's event time given as unix seconds.
pub fn unix_time(fields: &[(String, String)], key: &str) -> Result<Option<DateTime<Utc>>, WebhookError> {
    match field(fields, key).map(str::trim).filter(|v| *v != "0") {
        None => Ok(None),
        Some(v) => {
            let secs: i64 = v.parse().map_err(|e| WebhookError::invalid(key, e))?;
            DateTime::from_timestamp(secs, 0).map(Some).ok_or_else(|| WebhookError::invalid(key, "out of range"))
        }
    }
}

/// Form fields of an `application/x-www-form-urlencoded` body (repeated keys kept).
pub fn form_fields(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|e| WebhookError::Malformed(format!("body is not a URL-encoded form: {e}")))
}

/// The first value of `key` in form fields.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

pub fn required<'a>(fields: &'a [(String, String)], key: &str) -> Result<&'a str, WebhookError> {
    field(fields, key).ok_or_else(|| WebhookError::missing(key))
}

/// Constant-time equality of two secrets or signatures.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HMAC-SHA1 of `msg` with `key` (Zadarma, Twilio).
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `msg` with `key` (the generic format).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap())
    }

    #[test]
    fn merge_is_order_independent() {
        let start = CallFacts {
            direction: Some(Direction::Inbound),
            external: Some("79161234567".into()),
            did: Some("74951234567".into()),
            started_at: t(0),
            rank: 0,
            ..Default::default()
        };
        let answer = CallFacts { answered_at: t(5), extension: Some("101".into()), rank: 1, ..Default::default() };
        let end = CallFacts {
            ended_at: t(65),
            duration_secs: Some(60),
            disposition: Some(Disposition::Answered),
            is_final: true,
            rank: 2,
            ..Default::default()
        };
        let a = merge(&[start.clone(), answer.clone(), end.clone()]);
        let b = merge(&[end.clone(), start.clone(), answer.clone()]);
        let c = merge(&[answer, end, start]);
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(a.is_final);
        assert_eq!(
            (a.extension.as_deref(), a.duration_secs, a.disposition),
            (Some("101"), Some(60), Some(Disposition::Answered))
        );
    }

    #[test]
    fn multipart_form_fields_are_read() {
        // What `curl --form 'event="newCall"' --form 'user[]="Emma Taylor"'` sends (curl
        // drops the quotes that protect a value).
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nnewCall\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"user[]\"\r\n\r\nEmma Taylor\r\n--XyZ--\r\n";
        let f = multipart_fields("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(f, vec![("event".into(), "newCall".into()), ("user[]".into(), "Emma Taylor".into())]);
        assert!(multipart_fields("multipart/form-data; boundary=XyZ", b"junk").is_err());
    }

    #[test]
    fn two_legs_ending_differently_give_the_same_call_in_either_order() {
        let missed =
            CallFacts { disposition: Some(Disposition::Missed), is_final: true, rank: 2, ..Default::default() };
        let answered = CallFacts {
            disposition: Some(Disposition::Answered),
            duration_secs: Some(40),
            is_final: true,
            rank: 2,
            ..Default::default()
        };
        let a = merge(&[missed.clone(), answered.clone()]);
        assert_eq!(a, merge(&[answered, missed]));
        assert_eq!((a.disposition, a.duration_secs), (Some(Disposition::Answered), Some(40)));
    }

    #[test]
    fn higher_rank_wins_a_disagreement() {
        let status_completed =
            CallFacts { disposition: Some(Disposition::Answered), is_final: true, rank: 2, ..Default::default() };
        let dial_result =
            CallFacts { disposition: Some(Disposition::Missed), is_final: true, rank: 3, ..Default::default() };
        assert_eq!(merge(&[dial_result.clone(), status_completed.clone()]).disposition, Some(Disposition::Missed));
        assert_eq!(merge(&[status_completed, dial_result]).disposition, Some(Disposition::Missed));
    }
}
