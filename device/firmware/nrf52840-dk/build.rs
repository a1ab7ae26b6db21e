//! Puts the memory layout where the linker finds it as memory.x: `layout/standalone.x`
//! (the image alone from address 0), or with the feature `boot` `layout/boot.x` (the
//! image in the A/B bootloader's active slot). Neither is called memory.x in the crate
//! root: the linker would find that one first, whatever the feature.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let layout = if env::var_os("CARGO_FEATURE_BOOT").is_some() {
        "layout/boot.x"
    } else {
        "layout/standalone.x"
    };
    fs::copy(layout, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=layout/standalone.x");
    println!("cargo:rerun-if-changed=layout/boot.x");
}
