//! libFuzzer's entry to the `component` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Component` (`tests/src/fuzz/component.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Component.run(data));
