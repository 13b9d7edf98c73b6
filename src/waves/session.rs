//! Driving an SMTP session for the wave sender: RFC 2920 pipelining of MAIL/RCPT/DATA,
//! dot-stuffing, and the reply codes a verdict is made from.

use super::*;

/// A pre-formatted group of commands written in one go (RFC 2920 pipelining).
pub(super) struct Raw(String);

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the server offers PIPELINING (lettre's EHLO parser keeps only the extensions it
/// uses itself, so ask again and read the keywords).
pub async fn offers_pipelining(conn: &mut AsyncSmtpConnection) -> bool {
    match conn.command(lettre::transport::smtp::commands::Ehlo::new(ClientId::default())).await {
        Ok(r) => r.message().any(|l| l.trim().eq_ignore_ascii_case("PIPELINING")),
        Err(_) => false,
    }
}

/// One SMTP transaction on an open session; the error says at which stage it failed. With
/// `pipelining`, MAIL, RCPT and DATA go out in one write and their three replies are read
/// in order (RFC 2920 §3.1): two round trips per message instead of four.
pub(super) async fn transact(
    conn: &mut AsyncSmtpConnection,
    pipelining: bool,
    from: &Address,
    to: &Address,
    body: &[u8],
) -> Result<(), (Stage, lettre::transport::smtp::Error)> {
    let mut params = Vec::new();
    if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(from.clone()), params);
    let rcpt = Rcpt::new(to.clone(), vec![]);
    if pipelining {
        let r_mail = conn.command(Raw(format!("{mail}{rcpt}{Data}"))).await;
        if let Err(e) = &r_mail {
            if !e.is_transient() && !e.is_permanent() {
                return Err((Stage::Mail, r_mail.unwrap_err()));
            }
        }
        let r_rcpt = conn.read_response().await;
        let r_data = conn.read_response().await;
        let failed = match (r_mail, r_rcpt, &r_data) {
            (Err(e), _, _) => Some((Stage::Mail, e)),
            (_, Err(e), _) => Some((Stage::Rcpt, e)),
            (_, _, Err(_)) => None,
            _ => {
                send_data(conn, body).await.map_err(|e| (Stage::Data, e))?;
                return Ok(());
            }
        };
        if let Some(f) = failed {
            // A server that still said 354 gets an empty message ended at once.
            if r_data.is_ok() {
                let _ = conn.message(b"").await;
            }
            return Err(f);
        }
        return Err((Stage::Data, r_data.unwrap_err()));
    }
    conn.command(mail).await.map_err(|e| (Stage::Mail, e))?;
    conn.command(rcpt).await.map_err(|e| (Stage::Rcpt, e))?;
    conn.command(Data).await.map_err(|e| (Stage::Data, e))?;
    send_data(conn, body).await.map_err(|e| (Stage::Data, e))?;
    Ok(())
}

/// The DATA content with its end mark, written at once. lettre's `message` dot-stuffs byte
/// by byte and writes twice; this finds the line starts with memchr (the same transparency,
/// RFC 5321 §4.5.2: a '.' opening a line is doubled) — it was the largest CPU cost per
/// message in the wave benchmark.
pub(super) async fn send_data(
    conn: &mut AsyncSmtpConnection,
    body: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    match String::from_utf8(dot_stuff(body)) {
        Ok(data) => conn.command(Raw(data)).await.map(|_| ()),
        Err(_) => conn.message(body).await.map(|_| ()),
    }
}

/// `body` with every line-opening '.' doubled, followed by lettre's end mark `\r\n.\r\n`.
pub(super) fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    if body.first() == Some(&b'.') {
        out.push(b'.');
    }
    let mut start = 0;
    for i in memchr::memmem::find_iter(body, b"\r\n.") {
        out.extend_from_slice(&body[start..i + 3]);
        out.push(b'.');
        start = i + 3;
    }
    out.extend_from_slice(&body[start..]);
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

pub(super) fn reply_code(e: &lettre::transport::smtp::Error) -> Option<u16> {
    e.status().and_then(|c| c.to_string().parse().ok())
}
