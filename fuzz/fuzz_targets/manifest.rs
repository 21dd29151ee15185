//! libFuzzer's entry to the `manifest` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Manifest` (`tests/src/fuzz/manifest.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Manifest.run(data));
