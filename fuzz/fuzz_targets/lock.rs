//! libFuzzer's entry to the `lock` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::Lock` (`tests/src/fuzz/lock.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::Lock.run(data));
