//! Parses and classifies one inbound e-mail message (DOMAIN §4.1, §4.3, §4.5): the
//! idempotency key (R-EM-1), the correlation keys to our outbound mail (R-EM-3), delivery
//! status notifications (RFC 3464 and the common non-standard bounce shapes), auto-replies
//! (RFC 3834 and the headers mail systems really send), unsubscribe requests (R-OPT-3) and
//! the auto-generated test of R-EM-6 (d).
//!
//! Pure: bytes in, a [`ParsedMail`] out. It never touches the network or the database; the
//! IMAP worker fetches, the CRM rules (`crm::mail`) decide, `store` writes.

use std::sync::LazyLock;

use chrono::DateTime;
use mail_parser::{Addr, HeaderValue, Message, MessageParser, MimeHeaders};
use regex::Regex;
use sha2::Digest;
use uuid::Uuid;

use super::{autoreply, bounce, complaint, envelope};
pub use crate::crm::inbound::{
    Automated, Bounce, Complaint, CorrelationKeys, FailedRecipient, Malformed, ParsedMail, Reason, Sender, Severity,
    XHEADER_ACTIVITY, XHEADER_TOKEN, normalize_message_id,
};

/// Tracking tokens look like Dynamics' `CRM:0001234` (letters allowed after the prefix).
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bCRM:([0-9A-Za-z]{4,32})\b").unwrap());

/// Parses a raw message. `limit` is the mailbox's size limit (bytes).
pub fn parse(raw: &[u8], limit: u64) -> Result<ParsedMail, Malformed> {
    if raw.len() as u64 > limit {
        return Err(Malformed::TooBig { size: raw.len() as u64, limit });
    }
    let msg = MessageParser::default().parse(raw).ok_or(Malformed::NoHeaders)?;
    if msg.headers().is_empty() {
        return Err(Malformed::NoHeaders);
    }
    let (mut from, no_sender) = match sender(&msg) {
        Ok(s) => (s, None),
        // `From: <>` and friends: a mail system's report may have no sender address; it is
        // read as a report below, and quarantined only if it is not one.
        Err(e) => (Sender { name: None, address: String::new() }, Some(e)),
    };
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
    let new_text = new_text(&msg, &text);
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
    // Order matters: a complaint quotes our message (it would look like a bounce); an
    // auto-reply with a null sender is no bounce (its "new address" is no failed recipient).
    let complaint = complaint::read(&msg, raw, &from, &subject, &text);
    // (Exim marks its own bounces `Auto-Submitted: auto-replied`: a mail system's notice is
    // read as a bounce first.)
    let auto_reply = if complaint.is_some() || envelope::has_dsn(&msg) || bounce::system_sender(&msg, &from) {
        None
    } else {
        autoreply::auto_reply(&msg, &subject)
    };
    let reading = if complaint.is_some() || auto_reply.is_some() {
        bounce::Reading::NoNotice
    } else {
        bounce::read(&msg, raw, &from, &subject, &text)
    };
    let (bounce, automated) = match (reading, auto_reply) {
        (bounce::Reading::Bounce(b), _) => (Some(b), None),
        (_, Some(r)) => (None, Some(Automated::AutoReply(r))),
        _ if complaint.is_some() => (None, None),
        (bounce::Reading::Notice, None) => {
            (None, Some(Automated::Report("a mail system's notice naming no failed recipient".into())))
        }
        (bounce::Reading::NoNotice, None) => (None, autoreply::machine(&msg, &from)),
    };
    if let Some(e) = no_sender {
        // A report of a mail system is read whatever its From; anything else needs a sender.
        let auto = matches!(automated, Some(Automated::AutoReply(_))) || msg.header_raw("Auto-Submitted").is_some();
        if complaint.is_none()
            && bounce.is_none()
            && !(auto || envelope::report_type(&msg).is_some() || envelope::null_return_path(&msg))
        {
            return Err(e);
        }
    }
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
        new_text,
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

/// `raw_key` for a message that could not be parsed; empty for one that was (its key is its
/// Message-ID or the fallback of `parse`), which spares hashing every message's bytes
/// (about 3 % of the ingest's CPU in bench/README.md's profile).
pub fn raw_key_if_unread(parsed: &Result<ParsedMail, Malformed>, raw: &[u8]) -> String {
    if parsed.is_ok() { String::new() } else { raw_key(raw) }
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
    let name = a
        .name()
        .map(|n| n.trim().trim_matches('"').trim().to_string())
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&address));
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
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let head = &raw[..end];
    let mut lines = head.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
        {
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
    msg.content_type()
        .and_then(|c| c.attribute("charset"))
        .or_else(|| msg.text_part(0).and_then(|p| p.content_type()).and_then(|c| c.attribute("charset")))
}

/// Decodes 8-bit header bytes: with the hinted charset if mail-parser knows it, else the
/// charset Firefox's detector (chardetng) finds likeliest — Windows-1251 or KOI8-R for
/// Russian, Windows-1252 for "Frösche", GBK for Chinese — never one assumed for all.
fn redecode(bytes: &[u8], hint: Option<&str>) -> Option<String> {
    use mail_parser::decoders::charsets::map::charset_decoder;
    if let Some(d) = hint
        .filter(|h| !h.eq_ignore_ascii_case("utf-8") && !h.eq_ignore_ascii_case("us-ascii"))
        .and_then(|h| charset_decoder(h.as_bytes()))
    {
        return Some(d(bytes));
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let encoding = detector.guess(None, true);
    Some(encoding.decode_without_bom_handling(bytes).0.into_owned())
}

fn fallback_key(msg: &Message<'_>, text: &str) -> String {
    let mut h = sha2::Sha256::new();
    for part in [
        msg.header_raw("From").unwrap_or(""),
        msg.header_raw("Date").unwrap_or(""),
        msg.header_raw("Subject").unwrap_or(""),
    ] {
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

/// R-EM-9: the new text of the first body part; an HTML-only body is cut at its quote
/// container before it is turned into text.
fn new_text(msg: &Message<'_>, text: &str) -> String {
    if let Some(mail_parser::PartType::Html(h)) =
        msg.text_body.first().and_then(|i| msg.parts.get(*i as usize)).map(|p| &p.body)
    {
        let cut = crate::crm::reply_text::strip_html_quote(h);
        return crate::crm::reply_text::new_text(&mail_parser::decoders::html::html_to_text(cut).replace("\r\n", "\n"));
    }
    crate::crm::reply_text::new_text(text)
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
    crate::crm::text::unix_newlines(out).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn p(name: &str) -> ParsedMail {
        parse(&fixture(name), 1 << 24).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Every input a fuzzer crashed the reader with is kept in `fuzz/seeds/mail/crash-*`
    /// (fuzz/README.md): each must now parse or be refused, never panic.
    #[test]
    fn fuzz_crashes_stay_fixed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/mail");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("fuzz/seeds/mail") {
            let path = e.unwrap().path();
            if path.file_name().is_some_and(|f| f.to_string_lossy().starts_with("crash-")) {
                let _ = parse(&std::fs::read(&path).unwrap(), 1 << 24);
                n += 1;
            }
        }
        assert!(n >= 1, "the crash seeds are in {}", dir.display());
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
        let koi: Vec<u8> = koi.chars().flat_map(koi8r).collect();
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
        let raw = b"From: MAILER-DAEMON@mx.example\r\nTo: news@crm.example.com\r\n\
            Subject: Successful Mail Delivery Report\r\nMessage-ID: <ok-1@mx.example>\r\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\n\
            Content-Type: text/plain\r\n\r\n\
            Your message was successfully delivered to happy@client.example.\r\n\r\n--B\r\n\
            Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
            Final-Recipient: rfc822; happy@client.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n--B--\r\n";
        let m = parse(raw, 1 << 20).unwrap();
        assert!(m.bounce.is_none(), "{:?}", m.bounce);
        assert!(matches!(m.automated, Some(Automated::Report(_))), "{:?}", m.automated);
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
        assert_eq!(crate::crm::inbound::strip_reply_prefixes("RE: Fwd: Отв: Новинки"), "Новинки");
    }

    #[test]
    fn review_shapes_human_mail_is_no_bounce_and_policy_codes_are_soft() {
        // A customer's complaint with a bounce-like subject, quoting our address.
        let raw = "From: Client <client@shop.example>\r\nTo: sales@ours.example\r\n\
            Subject: Re: Заказ 512 не доставлен\r\nMessage-ID: <h1@shop.example>\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\nГде заказ?\r\n\r\n\
            От: Отдел продаж <sales@ours.example>\r\nТел. 550 12 34\r\n"
            .as_bytes();
        let m = parse(raw, 1 << 20).unwrap();
        assert!(m.bounce.is_none(), "{:?}", m.bounce);
        // Policy refusals do not suppress; an IP address is not a status code.
        assert_eq!(bounce::status_in("host mx [10.4.5.120] said: 550 5.1.1 <x@y>").as_deref(), Some("5.1.1"));
        assert_eq!(bounce::status_in("[2.56.1.1]"), None);
        // Outlook's X-Auto-Response-Suppress on a person's mail is no auto-reply.
        let raw = b"From: Kate <kate@client.example>\r\nTo: sales@ours.example\r\nSubject: Price request\r\n\
            Message-ID: <h2@client.example>\r\nX-Auto-Response-Suppress: All\r\n\r\nPlease send prices.\r\n";
        assert!(parse(raw, 1 << 20).unwrap().automated.is_none());
        // Null Return-Path: machine mail, no lead.
        let raw = b"Return-Path: <>\r\nFrom: Service Desk <sd@vendor.example>\r\n\
            Subject: Request 4711 received\r\nMessage-ID: <h3@vendor.example>\r\n\r\nThanks.\r\n";
        assert!(matches!(parse(raw, 1 << 20).unwrap().automated, Some(Automated::Bulk(_))));
        // A huge address in a daemon's text does not panic.
        let raw = format!(
            "From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nMessage-ID: <h4@x>\r\n\r\n\
                {}@x.example failed\r\n",
            "a".repeat(900)
        );
        let _ = parse(raw.as_bytes(), 1 << 20);
    }

    /// R-EM-9 against one reply per mail client form (fixtures/mail/reply, made by its
    /// make.py; EXPECTED.tsv holds each file's exact new text).
    #[test]
    fn r_em_9_new_text_of_every_client_form() {
        let dir = format!("{}/fixtures/mail/reply", env!("CARGO_MANIFEST_DIR"));
        let expected = std::fs::read_to_string(format!("{dir}/EXPECTED.tsv")).unwrap();
        let mut n = 0;
        for line in expected.lines().filter(|l| !l.is_empty()) {
            let (file, want) = line.split_once('\t').unwrap();
            let raw = std::fs::read(format!("{dir}/{file}")).unwrap();
            let m = parse(&raw, 1 << 20).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(m.new_text, want.replace("\\n", "\n"), "{file}");
            assert!(m.text.len() > m.new_text.len(), "{file}: the full body is kept beside the new text");
            n += 1;
        }
        assert!(n >= 15, "{n} fixtures");
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
