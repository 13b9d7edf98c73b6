//! The dynamic-list criteria parser (`crm::criteria::parse`) on any JSON document, for every
//! member kind a list can have.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for code in [1, 2, 4] {
        if let Some(kind) = inflow::crm::criteria::member_kind(code) {
            let _ = inflow::crm::criteria::parse(kind, &doc);
        }
    }
});
