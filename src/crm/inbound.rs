//! The value a parsed inbound e-mail is (DOMAIN §4.1, §4.3, §4.5), and the pure tests on its
//! text the rules use: reply prefixes, the first line a person wrote, the R-OPT-3 keyword
//! test and the List-Unsubscribe mailto test. `ingest::mail` builds a [`ParsedMail`] from
//! bytes; `crm::mail` decides what it makes; `store` writes it. Nothing here does I/O.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Serialize;
use uuid::Uuid;

pub use super::bounce::{Reason, Severity};

/// Our header on outbound mail carrying the outbound e-mail activity id (R-EM-3 step 1).
pub const XHEADER_ACTIVITY: &str = "X-Inflow-Activity";
/// Our header carrying the tracking token (also put in the subject).
pub const XHEADER_TOKEN: &str = "X-Inflow-Token";

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

/// One recipient a bounce reports as failed or delayed (R-EM-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRecipient {
    /// The failed mailbox as the report names it (RFC 3464 Final-Recipient).
    pub address: String,
    /// The address the message was written to, where the report names another one
    /// (Original-Recipient: an alias or forward in front of `address`). That is the address
    /// our own records hold, so a bounce is applied to it as well.
    pub mailed_as: Option<String>,
    /// Why (Sisimai's vocabulary), from the status, the reply code and the text.
    pub reason: Reason,
    pub severity: Severity,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    /// SMTP reply code (RFC 5321), e.g. `550`.
    pub reply_code: Option<String>,
    /// The remote server's answer or the MTA's explanation, at most 300 characters.
    pub diagnostic: Option<String>,
}

impl FailedRecipient {
    /// Every address this failure is about: the failed mailbox, then the one written to.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.address.as_str()).chain(self.mailed_as.as_deref())
    }

    /// The address is dead (R-EM-8): suppressed at once when the bounce is of our mail.
    pub fn hard(&self) -> bool {
        self.severity == Severity::Hard
    }
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
    /// A report of a mail system (delivery or disposition report, a notice from a mailer
    /// daemon) that names no failure: never an inquiry, never a lead.
    Report(String),
}

impl Automated {
    pub fn is_auto_reply(&self) -> bool {
        matches!(self, Automated::AutoReply(_))
    }
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
    /// What the person wrote, without the quoted thread and signature (R-EM-9).
    pub new_text: String,
    pub automated: Option<Automated>,
    pub bounce: Option<Bounce>,
    pub complaint: Option<Complaint>,
    pub attachments: usize,
}

/// Normalises a Message-ID: no angle brackets, no whitespace. The id is case-sensitive
/// (RFC 5322 treats it as an opaque token), so case is kept.
pub fn normalize_message_id(raw: &str) -> Option<String> {
    let s: String =
        raw.trim().trim_start_matches('<').trim_end_matches('>').chars().filter(|c| !c.is_whitespace()).collect();
    (!s.is_empty() && s.len() <= 995).then_some(s)
}
/// The first line a person wrote: skips blank lines, quotes and the "On … wrote:" line.
pub fn first_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('>')).unwrap_or("")
}

/// Removes `Re:`, `Fwd:`, `Отв:`, `AW:`, … prefixes (repeated, any case) and list tags.
pub fn strip_reply_prefixes(subject: &str) -> &str {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?i)^\s*(?:(?:re|fwd?|fw|aw|wg|sv|vs|antw|отв|ответ|пер|переслано|відп|вiдп|рн)\s*(?:\[\d+\]|",
            r"\(\d+\))?\s*:\s*)+",
        ))
        .unwrap()
    });
    let s = subject.trim();
    match PREFIX.find(s) {
        Some(m) => s[m.end()..].trim(),
        None => s,
    }
}

// ---------------------------------------------------------------- unsubscribe (R-OPT-3)

/// R-OPT-3 keyword test on a reply: the subject (without reply prefixes) or the first line
/// the person wrote is a short phrase containing a keyword as a whole word — "Unsubscribe",
/// "STOP", "Отписаться, пожалуйста" — not a long sentence that happens to use the word.
/// `original` is the subject of the mail being answered: a subject that merely repeats it
/// ("Re: Stop overpaying for freight") says nothing about the reader's wish.
pub fn is_unsubscribe_text(subject: &str, original: Option<&str>, text: &str, keywords: &[String]) -> bool {
    let check = |line: &str| {
        let words: Vec<String> = line
            .split(|c: char| !c.is_alphanumeric() && c != '-')
            .filter(|w| !w.is_empty())
            .map(|w| w.to_lowercase())
            .collect();
        !words.is_empty() && words.len() <= 6 && keywords.iter().any(|k| words.iter().any(|w| w == &k.to_lowercase()))
    };
    let own = strip_reply_prefixes(subject);
    let repeated = original.is_some_and(|o| {
        strip_reply_prefixes(o).eq_ignore_ascii_case(own)
            || own.to_lowercase().contains(&strip_reply_prefixes(o).to_lowercase())
    });
    (!repeated && check(own)) || check(first_line(text))
}

/// Whether one of the message's recipients is our List-Unsubscribe mailto address
/// (`local@domain`, also as `local+anything@domain`).
pub fn hits_unsubscribe_address(recipients: &[String], mailto: &str) -> bool {
    let Some((l, d)) = mailto.trim().rsplit_once('@') else { return false };
    recipients.iter().any(|r| {
        let Some((rl, rd)) = r.rsplit_once('@') else { return false };
        rd.eq_ignore_ascii_case(d)
            && (rl.eq_ignore_ascii_case(l)
                || rl.to_ascii_lowercase().starts_with(&format!("{}+", l.to_ascii_lowercase())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_opt_3_keywords_need_a_short_phrase() {
        let kw: Vec<String> = ["unsubscribe", "stop", "отписаться", "відписатися"].map(String::from).to_vec();
        assert!(is_unsubscribe_text("Re: News", Some("News"), "Отписаться, пожалуйста\n\n> quoted", &kw));
        assert!(is_unsubscribe_text("Re: STOP", Some("November news"), "", &kw));
        assert!(is_unsubscribe_text("Відписатися", None, "", &kw));
        assert!(!is_unsubscribe_text(
            "Re: News",
            Some("News"),
            "I can't stop thinking about your offer, please send me the price list today",
            &kw
        ));
        // A wave titled with a keyword: replies repeating its subject are not unsubscribes.
        assert!(!is_unsubscribe_text(
            "Re: Stop overpaying for freight",
            Some("Stop overpaying for freight"),
            "Yes, send me the price list",
            &kw
        ));
        assert!(hits_unsubscribe_address(&["Unsubscribe+abc@News.Example.com".into()], "unsubscribe@news.example.com"));
        assert!(!hits_unsubscribe_address(&["sales@news.example.com".into()], "unsubscribe@news.example.com"));
    }
}
