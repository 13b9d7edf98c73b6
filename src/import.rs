//! `inflow import leads FILE.csv` — the parse step: bytes → text (UTF-8, or Windows-1251 as
//! Russian Excel writes it), CSV (comma or semicolon, found from the header line), header
//! names → lead fields (logical names, English and Russian labels, and `--map` overrides),
//! each row → a `Lead` or an error with its line number. The store applies the rows in one
//! transaction (`Store::import_leads`); nothing here touches the database.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::crm::Money;
use crate::crm::entities::Lead;

/// The text encodings an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 when the bytes are valid UTF-8, else Windows-1251.
    Auto,
    Utf8,
    Windows1251,
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "windows-1251" | "cp1251" | "win1251" => Ok(Encoding::Windows1251),
            _ => Err(format!("'{s}': expected auto, utf-8 or windows-1251")),
        }
    }
}

/// Decodes the file; returns the text and the encoding used.
pub fn decode(bytes: &[u8], enc: Encoding) -> Result<(String, &'static str), String> {
    // Excel's "Unicode text" is UTF-16 with a byte-order mark, whatever --encoding says.
    if let Some((e, _)) = encoding_rs::Encoding::for_bom(bytes)
        .filter(|(e, _)| *e == encoding_rs::UTF_16LE || *e == encoding_rs::UTF_16BE)
    {
        let (text, _, bad) = e.decode(bytes);
        return if bad {
            Err(format!("invalid {}", e.name()))
        } else {
            Ok((text.into_owned(), if e == encoding_rs::UTF_16LE { "utf-16le" } else { "utf-16be" }))
        };
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match enc {
        Encoding::Utf8 => std::str::from_utf8(bytes)
            .map(|s| (s.to_string(), "utf-8"))
            .map_err(|e| format!("not UTF-8: {e} (try --encoding windows-1251)")),
        Encoding::Windows1251 => {
            Ok((encoding_rs::WINDOWS_1251.decode_without_bom_handling(bytes).0.into_owned(), "windows-1251"))
        }
        Encoding::Auto => match std::str::from_utf8(bytes) {
            Ok(s) => Ok((s.to_string(), "utf-8")),
            Err(_) => Ok((encoding_rs::WINDOWS_1251.decode_without_bom_handling(bytes).0.into_owned(), "windows-1251")),
        },
    }
}

/// The lead fields an import can fill.
const FIELDS: &[&str] = &[
    "subject",
    "firstname",
    "lastname",
    "companyname",
    "jobtitle",
    "emailaddress1",
    "emailaddress2",
    "telephone1",
    "mobilephone",
    "fax",
    "address1_line1",
    "address1_city",
    "address1_postalcode",
    "address1_country",
    "leadqualitycode",
    "leadsourcecode",
    "industrycode",
    "revenue",
    "numberofemployees",
    "description",
    "campaignid",
];

/// Header labels seen in exhibition lists and CRM exports, folded (lowercase, letters and
/// digits only).
fn label_field(folded: &str) -> Option<&'static str> {
    Some(match folded {
        "name" | "firstname" | "first" | "givenname" | "имя" | "імя" | "ім'я" => "firstname",
        "lastname" | "last" | "surname" | "familyname" | "фамилия" | "прізвище" => "lastname",
        "company"
        | "companyname"
        | "organization"
        | "organisation"
        | "компания"
        | "организация"
        | "компанія"
        | "організація" => "companyname",
        "email"
        | "emailaddress"
        | "emailaddress1"
        | "mail"
        | "электроннаяпочта"
        | "элпочта"
        | "почта"
        | "емейл"
        | "електроннапошта" => "emailaddress1",
        "email2" | "emailaddress2" => "emailaddress2",
        "phone" | "telephone" | "telephone1" | "businessphone" | "телефон" | "рабочийтелефон" => {
            "telephone1"
        }
        "mobile" | "mobilephone" | "cell" | "мобильный" | "мобильныйтелефон" | "мобільний" => {
            "mobilephone"
        }
        "fax" | "факс" => "fax",
        "jobtitle" | "title" | "position" | "должность" | "посада" => "jobtitle",
        "subject" | "topic" | "тема" => "subject",
        "city" | "address1city" | "город" | "місто" => "address1_city",
        "street" | "address" | "address1line1" | "адрес" | "адреса" => "address1_line1",
        "zip" | "postalcode" | "address1postalcode" | "индекс" | "індекс" => "address1_postalcode",
        "country" | "address1country" | "страна" | "країна" => "address1_country",
        "rating" | "leadqualitycode" | "оценка" | "рейтинг" => "leadqualitycode",
        "source" | "leadsourcecode" | "источник" | "джерело" => "leadsourcecode",
        "industry" | "industrycode" | "отрасль" | "галузь" => "industrycode",
        "revenue" | "annualrevenue" | "доход" | "выручка" | "дохід" => "revenue",
        "employees" | "numberofemployees" | "сотрудников" | "работников" | "працівників" => {
            "numberofemployees"
        }
        "description" | "notes" | "comment" | "описание" | "комментарий" | "опис" | "коментар" => {
            "description"
        }
        "campaign" | "campaignid" => "campaignid",
        _ => return None,
    })
}

fn fold(h: &str) -> String {
    h.chars().filter(|c| c.is_alphanumeric() || *c == '\'').flat_map(char::to_lowercase).collect()
}

/// How the file's columns map to lead fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Column index → field.
    pub columns: Vec<Option<&'static str>>,
    /// Header labels no field was found for (reported, not imported).
    pub ignored: Vec<String>,
}

/// Maps a header row. `overrides` are `Header=field` pairs from `--map`.
pub fn map_header(header: &[String], overrides: &BTreeMap<String, String>) -> Result<Mapping, String> {
    let mut columns = Vec::with_capacity(header.len());
    let mut ignored = Vec::new();
    let mut seen = BTreeMap::new();
    for h in header {
        let f = match overrides.get(h.trim()) {
            Some(f) => Some(*FIELDS.iter().find(|x| **x == f.as_str()).ok_or_else(|| {
                format!("--map {h}={f}: '{f}' is not an importable lead field ({})", FIELDS.join(", "))
            })?),
            None => label_field(&fold(h)),
        };
        if let Some(f) = f {
            if let Some(prev) = seen.insert(f, h.clone()) {
                return Err(format!("columns '{prev}' and '{h}' both map to {f}; use --map to choose"));
            }
        } else if !h.trim().is_empty() {
            ignored.push(h.clone());
        }
        columns.push(f);
    }
    if !seen.contains_key("lastname") && !seen.contains_key("companyname") && !seen.contains_key("emailaddress1") {
        return Err("no column maps to lastname, companyname or emailaddress1; use --map \"Header=field\"".into());
    }
    Ok(Mapping { columns, ignored })
}

pub use crate::crm::lead::ImportRow;

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// What parsing found: the mapping, rows and row errors in file order.
#[derive(Debug)]
pub struct Parsed {
    pub encoding: &'static str,
    pub delimiter: char,
    pub mapping: Mapping,
    pub rows: Vec<Result<ImportRow, RowError>>,
}

/// Parses a whole file. `subject` is used for rows without one (R-LD-1 requires it).
pub fn parse(
    bytes: &[u8],
    enc: Encoding,
    overrides: &BTreeMap<String, String>,
    subject: &str,
) -> Result<Parsed, String> {
    let (text, encoding) = decode(bytes, enc)?;
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches(';').count() > first.matches(',').count() { ';' } else { ',' };
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(delimiter as u8)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> =
        rd.headers().map_err(|e| format!("cannot read the header: {e}"))?.iter().map(str::to_string).collect();
    let mapping = map_header(&header, overrides)?;
    let mut rows = Vec::new();
    for rec in rd.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                rows.push(Err(RowError { line, message: format!("unreadable CSV: {e}") }));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != header.len() {
            rows.push(Err(RowError {
                line,
                message: format!("{} fields, the header has {}", rec.len(), header.len()),
            }));
            continue;
        }
        rows.push(
            row_lead(&rec, &mapping, subject)
                .map(|lead| ImportRow { line, lead })
                .map_err(|message| RowError { line, message }),
        );
    }
    Ok(Parsed { encoding, delimiter, mapping, rows })
}

fn row_lead(rec: &csv::StringRecord, m: &Mapping, subject: &str) -> Result<Lead, String> {
    let mut l = Lead { leadqualitycode: 2, ..Default::default() };
    for (i, f) in m.columns.iter().enumerate() {
        let Some(f) = f else { continue };
        let v = rec.get(i).unwrap_or("").trim();
        if v.is_empty() {
            continue;
        }
        let int = |v: &str| {
            v.replace([' ', '\u{a0}'], "").parse::<i32>().map_err(|_| format!("{f}: '{v}' is not a whole number"))
        };
        let s = Some(v.to_string());
        match *f {
            "subject" => l.subject = v.to_string(),
            "firstname" => l.firstname = s,
            "lastname" => l.lastname = v.to_string(),
            "companyname" => l.companyname = s,
            "jobtitle" => l.jobtitle = s,
            "emailaddress1" | "emailaddress2" => {
                crate::crm::EmailAddress::parse(v).map_err(|e| format!("{f}: '{v}': {e}"))?;
                if *f == "emailaddress1" { l.emailaddress1 = s } else { l.emailaddress2 = s }
            }
            "telephone1" => l.telephone1 = s,
            "mobilephone" => l.mobilephone = s,
            "fax" => l.fax = s,
            "address1_line1" => l.address1_line1 = s,
            "address1_city" => l.address1_city = s,
            "address1_postalcode" => l.address1_postalcode = s,
            "address1_country" => l.address1_country = s,
            "leadqualitycode" => {
                l.leadqualitycode = match fold(v).as_str() {
                    "hot" | "горячий" | "гарячий" => 1,
                    "warm" | "теплый" | "тёплый" | "теплий" => 2,
                    "cold" | "холодный" | "холодний" => 3,
                    _ => int(v)?,
                }
            }
            "leadsourcecode" => l.leadsourcecode = Some(int(v)?),
            "industrycode" => l.industrycode = Some(int(v)?),
            "numberofemployees" => l.numberofemployees = Some(int(v)?),
            "revenue" => {
                // "1 500 000,50" (Russian) and "1500000.50"; a comma as a thousands separator
                // ("1,500") or both separators are ambiguous and refused.
                let compact = v.replace([' ', '\u{a0}'], "");
                let commas = compact.matches(',').count();
                let ambiguous = (commas > 0 && compact.contains('.'))
                    || commas > 1
                    || compact.split_once(',').is_some_and(|(_, frac)| frac.len() == 3);
                if ambiguous {
                    return Err(format!("revenue: '{v}' is ambiguous; write 1500000 or 1 500 000,50"));
                }
                let n: f64 =
                    compact.replace(',', ".").parse().map_err(|_| format!("revenue: '{v}' is not an amount"))?;
                if !n.is_finite() || n < 0.0 {
                    return Err(format!("revenue: '{v}' is not an amount"));
                }
                l.revenue = Some(Money((n * 100.0).round() as i64));
            }
            "description" => l.description = s,
            "campaignid" => {
                l.campaignid = Some(v.parse::<Uuid>().map_err(|_| format!("campaignid: '{v}' is not a UUID"))?)
            }
            _ => {}
        }
    }
    if l.lastname.trim().is_empty() {
        // R-LD-1 needs a last name; a company-only row keeps the company as the name.
        l.lastname = l.companyname.clone().or_else(|| l.emailaddress1.clone()).unwrap_or_default();
    }
    if l.subject.trim().is_empty() {
        l.subject = subject.to_string();
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1251_with_semicolons_and_russian_headers() {
        let text = "Фамилия;Имя;Компания;E-mail;Телефон;Выручка;Оценка;Стенд\n\
            Иванов;Иван;ООО Ромашка;ivanov@romashka.ru;+7 495 123-45-67;1 500 000,50;горячий;A12\n";
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(text);
        let p = parse(&bytes, Encoding::Auto, &BTreeMap::new(), "Выставка").unwrap();
        // The same file as Excel's UTF-16 "Unicode text" (with its byte-order mark).
        let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(text.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let p16 = parse(&utf16, Encoding::Auto, &BTreeMap::new(), "Выставка").unwrap();
        assert_eq!((p16.encoding, p16.rows[0].as_ref().unwrap().lead.lastname.as_str()), ("utf-16le", "Иванов"));
        assert_eq!((p.encoding, p.delimiter), ("windows-1251", ';'));
        assert_eq!(p.mapping.ignored, vec!["Стенд".to_string()]);
        let r = p.rows[0].as_ref().unwrap();
        assert_eq!(r.line, 2);
        assert_eq!(
            (r.lead.lastname.as_str(), r.lead.firstname.as_deref(), r.lead.companyname.as_deref()),
            ("Иванов", Some("Иван"), Some("ООО Ромашка"))
        );
        assert_eq!(
            (r.lead.revenue, r.lead.leadqualitycode, r.lead.subject.as_str()),
            (Some(Money(150_000_050)), 1, "Выставка")
        );
    }

    #[test]
    fn row_errors_carry_their_line() {
        let text = "lastname,email,employees,revenue\nA,a@x.ru,5,\nB,not-an-address,5,\nC,c@x.ru,many,\n\
            D,d@x.ru\nE,e@x.ru,1,\"1,500\"\nF,f@x.ru,1,\"1500,5\"\n";
        let p = parse(text.as_bytes(), Encoding::Utf8, &BTreeMap::new(), "s").unwrap();
        let errs: Vec<u64> = p.rows.iter().filter_map(|r| r.as_ref().err().map(|e| e.line)).collect();
        assert_eq!(errs, vec![3, 4, 5, 6], "{:?}", p.rows);
        assert_eq!(p.rows[5].as_ref().unwrap().lead.revenue, Some(Money(150_050)));
        assert!(p.rows[0].is_ok());
    }

    #[test]
    fn header_overrides_and_conflicts() {
        let h = vec!["Контакт".to_string(), "Фирма".to_string()];
        assert!(map_header(&h, &BTreeMap::new()).is_err());
        let o: BTreeMap<String, String> =
            [("Контакт".into(), "lastname".into()), ("Фирма".into(), "companyname".into())].into();
        assert_eq!(map_header(&h, &o).unwrap().columns, vec![Some("lastname"), Some("companyname")]);
        let bad: BTreeMap<String, String> = [("Контакт".into(), "leadid".into())].into();
        assert!(map_header(&h, &bad).unwrap_err().contains("not an importable"));
        assert!(map_header(&["email".into(), "E-mail".into()], &BTreeMap::new()).unwrap_err().contains("both map"));
    }
}
