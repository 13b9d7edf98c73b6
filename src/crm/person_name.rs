//! R-EM-6 field mapping of a display name to first and last name. The rule:
//!
//! 1. Quotes and anything in parentheses or brackets ("Ivan Petrov (Sales)") are dropped.
//! 2. "Last, First" (one comma, as Outlook and directories write it) → first = after the
//!    comma, last = before it.
//! 3. Words that are no part of a name are dropped from the front: lower-case words and
//!    abbreviations in capitals ("служба ФНС Даниил Суворов" → "Даниил Суворов"); what remains
//!    is at most the last three words.
//! 4. Three Cyrillic words whose last is a patronymic (-ович, -евич, -ич, -овна, -евна, -ична,
//!    -инична) are "Фамилия Имя Отчество": last = the first word, first = the second (the
//!    patronymic is kept with the first name, "Иван Сергеевич", as people are addressed).
//! 5. Otherwise the last word is the last name and the words before it the first name.
//! 6. A single word is the last name; no usable name → the address's local part.
//!
//! Two Cyrillic words stay "Имя Фамилия", the order mail clients put in From lines; an
//! operator fixes the rare "Петров Иван" by hand.

/// (first name, last name) from a display name, else from the address.
pub fn split(name: Option<&str>, address: &str) -> (Option<String>, String) {
    let cut = |s: &str| s.chars().take(50).collect::<String>();
    let mut clean = String::new();
    let mut depth = 0i32;
    for c in name.unwrap_or("").chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = (depth - 1).max(0),
            '"' | '\'' | '«' | '»' | '<' | '>' => {}
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let clean = clean.trim().trim_matches([',', ';', '.']).trim();
    let local = || cut(address.split('@').next().unwrap_or(address));
    if clean.is_empty() || clean.contains('@') {
        return (None, local());
    }
    if let Some((last, first)) = clean.split_once(',') {
        let (last, first) = (last.trim(), first.trim());
        if !last.is_empty() && !first.is_empty() && !first.contains(',') && last.split_whitespace().count() <= 2 {
            return (Some(cut(first)), cut(last));
        }
    }
    let words: Vec<&str> = clean.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).collect();
    let is_name_word = |w: &str| {
        let mut cs = w.chars().filter(|c| c.is_alphabetic());
        let first_upper = cs.next().is_some_and(char::is_uppercase);
        let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
        let all_caps = letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase());
        first_upper && !all_caps
    };
    // The trailing run of name-like words (keep everything when none look like names, e.g.
    // an all-lower-case "ivan petrov").
    let start = words.iter().rposition(|w| !is_name_word(w)).map_or(0, |i| i + 1);
    let mut name_words: Vec<&str> = if start < words.len() { words[start..].to_vec() } else { words.clone() };
    if name_words.len() > 3 {
        name_words = name_words[name_words.len() - 3..].to_vec();
    }
    match name_words.len() {
        0 => (None, local()),
        1 => (None, cut(name_words[0])),
        3 if is_patronymic(name_words[2]) && name_words.iter().all(|w| w.chars().any(is_cyrillic)) => {
            (Some(cut(&format!("{} {}", name_words[1], name_words[2]))), cut(name_words[0]))
        }
        n => (Some(cut(&name_words[..n - 1].join(" "))), cut(name_words[n - 1])),
    }
}

fn is_cyrillic(c: char) -> bool {
    ('\u{0400}'..='\u{04FF}').contains(&c)
}

fn is_patronymic(w: &str) -> bool {
    let w = w.to_lowercase();
    ["ович", "евич", "івич", "йович", "ич", "овна", "евна", "ична", "инична", "івна", "ївна"]
        .iter()
        .any(|s| w.ends_with(s))
        && w.chars().count() > 4
}

#[cfg(test)]
mod tests {
    use super::split;

    fn s(name: &str) -> (Option<String>, String) {
        split(Some(name), "box@client.example")
    }

    #[test]
    fn r_em_6_display_names_map_to_first_and_last() {
        assert_eq!(s("Ivan Petrov"), (Some("Ivan".into()), "Petrov".into()));
        assert_eq!(s("Petrov, Ivan"), (Some("Ivan".into()), "Petrov".into()));
        assert_eq!(s("\"Neko, Nyaan\""), (Some("Nyaan".into()), "Neko".into()));
        assert_eq!(s("служба ФНС Даниил Суворов"), (Some("Даниил".into()), "Суворов".into()));
        assert_eq!(s("Петров Иван Сергеевич"), (Some("Иван Сергеевич".into()), "Петров".into()));
        assert_eq!(s("Коваль Олена Іванівна"), (Some("Олена Іванівна".into()), "Коваль".into()));
        assert_eq!(s("Иван Петров"), (Some("Иван".into()), "Петров".into()));
        assert_eq!(s("Mary Ann Smith"), (Some("Mary Ann".into()), "Smith".into()));
        assert_eq!(s("Ivan Petrov (Sales)"), (Some("Ivan".into()), "Petrov".into()));
        assert_eq!(s("Kate"), (None, "Kate".into()));
        assert_eq!(s("ivan petrov"), (Some("ivan".into()), "petrov".into()));
        assert_eq!(split(None, "ivan.petrov@client.example"), (None, "ivan.petrov".into()));
        assert_eq!(s("x@y.example"), (None, "box".into()));
    }
}
