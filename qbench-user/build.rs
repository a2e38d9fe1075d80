//! Builds qbench's eBPF object (the `qbench-ebpf` crate, for `bpfel-unknown-none`) with aya-build,
//! into `$OUT_DIR/qbench`, where the loader includes it.
//!
//! The build degrades (docs/ARCHITECTURE.md, the build degrades): without the eBPF toolchain (bpf-linker on `PATH`, the
//! `nightly` toolchain with rust-src) it warns, writes an empty stub object and sets
//! `cfg(qbench_ebpf_stub)`, so that check, clippy and the unit tests still build; the loader then
//! says that eBPF was not built. `QBENCH_EBPF_STUB=1` forces the stub.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use aya_build::{Package, Toolchain};

/// The bin target of qbench-ebpf; aya-build copies it to `$OUT_DIR/<bin name>`.
const OBJECT: &str = "qbench";
const STUB_CFG: &str = "qbench_ebpf_stub";

fn main() -> aya_build::Result<()> {
    println!("cargo::rustc-check-cfg=cfg({STUB_CFG})");
    println!("cargo::rerun-if-env-changed=QBENCH_EBPF_STUB");
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo::rerun-if-env-changed=PATH");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| err("OUT_DIR not set"))?);
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| err("no workspace dir"))?;

    let linker = match find_toolchain() {
        Ok(linker) => linker,
        Err(reason) => return stub(&out_dir, &reason),
    };

    // aya-build watches qbench-ebpf's directory; the wire types and the linker matter too.
    println!(
        "cargo::rerun-if-changed={}",
        workspace.join("qbench-common").display()
    );
    println!("cargo::rerun-if-changed={}", linker.display());
    let ebpf_dir = workspace.join("qbench-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| err("non-UTF-8 workspace path"))?;
    let package = Package {
        name: "qbench-ebpf",
        root_dir,
        ..Default::default()
    };
    // aya-build replays every stderr line of the nested cargo as a cargo warning, and cargo
    // replays those on every later build: keep the nested cargo quiet so that only compiler
    // diagnostics and errors come through.
    // SAFETY: the build script is single-threaded here; no other thread reads the environment.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf([package], Toolchain::Nightly)
}

/// The bpf-linker to build with, or why the eBPF build cannot run here.
fn find_toolchain() -> Result<PathBuf, String> {
    if env::var_os("QBENCH_EBPF_STUB").is_some_and(|v| v == "1") {
        return Err("QBENCH_EBPF_STUB=1".to_owned());
    }
    // aya-build itself would skip, leaving no object to include.
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err("AYA_BUILD_SKIP is set".to_owned());
    }
    let linker = find_on_path("bpf-linker").ok_or("bpf-linker is not on PATH")?;
    let sysroot = nightly_sysroot().ok_or("no `nightly` toolchain")?;
    if !has_rust_src(&sysroot) {
        return Err("the nightly toolchain lacks rust-src".to_owned());
    }
    Ok(linker)
}

/// Writes the empty stub object and sets the cfg that tells the loader.
fn stub(out_dir: &Path, reason: &str) -> aya_build::Result<()> {
    println!(
        "cargo::warning=eBPF programs not built ({reason}); qbench-trace will not work: \
         run `cargo xtask setup`"
    );
    // Rebuild for real once `cargo xtask setup` has installed bpf-linker or rust-src.
    for dir in [
        cargo_bin_dir(),
        nightly_sysroot().map(|s| s.join("lib/rustlib")),
    ]
    .into_iter()
    .flatten()
    .filter(|dir| dir.is_dir())
    {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    fs::write(out_dir.join(OBJECT), [])?;
    println!("cargo::rustc-cfg={STUB_CFG}");
    Ok(())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The sysroot of rustup's `nightly` toolchain, which aya-build compiles the programs with.
fn nightly_sysroot() -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| PathBuf::from(sysroot.trim()))
}

/// `-Z build-std=core` needs the standard library's sources.
fn has_rust_src(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

/// Where `cargo install` (and so `cargo xtask setup`) puts bpf-linker.
fn cargo_bin_dir() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"))
}

fn err(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_owned())
}
