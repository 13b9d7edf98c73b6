//! The mail classifier against Sisimai's public corpus of real bounces, auto-replies and
//! complaint reports (`../shared/corpora/sisimai/`, BSD-licensed, README there). Every file is
//! parsed directly (the corpus reuses Message-IDs, so a mailbox would de-duplicate them) and
//! compared with `expected.json`: failed recipients (recall and precision), hard vs soft,
//! the bounce reason, and that auto-replies, look-alikes, delivery reports and ARF reports are
//! read as what they are. The figures and every miss are printed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use inflow::crm::inbound::ParsedMail;
use inflow::ingest::mail::parse;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/sisimai")
}

/// What the classifier found for one file: per failed recipient (address, hard, reason, and
/// what the reason was read from: status, reply code, diagnostic).
fn found(m: &ParsedMail) -> Vec<(String, bool, String, String)> {
    m.bounce
        .as_ref()
        .map(|b| {
            b.recipients
                .iter()
                .map(|r| {
                    let from = format!(
                        "{} {} {:?}",
                        r.status.as_deref().unwrap_or("-"),
                        r.reply_code.as_deref().unwrap_or("-"),
                        r.diagnostic.as_deref().unwrap_or("")
                    );
                    (r.address.to_lowercase(), r.hard(), r.reason.as_str().to_string(), from)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `Removal-Recipient:` of an opt-out feedback report, lower-cased.
fn removal_recipient(raw: &[u8]) -> Option<String> {
    String::from_utf8_lossy(raw).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("removal-recipient").then(|| v.trim().to_lowercase())
    })
}

#[derive(Default)]
struct Figures {
    truth: usize,
    found: usize,
    hits: usize,
    hard_rows: usize,
    hard_agree: usize,
    reason_rows: usize,
    reason_agree: usize,
    misses: Vec<String>,
}

impl Figures {
    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 { 1.0 } else { a as f64 / b as f64 }
    }
}

#[test]
fn sisimai_corpus_is_read_right() {
    let dir = corpus_dir();
    let expected: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(dir.join("expected.json")).expect("../shared/corpora/sisimai/expected.json"),
    )
    .expect("expected.json");
    assert!(expected.len() >= 600, "the corpus has {} files", expected.len());
    let mut f = Figures::default();
    let mut auto_ok = 0;
    let mut not_bounce_ok = 0;
    let mut delivered_ok = 0;
    let mut arf = (0, 0);
    for (file, exp) in &expected {
        if std::env::var("SISIMAI_ONLY").is_ok_and(|only| &only != file) {
            continue;
        }
        let raw = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let category = exp["category"].as_str().unwrap_or("");
        let parsed = parse(&raw, 1 << 26);
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                f.misses.push(format!("{file}: not parsed: {e}"));
                if category.starts_with("bounce") {
                    f.truth += exp["recipients_computed"].as_array().map_or(0, Vec::len);
                }
                continue;
            }
        };
        let got = found(&m);
        let truth: Vec<String> = exp["recipients_computed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(str::to_lowercase)
            .collect();
        if category.starts_with("bounce") {
            let addrs: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
            if !truth.is_empty() {
                f.truth += truth.len();
                f.found += got.len();
                let hits = truth.iter().filter(|t| addrs.contains(&t.as_str())).count();
                f.hits += hits;
                if hits < truth.len() || got.len() > hits {
                    f.misses.push(format!("{file}: recipients {addrs:?}, expected {truth:?}"));
                }
            } else if got.is_empty() {
                f.misses.push(format!("{file}: no failed recipient found"));
            }
            // Rows: the upstream assertions, else libsisimai's computed rows (reason only).
            let rows = exp["expected"].as_array().filter(|a| !a.is_empty()).cloned();
            let (rows, with_hard) = match rows {
                Some(r) => (r, true),
                None => (exp["computed_by_libsisimai_perl_4_25_15"].as_array().cloned().unwrap_or_default(), false),
            };
            for (i, row) in rows.iter().enumerate() {
                // Pair by address where libsisimai named one, else by position.
                let ours = truth
                    .get(i)
                    .and_then(|t| got.iter().find(|g| &g.0 == t))
                    .or_else(|| got.get(i))
                    .or_else(|| got.first());
                let want_reason = row["reason"].as_str().unwrap_or("");
                f.reason_rows += 1;
                if ours.is_some_and(|o| o.2 == want_reason) {
                    f.reason_agree += 1;
                } else {
                    f.misses.push(format!(
                        "{file}: reason {:?}, expected {want_reason} ({} {}); read from {}",
                        ours.map(|o| o.2.as_str()),
                        row["status"],
                        row["replycode"],
                        ours.map_or("nothing", |o| o.3.as_str())
                    ));
                }
                if with_hard {
                    let want_hard = row["hardbounce"].as_bool().unwrap_or(false);
                    f.hard_rows += 1;
                    if ours.is_some_and(|o| o.1 == want_hard) {
                        f.hard_agree += 1;
                    } else {
                        f.misses.push(format!("{file}: hard {:?}, expected {want_hard}", ours.map(|o| o.1)));
                    }
                }
            }
        } else if category == "auto-reply" {
            if m.bounce.is_none() && m.complaint.is_none() && m.automated.as_ref().is_some_and(|a| a.is_auto_reply()) {
                auto_ok += 1;
            } else {
                f.misses
                    .push(format!("{file}: not read as an auto-reply: bounce {:?}, automated {:?}", got, m.automated));
            }
        } else if category == "not-a-bounce" {
            if got.is_empty() && m.complaint.is_none() {
                not_bounce_ok += 1;
            } else {
                f.misses.push(format!("{file}: a look-alike read as a bounce: {got:?}"));
            }
        } else if category == "delivery-success-report" {
            if got.iter().all(|g| !g.1) && m.bounce.as_ref().is_none_or(|b| b.recipients.iter().all(|r| !r.hard())) {
                delivered_ok += 1;
            } else {
                f.misses.push(format!("{file}: a delivery report would suppress: {got:?}"));
            }
        } else if category.starts_with("complaint") {
            arf.1 += 1;
            match &m.complaint {
                Some(c) if c.address.as_deref().is_some_and(|a| truth.iter().any(|t| t.eq_ignore_ascii_case(a))) => {
                    arf.0 += 1
                }
                // Sisimai's placeholder for a report that names nobody: naming nobody is right,
                // and so is the address an opt-out report names in its own Removal-Recipient
                // field (arf-12), which Sisimai does not read.
                Some(c)
                    if truth.iter().all(|t| t.ends_with(".invalid"))
                        && c.address.as_deref().is_none_or(|a| removal_recipient(&raw).as_deref() == Some(a)) =>
                {
                    arf.0 += 1
                }
                other => f.misses.push(format!("{file}: complaint {other:?}, expected {truth:?}")),
            }
        }
    }
    let recall = Figures::ratio(f.hits, f.truth);
    let precision = Figures::ratio(f.hits, f.found);
    let hard = Figures::ratio(f.hard_agree, f.hard_rows);
    let reason = Figures::ratio(f.reason_agree, f.reason_rows);
    println!("misses ({}):", f.misses.len());
    for m in &f.misses {
        println!("  {m}");
    }
    println!(
        "sisimai corpus: recipients recall {recall:.3} ({}/{}), precision {precision:.3} ({}/{}); hard/soft \
            {hard:.3} ({}/{}); reason {reason:.3} ({}/{}); \
         auto-replies {auto_ok}/5; look-alikes {not_bounce_ok}/3; delivery reports {delivered_ok}/3; ARF {}/{}",
        f.hits, f.truth, f.hits, f.found, f.hard_agree, f.hard_rows, f.reason_agree, f.reason_rows, arf.0, arf.1
    );
    // Issue 16's targets. The misses above are the work list; where inflow deliberately
    // differs from Sisimai (the address written to is kept beside the Final-Recipient, see
    // `FailedRecipient::mailed_as`), the miss is the address Sisimai names.
    assert!(recall >= 0.98, "recall {recall:.3}");
    assert!(precision >= 0.99, "precision {precision:.3}");
    assert!(hard >= 0.97, "hard/soft agreement {hard:.3}");
    assert!(reason >= 0.90, "reason agreement {reason:.3}");
    assert_eq!(auto_ok, 5, "rfc3834-01..05 are auto-replies");
    assert_eq!(not_bounce_ok, 3, "not-bounce/ files are no bounces");
    assert_eq!(delivered_ok, 3, "delivery reports suppress nobody");
    assert_eq!(arf.0, arf.1, "ARF reports are complaints naming the complaining recipient");
}
