//! What the person actually wrote (R-EM-9): a reply's new text without the quoted thread,
//! the attribution line, the forwarded or original-message header block, and the signature.
//!
//! The rules follow what Mailgun's *talon* does for plain text, in the languages inflow's
//! users write and read: the first line that starts the quoted part ends the new text —
//!
//! - an attribution: "On … wrote:" (also split over two lines), «… написал(а):», «… пишет:»,
//!   «… пише:», «… написав(ла):», "Am … schrieb …:", "Le … a écrit :", "El … escribió:",
//!   Yandex's `12.03.2024, 10:15, "Ivan" <ivan@example.ru>:` and Mail.ru's
//!   `Вторник, 12 марта 2024, 10:15 +03:00 от Иван <ivan@mail.ru>:`;
//! - a separator: `-----Original Message-----`, `-------- Исходное сообщение --------`,
//!   `-----Ursprüngliche Nachricht-----`, `________________________________` (Outlook), and
//!   the like;
//! - a header block: `From:`/`От:`/`Від:`/`Von:`/`De :` followed within three lines by
//!   `Sent:`/`Date:`/`To:`/`Subject:` (or their translations), as Outlook and Gmail forward;
//! - a run of `>` quoted lines;
//! - a signature: a line `-- ` (RFC 3676), or a mobile client's "Sent from my iPhone".
//!
//! HTML mail is cut at its quote container (`gmail_quote`, `blockquote`, Outlook's
//! `divRplyFwdMsg`, Thunderbird's `moz-cite-prefix`, Yandex and Mail.ru quotes) by the parser
//! before it is turned into text. Pure: text in, text out.

use std::sync::LazyLock;

use regex::Regex;

static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
            (?:on|am|le|el|il|op|em|den|w\s+dniu)\b.*\b(?:wrote|schrieb|a\s+écrit|a\s+ecrit|escribió|escribio|
                ha\s+scritto|schreef|escreveu|skrev|napisał)\s*:?\s*$
          | .*\b(?:wrote|написал|написала|написал\(а\)|пишет|пише|написав|написала|
              написав\(ла\)|писал|писала|schrieb|a\s+écrit|escribió)\s*:\s*$
          | (?:\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{4}-\d{2}-\d{2}),?\s+\d{1,2}:\d{2}
              .*(?:<[^>@\s]+@[^>\s]+>|\S+@\S+)\s*:\s*$
          | .*\d{4},?\s+\d{1,2}:\d{2}.*\s(?:от|від|from)\s.*(?:<[^>@\s]+@[^>\s]+>|\S+@\S+)\s*:\s*$
          | .*\b\d{1,2}:\d{2}\b.*(?:<[^>@\s]+@[^>\s]+>|\S+@\S+)\s*:\s*$
        )",
    )
    .unwrap()
});

/// The first line of an attribution split over two lines ("On Tue, 12 Mar 2024 at 10:15,
/// Ivan Petrov <ivan@example.com>" / "wrote:").
static ATTRIBUTION_START: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^\s*(?:on|am|le|el)\s.{5,}$").unwrap());
static ATTRIBUTION_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*.*\b(?:wrote|schrieb|a écrit|escribió)\s*:\s*$").unwrap());

static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^\s*(?:[-_=*]{2,}\s*(?:original message|исходное сообщение|оригинальное сообщение|",
        r"пересылаемое сообщение|вихідне повідомлення|оригінальне повідомлення|переслане повідомлення|",
        r"ursprüngliche nachricht|message d'origine|message original|mensaje original|messaggio originale|",
        r"forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado)\s*[-_=*]{2,}|",
        r"_{20,}|-{20,}|begin forwarded message:|начало переадресованного сообщения:)\s*$",
    ))
    .unwrap()
});

static HEADER_FROM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*\*?(?:from|от|від|von|de|da|van|od)\s*\*?\s*:\s*\S").unwrap());
static HEADER_OTHER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^\s*\*?(?:sent|date|to|subject|cc|отправлено|дата|кому|тема|копия|надіслано|відправлено|gesendet|",
        r"datum|an|betreff|envoyé|envoye|date|à|a|objet|enviado|fecha|para|asunto|inviato|oggetto)\s*\*?\s*:",
    ))
    .unwrap()
});

static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^\s*(?:--|—|sent from my \w+|sent from (?:mail|outlook) for \w+|get outlook for \w+|",
        r"отправлено с (?:моего )?\w+|отправлено из мобильной почты mail\.ru|",
        r"отправлено из мобильной яндекс\.?почты|надіслано з (?:мого )?\w+|von meinem \w+ gesendet|",
        r"envoyé de mon \w+|enviado desde mi \w+)\s*$",
    ))
    .unwrap()
});

/// The reply's own words (see the module comment). Empty when the message is only a quote.
pub fn new_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim_end();
        let t = l.trim_start();
        if t.starts_with('>') {
            // A quoted run: cut here (with the attribution above it, if any).
            cut = i;
            break;
        }
        // Cheap tests first: each marker has a shape (a closing colon, a leading dash or
        // underscore, a short line) that most lines of a long body lack.
        let short = t.len() <= 240;
        let colon_end = l.ends_with(':') || l.ends_with("wrote") || l.ends_with("schrieb");
        let rule = t.starts_with(['-', '_', '=', '*']) || t.starts_with(['B', 'b', 'Н', 'н']);
        if (colon_end && l.len() < 600 && ATTRIBUTION.is_match(l))
            || (rule && SEPARATOR.is_match(l))
            || (short && SIGNATURE.is_match(l))
            || l == "-- "
        {
            cut = i;
            break;
        }
        if l.len() < 600
            && lines.get(i + 1).is_some_and(|n| n.trim_end().ends_with(':') && ATTRIBUTION_END.is_match(n))
            && ATTRIBUTION_START.is_match(l)
        {
            cut = i;
            break;
        }
        if t.get(..24).unwrap_or(t).contains(':')
            && HEADER_FROM.is_match(l)
            && lines.iter().skip(i + 1).take(4).filter(|n| HEADER_OTHER.is_match(n)).count() >= 2
        {
            cut = i;
            break;
        }
    }
    let mut kept: Vec<&str> = lines[..cut].to_vec();
    // A blank-line-ended attribution may sit just above a quoted run.
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    if let Some(last) = kept.last()
        && cut < lines.len()
        && lines[cut].trim_start().starts_with('>')
        && last.trim_end().ends_with(':')
        && last.len() < 250
    {
        kept.pop();
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    while kept.first().is_some_and(|l| l.trim().is_empty()) {
        kept.remove(0);
    }
    kept.join("\n")
}

/// Cuts an HTML body at its quote container, so the text made from it is the new part only.
pub fn strip_html_quote(html: &str) -> &str {
    static QUOTE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r#"(?i)<(?:div|span)[^>]*\b(?:class|id)\s*=\s*["']?(?:gmail_quote|gmail_attr|divRplyFwdMsg|"#,
            r#"appendonsend|moz-cite-prefix|yahoo_quoted|ymail_android_signature|OutlookMessageHeader|"#,
            r#"mail-quote|yandex_quote)\b|<blockquote\b|<hr[^>]*id\s*=\s*["']?stopSpelling|"#,
            r#"<div[^>]*style\s*=\s*["'][^"']*border-top:\s*solid\s*#(?:B5C4DF|E1E1E1)"#,
        ))
        .unwrap()
    });
    match QUOTE.find(html) {
        Some(m) => &html[..m.start()],
        None => html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_em_9_quotes_attributions_and_signatures_are_cut() {
        assert_eq!(
            new_text(
                "Yes, please send the price list.\n\n\
                    On Tue, 12 Mar 2024 at 10:15, Sales <sales@ours.example> wrote:\n> November news\n> ...\n"
            ),
            "Yes, please send the price list."
        );
        assert_eq!(
            new_text("Да, интересно.\n\n12.03.2024, 10:15, \"Отдел продаж\" <sales@ours.example>:\n> Новинки\n"),
            "Да, интересно."
        );
        assert_eq!(
            new_text("Так, цікаво.\n\nвт, 12 бер. 2024 р. о 10:15 Sales <sales@ours.example> пише:\n> Новинки\n"),
            "Так, цікаво."
        );
        assert_eq!(new_text("Interested.\n\n-----Original Message-----\nFrom: Sales\nSent: Tuesday\n"), "Interested.");
        assert_eq!(
            new_text(
                "Interested.\n\nFrom: Sales <sales@ours.example>\nSent: Tuesday, March 12, 2024 10:15 AM\n\
                    To: Ivan\nSubject: News\n\nbody"
            ),
            "Interested."
        );
        assert_eq!(new_text("Call me.\n-- \nIvan Petrov\n+7 900 000-00-00"), "Call me.");
        assert_eq!(new_text("Call me.\n\nSent from my iPhone"), "Call me.");
        assert_eq!(
            new_text("From the start: we need 20 units.\nRegards"),
            "From the start: we need 20 units.\nRegards"
        );
    }

    #[test]
    fn r_em_9_html_quote_containers_are_cut() {
        assert_eq!(
            strip_html_quote("<div>Yes</div><div class=\"gmail_quote\">On … wrote:<blockquote>old</blockquote></div>"),
            "<div>Yes</div>"
        );
        assert_eq!(strip_html_quote("<p>Да</p><div id=\"divRplyFwdMsg\">От: …</div>"), "<p>Да</p>");
        assert_eq!(strip_html_quote("<p>plain</p>"), "<p>plain</p>");
    }
}
