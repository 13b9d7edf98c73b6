//! The layers point one way (DESIGN; issue 21): `crm/` is pure and uses no I/O module;
//! `store/` (the SQL) uses the core but none of the channels above it. A `use` that breaks
//! this fails here, naming the file and the line.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of the files under `src/<layer>` that name any of `forbidden` as `crate::<module>`
/// (or in a `use crate::{…}` group).
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let grouped = code.contains("crate::{");
            for m in forbidden {
                let direct = code.contains(&format!("crate::{m}::")) || code.contains(&format!("crate::{m};"));
                let in_group = grouped
                    && code
                        .split("crate::{")
                        .nth(1)
                        .is_some_and(|g| g.split([',', '}', ' ']).any(|w| w == *m || w.starts_with(&format!("{m}::"))));
                if direct || in_group {
                    out.push(format!(
                        "{}:{}: uses {m}: {}",
                        f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_core_uses_no_io_layer() {
    let v = violations(
        "crm",
        &[
            "ingest",
            "store",
            "http",
            "waves",
            "alerts",
            "app",
            "import",
            "cli",
            "jobs",
            "metrics",
            "telemetry",
            "config",
        ],
    );
    assert!(v.is_empty(), "crm/ must stay pure:\n{}", v.join("\n"));
}

#[test]
fn the_store_uses_no_channel() {
    let v = violations("store", &["ingest", "http", "waves", "alerts", "app", "import", "cli", "metrics", "telemetry"]);
    assert!(v.is_empty(), "store/ is below the channels:\n{}", v.join("\n"));
}

#[test]
fn the_check_sees_a_violation() {
    // The scan itself: a layer that does use one of these is reported.
    let v = violations("http", &["store"]);
    assert!(!v.is_empty(), "http/ uses the store; the scan must see it");
}

/// Every line of the Rust sources fits rustfmt's `max_width` (issue 21 item 3). rustfmt
/// leaves string literals, comments and macro bodies alone and lets a statement that holds
/// one overflow silently; this check is what keeps SQL, JSON schemas and doc comments
/// readable in a review. Break a long string with `\` at the end of a line (the escape
/// swallows the newline and the next line's indentation), or `concat!` for a raw string.
#[test]
fn no_source_line_is_wider_than_max_width() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("rustfmt.toml")).unwrap();
    let max: usize = config
        .lines()
        .find_map(|l| l.strip_prefix("max_width"))
        .and_then(|v| v.trim_start_matches([' ', '=']).trim().parse().ok())
        .expect("rustfmt.toml sets max_width");
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples", "fuzz/fuzz_targets"] {
        rust_files(&root.join(dir), &mut files);
    }
    let wide: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.chars().count() > max)
                .map(|(i, l)| {
                    format!("{}:{}: {} characters", f.strip_prefix(root).unwrap().display(), i + 1, l.chars().count())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(wide.is_empty(), "{} lines are wider than {max}:\n{}", wide.len(), wide.join("\n"));
}
