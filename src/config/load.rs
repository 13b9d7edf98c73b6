//! From text to a typed `Config`: the TOML syntax, the `INFLOW__SECTION__KEY` environment
//! overrides applied to the tree, serde's typed pass with each problem's key path, and the
//! line a key was written on.

use std::collections::BTreeMap;

use super::*;

/// Syntax → env overrides → typed tree, collecting every syntax, unknown-key and type problem.
pub(super) fn parse_text(text: &str, env: &BTreeMap<String, String>, out: &mut Vec<ConfigProblem>) -> Option<Config> {
    let (spanned, errors) = toml::de::DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            out.push(ConfigProblem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            });
        }
        return None;
    }
    let mut tree: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            out.push(ConfigProblem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            });
            return None;
        }
    };
    let mut from_env = std::collections::HashSet::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("INFLOW__") else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            out.push(ConfigProblem { path: format!("env {k}"), line: None, message: "empty key segment".into() });
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        if let Err(m) = set_path(&mut tree, &path, value) {
            out.push(ConfigProblem { path: format!("env {k}"), line: None, message: m });
        }
        from_env.insert(display_path(&path));
    }
    let root = spanned.get_ref();
    for _ in 0..100 {
        match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(tree.clone())) {
            // Keys that failed were removed (their defaults stand in), so the semantic checks
            // can still run and report their problems in the same pass.
            Ok(cfg) => return Some(cfg),
            Err(e) => {
                let mut segs = path_segments(e.path());
                let message = e.inner().to_string();
                let message = message.lines().next().unwrap_or("").trim().to_string();
                if let Some(field) = unknown_field(&message) {
                    if segs.last() != Some(&field) {
                        segs.push(field);
                    }
                }
                let shown = display_path(&segs);
                let line = if from_env.contains(&shown) { None } else { span_line(text, root, &segs) };
                let line_label = if from_env.contains(&shown) {
                    format!(" (from env INFLOW__{})", segs.join("__").to_ascii_uppercase())
                } else {
                    String::new()
                };
                out.push(ConfigProblem { path: shown, line, message: format!("{message}{line_label}") });
                if segs.is_empty() || !remove_path(&mut tree, &segs) {
                    return None;
                }
            }
        }
    }
    None
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn path_segments(p: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// `["mailboxes", "0", "tls"]` → `mailboxes[0].tls`.
fn display_path(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if seg.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            s.push_str(&format!("[{seg}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg);
        }
    }
    s
}

/// `mailboxes[0].tls` → `["mailboxes", "0", "tls"]`.
pub(super) fn split_path(p: &str) -> Vec<String> {
    p.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty path")?;
    if rest.is_empty() {
        tree.insert(first.clone(), value);
        return Ok(());
    }
    let entry = tree.entry(first.clone()).or_insert_with(|| {
        if rest[0].chars().all(|c| c.is_ascii_digit()) {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_in_value(entry, rest, value)
}

fn set_in_value(v: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    match v {
        toml::Value::Table(t) => set_path(t, path, value),
        toml::Value::Array(a) => {
            let (idx, rest) = path.split_first().ok_or("empty path")?;
            let i: usize = idx.parse().map_err(|_| format!("'{idx}' is not an index"))?;
            while a.len() <= i {
                a.push(toml::Value::Table(toml::Table::new()));
            }
            if rest.is_empty() {
                a[i] = value;
                Ok(())
            } else {
                set_in_value(&mut a[i], rest, value)
            }
        }
        _ => Err("cannot set a key inside a plain value".into()),
    }
}

fn remove_path(tree: &mut toml::Table, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else { return false };
    if rest.is_empty() {
        return tree.remove(first).is_some();
    }
    match tree.get_mut(first) {
        Some(v) => remove_in_value(v, rest),
        None => false,
    }
}

fn remove_in_value(v: &mut toml::Value, path: &[String]) -> bool {
    match v {
        toml::Value::Table(t) => remove_path(t, path),
        toml::Value::Array(a) => {
            let Some((idx, rest)) = path.split_first() else { return false };
            let Ok(i) = idx.parse::<usize>() else { return false };
            if i >= a.len() {
                return false;
            }
            if rest.is_empty() {
                // Keep indexes stable for later messages: blank the element instead.
                a[i] = toml::Value::Table(toml::Table::new());
                true
            } else {
                remove_in_value(&mut a[i], rest)
            }
        }
        _ => false,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The line of the key at `path` in the source, walking the spanned parse tree.
pub(super) fn span_line(text: &str, root: &toml::de::DeTable<'_>, path: &[String]) -> Option<usize> {
    use toml::de::DeValue;
    let mut table = root;
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut last_span = None;
    for seg in path {
        let item = if let Some(a) = array.take() {
            a.get(seg.parse::<usize>().ok()?)?
        } else {
            let (k, v) = table.get_key_value(seg.as_str())?;
            last_span = Some(k.span());
            v
        };
        if last_span.is_none() {
            last_span = Some(item.span());
        }
        match item.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    last_span.map(|s| line_of(text, s.start))
}
