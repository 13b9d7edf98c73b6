//! Reads a spam complaint or opt-out report about mail we sent: RFC 5965 ARF feedback
//! reports (Yahoo, AOL, Mail.ru, Yandex, …), Microsoft's JMRP notices ("complaint about
//! message from …" with the message attached) and Apple Mail's one-click unsubscribe message
//! (`X-Apple-Unsubscribe: true`), and Amazon SES complaint notifications. What a complaint
//! does is `crm::mail`'s decision.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use uuid::Uuid;

use super::bounce::{find_header_line, part_raw, ses_notification};
use super::envelope;
use crate::crm::inbound::{Complaint, Sender, XHEADER_ACTIVITY, normalize_message_id};

/// What the returned message tells: its Message-ID, our X-header, its first recipient.
type Returned = (Option<String>, Option<Uuid>, Option<String>);

fn returned(m: &Message<'_>) -> Returned {
    (
        m.message_id().and_then(normalize_message_id),
        m.header_raw(XHEADER_ACTIVITY).and_then(|a| a.trim().parse().ok()),
        m.to().and_then(|a| a.first()).and_then(|a| a.address()).map(|a| a.trim().to_string()),
    )
}

fn address(v: Option<String>) -> Option<String> {
    v.map(|a| a.trim().trim_matches(['<', '>', ' ', '"']).to_string())
        .map(|a| a.split_once(';').map(|(_, x)| x.trim().to_string()).unwrap_or(a))
        .filter(|a| a.contains('@'))
}

/// The complaint in a message, if it is one.
pub fn read(msg: &Message<'_>, raw: &[u8], from: &Sender, subject: &str, text: &str) -> Option<Complaint> {
    if let Some(c) = ses_complaint(text) {
        return Some(c);
    }
    let report = envelope::report_type(msg).is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"));
    let mut fields = None;
    let mut original: Option<Returned> = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else { continue };
        let (t, s) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (t.as_str(), s.as_str()) {
            ("message", "feedback-report") => fields = Some(String::from_utf8_lossy(part_raw(raw, part)).into_owned()),
            ("message", "rfc822") | ("text", "rfc822-headers") | ("message", "rfc822-headers")
                if original.is_none() =>
            {
                original = match &part.body {
                    PartType::Message(m) => Some(returned(m)),
                    _ => MessageParser::default().parse_headers(part_raw(raw, part)).map(|m| returned(&m)),
                };
            }
            _ => {}
        }
    }
    let (original_message_id, original_activity, to) = original.clone().unwrap_or((None, None, None));
    if let Some(fields) = fields.filter(|f| report || !f.trim().is_empty()) {
        let field = |name: &str| find_header_line(&fields, name);
        let address = address(field("Original-Rcpt-To"))
            .or_else(|| address(field("Removal-Recipient")))
            .or_else(|| address(to.clone()));
        let feedback_type = field("Feedback-Type").unwrap_or_else(|| "abuse".into()).to_ascii_lowercase();
        return Some(Complaint { feedback_type, address, original_message_id, original_activity });
    }
    // Microsoft's Junk Mail Reporting Program: the reported message attached, the
    // complainer its recipient (or X-HmXmrOriginalRecipient).
    let jmrp = subject.trim().to_ascii_lowercase().starts_with("complaint about message from")
        || msg.header_raw("X-HmXmrOriginalRecipient").is_some();
    if jmrp && original.is_some() {
        let address = address(msg.header_raw("X-HmXmrOriginalRecipient").map(str::to_string)).or_else(|| address(to));
        return Some(Complaint { feedback_type: "abuse".into(), address, original_message_id, original_activity });
    }
    // Apple Mail's "Unsubscribe" button sends a message from the reader to our
    // List-Unsubscribe mailto with this header.
    if msg.header_raw("X-Apple-Unsubscribe").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Some(Complaint {
            feedback_type: "opt-out".into(),
            address: address(Some(from.address.clone())),
            original_message_id,
            original_activity,
        });
    }
    None
}

/// An Amazon SES complaint notification delivered by e-mail.
fn ses_complaint(text: &str) -> Option<Complaint> {
    let v = ses_notification(text)?;
    if v.get("notificationType").and_then(|t| t.as_str()) != Some("Complaint") {
        return None;
    }
    let c = v.get("complaint")?;
    let address = c
        .get("complainedRecipients")
        .and_then(|r| r.as_array())
        .and_then(|r| r.first())
        .and_then(|r| r.get("emailAddress"))
        .and_then(|a| a.as_str())
        .map(str::to_string);
    let feedback_type = c.get("complaintFeedbackType").and_then(|t| t.as_str()).unwrap_or("abuse").to_ascii_lowercase();
    let original_message_id =
        v.get("mail").and_then(|m| m.get("messageId")).and_then(|m| m.as_str()).and_then(normalize_message_id);
    Some(Complaint { feedback_type, address, original_message_id, original_activity: None })
}
