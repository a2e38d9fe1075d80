//! `cargo xtask test`: everything CI checks, in the order a failure is cheapest to find. The
//! workspace's own tests come last, so their summary closes the output.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};

use crate::workspace::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip `cargo xtask setup` (the eBPF toolchain must then be present already).
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.no_setup {
        crate::setup::run(&crate::setup::Args::default())?;
    }
    stage("formatting");
    workspace::cargo(&["fmt", "--all", "--check"])?;
    stage("lints");
    workspace::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    stage("build");
    workspace::cargo(&["build", "--workspace", "--all-targets"])?;
    stage("kernels: Debian 11, 12 and 13 under QEMU");
    crate::vm::run(&crate::vm::Args::all_kernels())?;
    stage("packages: the .deb on a clean Debian system");
    crate::dist::run(&crate::dist::Args { test: true })?;
    stage("install and pkg-config");
    pkg_config_smoke()?;
    stage("benchmark smoke");
    crate::bench::run(&crate::bench::Args {
        which: crate::bench::Which::Runtime {
            quick: true,
            requests: 3,
        },
    })?;
    stage("table1 smoke");
    crate::bench::run(&crate::bench::Args {
        which: crate::bench::Which::Table1 { quick: true },
    })?;
    stage("real programs: Debian's memcached and iperf, unpatched and each stage of their patches");
    for program in [crate::real::Program::Memcached, crate::real::Program::Iperf] {
        crate::real::run(&crate::real::Args {
            program,
            refresh: false,
            build_only: true,
            verbose: false,
        })?;
    }
    stage("tests");
    workspace_tests()
}

/// Runs `cargo test --workspace`, echoing its output, and closes with one line that adds up every
/// test binary's result (cargo's own last line is often a doc-test run of zero tests).
fn workspace_tests() -> anyhow::Result<()> {
    let mut child = workspace::cargo_command()
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    ensure!(
        status.success(),
        "`cargo test --workspace` failed ({status})"
    );
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds a libtest summary such as `test result: ok. 7 passed; 0 failed; 1 ignored; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

fn stage(name: &str) {
    println!("==> {name}");
    let _ = std::io::stdout().flush();
}

/// Installs the debug runtime into a scratch prefix, builds the situations program through
/// pkg-config, dynamically and statically, and runs each once: what a C user does.
fn pkg_config_smoke() -> anyhow::Result<()> {
    let prefix = workspace::profile_dir(Profile::Debug).join("qbench-prefix");
    crate::install::install(Profile::Debug, &prefix)?;
    let pc_path = prefix.join("lib/pkgconfig");
    for (label, flags) in [
        ("dynamic", vec!["--cflags", "--libs"]),
        ("static", vec!["--static", "--cflags", "--libs"]),
    ] {
        let out = Command::new("pkg-config")
            .args(&flags)
            .arg("qbench")
            .env("PKG_CONFIG_PATH", &pc_path)
            .output()
            .context("cannot run pkg-config (apt-get install pkg-config)")?;
        ensure!(
            out.status.success(),
            "pkg-config qbench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let flags = String::from_utf8(out.stdout)?;
        let exe = prefix.join(format!("situations-{label}"));
        let mut cc = Command::new("cc");
        cc.args(["-O2", "-Wall", "-Werror"])
            .arg(workspace::root().join("workloads/c/situations.c"))
            .arg("-o")
            .arg(&exe);
        for flag in flags.split_whitespace() {
            // A static build links the archive, not the shared library beside it.
            cc.arg(if label == "static" && flag == "-lqbench" {
                "-l:libqbench.a"
            } else {
                flag
            });
        }
        if label == "dynamic" {
            cc.arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
        }
        let status = cc.status().context("cannot run cc")?;
        ensure!(
            status.success(),
            "cc failed to build the {label} pkg-config program"
        );
        run_once(&exe)?;
        println!("pkg-config: {label} build runs");
    }
    Ok(())
}

/// Starts the situations program, waits for "ready", and asks it to quit.
fn run_once(exe: &Path) -> anyhow::Result<()> {
    let mut child = Command::new(exe)
        .arg("condwait:1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    crate::target::read_ready(&mut child, &exe.display().to_string())?;
    child.stdin.take().context("stdin")?.write_all(b"q")?;
    let status = child.wait()?;
    ensure!(status.success(), "{} did not run: {status}", exe.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_add_up_libtest_summaries() {
        let mut t = Totals::default();
        t.add("test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add("test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        t.add("test a ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 9,
                failed: 3,
                ignored: 1
            }
        );
    }
}
