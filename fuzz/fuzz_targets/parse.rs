//! Bounce parsing on arbitrary bytes: never panics, is deterministic, and every fact it
//! returns is a clean single-line string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plainbounce::dsn::{self, Detection};
use plainbounce_fuzz::invariants::check_bounce;

fuzz_target!(|data: &[u8]| {
    let detection = dsn::parse(data);
    assert_eq!(detection, dsn::parse(data), "parse is not deterministic");
    if let Detection::Bounce(b) = &detection {
        if let Err(e) = check_bounce(b) {
            panic!("{e}");
        }
    }
});
