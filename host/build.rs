//! Builds the guest component (`wasm32-wasip2`) so a plain `cargo build` of the
//! host is all anyone has to run. The resulting component is embedded in the
//! host with `include_bytes!`, and its SHA-256 keys the cache of compiled code.

use std::env;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

#[path = "build/component.rs"]
mod component;

fn main() {
    let bytes = component::build("par-guest", "par_guest", &["guest/src", "guest/Cargo.toml", "rules"]);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("par_guest.wasm");
    std::fs::write(&embedded, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", embedded.display()));
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=PAR_GUEST_WASM={}", embedded.display());
    println!("cargo:rustc-env=PAR_GUEST_SHA256={hex}");
}
