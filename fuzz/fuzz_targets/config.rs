//! The config loader on any text: a bad file is a clear error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = inflow::config::Config::load(
        inflow::config::Source::Text { name: "fuzz", text },
        &std::collections::BTreeMap::new(),
    );
});
