//! Prints what inflow reads in .eml files: class, bounce recipients with reasons, complaint,
//! auto-reply, the new text. `cargo run --example classify_mail -- FILE.eml…`
fn main() {
    for path in std::env::args().skip(1) {
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match inflow::ingest::mail::parse(&raw, 1 << 26) {
            Ok(m) => {
                println!(
                    "== {path}\nfrom {:?} subject {:?}\nautomated {:?}\ncomplaint {:?}",
                    m.from, m.subject, m.automated, m.complaint
                );
                if let Some(b) = &m.bounce {
                    println!("bounce {} original {:?} {:?}", b.shape, b.original_message_id, b.original_activity);
                    for r in &b.recipients {
                        println!(
                            "  {} {} {:?} status {:?} reply {:?} diag {:?}",
                            r.address,
                            r.reason.as_str(),
                            r.severity,
                            r.status,
                            r.reply_code,
                            r.diagnostic
                        );
                    }
                }
                println!("new text: {:?}", m.new_text.chars().take(200).collect::<String>());
            }
            Err(e) => println!("== {path}\nnot parsed: {e}"),
        }
    }
}
