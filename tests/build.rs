//! Builds the hostile guest (`tests/hostile-guest`), a component that
//! exports par's world and misbehaves, for `tests/hostile_guest.rs`.

use std::env;
use std::path::PathBuf;

#[path = "../host/build/component.rs"]
mod component;

fn main() {
    let bytes = component::build(
        "par-hostile-guest",
        "par_hostile_guest",
        &["tests/hostile-guest/src", "tests/hostile-guest/Cargo.toml"],
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let path = out_dir.join("par_hostile_guest.wasm");
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("cargo:rustc-env=PAR_HOSTILE_GUEST_WASM={}", path.display());
}
