//! libFuzzer's entry to the `archive` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Archive` (`tests/src/fuzz/archive.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Archive.run(data));
