//! Writes every fuzz target's seeds (`par_tests::fuzz`) under a corpus
//! directory, one subdirectory per target, for libFuzzer to start from.
//!
//! Usage: cargo run -p par-tests --example write_corpus -- fuzz/corpus

use std::fs;
use std::path::PathBuf;

use par_tests::fuzz::Target;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    for target in Target::ALL {
        let dir = root.join(target.name());
        fs::create_dir_all(&dir)?;
        for (name, bytes) in target.seeds() {
            fs::write(dir.join(name), bytes)?;
        }
    }
    println!("corpus seeded under {}", root.display());
    Ok(())
}
