//! Building a wave message: templates (minijinja) checked at schedule time and rendered per
//! recipient, bodies in 7bit or 8bit with format=flowed text.

use super::*;

/// Compiled templates of one wave.
pub struct Templates {
    pub(super) env: minijinja::Environment<'static>,
    pub(super) has_html: bool,
}

impl Templates {
    /// Compiles a wave's subject, text and optional HTML (HTML is auto-escaped).
    pub fn compile(s: &WaveSchedule) -> Result<Templates, String> {
        let mut env = minijinja::Environment::new();
        env.add_template_owned("subject.txt", s.subject.clone()).map_err(|e| format!("subject: {e}"))?;
        env.add_template_owned("body.txt", s.text.clone()).map_err(|e| format!("text: {e}"))?;
        if let Some(h) = &s.html {
            env.add_template_owned("body.html", h.clone()).map_err(|e| format!("html: {e}"))?;
        }
        Ok(Templates { env, has_html: s.html.is_some() })
    }

    pub(super) fn render(
        &self,
        name: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| e.to_string())?;
        t.render(minijinja::Value::from_serialize(vars)).map_err(|e| format!("{name}: {e}"))
    }

    /// The subject line (one line, at most 998 octets per RFC 5322 §2.1.1).
    pub fn subject(&self, vars: &serde_json::Map<String, serde_json::Value>) -> Result<String, String> {
        let s = self.render("subject.txt", vars)?;
        Ok(s.split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(300)
            .collect())
    }
}

/// Longest line (octets) a flowed text part keeps before a soft break.
pub(super) const FLOW_WIDTH: usize = 76;

/// A part's body as it goes on the wire. RFC 5321/5322 allow lines of 998 octets in 7bit and
/// 8bit bodies, but lettre's encoding chooser wants them under 76 and otherwise falls back
/// to quoted-printable for the whole part (and on every message spends CPU choosing). So:
/// ASCII with short-enough lines is 7bit; UTF-8 is 8bit when the relay takes 8BITMIME;
/// only what neither allows (an over-long line, 8-bit text to a 7-bit relay) goes through
/// lettre's chooser.
pub(super) fn transfer_body(body: String, eightbit: bool) -> Body {
    let ascii = body.is_ascii();
    let bytes = body.as_bytes();
    if !(ascii || eightbit) || memchr::memchr(0, bytes).is_some() {
        return Body::new(body);
    }
    let mut crlf = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        let line = &bytes[start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 998 || memchr::memchr(b'\r', line).is_some() {
            return Body::new(body);
        }
        crlf.extend_from_slice(line);
        crlf.extend_from_slice(b"\r\n");
        start = i + 1;
    }
    let tail = &bytes[start..];
    if tail.len() > 998 || memchr::memchr(b'\r', tail).is_some() {
        return Body::new(body);
    }
    crlf.extend_from_slice(tail);
    Body::dangerous_pre_encoded(
        crlf,
        if ascii { ContentTransferEncoding::SevenBit } else { ContentTransferEncoding::EightBit },
    )
}

/// RFC 3676 format=flowed: lines longer than `FLOW_WIDTH` octets are broken after a space
/// (the space stays at the end: a soft break a reader rejoins); hard line ends lose their
/// trailing spaces; lines starting with a space, "From " or ">" are space-stuffed.
pub fn flowed(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 64);
    for raw in text.split('\n') {
        let line = raw.trim_end_matches(['\r', ' ']);
        let mut rest = line;
        loop {
            // Every line written (a continuation too) is space-stuffed when it needs it.
            if rest.starts_with(' ') || rest.starts_with("From ") || rest.starts_with('>') {
                out.push(' ');
            }
            if rest.len() <= FLOW_WIDTH {
                out.push_str(rest);
                out.push('\n');
                break;
            }
            // The last space at or before the width; else the first one after it.
            let b = rest.floor_char_boundary(FLOW_WIDTH);
            let cut = rest[..b].rfind(' ').filter(|&i| i > 0).or_else(|| rest[b..].find(' ').map(|i| i + b));
            match cut {
                Some(i) => {
                    out.push_str(&rest[..=i]);
                    out.push('\n');
                    rest = &rest[i + 1..];
                }
                None => {
                    out.push_str(rest);
                    out.push('\n');
                    break;
                }
            }
        }
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}
