//! Puts `memory.x` on the linker search path (cortex-m-rt's `link.x` includes it); the defmt
//! image (`--features defmt`) also links defmt's `defmt.x`, which keeps the `.defmt` table
//! out of flash where the host decoder finds it (without it the linker places the section
//! itself and cortex-m-rt's symbols land in it).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
