//! libFuzzer's entry to the `entry_name` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::EntryName` (`tests/src/fuzz/entry_name.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::EntryName.run(data));
