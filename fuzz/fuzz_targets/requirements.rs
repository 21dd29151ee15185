//! libFuzzer's entry to the `requirements` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Requirements` (`tests/src/fuzz/requirements.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Requirements.run(data));
