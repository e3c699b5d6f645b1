//! Builds `faultio/faultio.c` into the shared library the `disk` nemesis
//! preloads into nodes; the binary carries it (`include_bytes!`) and writes
//! it into each run's directory.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "faultio/faultio.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libfaultio.so");
    let compiler = cc::Build::new().get_compiler();
    let status = Command::new(compiler.path())
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(src)
        .arg("-ldl")
        .status()
        .expect("running the C compiler for faultio");
    assert!(status.success(), "compiling {src} failed");
}
