//! Fetches (once) what install tests need, at the pins in `par_tests::tools`,
//! and prints where it is as JSON, for the Python tests (python/tests) to
//! install from the same wheelhouse with the same uv as the Rust tests.
//!
//! Usage: cargo run -p par-tests --example test_tools -- target/tmp/install-tools

use std::path::PathBuf;

use par_tests::tools;

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/tmp/install-tools".into()),
    );
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let found = serde_json::json!({
        "wheelhouse": tools::wheelhouse(&dir),
        "uv": tools::uv(&dir),
    });
    println!("{found}");
}
