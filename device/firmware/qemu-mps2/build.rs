//! Writes memory.x from the memory map in src/layout.rs (the one source of the
//! addresses): the application is linked into the active slot without its trailer page.
use std::{env, fs, path::PathBuf};

#[allow(dead_code)]
mod layout {
    include!("src/layout.rs");
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let memory = format!(
        "/* Written by build.rs from src/layout.rs: the active slot without its trailer. */\n\
         MEMORY\n{{\n  FLASH : ORIGIN = {:#010x}, LENGTH = {:#x}\n  RAM   : ORIGIN = {:#010x}, LENGTH = {:#x}\n}}\n",
        layout::ACTIVE,
        layout::IMAGE_LEN,
        layout::RAM,
        layout::RAM_LEN
    );
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=src/layout.rs");
    println!("cargo:rerun-if-env-changed=THECAL_FW_BUILD");
    println!("cargo:rerun-if-env-changed=THECAL_FW_SELF_TEST");
}
