//! Reads a bounce (non-delivery report) in the shapes mail systems really write: RFC 3464
//! delivery status notifications, and the text notices of Exim, qmail, Sendmail, Exchange,
//! Gmail, Yahoo, Mail.ru, Domino, list managers and the rest, with their failed recipients,
//! status codes and diagnostic text. What the failure *means* (the reason, hard or soft) is
//! `crm::bounce`'s decision; this file only finds what the report says.
//!
//! Precision matters as much as recall: a text bounce mentions many addresses (the sender,
//! help desks, list addresses, Message-IDs, queue ids), and only the ones in a recipient's
//! place are failed recipients: alone on a line, `<addr>:` or `<addr>...`, after `RCPT TO:`,
//! or in angle brackets on a line with an SMTP reply.

use std::sync::LazyLock;

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use uuid::Uuid;

use super::envelope;
use crate::crm::bounce::{self, Diagnosis, Hosts};
use crate::crm::inbound::{Bounce, FailedRecipient, Sender, XHEADER_ACTIVITY, normalize_message_id};

/// An RFC 3463 enhanced status code, not part of a dotted number such as an IP address.
static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\d.])([245]\.\d{1,3}\.\d{1,3})(?:[^\d.]|\.(?:\s|$)|$)").unwrap());
/// An SMTP reply code at the start of a reply (`550 `, `550-`, `#550`, `(550)`).
static REPLY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:^|[\s#:(\[])([245][0-5]\d)(?:[\s\-\])]|$)").unwrap());
/// An address with a quoted local part that is no dot-atom, whole.
static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?i)^"(?:\.[^"\\\s]*|[^"\\\s]*\.\.[^"\\\s]*|"#,
        r#"[^"\\\s]*\.)"@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"#,
    ))
    .unwrap()
});

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+",
    )
    .unwrap()
});
/// The SMTP command a reply answered, as MTAs name it.
static COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:(?:\b(?:after|in reply to|in response to|during|while sending|command|did not like our|",
        r"most progress was)\s+(?:the\s+)?(?:end of\s+)?|^\s*>>>\s*|\[)(rcpt to|rcpt_to|mail from|mail_from|data|",
        r"ehlo|helo|connect|conn|end of data|body|message|rcpt(?:\s+command))|(does not like recipient))\b",
    ))
    .unwrap()
});

/// The SMTP command the failure answered: the last one a transcript or a "(in reply to …)"
/// names in the text.
fn command_in(text: &str) -> Option<&'static str> {
    // "(in reply to RCPT TO command)", "after end of data" — often folded over two lines.
    let unfolded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(c) = COMMAND.captures_iter(&unfolded).find(|c| !c[0].trim_start().starts_with(">>>")) {
        return Some(command_of(&c));
    }
    // A transcript: the command the first refusal answered.
    let mut last_sent = None;
    for l in text.lines() {
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix(">>>") {
            last_sent = COMMAND.captures(&format!(">>> {}", rest.trim_start())).map(|c| command_of(&c));
        } else if t.starts_with("<<<")
            && REPLY.captures(t).is_some_and(|c| !c[1].starts_with('2') && !c[1].starts_with('3'))
        {
            return last_sent;
        }
    }
    None
}

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(undeliver|undelivered mail|delivery status notification|delivery (?:has )?failed|",
        r"delivery failure|delivery problem|mail delivery failed|failure notice|returned mail|",
        r"return(?:ed)? to sender|could not be delivered|message not delivered|nondeliverable|non-?delivery|",
        r"delivery notification|mail system error|permanent error|rejected|not delivered|недоставлен|",
        r"не доставлен|не удалось доставить|не вдалося доставити|ошибка доставки|повідомлення не доставлено|",
        r"unzustellbar|nicht zustellbar|メールエラー|配信エラー|不達|non remis|non recapitabile|no se puede entregar)",
    ))
    .unwrap()
});

/// Lines that mark where a text bounce's own words end and the returned message begins.
static RETURNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?im)^[\s>-]*(?:-+\s*)?(?:original message|below this line is a copy of the message|",
        r"this is a copy of the message|original message follows|original message headers|",
        r"message headers follow|the header of the original message|returned message|unsent message below|",
        r"content-type: message/rfc822|copy of the original message|headers of the original message|",
        r"your message reads|message text follows|undelivered message attached|text of the returned message|",
        r"\*\*\*\*\*\*\* original message|original-message|here is a copy of the first part of the message|",
        r"message header follows|original message header)",
    ))
    .unwrap()
});

/// Phrases of a mail system's failure notice (the body of a text bounce).
static NOTICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(could not be delivered|couldn't be delivered|was not delivered|",
        r"delivery (?:to the following recipients? )?(?:has )?failed|permanent (?:fatal )?error|",
        r"following address(?:es)? failed|unable to deliver|undeliverable|failed permanently|not be delivered|",
        r"delivery to the following|could not deliver|this is the qmail-send program|mail delivery software|",
        r"message could not|delivery status notification|has not been delivered|returned mail|unknown user|",
        r"user unknown|no such user|mailbox (?:is )?(?:full|unavailable)|не может быть доставлено|",
        r"не удалось доставить|не доставлено)",
    ))
    .unwrap()
});

/// Addresses that are a mail system's own, never a failed recipient.
static SYSTEM_LOCAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^(?:mailer-daemon|postmaster|post_master|post-master|mail-daemon|maildaemon|mailer_daemon|abuse|",
        r"hostmaster|webmaster|noc|root|nobody|daemon|mail\.?delivery\.?(?:subsystem|system)?|",
        r"microsoftexchange[0-9a-f]*|ms-?exchange.*|bounce[s]?|bounce-.*|dmarc.*|double-bounce|mailman|majordomo|",
        r"listserv|owner-.+|.+-owner|.+-admin|.+-request|.+-bounces)$",
    ))
    .unwrap()
});

/// What the returned copy of the message (or its headers) tells.
#[derive(Debug, Default)]
struct Original {
    message_id: Option<String>,
    activity: Option<Uuid>,
    to: Vec<String>,
    from: Vec<String>,
}

/// Raw body bytes of a part, as text (DSN fields are 7-bit by RFC 3464).
pub(crate) fn part_raw<'a>(raw: &'a [u8], part: &mail_parser::MessagePart<'_>) -> &'a [u8] {
    let (a, b) = (part.raw_body_offset() as usize, part.raw_end_offset() as usize);
    raw.get(a..b.min(raw.len())).unwrap_or(&[])
}

fn addresses(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Address(a) => {
            a.iter().filter_map(|x| x.address()).map(|s| s.trim().to_ascii_lowercase()).collect()
        }
        _ => Vec::new(),
    }
}

fn original_of(m: &Message<'_>) -> Original {
    let mut to: Vec<String> = Vec::new();
    for h in ["To", "Cc"] {
        if let Some(v) = m.header(h) {
            to.extend(addresses(v));
        }
    }
    let from = m.header("From").map(addresses).unwrap_or_default();
    Original {
        message_id: m.message_id().and_then(normalize_message_id),
        activity: m.header_raw(XHEADER_ACTIVITY).and_then(|a| a.trim().parse().ok()),
        to,
        from,
    }
}

/// Whether the sender is a mail system itself: MAILER-DAEMON, postmaster, an empty address,
/// a "Mail Delivery System" name, an `X-Failed-Recipients` header or a report.
pub fn system_sender(msg: &Message<'_>, from: &Sender) -> bool {
    let local = from.address.rsplit_once('@').map(|(l, _)| l).unwrap_or(&from.address).to_ascii_lowercase();
    let daemon = from.address.is_empty()
        || SYSTEM_LOCAL.is_match(&local)
        || local.starts_with("mailer-daemon")
        || local.starts_with("postmaster");
    let name = from.name.as_deref().unwrap_or("").to_ascii_lowercase();
    let system_name =
        ["mail delivery", "mailer-daemon", "mail administrator", "postmaster", "mail system", "delivery subsystem"]
            .iter()
            .any(|n| name.contains(n));
    let failed_header = msg.header_raw("X-Failed-Recipients").is_some();
    let report = envelope::report_type(msg).is_some();
    // A list manager's notice (fml, Mailman, Majordomo): "you are not a member", loop alerts.
    let list_manager = ["X-MLServer", "X-ML-Name", "X-Mailman-Version", "X-List-Administrivia"]
        .iter()
        .any(|h| msg.header_raw(*h).is_some());
    daemon || system_name || failed_header || report || list_manager
}

/// Whether a message is a mail system's report about delivery: the kind of sender, envelope
/// and form a bounce has. A subject alone is no evidence (a customer may write "Re: order
/// not delivered"), and neither is a reply's quoted thread.
pub fn from_mail_system(msg: &Message<'_>, from: &Sender, subject: &str, text: &str) -> bool {
    if system_sender(msg, from) {
        return true;
    }
    let null_sender = envelope::null_return_path(msg);
    let subject_says = BOUNCE_SUBJECT.is_match(subject);
    let a_reply = msg.header_raw("In-Reply-To").is_some() || msg.header_raw("References").is_some();
    // A bounce a colleague forwarded ("Fwd: Returned mail: …") is read as the bounce it holds.
    let forwarded = crate::crm::inbound::strip_reply_prefixes(subject).len() < subject.trim().len()
        && subject.trim().to_ascii_lowercase().starts_with("fw");
    // Amazon SES notifications (bounce, complaint, delivery) sent to an e-mail endpoint.
    let ses = || text.trim_start().starts_with("{\"notificationType\"") || text.contains("\"notificationType\":\"");
    let local = from.address.rsplit_once('@').map(|(l, _)| l).unwrap_or("").to_ascii_lowercase();
    let no_reply = local.starts_with("no-reply") || local.starts_with("noreply") || local.starts_with("do-not-reply");
    // (The body is read only when the envelope or the subject point at a notice.)
    let body_says = || NOTICE.is_match(text);
    ((null_sender || no_reply) && (subject_says || body_says()))
        || (forwarded && subject_says)
        || (!a_reply && subject_says && body_says() && has_returned_copy(msg, text))
        || (text.trim_start().starts_with('{') && ses())
}

fn has_returned_copy(msg: &Message<'_>, text: &str) -> bool {
    RETURNED.is_match(text)
        || msg.parts.iter().any(|p| {
            p.content_type().is_some_and(|ct| {
                let (t, s) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
                (t == "message" && (s == "rfc822" || s.contains("headers") || s == "global"))
                    || (t == "text" && s == "rfc822-headers")
            })
        })
}

/// Reads the bounce in a message, if it is one. `text` is the message's decoded text body.
pub fn read(msg: &Message<'_>, raw: &[u8], from: &Sender, subject: &str, text: &str) -> Reading {
    match read_one(msg, raw, from, subject, text) {
        Reading::Notice => nested(msg, raw, from).map_or(Reading::Notice, Reading::Bounce),
        r => r,
    }
}

/// What the bounce reader made of a message.
#[derive(Debug)]
pub enum Reading {
    /// A bounce naming its failed recipients.
    Bounce(Bounce),
    /// A mail system's notice that names no failure (a success report, a notice without a
    /// recipient in it): machine mail all the same.
    Notice,
    /// Not a mail system's notice at all.
    NoNotice,
}

/// A mail system's notice that returns a bounce (an ISP relaying the notice it got): the
/// returned message is itself read as a bounce, one level deep.
fn nested(msg: &Message<'_>, raw: &[u8], from: &Sender) -> Option<Bounce> {
    if !system_sender(msg, from) {
        return None;
    }
    for part in msg.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else { continue };
        if !(ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822")))
        {
            continue;
        }
        let inner_raw = part_raw(raw, part);
        let Some(inner) = MessageParser::default().parse(inner_raw) else { continue };
        let Some(a) = inner.from().and_then(|a| a.first()) else { continue };
        let inner_from = Sender { name: a.name().map(str::to_string), address: a.address().unwrap_or("").to_string() };
        if !system_sender(&inner, &inner_from) {
            continue;
        }
        let text: String = (0..inner.text_body_count().max(1))
            .filter_map(|i| inner.body_text(i))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\r\n", "\n");
        if let Reading::Bounce(b) = read_one(&inner, inner_raw, &inner_from, inner.subject().unwrap_or(""), &text) {
            return Some(b);
        }
    }
    None
}

fn read_one(msg: &Message<'_>, raw: &[u8], from: &Sender, subject: &str, text: &str) -> Reading {
    // A body mail-parser found no text in (a multipart with no boundary, an unknown type):
    // the raw body, as the notice's words are in it all the same.
    let raw_body;
    let text = if text.trim().is_empty() {
        let start = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
            .unwrap_or(raw.len());
        raw_body = crate::crm::text::unix_newlines(String::from_utf8_lossy(&raw[start..]).into_owned());
        raw_body.as_str()
    } else {
        text
    };
    let mut original = Original::default();
    let mut dsn: Vec<String> = Vec::new();
    let mut human = String::new();
    for part in &msg.parts {
        let Some(ct) = part.content_type() else { continue };
        let (t, s) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (t.as_str(), s.as_str()) {
            ("message", "delivery-status") | ("message", "global-delivery-status") => {
                dsn.push(match &part.body {
                    PartType::Text(t) => t.to_string(),
                    // A transfer-encoded status part (base64, quoted-printable): its decoded bytes.
                    PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::from_utf8_lossy(part_raw(raw, part)).into_owned(),
                });
            }
            ("message", "rfc822")
            | ("text", "rfc822-headers")
            | ("message", "rfc822-headers")
            | ("message", "global")
            | ("message", "global-headers") => {
                let o = match &part.body {
                    PartType::Message(m) => Some(original_of(m)),
                    _ => MessageParser::default().parse_headers(part_raw(raw, part)).map(|m| original_of(&m)),
                };
                if let Some(o) = o
                    && original.message_id.is_none()
                    && original.activity.is_none()
                {
                    original = o;
                }
            }
            ("text", "plain") if human.is_empty() => {
                if let PartType::Text(t) = &part.body {
                    human = t.to_string();
                }
            }
            _ => {}
        }
    }
    if human.is_empty() {
        human = text.to_string();
    }
    // Most mail is no report at all: tell that before reading any further.
    if dsn.is_empty() {
        if let Some(b) = read_ses_json(text) {
            return Reading::Bounce(b);
        }
        if !from_mail_system(msg, from, subject, text) {
            return Reading::NoNotice;
        }
    }
    // Returned headers quoted inside the text (qmail, Exim, Gmail's "Original message").
    let (section, quoted) = split_returned(text);
    if let Some(q) = quoted {
        let head = q.trim_start_matches(|c: char| c.is_whitespace() || c == '-');
        if let Some(m) = MessageParser::default().parse_headers(head.as_bytes()) {
            let o = original_of(&m);
            if original.message_id.is_none() {
                original.message_id = o.message_id;
            }
            if original.activity.is_none() {
                original.activity = o.activity;
            }
            if original.to.is_empty() {
                original.to = o.to;
            }
            if original.from.is_empty() {
                original.from = o.from;
            }
        }
    }
    if original.activity.is_none() {
        original.activity = find_header_line(text, XHEADER_ACTIVITY).and_then(|v| v.parse().ok());
    }
    let failed_header: Vec<String> = msg
        .header_values("X-Failed-Recipients")
        .filter_map(|v| match v {
            HeaderValue::Text(t) => Some(t.to_string()),
            HeaderValue::TextList(l) => Some(l.join(",")),
            _ => None,
        })
        .flat_map(|v| EMAIL.find_iter(&v).map(|m| m.as_str().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();

    // DSN fields written into a plain body (no multipart/report around them).
    if dsn.is_empty() {
        static INLINE_DSN: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?im)^(?:final|original)-recipient:\s*\S").unwrap());
        if INLINE_DSN.is_match(text) && text.to_ascii_lowercase().contains("\naction:") {
            dsn.push(text.to_string());
        }
    }
    if !dsn.is_empty() {
        let groups = parse_dsn(&dsn.join("\n\n"));
        if !groups.is_empty() {
            let mut recipients = Vec::new();
            for g in &groups {
                let Some((address, mailed_as)) = g.address(&original, &failed_header) else { continue };
                // Where the DSN has no diagnostic, the human-readable part may say why.
                let own_text = match (&g.diagnostic, &g.status_note) {
                    (Some(d), Some(n)) => format!("{d} ({n})"),
                    (d, n) => d.clone().or_else(|| n.clone()).unwrap_or_default(),
                };
                // A bare number is a local mailer's exit code ("X-Unix; 77"): that is the answer.
                let exit_code = !own_text.trim().is_empty() && own_text.trim().chars().all(|c| c.is_ascii_digit());
                let context =
                    if !exit_code && (own_text.trim().is_empty() || bounce::reason_of_text(&own_text).is_none()) {
                        format!("{own_text}\n{}", context_for(&human, &address))
                    } else {
                        own_text.clone()
                    };
                let reply = g.diagnostic.as_deref().and_then(reply_in).or_else(|| reply_in(&context));
                // A generic DSN status (x.0.0) gives way to a specific one in the diagnostic.
                let status = match g.status.clone() {
                    Some(st) if st.ends_with(".0.0") => g
                        .diagnostic
                        .as_deref()
                        .and_then(status_in)
                        .or_else(|| status_in(&context))
                        .filter(|d| d.starts_with(&st[..1]) && !d.ends_with(".0.0"))
                        .or(Some(st)),
                    Some(st) => Some(st),
                    None => status_in(&context),
                };
                let command = command_in(&context).or_else(|| command_in(context_for(&human, &address)));
                let remote = g.remote_mta.clone().or_else(|| remote_in(&context));
                let d = Diagnosis {
                    action: g.action.as_deref(),
                    status: status.as_deref(),
                    reply_code: reply.as_deref(),
                    text: &context,
                    command,
                    hosts: Hosts {
                        domain: domain_of(&address),
                        remote: remote.as_deref(),
                        reporting: g.reporting_mta.as_deref(),
                    },
                };
                let reason = bounce::reason(&d);
                if reason == bounce::Reason::Delivered {
                    continue;
                }
                let severity = bounce::severity(reason, status.as_deref(), g.action.as_deref());
                let diagnostic =
                    g.diagnostic.clone().filter(|d| !d.trim().is_empty()).or_else(|| diagnostic_line(&context));
                push(
                    &mut recipients,
                    FailedRecipient { address, mailed_as, reason, severity, status, reply_code: reply, diagnostic },
                );
            }
            if recipients.is_empty() {
                // Every recipient was delivered, relayed or expanded: a success report, whose
                // text must not be mined for addresses.
                return Reading::Notice;
            }
            return Reading::Bounce(Bounce {
                shape: "rfc3464",
                recipients,
                original_message_id: original.message_id,
                original_activity: original.activity,
            });
        }
    }
    if !from_mail_system(msg, from, subject, text) {
        return Reading::NoNotice;
    }
    let lower = text.to_ascii_lowercase();
    let shape = if lower.contains("this is the qmail-send program") {
        "qmail"
    } else if lower.contains("mail delivery software") || lower.contains("following address(es) failed") {
        "exim"
    } else if lower.contains("delivery has failed to these recipients") || lower.contains("couldn't be delivered") {
        "exchange"
    } else if !failed_header.is_empty() {
        "x-failed-recipients"
    } else {
        "text"
    };
    let own: Vec<String> = [msg.from(), msg.to(), msg.reply_to()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(|a| a.to_ascii_lowercase())
        .chain(original.from.iter().cloned())
        .collect();
    let ids: Vec<String> = [msg.message_id().map(str::to_string), original.message_id.clone()]
        .into_iter()
        .flatten()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut candidates =
        if failed_header.is_empty() { recipients_in_text(section, &own, &ids) } else { failed_header.clone() };
    if candidates.is_empty() {
        // A gateway's notice wrapped around the real report (the returned message is itself
        // a bounce): that report names the recipients.
        if let Some(b) = nested(msg, raw, from) {
            return Reading::Bounce(b);
        }
        // Nothing in a recipient's place: the returned message's single recipient, as a
        // last resort only when the notice clearly says delivery failed.
        if original.to.len() == 1
            && (NOTICE.is_match(section) || BOUNCE_SUBJECT.is_match(subject))
            && !own.contains(&original.to[0])
        {
            candidates.push(original.to[0].clone());
        }
    }
    let mut recipients = Vec::new();
    for address in candidates {
        let ctx = context_for(section, &address);
        let ctx = if bounce::reason_of_text(ctx).is_none() && status_in(ctx).is_none() { section } else { ctx };
        let status = status_in(ctx);
        let reply = reply_in(ctx);
        let command = command_in(ctx);
        let delayed = delayed_notice(section);
        let action = if delayed { "delayed" } else { "failed" };
        let remote = remote_in(ctx);
        let d = Diagnosis {
            action: Some(action),
            status: status.as_deref(),
            reply_code: reply.as_deref(),
            text: ctx,
            command,
            hosts: Hosts { domain: domain_of(&address), remote: remote.as_deref(), reporting: None },
        };
        let reason = bounce::reason(&d);
        if reason == bounce::Reason::Delivered {
            continue;
        }
        let severity = bounce::severity(reason, status.as_deref(), Some(action));
        push(
            &mut recipients,
            FailedRecipient {
                address,
                mailed_as: None,
                reason,
                severity,
                status,
                reply_code: reply,
                diagnostic: diagnostic_line(ctx),
            },
        );
    }
    if recipients.is_empty() {
        return Reading::Notice;
    }
    Reading::Bounce(Bounce {
        shape,
        recipients,
        original_message_id: original.message_id,
        original_activity: original.activity,
    })
}

/// An Amazon SES notification delivered by e-mail (an SNS subscription): the JSON body,
/// `{"notificationType": "Bounce" | "Complaint" | "Delivery", …}`, alone or as the `Message`
/// string of an SNS envelope.
pub(crate) fn ses_notification(text: &str) -> Option<serde_json::Value> {
    // Such a body is the JSON alone: a cheap look at its first character before any search.
    let start = text.len() - text.trim_start().len();
    if !text[start..].starts_with('{') || !text[start..].contains("notificationType") {
        return None;
    }
    // Long lines of such mail arrive folded by a relay ("…" or "…!" + newline + " …"). A raw
    // newline cannot stand inside a JSON string, so removing each fold is safe.
    let joined = text[start..].replace("\r\n", "\n").replace("!\n ", "").replace("\n ", "");
    // The first JSON value of the body (a signature or footer may follow it).
    let v: serde_json::Value = serde_json::Deserializer::from_str(&joined).into_iter().next()?.ok()?;
    let v = match v.get("Message").and_then(|m| m.as_str()) {
        Some(inner) => serde_json::from_str(inner).ok()?,
        None => v,
    };
    v.get("notificationType").is_some().then_some(v)
}

/// The failed recipients of an SES bounce notification.
fn read_ses_json(text: &str) -> Option<Bounce> {
    let v = ses_notification(text)?;
    if v.get("notificationType").and_then(|t| t.as_str()) != Some("Bounce") {
        return None;
    }
    let b = v.get("bounce")?;
    let permanent = b.get("bounceType").and_then(|t| t.as_str()) == Some("Permanent");
    let mut recipients = Vec::new();
    for r in b.get("bouncedRecipients")?.as_array()? {
        let Some(address) = r.get("emailAddress").and_then(|a| a.as_str()).map(clean) else { continue };
        let text = r.get("diagnosticCode").and_then(|d| d.as_str()).unwrap_or("").to_string();
        let status = r.get("status").and_then(|s| s.as_str()).map(str::to_string).or_else(|| status_in(&text));
        let reply = reply_in(&text);
        let action = if permanent { "failed" } else { "delayed" };
        let d = Diagnosis {
            action: Some(action),
            status: status.as_deref(),
            reply_code: reply.as_deref(),
            text: &text,
            command: None,
            hosts: Hosts { domain: domain_of(&address), ..Default::default() },
        };
        let reason = bounce::reason(&d);
        let severity = bounce::severity(reason, status.as_deref(), Some(if permanent { "failed" } else { "" }));
        push(
            &mut recipients,
            FailedRecipient {
                address,
                mailed_as: None,
                reason,
                severity,
                status,
                reply_code: reply,
                diagnostic: (!text.is_empty()).then(|| text.chars().take(300).collect()),
            },
        );
    }
    let original_message_id =
        v.get("mail").and_then(|m| m.get("messageId")).and_then(|m| m.as_str()).and_then(normalize_message_id);
    (!recipients.is_empty()).then_some(Bounce {
        shape: "amazon-ses",
        recipients,
        original_message_id,
        original_activity: None,
    })
}

/// The domain of an address.
fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d)
}

/// The receiving MTA a text names: a host name written right before its address in
/// brackets ("host mx.example.net[192.0.2.1] said:", "connect to mx.example.net[…]").
fn remote_in(text: &str) -> Option<String> {
    static HOST: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?i)\b([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)\s?\[(?:ipv6:)?[0-9a-f.",
            r":]+\]",
        ))
        .unwrap()
    });
    HOST.captures(text).map(|c| c[1].to_ascii_lowercase())
}

fn push(v: &mut Vec<FailedRecipient>, r: FailedRecipient) {
    if !v.iter().any(|x| x.address.eq_ignore_ascii_case(&r.address)) {
        v.push(r);
    }
}

/// A notice that the message is only delayed ("will retry", "has not yet been delivered").
fn delayed_notice(section: &str) -> bool {
    static DELAY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?i)(has not yet been delivered|not yet been delivered|delivery (?:is |has been )?delayed|",
            r"will (?:continue to )?(?:retry|try again|keep trying)|still trying|this is (?:only )?a warning|",
            r"temporary (?:error|failure)s? (?:only|that)|no action is required)",
        ))
        .unwrap()
    });
    DELAY.is_match(section) && !section.to_ascii_lowercase().contains("permanent")
}

/// The command a [`COMMAND`] match names (its first group, or qmail's wording).
fn command_of(c: &regex::Captures<'_>) -> &'static str {
    command_name(c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str()))
}

fn command_name(s: &str) -> &'static str {
    let s = s.to_ascii_lowercase().replace('_', " ");
    match s.split_whitespace().next().unwrap_or("") {
        // qmail words a refused RCPT TO as "does not like recipient".
        "rcpt" | "does" => "RCPT",
        "mail" => "MAIL",
        "ehlo" => "EHLO",
        "helo" => "HELO",
        "connect" | "conn" => "CONN",
        _ => "DATA",
    }
}

pub(crate) fn status_in(text: &str) -> Option<String> {
    STATUS.captures_iter(text).map(|c| c[1].to_string()).find(|s| !s.starts_with("2.") || !text.contains(" 5"))
}

fn reply_in(text: &str) -> Option<String> {
    REPLY.captures_iter(text).map(|c| c[1].to_string()).find(|c| c.starts_with('4') || c.starts_with('5'))
}

/// Splits a text bounce into its own words and the returned copy (if quoted inline).
fn split_returned(text: &str) -> (&str, Option<&str>) {
    let marker = RETURNED.find(text).map(|m| m.start());
    // A quoted header block with no marker before it: the first line that starts a run of
    // header fields of a real message (Received:, Return-Path:, …).
    let headers = header_block_start(text);
    let cut = match (marker, headers) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match cut {
        Some(c) => {
            let rest = &text[c..];
            // The quoted message starts at the first header line after the marker.
            let start = header_block_start(rest).map(|h| &rest[h..]).or(Some(rest));
            (&text[..c], start)
        }
        None => (text, None),
    }
}

fn header_block_start(text: &str) -> Option<usize> {
    static HEAD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?im)^(?:received|return-path|dkim-signature|x-received|arc-seal|message-id|authentication-results|",
            r"x-originating-ip|x-mailer|mime-version|delivered-to): ",
        ))
        .unwrap()
    });
    let m = HEAD.find(text)?;
    // At least two header-like lines in the next few: a lone "Received: from" in prose is not a block.
    let next: Vec<&str> = text[m.start()..].lines().take(8).collect();
    let fields = next
        .iter()
        .filter(|l| {
            l.split_once(':').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.len() < 40
                    && !k.contains(' ')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        })
        .count();
    (fields >= 2).then_some(m.start())
}

/// Addresses in a recipient's place in a text bounce's own words.
fn recipients_in_text(section: &str, own: &[String], ids: &[String]) -> Vec<String> {
    static LINE_START: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r#"(?i)^[\s*>-]*(?:(?:recipient|recipients|address|rcpt|original-recipient|final-recipient|"#,
            r#"failed recipient|invalid recipient|unknown recipient|user|mailbox|destinataire|empfänger|"#,
            r#"получатель|адрес)\s*[:=]\s*)?(?:rfc822;\s*)?["']?<?([^\s<>"',;()\[\]]+@[^\s<>"',;()\[\]]*[A-Za-z0-"#,
            r#"9])>?["']?(?:\s*(?:[:.,;<]|\.\.\.|\(|\[|$)|\s+\S)"#,
        ))
        .unwrap()
    });
    static RCPT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(?:rcpt to|recipient|to)\s*:?\s*<([^\s<>]+@[^\s<>]+)>").unwrap());
    static BRACKETED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<([^\s<>@]+@[^\s<>]+)>").unwrap());
    static NOT_A_RECIPIENT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?i)(message-id|\bid\b|mailto:|https?://|contact|please|help ?desk|support|postmaster|administrator|",
            r"\bfrom\b|sender|envelope-from|reply|return-path|questions|inquir|if you|\bvia\b)",
        ))
        .unwrap()
    });
    let mut out: Vec<String> = Vec::new();
    // `strong`: the address stands alone as a recipient line ("<addr>:", "addr"), where even
    // the notice's own To (mail someone sent to themselves) is the failed recipient.
    let push_as = |a: &str, out: &mut Vec<String>, strong: bool| {
        let a = clean(a);
        if a.is_empty()
            || a.len() > 254
            || !EMAIL.is_match(&a)
            || EMAIL.find(&a).map(|m| m.as_str().len()) != Some(a.len())
        {
            return;
        }
        let local = a.rsplit_once('@').map(|(l, _)| l).unwrap_or("");
        if (own.contains(&a) && !strong)
            || ids.iter().any(|i| i == &a)
            || SYSTEM_LOCAL.is_match(local)
            || looks_like_id(&a)
            || out.contains(&a)
        {
            return;
        }
        out.push(a);
    };
    let push = |a: &str, out: &mut Vec<String>| push_as(a, out, false);
    for line in section.lines() {
        let l = line.trim_end();
        if l.trim().is_empty() {
            continue;
        }
        let lower = l.to_ascii_lowercase();
        let is_reply = REPLY.is_match(l) || STATUS.is_match(l);
        if let Some(c) = LINE_START.captures(l) {
            // An address opening a line: a recipient unless the line is about something else.
            let before = &lower[..c.get(1).map_or(0, |m| m.start())];
            if !NOT_A_RECIPIENT.is_match(before) {
                let alone = before.trim_matches([' ', '\t', '*', '>', '<', '-']).is_empty() && {
                    let rest = l[c.get(1).unwrap().end()..].trim_start_matches('>').trim();
                    rest.is_empty() || rest == ":" || rest == "..."
                };
                // The whole address at that place (the pattern may stop at a dot inside it).
                let m = c.get(1).unwrap();
                let whole =
                    EMAIL.find_at(l, m.start()).filter(|w| w.start() == m.start()).map_or(m.as_str(), |w| w.as_str());
                // "name@x.example <addr@y.example>:": a name-addr whose display name looks like
                // an address; the address is the one in brackets.
                let after = l[m.start() + whole.len()..].trim_start_matches('>').trim_start();
                let whole = match BRACKETED.captures(after).filter(|b| b.get(0).is_some_and(|g| g.start() == 0)) {
                    Some(b) => b.get(1).map_or(whole, |g| g.as_str()),
                    None => whole,
                };
                push_as(whole, &mut out, alone);
                continue;
            }
        }
        for c in RCPT.captures_iter(l) {
            push(&c[1], &mut out);
        }
        if is_reply && !NOT_A_RECIPIENT.is_match(&lower.replace("rcpt to", "")) {
            for c in BRACKETED.captures_iter(l) {
                push(&c[1], &mut out);
            }
        } else if is_reply {
            // Sendmail's "<addr>... User unknown" and "550 <addr>: Recipient rejected".
            for c in BRACKETED.captures_iter(l) {
                let pre = l[..c.get(0).unwrap().start()].to_ascii_lowercase();
                if !NOT_A_RECIPIENT.is_match(&pre) {
                    push(&c[1], &mut out);
                }
            }
        }
        // A line that states a failure and names an address: "Invalid final delivery userid:
        // addr", "The following recipients returned permanent errors: addr.", "User mailbox
        // exceeds allowed size: addr". The few words before the address must not make it a
        // contact ("please contact …", "sent from …").
        if bounce::reason_of_text(l).is_some() || NOTICE.is_match(l) || lower.contains("recipient") {
            for m in EMAIL.find_iter(l) {
                let from = l[..m.start()].char_indices().rev().nth(40).map_or(0, |(i, _)| i);
                let pre = l[from..m.start()].to_ascii_lowercase();
                if !NOT_A_RECIPIENT.is_match(&pre) && !l[m.end()..].starts_with('>')
                    || (!NOT_A_RECIPIENT.is_match(&pre) && pre.ends_with('<'))
                {
                    push(m.as_str(), &mut out);
                }
            }
        }
    }
    out
}

/// Trims what MTAs wrap addresses in: brackets, quotes, `SMTP=`/`rfc822;` prefixes, a
/// trailing dot or colon.
fn clean(a: &str) -> String {
    // A quoted local part ("a..b"@example.org) is an address only with its quotes (RFC 5321
    // §4.1.2: it is no dot-atom): kept whole.
    let bare = strip_address_prefix(a.trim().trim_matches(['<', '>']).trim());
    if QUOTED.is_match(bare) {
        return bare.to_ascii_lowercase();
    }
    let s = strip_address_prefix(a.trim().trim_matches(['<', '>', '"', '\'', '(', ')', '[', ']', ',', ';']));
    let s = s.trim_end_matches(['.', ':', ',', ';']).trim_matches(['<', '>', '"', '\'']);
    s.to_ascii_lowercase()
}

/// Without an `SMTP=`, `rfc822;`, `mailto:` or `sip:` prefix. (`get`: the prefix's length
/// may fall inside a multi-byte character — found by fuzzing.)
fn strip_address_prefix(s: &str) -> &str {
    ["smtp=", "smtp:", "rfc822;", "mailto:", "sip:"]
        .iter()
        .find(|p| s.len() > p.len() && s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
        .map_or(s, |p| s[p.len()..].trim_start())
}

/// A Message-ID or queue id written like an address (`20100101.abc123@mx.example`,
/// `AAAA1234.5678@host`): long runs of hex or digits with dots in the local part.
fn looks_like_id(a: &str) -> bool {
    let Some((local, _)) = a.rsplit_once('@') else { return false };
    let digits = local.chars().filter(|c| c.is_ascii_digit()).count();
    let hexish = local.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | '-' | '$' | '_'));
    (local.len() >= 16 && hexish && digits >= 6) || (digits >= 10 && digits * 2 >= local.len()) || local.contains('$')
}

/// `Name: value` from quoted original headers inside a text body.
pub(crate) fn find_header_line(text: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    text.lines()
        .map(|l| l.trim_start_matches(['>', ' ', '\t']))
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The lines around an address's mention: where its status or SMTP reply is. From the
/// line that names it to the next blank-line-separated address block, at most 1,200 bytes.
fn context_for<'a>(section: &'a str, address: &str) -> &'a str {
    static REPLY_PREFIX: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s*[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3} )?").unwrap());
    let lower = section.to_ascii_lowercase();
    let Some(at) = lower.find(&address.to_ascii_lowercase()) else { return section };
    let start = lower[..at].rfind('\n').map_or(0, |n| n + 1);
    // sendmail's per-recipient verdict, "554 <a@b.example>... 550 Host unknown": that line
    // is this recipient's answer (the transcript around it belongs to its neighbours).
    static VERDICT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s*[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3} )?<?[^\s<>]+>?\.\.\. \S").unwrap());
    let line_end = lower[at..].find('\n').map_or(section.len(), |n| at + n);
    if VERDICT.is_match(&lower[start..line_end]) {
        if bounce::reason_of_text(&lower[start..line_end]).is_some() {
            return &section[start..line_end];
        }
        // "554 <a@b.example>... Remote protocol error": the why is in the transcript above
        // it, from "While talking to …" (or the previous verdict) on.
        let from = lower[..start]
            .rfind("while talking to")
            .into_iter()
            .chain(lower[..start].trim_end().rfind("\n").filter(|n| {
                let prev = &lower[n + 1..start];
                VERDICT.is_match(prev) || prev.contains("(smtp)...")
            }))
            .max()
            .unwrap_or(start);
        return &section[from..line_end];
    }
    let mut end = (at + 1200).min(section.len());
    while !section.is_char_boundary(end) {
        end -= 1;
    }
    let after = (at + address.len()).min(end);
    if let Some(next) = lower.get(after..end).and_then(|t| t.find("\n\n\n")) {
        end = after + next;
    }
    // Up to the next recipient's block: a later line that opens with another address.
    if let Some(rest) = lower.get(after..end) {
        let mut offset = rest.find('\n').map_or(rest.len(), |n| n + 1);
        for line in rest.get(offset..).unwrap_or("").split_inclusive('\n') {
            // "554 <next@example>... Host unknown": a reply code may open the line.
            let t = REPLY_PREFIX.replace(line, "");
            let t = t.trim_start_matches([' ', '\t', '<', '*', '-', '"']);
            if EMAIL.find(t).is_some_and(|m| m.start() == 0 && m.as_str() != address.to_ascii_lowercase()) {
                end = after + offset;
                break;
            }
            offset += line.len();
        }
    }
    section.get(start..end).unwrap_or(section)
}

fn diagnostic_line(ctx: &str) -> Option<String> {
    ctx.lines()
        .map(str::trim)
        .find(|l| REPLY.is_match(l) || STATUS.is_match(l) || bounce::reason_of_text(l).is_some())
        .map(|l| l.chars().take(300).collect())
}

/// One per-recipient field group of a DSN (RFC 3464 §2.3).
#[derive(Debug, Default)]
struct Group {
    final_recipient: Option<(String, String)>,
    original_recipient: Option<(String, String)>,
    action: Option<String>,
    status: Option<String>,
    /// The MTA's words after the status code ("5.2.1 (mailbox disabled, not accepting
    /// messages)"): part of why, when the diagnostic is only "User unknown".
    status_note: Option<String>,
    diagnostic: Option<String>,
    /// `Remote-MTA`, and the per-message `Reporting-MTA`: host names without their type.
    remote_mta: Option<String>,
    reporting_mta: Option<String>,
}

impl Group {
    /// The failed address, and the address written to where that differs: the
    /// Final-Recipient (the mailbox that failed, as every DSN reader records it) and the
    /// Original-Recipient when it names another RFC 822 address (the alias or forward we
    /// mailed, which is the address our records hold). A Final-Recipient that is no address
    /// (X.400, a local mailbox name) gives way to the Original-Recipient.
    fn address(&self, original: &Original, failed_header: &[String]) -> Option<(String, Option<String>)> {
        let valid = |r: &Option<(String, String)>| {
            r.as_ref()
                .filter(|(t, a)| {
                    (t.is_empty() || t.contains("rfc822"))
                        && (EMAIL.find(a).is_some_and(|m| m.as_str().len() == a.len()) || QUOTED.is_match(a))
                })
                .map(|(_, a)| a.clone())
        };
        let fin = valid(&self.final_recipient);
        let orig = valid(&self.original_recipient);
        match (fin, orig) {
            (Some(f), Some(o)) if !f.eq_ignore_ascii_case(&o) => Some((f, Some(o))),
            (Some(f), _) => Some((f, None)),
            (None, Some(o)) => Some((o, None)),
            (None, None) => {
                // An X.400, a mailbox path or a malformed Final-Recipient: an address inside it,
                // else the MTA's own X-Failed-Recipients (with the returned message's single
                // recipient as the address written to), else that recipient.
                let inside = self
                    .final_recipient
                    .as_ref()
                    .and_then(|(_, a)| EMAIL.find(a).map(|m| m.as_str().to_ascii_lowercase()));
                let to = (original.to.len() == 1).then(|| original.to[0].clone());
                match (inside, failed_header) {
                    (Some(a), _) => Some((a, None)),
                    (None, [one]) => Some((one.clone(), to.filter(|t| t != one))),
                    (None, _) => to.map(|a| (a, None)),
                }
            }
        }
    }
}

/// RFC 3464 §2.3: the per-recipient field groups after the per-message group.
fn parse_dsn(dsn: &str) -> Vec<Group> {
    let dsn = dsn.replace("\r\n", "\n");
    let unfolded = dsn.replace("\n ", " ").replace("\n\t", " ");
    let mut out = Vec::new();
    // Groups are separated by blank lines; some MTAs omit them, so a new Final-Recipient
    // (or Original-Recipient after a complete group) also starts a group.
    let mut g = Group::default();
    let mut reporting: Option<String> = None;
    let flush = |g: &mut Group, out: &mut Vec<Group>, reporting: &Option<String>| {
        if g.final_recipient.is_some() || g.original_recipient.is_some() {
            g.reporting_mta = reporting.clone();
            out.push(std::mem::take(g));
        } else {
            *g = Group::default();
        }
    };
    let host = |v: &str| {
        let h = v.split_once(';').map_or(v, |(_, h)| h).trim();
        let h = h.split(|c: char| c.is_whitespace() || c == '[' || c == '(').next().unwrap_or("");
        (!h.is_empty()).then(|| h.trim_end_matches('.').to_ascii_lowercase())
    };
    for line in unfolded.lines() {
        if line.trim().is_empty() {
            flush(&mut g, &mut out, &reporting);
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        let typed = || match v.split_once(';') {
            Some((t, a)) => (t.trim().to_ascii_lowercase(), clean(a)),
            None => (String::new(), clean(v)),
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "final-recipient" => {
                if g.final_recipient.is_some() {
                    flush(&mut g, &mut out, &reporting);
                }
                g.final_recipient = Some(typed());
            }
            "original-recipient" => {
                if g.original_recipient.is_some() {
                    flush(&mut g, &mut out, &reporting);
                }
                g.original_recipient = Some(typed());
            }
            "action" => g.action = Some(v.to_ascii_lowercase()),
            "remote-mta" => g.remote_mta = host(v),
            "reporting-mta" => reporting = host(v),
            "status" => {
                g.status = status_in(&format!(" {v} ")).or_else(|| g.status.take());
                g.status_note = v
                    .split_once('(')
                    .and_then(|(_, n)| n.split_once(')'))
                    .map(|(n, _)| n.trim().to_string())
                    .filter(|n| !n.is_empty());
            }
            "diagnostic-code" => {
                g.diagnostic =
                    Some(v.split_once(';').map(|(_, d)| d).unwrap_or(v).trim().chars().take(1000).collect::<String>())
            }
            _ => {}
        }
    }
    flush(&mut g, &mut out, &reporting);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_em_8_the_command_a_refusal_answered() {
        assert_eq!(command_in("550 user unknown (in reply to RCPT TO command)"), Some("RCPT"));
        assert_eq!(command_in("SMTP error from remote server after RCPT command:"), Some("RCPT"));
        assert_eq!(command_in("550 5.2.1 <a@b.example>... User Unknown\n[RCPT_TO]"), Some("RCPT"));
        assert_eq!(command_in("mx.b.example [192.0.2.25] did not like our RCPT TO:"), Some("RCPT"));
        assert_eq!(command_in("192.0.2.153 does not like recipient."), Some("RCPT"));
        assert_eq!(command_in("most progress was RCPT TO response; remote host said: 550"), Some("RCPT"));
        assert_eq!(command_in("550 5.7.1 rejected after end of data"), Some("DATA"));
        assert_eq!(command_in(">>> MAIL FROM:<a@b.example>\n<<< 553 sender rejected"), Some("MAIL"));
        assert_eq!(command_in("550 5.1.1 user unknown"), None);
    }

    #[test]
    fn r_em_8_ids_and_help_desks_are_no_recipients() {
        let own = vec!["sender@ours.example".to_string()];
        let text = "Your message could not be delivered.\n\n<gone@client.example>:\n\
            550 5.1.1 user unknown\n\nIf you need help, contact support@isp.example.\n\
            Message-ID: <20100101.abcdef123456@mx.example>\n";
        assert_eq!(recipients_in_text(text, &own, &[]), vec!["gone@client.example"]);
        assert!(looks_like_id("20100101123456.ab12cd@mx.example"));
        assert!(!looks_like_id("ivan.petrov@client.example"));
        assert_eq!(clean("SMTP=\"gone@client.example\""), "gone@client.example");
        // A multi-byte character where a prefix would end (fuzz/seeds/mail/crash-6258867c…).
        assert_eq!(clean("abcdé@client.example"), "abcdé@client.example");
        assert_eq!(clean("rfc8é@client.example"), "rfc8é@client.example");
    }
}
