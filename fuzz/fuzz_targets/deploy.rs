//! libFuzzer's entry to the `deploy` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Deploy` (`tests/src/fuzz/deploy.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Deploy.run(data));
