//! libFuzzer's entry to the `build_system` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::BuildSystem` (`tests/src/fuzz/build_system.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::BuildSystem.run(data));
