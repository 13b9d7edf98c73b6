//! Mail parse and classify: any bytes as a message from an IMAP server. Must never panic;
//! a message it cannot read is an error (quarantined by the caller), never a crash.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = inflow::ingest::mail::parse(data, 1 << 20) {
        // The reply-text cut and the bounce reading ran inside `parse`; touch the results.
        let _ = (m.bounce.as_ref().map(|b| b.recipients.len()), m.complaint.is_some());
    }
});
