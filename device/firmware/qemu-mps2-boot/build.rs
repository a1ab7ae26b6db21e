//! Writes memory.x from the memory map in ../qemu-mps2/src/layout.rs (the one source of
//! the addresses): the bootloader is linked at 0, in its own region.
use std::{env, fs, path::PathBuf};

#[allow(dead_code)]
mod layout {
    include!("../qemu-mps2/src/layout.rs");
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let memory = format!(
        "/* Written by build.rs from ../qemu-mps2/src/layout.rs: the bootloader region. */\n\
         MEMORY\n{{\n  FLASH : ORIGIN = {:#010x}, LENGTH = {:#x}\n  RAM   : ORIGIN = {:#010x}, LENGTH = {:#x}\n}}\n",
        layout::BOOT,
        layout::BOOT_LEN,
        layout::RAM,
        layout::RAM_LEN
    );
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=../qemu-mps2/src/layout.rs");
}
