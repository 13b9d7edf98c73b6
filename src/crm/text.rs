//! Text helpers for the mail path, where bodies are tens of kilobytes: both copy whole runs
//! of bytes instead of going character by character or searching with a general pattern
//! (the ingest profile in bench/README.md, session 9, found both among its top entries).

/// The first `n` characters of `s`, borrowed (`s.chars().take(n).collect()` without pushing
/// each character).
pub fn take_chars(s: &str, n: usize) -> &str {
    // No more bytes than `n`: no more characters either (the usual case for a body).
    if s.len() <= n {
        return s;
    }
    match s.char_indices().nth(n) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// `s` with every CRLF turned into LF (a lone CR stays): `s.replace("\r\n", "\n")`, found with
/// `memchr` and copied in runs. A text without CR is returned as it is.
pub fn unix_newlines(s: String) -> String {
    if !s.contains('\r') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find('\r') {
        if rest[i + 1..].starts_with('\n') {
            out.push_str(&rest[..i]);
        } else {
            out.push_str(&rest[..=i]);
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_chars_counts_characters_not_bytes() {
        assert_eq!(take_chars("Здравствуйте", 4), "Здра");
        assert_eq!(take_chars("abc", 10), "abc");
        assert_eq!(take_chars("abc", 0), "");
        assert_eq!(take_chars("", 3), "");
        for s in ["Здравствуйте, мир", "a\u{1F600}b", "plain"] {
            for n in 0..20 {
                assert_eq!(take_chars(s, n), s.chars().take(n).collect::<String>());
            }
        }
    }

    #[test]
    fn unix_newlines_is_replace_crlf() {
        for s in ["a\r\nb\r\n", "\r\n\r\n", "no breaks", "lone\rcr\r", "end\r", "\r", "мир\r\nтекст", "\r\r\n\n"]
        {
            assert_eq!(unix_newlines(s.to_string()), s.replace("\r\n", "\n"), "{s:?}");
        }
    }
}
