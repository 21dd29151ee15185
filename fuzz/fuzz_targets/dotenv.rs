//! libFuzzer's entry to the `dotenv` target; the body, and what it checks,
//! is `par_tests::fuzz::Target::DotEnv` (`tests/src/fuzz/dotenv.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use par_tests::fuzz::Target;

fuzz_target!(|data: &[u8]| Target::DotEnv.run(data));
