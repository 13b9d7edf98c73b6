//! Parse-once newtypes for the values the dedupe rules compare: e-mail addresses (R-DUP-1),
//! phone numbers (R-DUP-2) and account names (R-DUP-4). Raw strings become these at the edge;
//! everything inside compares the normalised forms.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Per-domain folding rules for e-mail local parts ([DESIGN] R-DUP-1: off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRules {
    /// Domains where dots in the local part are ignored and `+tag` is dropped (e.g. gmail.com).
    pub fold_domains: Vec<String>,
}

/// A normalised e-mail address (R-DUP-1): the addr-spec, lower-cased, IDNA-ASCII domain,
/// no trailing dot. Invalid input never becomes an `EmailAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// R-DUP-1 with no folding rules.
    pub fn parse(raw: &str) -> Result<EmailAddress, String> {
        Self::parse_with(raw, &EmailRules::default())
    }

    /// R-DUP-1: takes the addr-spec out of `Name <addr>` forms, trims, lower-cases, converts
    /// the domain to IDNA ASCII and strips a trailing dot. Dots and `+tag` stay unless the
    /// domain is listed in `rules.fold_domains`.
    pub fn parse_with(raw: &str, rules: &EmailRules) -> Result<EmailAddress, String> {
        let spec = addr_spec(raw.trim());
        let spec = spec.trim().trim_start_matches("mailto:");
        let at = spec.rfind('@').ok_or_else(|| format!("'{raw}' has no @"))?;
        let (local, domain) = (&spec[..at], &spec[at + 1..]);
        if local.is_empty() || local.len() > 64 {
            return Err(format!("'{raw}' has an empty or over-long local part"));
        }
        let unquoted = local.starts_with('"') && local.ends_with('"') && local.len() >= 2;
        if !unquoted {
            let ok = local.split('.').all(|atom| {
                !atom.is_empty() && atom.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
            });
            if !ok {
                return Err(format!("'{raw}' has an invalid local part"));
            }
        }
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err(format!("'{raw}' has no domain"));
        }
        let ascii = idna::domain_to_ascii(domain).map_err(|_| format!("'{raw}' has an invalid domain"))?;
        let labels_ok = ascii.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !labels_ok || !ascii.contains('.') {
            return Err(format!("'{raw}' has an invalid domain"));
        }
        let mut local = local.to_lowercase();
        let domain = ascii.to_ascii_lowercase();
        if rules.fold_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) && !unquoted {
            if let Some(plus) = local.find('+') {
                local.truncate(plus);
            }
            local.retain(|c| c != '.');
            if local.is_empty() {
                return Err(format!("'{raw}' folds to an empty local part"));
            }
        }
        let full = format!("{local}@{domain}");
        if full.len() > 254 {
            return Err(format!("'{raw}' is longer than 254 characters"));
        }
        Ok(EmailAddress(full))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        &self.0[..self.0.rfind('@').unwrap_or(0)]
    }

    pub fn domain(&self) -> &str {
        &self.0[self.0.rfind('@').map(|i| i + 1).unwrap_or(0)..]
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `Display Name <a@b>` → `a@b`; a bare address is returned as is.
fn addr_spec(s: &str) -> &str {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(l), Some(r)) if l < r => &s[l + 1..r],
        _ => s,
    }
}

/// A phone number in E.164 (`+74951234567`), with the extension split off (R-DUP-2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub e164: String,
    pub extension: Option<String>,
}

/// What a raw phone value turned out to be (R-DUP-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phone {
    /// A customer number, matchable by its E.164 form.
    External(PhoneNumber),
    /// A short number (≤ 5 digits): an internal extension, never a customer number.
    Internal(String),
    /// No number at all: empty, `anonymous`, withheld, `0`.
    None,
    /// Something we could not parse: stored raw, never matched.
    Unparsable(String),
}

impl Phone {
    /// R-DUP-2: parse with the org default region (ISO 3166 alpha-2, e.g. `RU`).
    ///
    /// Accepts national (`8 (495) 123-45-67`), prefix-less (`74951234567`), 10-digit NSN
    /// (`4951234567`), international (`+7…`, `00…`, `810…` for RU), `tel:` and `sip:` URIs.
    pub fn parse(raw: &str, default_region: &str) -> Phone {
        let mut s = raw.trim();
        // A SIP address (`sip:alice@pbx`, Placetel's `7777abcdefg@fpbx.de`) names a party of
        // the PBX unless its user part is a phone number.
        let mut sip = s.contains('@');
        for scheme in ["tel:", "TEL:", "sip:", "SIP:", "sips:", "SIPS:"] {
            if let Some(rest) = s.strip_prefix(scheme) {
                sip |= scheme.to_ascii_lowercase().starts_with("sip");
                s = rest;
            }
        }
        let internal_or = |fallback: Phone, user: &str| {
            if sip && !user.is_empty() { Phone::Internal(user.to_string()) } else { fallback }
        };
        // URI user part and parameters: `+7495…@pbx.example;user=phone`.
        let s = s.split(['@', ';']).next().unwrap_or("").trim();
        let lower = s.to_ascii_lowercase();
        const NO_NUMBER: [&str; 9] =
            ["", "anonymous", "unknown", "private", "restricted", "unavailable", "withheld", "0", "+"];
        if NO_NUMBER.contains(&lower.as_str()) || lower.chars().all(|c| c == '0' || c == '+') {
            return Phone::None;
        }
        // Split an extension off: "x123", "ext. 123", "доб. 123", ",123", "#123".
        let (main, ext) = split_extension(s);
        if main.chars().any(|c| c.is_alphabetic()) {
            return internal_or(Phone::Unparsable(raw.to_string()), s);
        }
        let digits: String = main.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return internal_or(Phone::Unparsable(raw.to_string()), s);
        }
        let has_plus = main.trim_start().starts_with('+');
        if !has_plus && digits.len() <= 5 {
            return Phone::Internal(digits);
        }
        let region = default_region.trim().to_ascii_uppercase();
        let Ok(country) = region.parse::<phonenumber::country::Id>() else {
            return Phone::Unparsable(raw.to_string());
        };
        let candidate = if has_plus { format!("+{digits}") } else { digits.clone() };
        let mut parsed = phonenumber::parse(Some(country), &candidate).ok().filter(|n| n.is_valid());
        if parsed.is_none() && !has_plus {
            // Prefix-less international form: the country code written without "+"
            // (`74951234567` in RU, `380441234567` in UA).
            parsed = phonenumber::parse(None, format!("+{digits}")).ok().filter(|n| n.is_valid());
        }
        match parsed {
            Some(n) => Phone::External(PhoneNumber {
                e164: n.format().mode(phonenumber::Mode::E164).to_string(),
                extension: ext.or_else(|| n.extension().map(|e| e.to_string())),
            }),
            None => match metadata_fallback(&digits, has_plus, &region) {
                Some(e164) => Phone::External(PhoneNumber { e164, extension: ext }),
                None => internal_or(Phone::Unparsable(raw.to_string()), s),
            },
        }
    }

    /// The matchable E.164 value, if any.
    pub fn e164(&self) -> Option<&str> {
        match self {
            Phone::External(p) => Some(&p.e164),
            _ => None,
        }
    }
}

/// The `phonenumber` crate strips a national prefix even when the national number itself
/// starts with that digit (RU `8 800 …` toll-free numbers come out as `+7 00…`), where
/// libphonenumber keeps the prefix if stripping makes the number invalid. This re-derives
/// the country code and national number from the digits and checks them against the same
/// metadata the crate ships.
fn metadata_fallback(digits: &str, has_plus: bool, region: &str) -> Option<String> {
    let db = &*phonenumber::metadata::DATABASE;
    let meta = db.by_id(region)?;
    let cc = meta.country_code().to_string();
    let mut candidates: Vec<String> = Vec::new();
    if has_plus {
        candidates.push(digits.to_string());
    } else {
        if let Some(np) = meta.national_prefix() {
            if let Some(rest) = digits.strip_prefix(np) {
                candidates.push(format!("{cc}{rest}"));
            }
        }
        candidates.push(format!("{cc}{digits}"));
        candidates.push(digits.to_string());
        for idd in ["810", "00"] {
            if let Some(rest) = digits.strip_prefix(idd) {
                candidates.push(rest.to_string());
            }
        }
    }
    for c in candidates {
        for k in 1..=3.min(c.len()) {
            let Ok(code) = c[..k].parse::<u16>() else { continue };
            let nsn = &c[k..];
            let Some(metas) = db.by_code(&code) else { continue };
            for m in metas {
                let d = m.descriptors();
                let typed = [
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.voip(),
                    d.personal_number(),
                    d.uan(),
                ];
                if d.general().is_match(nsn) && typed.iter().flatten().any(|t| t.is_match(nsn)) {
                    return Some(format!("+{c}"));
                }
            }
        }
    }
    None
}

fn split_extension(s: &str) -> (&str, Option<String>) {
    let lower = s.to_lowercase();
    for marker in ["доб.", "доб", "ext.", "ext", "x", "#", ","] {
        if let Some(pos) = lower.find(marker) {
            // Only when digits precede the marker: "x" inside nothing else is meaningful here.
            let byte_pos = pos;
            if byte_pos == 0 || lower.len() != s.len() || !s.is_char_boundary(byte_pos) {
                continue;
            }
            let ext: String = lower[byte_pos + marker.len()..].chars().filter(|c| c.is_ascii_digit()).collect();
            if !ext.is_empty() {
                return (&s[..byte_pos], Some(ext));
            }
        }
    }
    (s, None)
}

/// R-DUP-4 "Accounts with the same name": casefold, trim, collapse spaces, drop quotes and a
/// trailing or leading legal-form word ([DESIGN] list below).
pub fn account_name_key(name: &str) -> Option<String> {
    const LEGAL: [&str; 24] = [
        "тов", "ооо", "оао", "зао", "пао", "ао", "ип", "пп", "фоп", "прат", "пат", "llc", "ltd", "inc", "gmbh", "corp",
        "co", "plc", "sa", "ag", "oy", "ab", "bv", "limited",
    ];
    let cleaned: String =
        name.chars().map(|c| if "\"'«»“”„.,()".contains(c) { ' ' } else { c }).collect::<String>().to_lowercase();
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    while words.len() > 1 && LEGAL.contains(&words[0]) {
        words.remove(0);
    }
    while words.len() > 1 && LEGAL.contains(words.last().unwrap_or(&"")) {
        words.pop();
    }
    let key = words.join(" ");
    if key.is_empty() { None } else { Some(key) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_dup_1_email_normalisation() {
        let e = EmailAddress::parse("  Иван Петров <Ivan.Petrov+News@Example.COM.> ").unwrap();
        assert_eq!(e.as_str(), "ivan.petrov+news@example.com");
        assert_eq!(EmailAddress::parse("user@пример.рф").unwrap().as_str(), "user@xn--e1afmkfd.xn--p1ai");
        assert_eq!(EmailAddress::parse("mailto:a@b.org").unwrap().as_str(), "a@b.org");
        // Dots and +tags are kept by default (R-DUP-1) ...
        assert_ne!(EmailAddress::parse("a.b@gmail.com").unwrap(), EmailAddress::parse("ab@gmail.com").unwrap());
        // ... and folded only for domains listed in the rule table.
        let rules = EmailRules { fold_domains: vec!["gmail.com".into()] };
        assert_eq!(
            EmailAddress::parse_with("A.B+x@Gmail.com", &rules).unwrap(),
            EmailAddress::parse_with("ab@gmail.com", &rules).unwrap()
        );
    }

    #[test]
    fn r_dup_1_invalid_addresses_are_not_matchable() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a..b@example.com",
            "a@-x.com",
            "a@exa mple.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn r_dup_2_russian_forms_are_one_number() {
        let forms = [
            "8 (495) 123-45-67",
            "+7 495 1234567",
            "74951234567",
            "4951234567",
            "+7 (495) 123-45-67",
            "tel:+7-495-123-45-67",
            "sip:+74951234567@pbx.example.com;user=phone",
            "8-10-7-495-123-45-67",
        ];
        for f in forms {
            assert_eq!(Phone::parse(f, "RU").e164(), Some("+74951234567"), "{f}");
        }
        assert_eq!(Phone::parse("8-800-555-35-35", "RU").e164(), Some("+78005553535"));
    }

    #[test]
    fn r_dup_2_ukrainian_forms_are_one_number() {
        for f in ["044 123 4567", "380441234567", "+380 44 123 4567"] {
            assert_eq!(Phone::parse(f, "UA").e164(), Some("+380441234567"), "{f}");
        }
    }

    #[test]
    fn r_dup_2_short_numbers_and_no_numbers() {
        assert_eq!(Phone::parse("101", "RU"), Phone::Internal("101".into()));
        assert_eq!(Phone::parse("sip:2001@pbx.local", "RU"), Phone::Internal("2001".into()));
        // R-DUP-2: a SIP address of a PBX user is an internal party, not an unreadable number.
        assert_eq!(Phone::parse("sip:alice@pbx.example.com", "RU"), Phone::Internal("alice".into()));
        assert_eq!(Phone::parse("7777abcdefg@fpbx.de", "DE"), Phone::Internal("7777abcdefg".into()));
        assert_eq!(Phone::parse("Alice Smith", "RU"), Phone::Unparsable("Alice Smith".into()));
        for none in ["anonymous", "", "0", "Unknown", "  "] {
            assert_eq!(Phone::parse(none, "RU"), Phone::None, "{none:?}");
        }
        assert!(matches!(Phone::parse("call me", "RU"), Phone::Unparsable(_)));
        assert!(matches!(Phone::parse("12345678", "RU"), Phone::Unparsable(_)));
    }

    #[test]
    fn r_dup_2_extension_is_split_off() {
        match Phone::parse("+7 495 123-45-67 доб. 204", "RU") {
            Phone::External(p) => {
                assert_eq!(p.e164, "+74951234567");
                assert_eq!(p.extension.as_deref(), Some("204"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn r_dup_4_account_name_key() {
        assert_eq!(account_name_key("ООО «Ромашка»"), Some("ромашка".into()));
        assert_eq!(account_name_key("  Romashka   LLC "), Some("romashka".into()));
        assert_eq!(account_name_key("ТОВ \"Сонце  Плюс\""), Some("сонце плюс".into()));
        assert_eq!(account_name_key("LLC"), Some("llc".into()));
        assert_eq!(account_name_key("  "), None);
    }
}
