//! Link settings of libqbench.so.

use std::path::{Path, PathBuf};

fn main() {
    // The helper thread runs the library's code for the life of the process: unloading it with
    // dlclose would pull that code from under the thread.
    println!("cargo::rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // The soname carries the major version, as installed libraries do (libqbench.so.0): a program
    // linked against it records that name and loads only an ABI-compatible library.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
    let soname = format!("libqbench.so.{major}");
    println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    dev_symlink(&soname);
    println!("cargo::rerun-if-changed=build.rs");
}

/// Programs linked against target/<profile>/libqbench.so record the soname, so the loader looks
/// for `libqbench.so.N` next to it (their RUNPATH): a symlink to the library cargo writes there,
/// as an installed library's `libqbench.so.N` is.
fn dev_symlink(soname: &str) {
    let Some(profile_dir) = profile_dir() else {
        println!(
            "cargo::warning=unexpected OUT_DIR layout: no {soname} symlink in the profile dir"
        );
        return;
    };
    let link = profile_dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|target| target == Path::new("libqbench.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(err) = std::os::unix::fs::symlink("libqbench.so", &link) {
        println!("cargo::warning=cannot create {}: {err}", link.display());
    }
}

/// target/<profile>: OUT_DIR is target/<profile>/build/qbench-runtime-<hash>/out.
fn profile_dir() -> Option<PathBuf> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let build = out_dir.parent()?.parent()?;
    (build.file_name()? == "build").then(|| build.parent().map(Path::to_path_buf))?
}
