//! Debian's own cloud kernels, fetched with a private apt configuration (the machine's apt
//! sources, lists and caches are left alone) and kept per suite in a cache that `cargo clean`
//! does not touch: a second run downloads nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, ensure};

use crate::debian::{Cache, KEYRING, MIRROR, PrivateApt, SECURITY_MIRROR};
use crate::run::Runner;

/// Where kernels are kept, a directory per suite.
const CACHE: Cache = Cache {
    var: "QBENCH_VM_CACHE",
    default: "/var/cache/qbench-vm",
    what: "kernel cache",
};
/// The metapackage whose dependency names the suite's current cloud kernel.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// What qbench-trace and the guest need built into the kernel: a module would have to be loaded
/// from the initramfs, and none of the cloud kernels needs that.
const BUILT_IN: [&str; 11] = [
    "CONFIG_BPF_SYSCALL",
    "CONFIG_BPF_JIT",
    "CONFIG_BPF_EVENTS",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_UPROBES",
    "CONFIG_UPROBE_EVENTS",
    "CONFIG_FTRACE_SYSCALLS",
    "CONFIG_TRACING",
    "CONFIG_DEVTMPFS",
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_SERIAL_8250_CONSOLE",
];

/// A kernel of the matrix: a Debian release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Debian 11 (bullseye).
    V5_10,
    /// Debian 12 (bookworm).
    V6_1,
    /// Debian 13 (trixie).
    V6_12,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12];

    pub fn label(self) -> &'static str {
        match self {
            Kernel::V5_10 => "5.10",
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }

    pub fn suite(self) -> &'static str {
        match self {
            Kernel::V5_10 => "bullseye",
            Kernel::V6_1 => "bookworm",
            Kernel::V6_12 => "trixie",
        }
    }
}

/// A fetched kernel: its image and the package it came from.
#[derive(Debug)]
pub struct Fetched {
    pub vmlinuz: PathBuf,
    pub package: String,
}

/// The kernel of `kernel`'s suite, from the cache, or downloaded into it (`refresh`: resolve
/// and download again even when cached).
pub fn fetch(kernel: Kernel, refresh: bool, verbose: bool) -> anyhow::Result<Fetched> {
    let dir = CACHE.root().join(kernel.suite());
    let (vmlinuz, package_file) = (dir.join("vmlinuz"), dir.join("package"));
    if !refresh && vmlinuz.exists() {
        let package = fs::read_to_string(&package_file).unwrap_or_default();
        println!(
            "vm-test: {}: cached {} ({})",
            kernel.label(),
            package.trim(),
            vmlinuz.display()
        );
        return Ok(Fetched {
            vmlinuz,
            package: package.trim().to_owned(),
        });
    }
    CACHE.create(&dir)?;
    let started = Instant::now();
    let runner = Runner::new(verbose, &format!("vm-{}", kernel.suite()))?;
    let package = download(kernel, &dir, &runner)?;
    println!(
        "vm-test: {}: downloaded {package} in {:.1} s",
        kernel.label(),
        started.elapsed().as_secs_f64()
    );
    fs::write(&package_file, format!("{package}\n"))?;
    Ok(Fetched { vmlinuz, package })
}

/// apt-get update in the suite's private apt state, the metapackage's dependency resolved to the
/// real package, apt-get download, and its kernel image (and config, checked) extracted. The
/// apt state and the package are removed afterwards: only the image is kept.
fn download(kernel: Kernel, dir: &Path, runner: &Runner) -> anyhow::Result<String> {
    let apt = PrivateApt::create(dir.join("apt"), &sources_list(kernel.suite()))?;
    println!(
        "vm-test: {}: apt-get update ({} and {}-security, private apt state in {})",
        kernel.label(),
        kernel.suite(),
        kernel.suite(),
        apt.dir.display()
    );
    apt.update(runner)?;
    let depends = apt
        .command("apt-cache")
        .args(["depends", METAPACKAGE])
        .output()
        .context("cannot run apt-cache")?;
    let depends = String::from_utf8_lossy(&depends.stdout);
    let package = kernel_package(&depends).with_context(|| {
        format!(
            "{METAPACKAGE} in {} names no kernel package: {depends}",
            kernel.suite()
        )
    })?;
    println!("vm-test: {}: apt-get download {package}", kernel.label());
    let work = dir.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    runner.run(
        apt.command("apt-get")
            .args(["-q", "download", &package])
            .current_dir(&work),
    )?;
    let deb = fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = work.join("root");
    runner.run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let release = package.trim_start_matches("linux-image-");
    let config = fs::read_to_string(root.join(format!("boot/config-{release}")))
        .with_context(|| format!("{package} has no boot/config-{release}"))?;
    let missing = not_built_in(&config);
    ensure!(
        missing.is_empty(),
        "{package} does not have {} built in (the initramfs loads no modules)",
        missing.join(", ")
    );
    let tmp = dir.join("vmlinuz.tmp");
    fs::copy(root.join(format!("boot/vmlinuz-{release}")), &tmp)
        .with_context(|| format!("{package} has no boot/vmlinuz-{release}"))?;
    fs::rename(&tmp, dir.join("vmlinuz"))?;
    fs::remove_dir_all(&work)?;
    fs::remove_dir_all(&apt.dir)?;
    Ok(package)
}

/// The suite and its security updates (where the kernel's point releases land first), each
/// checked with Debian's archive keyring.
fn sources_list(suite: &str) -> String {
    format!(
        "deb [signed-by={KEYRING}] {MIRROR} {suite} main\n\
         deb [signed-by={KEYRING}] {SECURITY_MIRROR} {suite}-security main\n"
    )
}

/// The first `Depends:` of `apt-cache depends` output: the versioned kernel package the
/// metapackage pulls in (`linux-image-6.1.0-57-cloud-amd64`).
fn kernel_package(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .map(str::to_owned)
}

/// The options of [`BUILT_IN`] that the kernel config does not set to `y`.
fn not_built_in(config: &str) -> Vec<&'static str> {
    BUILT_IN
        .into_iter()
        .filter(|option| {
            !config
                .lines()
                .any(|l| l.strip_prefix(option).and_then(|r| r.strip_prefix('=')) == Some("y"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metapackage_dependency_is_the_kernel_package() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.12.118+deb13-cloud-amd64\n";
        assert_eq!(
            kernel_package(out).as_deref(),
            Some("linux-image-6.12.118+deb13-cloud-amd64")
        );
        assert_eq!(kernel_package("linux-image-cloud-amd64\n"), None);
        assert_eq!(
            kernel_package("x\n  Depends: <linux-image-virtual>\n"),
            None
        );
    }

    #[test]
    fn options_not_set_to_y_are_named() {
        let all: String = BUILT_IN.iter().map(|o| format!("{o}=y\n")).collect();
        assert!(not_built_in(&all).is_empty());
        let config = all
            .replace("CONFIG_UPROBES=y", "CONFIG_UPROBES=m")
            .replace("CONFIG_TRACING=y\n", "# CONFIG_TRACING is not set\n");
        assert_eq!(not_built_in(&config), ["CONFIG_UPROBES", "CONFIG_TRACING"]);
        // A longer option with the same prefix is not the option.
        let config = all.replace("CONFIG_BPF_JIT=y", "CONFIG_BPF_JIT_DEFAULT_ON=y");
        assert_eq!(not_built_in(&config), ["CONFIG_BPF_JIT"]);
    }

    #[test]
    fn the_sources_are_the_suite_and_its_security_updates() {
        let sources = sources_list("bullseye");
        assert!(
            sources.contains(" bullseye main\n") && sources.contains(" bullseye-security main\n")
        );
        assert!(sources.lines().all(|l| l.contains(KEYRING)));
    }
}
