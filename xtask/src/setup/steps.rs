//! The setup steps (docs/ARCHITECTURE.md, toolchain): LLVM 22 headers and libraries, bpf-linker built against them,
//! the nightly toolchain's rust-src (for `-Z build-std=core`), tracefs, and rsvg-convert (the
//! real SVG renderer the timeline tests draw with).
//!
//! Order matters: bpf-linker is built against the LLVM of the first step.

use std::{fs, path::Path, process::Command};

use super::Step;
use crate::run::{Runner, output};

/// rustc's LLVM is 22.x (stable 1.95 and the machines' nightly); bpf-linker must match it.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_CONFIG: &str = "/usr/lib/llvm-22/bin/llvm-config";
/// Pinned like the aya crates: 0.13.0 is the bpf-linker of the aya 0.14 era.
const BPF_LINKER_VERSION: &str = "0.13.0";
const TRACEFS: &str = "/sys/kernel/tracing";

pub fn all() -> [Step; 5] {
    [
        Step {
            name: "llvm-22-dev",
            probe_what: "llvm-config and headers in /usr/lib/llvm-22",
            probe: probe_llvm,
            install_what: "apt-get update && apt-get install -y --no-install-recommends llvm-22-dev",
            install: install_llvm,
            needs_root: true,
        },
        Step {
            name: "bpf-linker",
            probe_what: "`bpf-linker --version`",
            probe: || output("bpf-linker", &["--version"]),
            install_what: "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version =0.13.0 \
                           --locked --no-default-features --features llvm-22",
            install: install_bpf_linker,
            needs_root: false,
        },
        Step {
            name: "rust-src",
            probe_what: "rust-src in `rustup component list --toolchain nightly --installed`",
            probe: probe_rust_src,
            install_what: "rustup component add rust-src --toolchain nightly",
            install: install_rust_src,
            needs_root: false,
        },
        Step {
            name: "tracefs",
            probe_what: "tracefs mounted at /sys/kernel/tracing",
            probe: probe_tracefs,
            install_what: "mount -t tracefs nodev /sys/kernel/tracing",
            install: |runner| {
                runner.run(Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]))
            },
            needs_root: true,
        },
        Step {
            name: "rsvg-convert",
            probe_what: "`rsvg-convert --version`",
            probe: || output("rsvg-convert", &["--version"]),
            install_what: "apt-get install -y librsvg2-bin (after apt-get update)",
            install: install_rsvg,
            needs_root: true,
        },
    ]
}

fn probe_llvm() -> Option<String> {
    let version = output(LLVM_CONFIG, &["--version"])?;
    // llvm-config comes with llvm-22; the headers bpf-linker builds against come with -dev.
    let includedir = output(LLVM_CONFIG, &["--includedir"])?;
    Path::new(&includedir)
        .join("llvm-c/Core.h")
        .exists()
        .then(|| format!("LLVM {version}"))
}

fn install_llvm(runner: &Runner) -> anyhow::Result<()> {
    runner.run(Command::new("apt-get").arg("update"))?;
    runner.run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "llvm-22-dev"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn install_rsvg(runner: &Runner) -> anyhow::Result<()> {
    // A fresh machine may have no package lists yet.
    runner.run(Command::new("apt-get").arg("update"))?;
    runner.run(
        Command::new("apt-get")
            .args(["install", "-y", "librsvg2-bin"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn install_bpf_linker(runner: &Runner) -> anyhow::Result<()> {
    // Without LLVM_PREFIX bpf-linker's build script looks for LLVM in /usr and fails to link.
    runner.run(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version"])
            .arg(format!("={BPF_LINKER_VERSION}"))
            .args(["--locked", "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn probe_rust_src() -> Option<String> {
    let listed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )?;
    if !has_rust_src(&listed) {
        return None;
    }
    output("rustup", &["run", "nightly", "rustc", "--version"])
}

fn install_rust_src(runner: &Runner) -> anyhow::Result<()> {
    if output("rustup", &["run", "nightly", "rustc", "--version"]).is_some() {
        runner.run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
    } else {
        // No nightly at all: install a minimal one with the component in one go.
        runner.run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
    }
}

/// `rustup component list --installed` prints names like `rust-src` (no target suffix).
fn has_rust_src(listed: &str) -> bool {
    listed.lines().any(|line| line.trim() == "rust-src")
}

fn probe_tracefs() -> Option<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    tracefs_mounted(&mounts).then(|| TRACEFS.to_owned())
}

/// `/proc/self/mounts` lines are `source mountpoint fstype options dump pass`.
fn tracefs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracefs_is_found_only_at_its_mount_point() {
        let cases = [
            ("tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n", true),
            ("nodev /sys/kernel/tracing tracefs rw 0 0", true),
            ("sysfs /sys sysfs rw 0 0\n", false),
            ("tracefs /sys/kernel/debug/tracing tracefs rw 0 0", false),
            ("", false),
        ];
        for (mounts, expected) in cases {
            assert_eq!(tracefs_mounted(mounts), expected, "{mounts:?}");
        }
    }

    #[test]
    fn rust_src_is_recognised_in_the_component_list() {
        let listed = "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n";
        assert!(has_rust_src(listed));
        assert!(!has_rust_src("rust-std-x86_64-unknown-linux-gnu\n"));
    }

    #[test]
    fn every_step_says_what_it_checks_and_does() {
        for step in all() {
            assert!(!step.probe_what.is_empty(), "{}", step.name);
            assert!(!step.install_what.is_empty(), "{}", step.name);
        }
    }
}
