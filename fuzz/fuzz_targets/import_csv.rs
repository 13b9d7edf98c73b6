//! The CSV lead import (`inflow import`) on any bytes, in each encoding mode.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use inflow::import::{parse, Encoding};
    for enc in [Encoding::Auto, Encoding::Utf8, Encoding::Windows1251] {
        let _ = parse(data, enc, &std::collections::BTreeMap::new(), "Imported");
    }
});
