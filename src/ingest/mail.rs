//! Parses and classifies one inbound e-mail message (DOMAIN §4.1, §4.3, §4.5): the
//! idempotency key (R-EM-1), the correlation keys to our outbound mail (R-EM-3), delivery
//! status notifications (RFC 3464 and the common non-standard bounce shapes), auto-replies
//! (RFC 3834 and the headers mail systems really send), unsubscribe requests (R-OPT-3) and
//! the auto-generated test of R-EM-6 (d).
//!
//! Pure: bytes in, a [`ParsedMail`] out. It never touches the network or the database; the
//! IMAP worker fetches, the CRM rules (`crm::mail`) decide, `store` writes.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use mail_parser::{Addr, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use serde::Serialize;
use sha2::Digest;
use uuid::Uuid;

/// Our header on outbound mail carrying the outbound e-mail activity id (R-EM-3 step 1).
pub const XHEADER_ACTIVITY: &str = "X-Inflow-Activity";
/// Our header carrying the tracking token (also put in the subject).
pub const XHEADER_TOKEN: &str = "X-Inflow-Token";

/// Tracking tokens look like Dynamics' `CRM:0001234` (letters allowed after the prefix).
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bCRM:([0-9A-Za-z]{4,32})\b").unwrap());

/// Why a message cannot be processed at all: it is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not an RFC 5322 message: no header block could be parsed")]
    NoHeaders,
    #[error("no usable From address ({0})")]
    NoSender(String),
    #[error("message is {size} bytes, over the mailbox limit of {limit}")]
    TooBig { size: u64, limit: u64 },
}

/// The sender, as written in From.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sender {
    pub name: Option<String>,
    pub address: String,
}

/// How sure a bounce is that the address is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Permanent failure (5.x.x): suppress now.
    Hard,
    /// Transient failure (4.x.x): count; suppress after N.
    Soft,
    /// "Delayed, still trying": recorded, not counted.
    Delayed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRecipient {
    pub address: String,
    pub severity: Severity,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// A delivery status notification, standard or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    /// `rfc3464`, `x-failed-recipients`, `exim`, `qmail`, `exchange`, `text`.
    pub shape: &'static str,
    pub recipients: Vec<FailedRecipient>,
    /// Message-ID of the message that bounced (from the returned headers).
    pub original_message_id: Option<String>,
    /// Our X-header in the returned headers.
    pub original_activity: Option<Uuid>,
}

/// A spam complaint about our mail (RFC 5965 ARF feedback report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Complaint {
    /// `Feedback-Type` (abuse, fraud, opt-out, …).
    pub feedback_type: String,
    /// The complaining recipient: `Original-Rcpt-To`, `Removal-Recipient`, else the To of the
    /// returned message.
    pub address: Option<String>,
    pub original_message_id: Option<String>,
    pub original_activity: Option<Uuid>,
}

/// Why a message counts as machine-generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Automated {
    /// An out-of-office or other auto-reply (RFC 3834 and vendor headers, subjects).
    AutoReply(String),
    /// Bulk, list or no-reply mail: not an inquiry (R-EM-6 d), but not an auto-reply either.
    Bulk(String),
}

/// What the correlation step (R-EM-3) has to look up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CorrelationKeys {
    /// Our X-header (step 1).
    pub activity: Option<Uuid>,
    /// In-Reply-To then References, newest first (step 2).
    pub message_ids: Vec<String>,
    /// Tracking token from the subject or our token header (step 3).
    pub token: Option<String>,
}

/// One parsed inbound message: everything the rules need, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedMail {
    /// R-EM-1 key: `<message-id>` normalised, or `sha256:<hex>` of (From, Date, Subject, body prefix).
    pub key: String,
    pub message_id: Option<String>,
    pub from: Sender,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub in_reply_to: Option<String>,
    pub correlation: CorrelationKeys,
    /// Every address in To, Cc, Delivered-To and X-Original-To.
    pub recipients: Vec<String>,
    /// The text body (HTML converted to text when there is no text part).
    pub text: String,
    pub automated: Option<Automated>,
    pub bounce: Option<Bounce>,
    pub complaint: Option<Complaint>,
    pub attachments: usize,
}

/// Normalises a Message-ID: no angle brackets, no whitespace. The id is case-sensitive
/// (RFC 5322 treats it as an opaque token), so case is kept.
pub fn normalize_message_id(raw: &str) -> Option<String> {
    let s: String = raw.trim().trim_start_matches('<').trim_end_matches('>').chars().filter(|c| !c.is_whitespace()).collect();
    (!s.is_empty() && s.len() <= 995).then_some(s)
}

/// Parses a raw message. `limit` is the mailbox's size limit (bytes).
pub fn parse(raw: &[u8], limit: u64) -> Result<ParsedMail, Malformed> {
    if raw.len() as u64 > limit {
        return Err(Malformed::TooBig { size: raw.len() as u64, limit });
    }
    let msg = MessageParser::default().parse(raw).ok_or(Malformed::NoHeaders)?;
    if msg.headers().is_empty() {
        return Err(Malformed::NoHeaders);
    }
    let mut from = sender(&msg)?;
    let mut subject = msg.subject().unwrap_or("").trim().to_string();
    // Raw 8-bit headers (no RFC 2047), common from older Russian mailers: decode them with
    // the message's charset, else the likelier of Windows-1251 and KOI8-R.
    if subject.contains('\u{FFFD}') {
        if let Some(v) = raw_header(raw, "Subject").and_then(|b| redecode(&b, charset_hint(&msg))) {
            subject = v.trim().to_string();
        }
    }
    if from.name.as_deref().is_some_and(|n| n.contains('\u{FFFD}')) {
        if let Some(v) = raw_header(raw, "From").and_then(|b| redecode(&b, charset_hint(&msg))) {
            let name = v.split('<').next().unwrap_or("").trim().trim_matches('"').trim().to_string();
            from.name = (!name.is_empty()).then_some(name);
        }
    }
    let date = msg.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    let text = body_text(&msg);
    let message_id = msg.message_id().and_then(normalize_message_id);
    let key = match &message_id {
        Some(id) => format!("<{id}>"),
        None => fallback_key(&msg, &text),
    };
    let in_reply_to = id_list(msg.in_reply_to()).into_iter().next();
    let mut message_ids: Vec<String> = in_reply_to.iter().cloned().collect();
    let mut refs = id_list(msg.references());
    refs.reverse();
    for r in refs {
        if !message_ids.contains(&r) {
            message_ids.push(r);
        }
    }
    let token = TOKEN.captures(&subject).map(|c| format!("CRM:{}", &c[1])).or_else(|| header_text(&msg, XHEADER_TOKEN));
    let activity = header_text(&msg, XHEADER_ACTIVITY).and_then(|v| v.parse::<Uuid>().ok());
    let mut recipients = Vec::new();
    for a in msg.all_to().chain(msg.all_cc()).flat_map(|a| a.iter()) {
        if let Some(x) = a.address() {
            recipients.push(x.trim().to_string());
        }
    }
    for h in ["Delivered-To", "X-Original-To", "Envelope-To"] {
        for v in msg.header_values(h) {
            if let Some(t) = value_text(v) {
                recipients.push(t.trim().trim_matches(['<', '>']).to_string());
            }
        }
    }
    recipients.retain(|r| !r.is_empty());
    recipients.dedup();
    let complaint = detect_complaint(&msg, raw);
    let bounce = if complaint.is_some() { None } else { detect_bounce(&msg, raw, &from, &subject, &text) };
    let automated = if bounce.is_some() || complaint.is_some() { None } else { detect_automated(&msg, &from, &subject) };
    Ok(ParsedMail {
        key,
        message_id,
        from,
        subject,
        date,
        in_reply_to,
        correlation: CorrelationKeys { activity, message_ids, token },
        recipients,
        text,
        automated,
        bounce,
        complaint,
        attachments: msg.attachment_count(),
    })
}

/// The key of a message that cannot be parsed: a hash of its bytes (so a re-fetch of the
/// same broken message finds its quarantine row).
pub fn raw_key(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw)))
}

fn sender(msg: &Message<'_>) -> Result<Sender, Malformed> {
    let addr: Option<&Addr<'_>> = msg.from().and_then(|a| a.first()).or_else(|| msg.sender().and_then(|a| a.first()));
    let Some(a) = addr else {
        return Err(Malformed::NoSender(match msg.header_raw("From") {
            Some(r) => format!("From: {} cannot be read", r.trim().chars().take(80).collect::<String>()),
            None => "no From header".into(),
        }));
    };
    let address = a.address().map(|s| s.trim().to_string()).unwrap_or_default();
    let name = a.name().map(|n| n.trim().trim_matches('"').trim().to_string()).filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&address));
    if address.is_empty() {
        // A bounce may come "From: Mail Delivery System" with no address; keep it readable.
        if let Some(n) = &name {
            return Ok(Sender { name: Some(n.clone()), address: String::new() });
        }
        return Err(Malformed::NoSender("From has no address".into()));
    }
    Ok(Sender { name, address })
}

/// The raw bytes of a top-level header's value (continuation lines unfolded).
fn raw_header(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n")).unwrap_or(raw.len());
    let head = &raw[..end];
    let mut lines = head.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name.as_bytes()) && line[name.len()] == b':' {
            let mut v = line[name.len() + 1..].to_vec();
            while let Some(next) = lines.peek() {
                if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                    let n = lines.next().unwrap();
                    v.extend_from_slice(n.strip_suffix(b"\r").unwrap_or(n));
                } else {
                    break;
                }
            }
            return Some(v);
        }
    }
    None
}

/// The charset named by the message's (or its first text part's) Content-Type.
fn charset_hint<'a>(msg: &'a Message<'_>) -> Option<&'a str> {
    msg.content_type().and_then(|c| c.attribute("charset")).or_else(|| msg.text_part(0).and_then(|p| p.content_type()).and_then(|c| c.attribute("charset")))
}

/// Decodes 8-bit header bytes: with the hinted charset if mail-parser knows it, else the
/// one of Windows-1251 and KOI8-R that yields more lower-case Cyrillic (Russian text is
/// mostly lower case; each charset's lower case is the other's upper case).
fn redecode(bytes: &[u8], hint: Option<&str>) -> Option<String> {
    use mail_parser::decoders::charsets::map::charset_decoder;
    if let Some(d) = hint.filter(|h| !h.eq_ignore_ascii_case("utf-8") && !h.eq_ignore_ascii_case("us-ascii")).and_then(|h| charset_decoder(h.as_bytes())) {
        return Some(d(bytes));
    }
    let lower = |s: &str| s.chars().filter(|c| ('а'..='я').contains(c) || *c == 'ё').count();
    let a = charset_decoder(b"windows-1251")?(bytes);
    let b = charset_decoder(b"koi8-r")?(bytes);
    Some(if lower(&b) > lower(&a) { b } else { a })
}

fn fallback_key(msg: &Message<'_>, text: &str) -> String {
    let mut h = sha2::Sha256::new();
    for part in [msg.header_raw("From").unwrap_or(""), msg.header_raw("Date").unwrap_or(""), msg.header_raw("Subject").unwrap_or("")] {
        h.update(part.trim().as_bytes());
        h.update([0u8]);
    }
    let prefix: String = text.chars().take(1024).collect();
    h.update(prefix.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn value_text<'a>(v: &'a HeaderValue<'_>) -> Option<&'a str> {
    match v {
        HeaderValue::Text(t) => Some(t.as_ref()),
        HeaderValue::TextList(l) => l.first().map(|t| t.as_ref()),
        _ => None,
    }
}

fn header_text(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => normalize_message_id(t).into_iter().collect(),
        HeaderValue::TextList(l) => l.iter().filter_map(|t| normalize_message_id(t)).collect(),
        _ => Vec::new(),
    }
}

/// The text body: text parts first, else HTML converted by mail-parser.
fn body_text(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for i in 0..msg.text_body_count().max(1) {
        if let Some(t) = msg.body_text(i) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&t);
        }
    }
    out.replace("\r\n", "\n").trim().to_string()
}

/// The first line a person wrote: skips blank lines, quotes and the "On … wrote:" line.
pub fn first_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('>')).unwrap_or("")
}

/// Removes `Re:`, `Fwd:`, `Отв:`, `AW:`, … prefixes (repeated, any case) and list tags.
pub fn strip_reply_prefixes(subject: &str) -> &str {
    static PREFIX: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^\s*(?:(?:re|fwd?|fw|aw|wg|sv|vs|antw|отв|ответ|пер|переслано|відп|вiдп|рн)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+").unwrap());
    let s = subject.trim();
    match PREFIX.find(s) {
        Some(m) => s[m.end()..].trim(),
        None => s,
    }
}

// ---------------------------------------------------------------- auto-replies (RFC 3834)

static AUTO_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:(?:re|aw)\s*:\s*)?(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|autoreply|auto:|abwesenheitsnotiz|absence|away from (?:the )?office|on vacation|vacation reply|i am (?:currently )?(?:out|away)|автоматический ответ|автоответ|нет на месте|вне офиса|в отпуске|отсутствую|автовідповідь|автоматична відповідь|поза офісом|у відпустці|відсутній)",
    )
    .unwrap()
});

static NOREPLY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^(?:no-?reply|do-?not-?reply|donotreply|noreply-[a-z0-9]+|bounces?|mailer-daemon|postmaster)(?:[+.-].*)?$").unwrap());

fn detect_automated(msg: &Message<'_>, from: &Sender, subject: &str) -> Option<Automated> {
    let h = |n: &str| header_text(msg, n).map(|v| v.to_ascii_lowercase());
    if let Some(v) = h("Auto-Submitted") {
        let v = v.split(';').next().unwrap_or("").trim().to_string();
        if v != "no" {
            return Some(Automated::AutoReply(format!("Auto-Submitted: {v}")));
        }
    }
    for name in ["X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Mailautoreply", "X-Auto-Reply", "X-Autogenerated", "X-AutoReply-From", "X-Mail-Autoreply"] {
        if h(name).is_some() {
            return Some(Automated::AutoReply(format!("{name} header")));
        }
    }
    if let Some(v) = h("X-Auto-Response-Suppress") {
        // It asks others not to auto-reply to this message, and ordinary Outlook mail carries
        // it too: alone it proves nothing; with an out-of-office subject it is Exchange's OOF.
        if v != "none" && AUTO_SUBJECT.is_match(subject) {
            return Some(Automated::AutoReply(format!("X-Auto-Response-Suppress: {v} and an out-of-office subject")));
        }
    }
    let precedence = h("Precedence");
    if precedence.as_deref() == Some("auto_reply") {
        return Some(Automated::AutoReply("Precedence: auto_reply".into()));
    }
    if AUTO_SUBJECT.is_match(subject) {
        return Some(Automated::AutoReply(format!("out-of-office subject: {}", subject.chars().take(60).collect::<String>())));
    }
    if let Some(p) = precedence.filter(|p| matches!(p.as_str(), "bulk" | "junk" | "list")) {
        return Some(Automated::Bulk(format!("Precedence: {p}")));
    }
    if msg.header_raw("List-Id").is_some() {
        return Some(Automated::Bulk("List-Id header".into()));
    }
    if msg.header_raw("List-Unsubscribe").is_some() {
        return Some(Automated::Bulk("List-Unsubscribe header (bulk mail)".into()));
    }
    if msg.content_type().is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))) {
        return Some(Automated::AutoReply("a delivery or disposition report without failures".into()));
    }
    let local = from.address.rsplit_once('@').map(|(l, _)| l).unwrap_or(&from.address);
    if NOREPLY.is_match(local) {
        return Some(Automated::Bulk(format!("no-reply sender {local}")));
    }
    if msg.header_raw("Return-Path").is_some_and(|r| r.trim().trim_matches(['<', '>']).trim().is_empty()) {
        return Some(Automated::Bulk("empty Return-Path".into()));
    }
    None
}

// ---------------------------------------------------------------- bounces (RFC 3464 and others)

/// An RFC 3463 enhanced status code, not part of a dotted number such as an IP address.
static STATUS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^|[^\d.])([245]\.\d{1,3}\.\d{1,3})(?:[^\d.]|\.(?:\s|$)|$)").unwrap());

fn status_in(text: &str) -> Option<String> {
    STATUS.captures(text).map(|c| c[1].to_string())
}
static SMTP_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^|[\s#:(])([45])\d\d(?:[\s-]|$)").unwrap());
static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)<?([a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)>?").unwrap());
static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(undeliver|undelivered mail|delivery status notification \((?:failure|delay)|delivery (?:has )?failed|delivery failure|mail delivery failed|failure notice|returned mail|could not be delivered|message not delivered|nondeliverable|non-delivery|недоставлен|не доставлен|не удалось доставить|не вдалося доставити|ошибка доставки|повідомлення не доставлено)").unwrap()
});

fn is_daemon(from: &Sender) -> bool {
    let local = from.address.rsplit_once('@').map(|(l, _)| l).unwrap_or(&from.address).to_ascii_lowercase();
    local == "mailer-daemon" || local == "postmaster" || local.starts_with("mailer-daemon") || from.address.is_empty()
}

/// Hard only when the address itself is dead: 5.1.x (bad mailbox or domain), 5.2.1
/// (mailbox disabled), 5.4.4 (domain cannot be routed), or a 5xx reply saying the user does
/// not exist. Policy and content refusals (5.7.x blocklists, 5.2.2 full, 5.3.4 too big) are
/// soft: suppressing on them would drop good addresses wholesale.
pub fn severity_of(status: Option<&str>, text: &str) -> Severity {
    if let Some(s) = status {
        let mut parts = s.split('.');
        let (class, subject, detail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        return match (class, subject, detail) {
            ("5", "1", _) | ("5", "2", "1") | ("5", "4", "4") => Severity::Hard,
            _ => Severity::Soft,
        };
    }
    let t = text.to_ascii_lowercase();
    let unknown_user = ["user unknown", "unknown user", "does not exist", "no such user", "address not found", "no mailbox here", "mailbox unavailable", "recipient not found", "invalid recipient"].iter().any(|w| t.contains(w));
    match SMTP_CODE.captures(text) {
        Some(c) if &c[1] == "5" && unknown_user => Severity::Hard,
        Some(_) => Severity::Soft,
        None if unknown_user => Severity::Hard,
        None => Severity::Soft,
    }
}

/// Raw body bytes of a part, as text (DSN fields are 7-bit by RFC 3464).
fn part_raw<'a>(raw: &'a [u8], part: &mail_parser::MessagePart<'_>) -> &'a [u8] {
    let (a, b) = (part.raw_body_offset() as usize, part.raw_end_offset() as usize);
    raw.get(a..b.min(raw.len())).unwrap_or(&[])
}

fn detect_bounce(msg: &Message<'_>, raw: &[u8], from: &Sender, subject: &str, text: &str) -> Option<Bounce> {
    let is_report = msg.content_type().is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")));
    let mut original_message_id = None;
    let mut original_activity = None;
    let mut dsn_text = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else { continue };
        let (t, s) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (t.as_str(), s.as_str()) {
            ("message", "delivery-status") | ("message", "global-delivery-status") => {
                dsn_text = Some(String::from_utf8_lossy(part_raw(raw, part)).into_owned());
            }
            ("message", "rfc822") | ("text", "rfc822-headers") | ("message", "rfc822-headers") | ("message", "global") | ("message", "global-headers") => {
                let inner = match &part.body {
                    PartType::Message(m) => Some((m.message_id().and_then(normalize_message_id), m.header_raw(XHEADER_ACTIVITY).map(str::to_string))),
                    _ => MessageParser::default()
                        .parse_headers(part_raw(raw, part))
                        .map(|m| (m.message_id().and_then(normalize_message_id), m.header_raw(XHEADER_ACTIVITY).map(str::to_string))),
                };
                if let Some((id, act)) = inner {
                    original_message_id = original_message_id.or(id);
                    original_activity = original_activity.or(act.and_then(|a| a.trim().parse().ok()));
                }
            }
            _ => {}
        }
    }
    // Non-standard bounces quote the original headers in the text: pick up our X-header and
    // the Message-ID that follows the "original message" marker.
    if original_activity.is_none() {
        original_activity = find_header_line(text, XHEADER_ACTIVITY).and_then(|v| v.parse().ok());
    }
    if let Some(dsn) = dsn_text {
        let (recipients, groups) = parse_dsn(&dsn);
        if !recipients.is_empty() {
            return Some(Bounce { shape: "rfc3464", recipients, original_message_id, original_activity });
        }
        if groups > 0 {
            // A DSN whose recipients were all delivered, relayed or expanded: not a bounce,
            // and its text must not be mined for addresses.
            return None;
        }
    }
    // A subject alone is no evidence (a customer may write "Re: order not delivered"):
    // a bounce also comes from a mail system — null sender, MAILER-DAEMON/postmaster, a
    // report, X-Failed-Recipients, or an Exchange system mailbox with an NDR subject.
    let null_sender = msg.header_raw("Return-Path").is_some_and(|r| r.trim().trim_matches(['<', '>']).trim().is_empty());
    let exchange = from.address.to_ascii_lowercase().starts_with("microsoftexchange") && BOUNCE_SUBJECT.is_match(subject);
    let machine = is_daemon(from) || null_sender || is_report || msg.header_raw("X-Failed-Recipients").is_some() || exchange;
    if !machine {
        return None;
    }
    if original_message_id.is_none() {
        original_message_id = find_header_line(text, "Message-ID").and_then(|v| normalize_message_id(&v));
    }
    // X-Failed-Recipients (Exim, Gmail): the addresses, severity from the text.
    let failed: Vec<String> = msg
        .header_values("X-Failed-Recipients")
        .filter_map(value_text)
        .flat_map(|v| v.split(',').map(|a| a.trim().trim_matches(['<', '>']).to_string()).collect::<Vec<_>>())
        .filter(|a| a.contains('@'))
        .collect();
    let (shape, section) = nonstandard_section(text);
    let recipients: Vec<FailedRecipient> = if !failed.is_empty() {
        failed
            .into_iter()
            .map(|a| {
                let ctx = context_for(section, &a);
                let status = status_in(ctx);
                FailedRecipient { severity: severity_of(status.as_deref(), ctx), status, diagnostic: diagnostic_line(ctx), address: a }
            })
            .collect()
    } else {
        let mut v: Vec<FailedRecipient> = Vec::new();
        // The message's own parties (its From, To, Cc) are never failed recipients.
        let own: Vec<String> = msg.from().into_iter().chain(msg.to()).chain(msg.cc()).flat_map(|a| a.iter()).filter_map(|a| a.address()).map(|a| a.to_ascii_lowercase()).collect();
        for c in EMAIL.captures_iter(section) {
            let a = c[1].to_string();
            if a.len() > 254 || own.contains(&a.to_ascii_lowercase()) || v.iter().any(|r| r.address.eq_ignore_ascii_case(&a)) || is_daemon(&Sender { name: None, address: a.clone() }) {
                continue;
            }
            let ctx = context_for(section, &a);
            let status = status_in(ctx);
            v.push(FailedRecipient { severity: severity_of(status.as_deref(), ctx), status, diagnostic: diagnostic_line(ctx), address: a });
        }
        v
    };
    if recipients.is_empty() {
        return None;
    }
    let shape = if shape == "text" && msg.header_raw("X-Failed-Recipients").is_some() { "x-failed-recipients" } else { shape };
    Some(Bounce { shape, recipients, original_message_id, original_activity })
}

/// `Name: value` from quoted original headers inside a text body.
fn find_header_line(text: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    text.lines().map(|l| l.trim_start_matches(['>', ' ', '\t'])).find(|l| l.to_ascii_lowercase().starts_with(&prefix)).map(|l| l[prefix.len()..].trim().to_string()).filter(|v| !v.is_empty())
}

/// The part of a non-standard bounce's text that names the failed recipients (before the
/// returned copy of the message), and the shape it has.
fn nonstandard_section(text: &str) -> (&'static str, &str) {
    let lower = text.to_ascii_lowercase();
    let cut = [
        "--- below this line is a copy of the message",
        "------ this is a copy of the message",
        "----- original message -----",
        "original message headers",
        "-----original message-----",
        "--- the header of the original message",
        "received: from",
    ]
    .iter()
    .filter_map(|m| lower.find(m))
    .min()
    .unwrap_or(text.len());
    let section = &text[..cut];
    let shape = if lower.contains("this is the qmail-send program") {
        "qmail"
    } else if lower.contains("this message was created automatically by mail delivery software") {
        "exim"
    } else if lower.contains("delivery has failed to these recipients") || lower.contains("your message to") && lower.contains("couldn't be delivered") {
        "exchange"
    } else {
        "text"
    };
    (shape, section)
}

/// The lines around an address's mention: where its status or SMTP reply is.
fn context_for<'a>(section: &'a str, address: &str) -> &'a str {
    let lower = section.to_ascii_lowercase();
    let Some(at) = lower.find(&address.to_ascii_lowercase()) else { return section };
    let start = at;
    // Up to the next blank-line-separated address block, or 800 bytes.
    let mut end = (start + 800).min(section.len());
    while !section.is_char_boundary(end) {
        end -= 1;
    }
    let after = (start + address.len()).min(end);
    if let Some(next) = lower.get(after..end).and_then(|t| t.find("\n\n\n")) {
        end = after + next;
    }
    section.get(start..end).unwrap_or(section)
}

fn diagnostic_line(ctx: &str) -> Option<String> {
    ctx.lines()
        .skip(1)
        .map(str::trim)
        .find(|l| SMTP_CODE.is_match(l) || STATUS.is_match(l) || l.to_ascii_lowercase().contains("error"))
        .map(|l| l.chars().take(300).collect())
}

/// RFC 3464 §2.3: per-recipient field groups after the per-message group. Returns the
/// failed or delayed recipients and how many recipient groups there were in all.
fn parse_dsn(dsn: &str) -> (Vec<FailedRecipient>, usize) {
    let dsn = dsn.replace("\r\n", "\n");
    // Unfold continuation lines.
    let unfolded = dsn.replace("\n ", " ").replace("\n\t", " ");
    let mut out = Vec::new();
    let mut groups = 0;
    for group in unfolded.split("\n\n") {
        let mut rcpt = None;
        let mut action = None;
        let mut status = None;
        let mut diag = None;
        for line in group.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "final-recipient" => rcpt = Some(v.split_once(';').map(|(_, a)| a).unwrap_or(v).trim().trim_matches(['<', '>']).to_string()),
                "original-recipient" if rcpt.is_none() => rcpt = Some(v.split_once(';').map(|(_, a)| a).unwrap_or(v).trim().trim_matches(['<', '>']).to_string()),
                "action" => action = Some(v.to_ascii_lowercase()),
                "status" => status = status_in(v),
                "diagnostic-code" => diag = Some(v.split_once(';').map(|(_, d)| d).unwrap_or(v).trim().chars().take(300).collect::<String>()),
                _ => {}
            }
        }
        let (Some(address), Some(action)) = (rcpt, action) else { continue };
        groups += 1;
        let severity = match action.split_whitespace().next().unwrap_or("") {
            "failed" => severity_of(status.as_deref(), diag.as_deref().unwrap_or("")),
            "delayed" => Severity::Delayed,
            _ => continue, // delivered, relayed, expanded: not a failure
        };
        if address.contains('@') {
            out.push(FailedRecipient { address, severity, status, diagnostic: diag });
        }
    }
    (out, groups)
}

// ---------------------------------------------------------------- complaints (RFC 5965)

fn detect_complaint(msg: &Message<'_>, raw: &[u8]) -> Option<Complaint> {
    let report = msg.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")) && ct.attribute("report-type").is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
    });
    let mut fields = None;
    let mut original: Option<(Option<String>, Option<Uuid>, Option<String>)> = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else { continue };
        let (t, s) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (t.as_str(), s.as_str()) {
            ("message", "feedback-report") => fields = Some(String::from_utf8_lossy(part_raw(raw, part)).into_owned()),
            ("message", "rfc822") | ("text", "rfc822-headers") | ("message", "rfc822-headers") => {
                let get = |m: &Message<'_>| {
                    (
                        m.message_id().and_then(normalize_message_id),
                        m.header_raw(XHEADER_ACTIVITY).and_then(|a| a.trim().parse().ok()),
                        m.to().and_then(|a| a.first()).and_then(|a| a.address()).map(|a| a.trim().to_string()),
                    )
                };
                original = match &part.body {
                    PartType::Message(m) => Some(get(m)),
                    _ => MessageParser::default().parse_headers(part_raw(raw, part)).map(|m| get(&m)),
                };
            }
            _ => {}
        }
    }
    let fields = fields?;
    if !report && fields.is_empty() {
        return None;
    }
    let field = |name: &str| find_header_line(&fields, name);
    let (original_message_id, original_activity, to) = original.unwrap_or((None, None, None));
    let address = field("Original-Rcpt-To").or_else(|| field("Removal-Recipient")).or(to).map(|a| a.trim_matches(['<', '>', ' ']).to_string()).filter(|a| a.contains('@'));
    Some(Complaint { feedback_type: field("Feedback-Type").unwrap_or_else(|| "abuse".into()).to_ascii_lowercase(), address, original_message_id, original_activity })
}

// ---------------------------------------------------------------- unsubscribe (R-OPT-3)

/// R-OPT-3 keyword test on a reply: the subject (without reply prefixes) or the first line
/// the person wrote is a short phrase containing a keyword as a whole word — "Unsubscribe",
/// "STOP", "Отписаться, пожалуйста" — not a long sentence that happens to use the word.
/// `original` is the subject of the mail being answered: a subject that merely repeats it
/// ("Re: Stop overpaying for freight") says nothing about the reader's wish.
pub fn is_unsubscribe_text(subject: &str, original: Option<&str>, text: &str, keywords: &[String]) -> bool {
    let check = |line: &str| {
        let words: Vec<String> = line.split(|c: char| !c.is_alphanumeric() && c != '-').filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect();
        !words.is_empty() && words.len() <= 6 && keywords.iter().any(|k| words.iter().any(|w| w == &k.to_lowercase()))
    };
    let own = strip_reply_prefixes(subject);
    let repeated = original.is_some_and(|o| strip_reply_prefixes(o).eq_ignore_ascii_case(own) || own.to_lowercase().contains(&strip_reply_prefixes(o).to_lowercase()));
    (!repeated && check(own)) || check(first_line(text))
}

/// Whether one of the message's recipients is our List-Unsubscribe mailto address
/// (`local@domain`, also as `local+anything@domain`).
pub fn hits_unsubscribe_address(recipients: &[String], mailto: &str) -> bool {
    let Some((l, d)) = mailto.trim().rsplit_once('@') else { return false };
    recipients.iter().any(|r| {
        let Some((rl, rd)) = r.rsplit_once('@') else { return false };
        rd.eq_ignore_ascii_case(d) && (rl.eq_ignore_ascii_case(l) || rl.to_ascii_lowercase().starts_with(&format!("{}+", l.to_ascii_lowercase())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn p(name: &str) -> ParsedMail {
        parse(&fixture(name), 1 << 24).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn r_em_1_key_is_the_message_id_else_a_content_hash() {
        let m = p("inquiry-plain.eml");
        assert_eq!(m.key, "<inquiry-1@client.example>");
        let no_id = b"From: a@b.example\r\nDate: Fri, 27 Nov 2026 10:00:00 +0300\r\nSubject: x\r\n\r\nhello\r\n";
        let k1 = parse(no_id, 1 << 20).unwrap().key;
        let k2 = parse(no_id, 1 << 20).unwrap().key;
        assert!(k1.starts_with("sha256:") && k1 == k2, "{k1}");
        let other = b"From: a@b.example\r\nDate: Fri, 27 Nov 2026 10:00:00 +0300\r\nSubject: x\r\n\r\nhello again\r\n";
        assert_ne!(parse(other, 1 << 20).unwrap().key, k1);
    }

    /// KOI8-R bytes of a character (test helper; ASCII passes through).
    fn koi8r(c: char) -> Vec<u8> {
        if c.is_ascii() {
            return vec![c as u8];
        }
        let d = mail_parser::decoders::charsets::map::charset_decoder(b"koi8-r").unwrap();
        (0x80..=0xFFu8).find(|b| d(&[*b]).starts_with(c)).map(|b| vec![b]).unwrap_or_else(|| vec![b'?'])
    }

    #[test]
    fn charsets_end_up_as_text() {
        let m = p("inquiry-koi8r.eml");
        assert_eq!(m.subject, "Запрос цены на оборудование");
        assert_eq!(m.from.name.as_deref(), Some("Иван Петров"));
        assert!(m.text.contains("Прошу выслать прайс"), "{}", m.text);
        let m = p("inquiry-cp1251.eml");
        assert_eq!(m.subject, "Коммерческое предложение");
        assert_eq!(m.from.name.as_deref(), Some("Ольга Сидоренко"));
        assert!(m.text.contains("Добрый день"), "{}", m.text);
        let m = p("inquiry-iso8859-5.eml");
        assert_eq!(m.subject, "Вопрос по доставке");
        assert!(m.text.contains("Когда будет доставка"), "{}", m.text);
        let m = p("inquiry-8bit-headers-cp1251.eml");
        assert_eq!(m.subject, "Заявка на поставку");
        assert_eq!(m.from.name.as_deref(), Some("Иван Петров"));
        assert!(m.text.contains("Тело письма"));
        let koi = "Subject: Заявка на поставку\r\nFrom: Иван <i@x.example>\r\nMessage-ID: <k@x>\r\n\r\nbody\r\n";
        let koi: Vec<u8> = koi.chars().flat_map(|c| koi8r(c)).collect();
        let m = parse(&koi, 1 << 20).unwrap();
        assert_eq!(m.subject, "Заявка на поставку", "no charset named: KOI8-R told from Windows-1251 by letter case");
        let m = p("inquiry-utf8-ua.eml");
        assert_eq!(m.subject, "Запит щодо співпраці");
        assert_eq!(m.from.name.as_deref(), Some("Олена Коваль"));
    }

    #[test]
    fn rfc3464_dsn_gives_recipients_and_severity() {
        let m = p("bounce-postfix-dsn.eml");
        let b = m.bounce.expect("a DSN");
        assert_eq!(b.shape, "rfc3464");
        assert_eq!(b.recipients.len(), 1);
        assert_eq!(b.recipients[0].address, "nobody@client.example");
        assert_eq!(b.recipients[0].severity, Severity::Hard);
        assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(b.original_message_id.as_deref(), Some("wave-1.rcpt-1@crm.example.com"));
        assert!(b.original_activity.is_some());
        assert!(m.automated.is_none());
        let m = p("bounce-gmail-dsn.eml");
        let b = m.bounce.expect("gmail DSN");
        assert_eq!(b.recipients[0].address, "no.such.user@gmail.com");
        assert_eq!(b.recipients[0].severity, Severity::Hard);
        let m = p("bounce-delayed-dsn.eml");
        let b = m.bounce.expect("delay DSN");
        assert_eq!(b.recipients[0].severity, Severity::Delayed);
        let m = p("bounce-soft-dsn.eml");
        assert_eq!(m.bounce.unwrap().recipients[0].severity, Severity::Soft);
    }

    #[test]
    fn arf_complaints_name_the_complaining_recipient() {
        let m = p("complaint-arf.eml");
        let c = m.complaint.expect("an ARF report");
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.address.as_deref(), Some("angry@mail.example"));
        assert_eq!(c.original_message_id.as_deref(), Some("wave-1.rcpt-9@crm.example.com"));
        assert!(m.bounce.is_none() && m.automated.is_none());
    }

    #[test]
    fn a_success_dsn_is_no_bounce_and_no_inquiry() {
        let raw = b"From: MAILER-DAEMON@mx.example\r\nTo: news@crm.example.com\r\nSubject: Successful Mail Delivery Report\r\nMessage-ID: <ok-1@mx.example>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message was successfully delivered to happy@client.example.\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; happy@client.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n--B--\r\n";
        let m = parse(raw, 1 << 20).unwrap();
        assert!(m.bounce.is_none(), "{:?}", m.bounce);
        assert!(matches!(m.automated, Some(Automated::AutoReply(_))));
    }

    #[test]
    fn non_standard_bounces_are_recognised() {
        let b = p("bounce-exim.eml").bounce.expect("exim");
        assert_eq!(b.shape, "exim");
        assert_eq!(b.recipients[0].address, "gone@client.example");
        assert_eq!(b.recipients[0].severity, Severity::Hard);
        let b = p("bounce-qmail.eml").bounce.expect("qmail");
        assert_eq!(b.shape, "qmail");
        assert_eq!(b.recipients[0].address, "missing@client.example");
        assert_eq!(b.recipients[0].severity, Severity::Hard);
        let b = p("bounce-exchange.eml").bounce.expect("exchange");
        assert_eq!(b.recipients[0].address, "left.company@client.example");
        assert_eq!(b.recipients[0].severity, Severity::Hard);
        assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn auto_replies_are_recognised() {
        for (f, want) in [
            ("autoreply-rfc3834.eml", "Auto-Submitted: auto-replied"),
            ("autoreply-exchange-oof.eml", "X-Auto-Response-Suppress"),
            ("autoreply-ru-subject.eml", "out-of-office subject"),
        ] {
            match p(f).automated {
                Some(Automated::AutoReply(r)) => assert!(r.contains(want), "{f}: {r}"),
                other => panic!("{f}: {other:?}"),
            }
        }
        assert!(p("inquiry-plain.eml").automated.is_none());
        assert!(matches!(p("newsletter-bulk.eml").automated, Some(Automated::Bulk(_))));
    }

    #[test]
    fn replies_carry_correlation_keys() {
        let m = p("reply-to-wave.eml");
        assert_eq!(m.correlation.message_ids.first().map(String::as_str), Some("wave-1.rcpt-2@crm.example.com"));
        assert_eq!(m.correlation.token.as_deref(), Some("CRM:W1R2TOKEN"));
        assert_eq!(strip_reply_prefixes("RE: Fwd: Отв: Новинки"), "Новинки");
    }

    #[test]
    fn r_opt_3_keywords_need_a_short_phrase() {
        let kw: Vec<String> = ["unsubscribe", "stop", "отписаться", "відписатися"].map(String::from).to_vec();
        assert!(is_unsubscribe_text("Re: News", Some("News"), "Отписаться, пожалуйста\n\n> quoted", &kw));
        assert!(is_unsubscribe_text("Re: STOP", Some("November news"), "", &kw));
        assert!(is_unsubscribe_text("Відписатися", None, "", &kw));
        assert!(!is_unsubscribe_text("Re: News", Some("News"), "I can't stop thinking about your offer, please send me the price list today", &kw));
        // A wave titled with a keyword: replies repeating its subject are not unsubscribes.
        assert!(!is_unsubscribe_text("Re: Stop overpaying for freight", Some("Stop overpaying for freight"), "Yes, send me the price list", &kw));
        assert!(hits_unsubscribe_address(&["Unsubscribe+abc@News.Example.com".into()], "unsubscribe@news.example.com"));
        assert!(!hits_unsubscribe_address(&["sales@news.example.com".into()], "unsubscribe@news.example.com"));
    }

    #[test]
    fn review_shapes_human_mail_is_no_bounce_and_policy_codes_are_soft() {
        // A customer's complaint with a bounce-like subject, quoting our address.
        let raw = "From: Client <client@shop.example>\r\nTo: sales@ours.example\r\nSubject: Re: Заказ 512 не доставлен\r\nMessage-ID: <h1@shop.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nГде заказ?\r\n\r\nОт: Отдел продаж <sales@ours.example>\r\nТел. 550 12 34\r\n".as_bytes();
        let m = parse(raw, 1 << 20).unwrap();
        assert!(m.bounce.is_none(), "{:?}", m.bounce);
        // Policy refusals do not suppress; an IP address is not a status code.
        assert_eq!(severity_of(Some("5.7.26"), ""), Severity::Soft);
        assert_eq!(severity_of(Some("5.2.2"), ""), Severity::Soft);
        assert_eq!(severity_of(Some("5.1.1"), ""), Severity::Hard);
        assert_eq!(status_in("host mx [10.4.5.120] said: 550 5.1.1 <x@y>").as_deref(), Some("5.1.1"));
        assert_eq!(status_in("[2.56.1.1]"), None);
        // Outlook's X-Auto-Response-Suppress on a person's mail is no auto-reply.
        let raw = b"From: Kate <kate@client.example>\r\nTo: sales@ours.example\r\nSubject: Price request\r\nMessage-ID: <h2@client.example>\r\nX-Auto-Response-Suppress: All\r\n\r\nPlease send prices.\r\n";
        assert!(parse(raw, 1 << 20).unwrap().automated.is_none());
        // Null Return-Path: machine mail, no lead.
        let raw = b"Return-Path: <>\r\nFrom: Service Desk <sd@vendor.example>\r\nSubject: Request 4711 received\r\nMessage-ID: <h3@vendor.example>\r\n\r\nThanks.\r\n";
        assert!(matches!(parse(raw, 1 << 20).unwrap().automated, Some(Automated::Bulk(_))));
        // A huge address in a daemon's text does not panic.
        let raw = format!("From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nMessage-ID: <h4@x>\r\n\r\n{}@x.example failed\r\n", "a".repeat(900));
        let _ = parse(raw.as_bytes(), 1 << 20);
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(parse(b"", 100), Err(Malformed::NoHeaders));
        assert!(matches!(parse(&[b'x'; 200], 100), Err(Malformed::TooBig { .. })));
        assert!(matches!(parse(b"Subject: no sender\r\n\r\nbody\r\n", 1 << 20), Err(Malformed::NoSender(_))));
        // Binary garbage must not panic.
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = parse(&junk, 1 << 20);
    }
}
