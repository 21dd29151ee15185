//! libFuzzer's entry to the `registry` target; the body, and what it
//! checks, is `par_tests::fuzz::Target::Registry` (`tests/src/fuzz/registry.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Registry.run(data));
