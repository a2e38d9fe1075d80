//! `cargo xtask install`: the runtime as a C library: lib/libqbench.so, lib/libqbench.a,
//! include/qbench.h and lib/pkgconfig/qbench.pc under a prefix.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::workspace::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to install.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Install the debug build instead of the release build.
    #[arg(long)]
    pub debug: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    let mut build = vec!["build", "-p", "qbench-runtime"];
    if profile == Profile::Release {
        build.push("--release");
    }
    workspace::cargo(&build)?;
    install(profile, &args.prefix)
}

/// Copies an already built runtime of `profile` under `prefix`.
pub fn install(profile: Profile, prefix: &Path) -> anyhow::Result<()> {
    let built = workspace::profile_dir(profile);
    let root = workspace::root();
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for dir in [&lib, &include, &pkgconfig] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for name in ["libqbench.so", "libqbench.a"] {
        copy(&built.join(name), &lib.join(name))?;
    }
    copy(
        &root.join("qbench-runtime/include/qbench.h"),
        &include.join("qbench.h"),
    )?;
    let template = std::fs::read_to_string(root.join("qbench-runtime/qbench.pc.in"))?;
    let absolute = std::path::absolute(prefix)?;
    let pc = template
        .replace("@PREFIX@", &absolute.display().to_string())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    let pc_path = pkgconfig.join("qbench.pc");
    std::fs::write(&pc_path, pc).with_context(|| format!("cannot write {}", pc_path.display()))?;
    println!(
        "install: libqbench.so, libqbench.a, qbench.h, qbench.pc under {}",
        absolute.display()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    // Remove first: overwriting a shared library a running program maps would corrupt it.
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}
