//! What a message's envelope and MIME form say about who made it, read the same way by the
//! bounce, complaint and auto-reply readers: a null Return-Path (RFC 5321 §4.5.5: notices
//! are sent with an empty reverse path), a `multipart/report` (RFC 6522) and the RFC 3464
//! delivery-status part inside it.

use mail_parser::{Message, MimeHeaders};

/// `Return-Path: <>`: the message was sent with a null reverse path.
pub fn null_return_path(msg: &Message<'_>) -> bool {
    msg.header_raw("Return-Path").is_some_and(|r| r.trim().trim_matches(['<', '>']).trim().is_empty())
}

/// A `multipart/report` (RFC 6522), with its `report-type` parameter.
pub fn report_type<'a>(msg: &'a Message<'_>) -> Option<&'a str> {
    let ct = msg.content_type()?;
    (ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")))
        .then(|| ct.attribute("report-type").unwrap_or(""))
}

/// Whether the message carries a machine-readable delivery status part (RFC 3464).
pub fn has_dsn(msg: &Message<'_>) -> bool {
    msg.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })
}
