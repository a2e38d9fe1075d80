//! `cargo xtask dist`: packages for servers without a toolchain, in target/dist/:
//! `qbench_<version>_amd64.deb`, `qbench-dbgsym_<version>_amd64.deb` (the detached debug
//! information), and the same trees as `qbench-<version>-x86_64-linux.tar.gz` and
//! `qbench-dbgsym-<version>-x86_64-linux.tar.gz`. `--test` then installs the .deb on a clean
//! Debian system and observes a real program with it.

mod check;
mod chroot;
mod cmd;
mod deb;
pub mod layout;
mod stage;
mod tarball;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};

use crate::workspace::{self, Profile};
use layout::Names;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Then install the .deb into a clean Debian bookworm chroot (bootstrapped once, cached in
    /// /var/cache/qbench-dist) and check that it works there (root).
    #[arg(long)]
    pub test: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let names = Names::new(env!("CARGO_PKG_VERSION"));
    for tool in ["dpkg-deb", "objcopy", "strip", "gzip", "tar", "md5sum"] {
        ensure!(
            cmd::available(tool),
            "{tool} is not installed: apt-get install dpkg binutils gzip tar coreutils"
        );
    }
    // Separately, as `cargo xtask install` and a plain build of each do: built together, cargo
    // would unify the features of their shared dependencies and link a larger runtime.
    workspace::cargo(&["build", "--release", "-p", "qbench-runtime"])?;
    workspace::cargo(&["build", "--release", "-p", "qbench-user"])?;
    let built = workspace::profile_dir(Profile::Release);
    let trace = built.join("qbench-trace");
    let binary =
        std::fs::read(&trace).with_context(|| format!("cannot read {}", trace.display()))?;
    ensure!(
        layout::embeds_ebpf_object(&binary),
        "{} was built without its eBPF programs (no eBPF toolchain): run `cargo xtask setup`, \
         then `cargo xtask dist` again",
        trace.display()
    );
    let dist = built
        .parent()
        .context("the profile directory has no parent")?
        .join("dist");
    std::fs::create_dir_all(&dist).with_context(|| format!("cannot create {}", dist.display()))?;
    let man_page = man_page(&built, &dist)?;
    let staged = stage::stage(&names, &built, &man_page, &dist)?;
    let deb = deb::build_main(&names, &staged.root, &dist)?;
    let dbgsym = deb::build_dbgsym(&names, &staged.debug_root, &dist)?;
    let members = ["usr", "lib/systemd/system/qbench-trace.service"];
    let tarball = tarball::build(&staged.root, &members, &dist.join(names.tarball()))?;
    let debug_tarball = tarball::build(
        &staged.debug_root,
        &["usr"],
        &dist.join(names.debug_tarball()),
    )?;
    deb::lint(&deb)?;
    report_sizes(&staged.sizes);
    for artifact in [&deb, &dbgsym, &tarball, &debug_tarball] {
        println!(
            "dist: {} ({})",
            artifact.display(),
            human(stage::size(artifact)?)
        );
    }
    if args.test {
        check::run(&names, &deb, &dist)?;
    }
    Ok(())
}

/// qbench-trace.8, written by the qbench-user example that renders its clap definition.
fn man_page(built: &Path, dist: &Path) -> anyhow::Result<PathBuf> {
    workspace::cargo(&[
        "build",
        "--release",
        "-p",
        "qbench-user",
        "--example",
        "qbench-trace-man",
    ])?;
    let dir = dist.join("man");
    std::fs::create_dir_all(&dir)?;
    cmd::run(Command::new(built.join("examples/qbench-trace-man")).arg(&dir))?;
    Ok(dir.join("qbench-trace.8"))
}

fn report_sizes(sizes: &[stage::Stripped]) {
    for file in sizes {
        let debug = file
            .debug
            .map(|size| format!(", debug file {}", human(size)))
            .unwrap_or_default();
        println!(
            "dist: {}: {} before stripping, {} after{debug}",
            file.path,
            human(file.before),
            human(file.after)
        );
    }
}

/// Bytes in KiB or MiB, one decimal.
fn human(bytes: u64) -> String {
    let bytes = bytes as f64;
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}
