//! `cargo xtask vm-test`: qbench-trace on the kernels of Debian 11, 12 and 13 (5.10, 6.1,
//! 6.12). Each of Debian's cloud kernels boots under QEMU with an initramfs holding the release
//! build of qbench-trace and the target programs; its /init (`init.sh`) runs the checks and
//! prints one result line per check on the serial console, read back into a table of kernels ×
//! checks.
//!
//! Exit: 0 every check passed on every kernel; 1 any check failed or did not run, or a step
//! could not be done.

mod host;
mod initramfs;
mod kernels;
mod qemu;
mod results;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::workspace::{self, Profile};
pub use kernels::Kernel;
use results::Console;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kernel to test: 5.10 (Debian 11), 6.1 (Debian 12), 6.12 (Debian 13), or all.
    #[arg(long, value_name = "5.10|6.1|6.12|all", default_value = "all", value_parser = parse_kernels)]
    pub kernel: KernelChoice,
    /// Seconds each kernel may run (boot and every check) before QEMU is killed.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Resolve and download the kernels again even when cached.
    #[arg(long)]
    pub refresh: bool,
    /// Skip `cargo xtask setup` (the eBPF toolchain must then be present already).
    #[arg(long)]
    pub no_setup: bool,
    /// Show the output of apt commands instead of writing it to a log file.
    #[arg(short, long)]
    pub verbose: bool,
}

/// The kernels a run covers.
#[derive(Debug, Clone)]
pub struct KernelChoice(pub Vec<Kernel>);

fn parse_kernels(value: &str) -> Result<KernelChoice, String> {
    if value == "all" {
        return Ok(KernelChoice(Kernel::ALL.to_vec()));
    }
    Kernel::ALL
        .into_iter()
        .find(|k| k.label() == value)
        .map(|k| KernelChoice(vec![k]))
        .ok_or_else(|| format!("{value:?} is not a tested kernel: use 5.10, 6.1, 6.12 or all"))
}

impl Args {
    /// Every kernel, as `cargo xtask test` runs them (after its own setup).
    pub fn all_kernels() -> Args {
        Args {
            kernel: KernelChoice(Kernel::ALL.to_vec()),
            timeout: 300,
            refresh: false,
            no_setup: true,
            verbose: false,
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.no_setup {
        crate::setup::run(&crate::setup::Args::default())?;
    }
    host::ensure_tools(args.verbose)?;
    let started = Instant::now();
    let mut images = Vec::new();
    for &kernel in &args.kernel.0 {
        images.push((kernel, kernels::fetch(kernel, args.refresh, args.verbose)?));
    }
    println!(
        "vm-test: kernels ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // target/vm-test, beside target/release.
    let release = workspace::profile_dir(Profile::Release);
    let out_dir = release.parent().unwrap_or(&release).join("vm-test");
    std::fs::create_dir_all(&out_dir)?;
    let programs = build_programs()?;
    let initrd = out_dir.join("initramfs.cpio");
    initramfs::build(&out_dir.join("initramfs"), &programs, &initrd)?;
    let kvm = host::kvm_usable();
    println!(
        "vm-test: initramfs {} ({} MiB); accelerator: {}",
        initrd.display(),
        std::fs::metadata(&initrd)?.len() >> 20,
        if kvm { "KVM" } else { "TCG (no usable KVM)" }
    );
    let mut columns = Vec::new();
    for (kernel, image) in &images {
        let log = out_dir.join(format!("{}.log", kernel.label()));
        println!(
            "vm-test: {}: booting {} (console: {})",
            kernel.label(),
            image.package,
            log.display()
        );
        let cmd = qemu::command(&image.vmlinuz, &initrd, kvm);
        let boot = qemu::boot(cmd, &log, Duration::from_secs(args.timeout))?;
        let text = String::from_utf8_lossy(&std::fs::read(&log)?).into_owned();
        let console = results::parse(&text);
        report_kernel(kernel.label(), &boot, &console, &text, args.timeout);
        columns.push((kernel.label().to_owned(), console));
    }
    println!("\n{}\n", results::table(&columns));
    let (missed, total) = tally(&columns);
    println!(
        "vm-test: {} kernel(s) in {:.1} s",
        columns.len(),
        started.elapsed().as_secs_f64()
    );
    if missed > 0 {
        bail!(
            "vm-test: {missed} of {total} checks failed or did not run (consoles in {})",
            out_dir.display()
        );
    }
    Ok(())
}

/// At most this many console lines are shown for a failed check.
const SHOWN_LINES: usize = 40;

/// Prints how one kernel went: its time, each failed check with its detail and the console
/// lines that explain it, or the end of the console when the guest did not finish.
fn report_kernel(label: &str, boot: &qemu::Boot, console: &Console, log: &str, timeout: u64) {
    let release = console.release.as_deref().unwrap_or("did not boot");
    println!(
        "vm-test: {label}: {release}: {:.1} s{}",
        boot.elapsed.as_secs_f64(),
        if boot.timed_out {
            format!(" (killed after {timeout} s)")
        } else {
            String::new()
        }
    );
    for check in console.failures() {
        match check.status {
            results::Status::Fail => {
                println!(
                    "vm-test: {label}: FAIL {}: {}",
                    check.name,
                    results::printable(&check.detail)
                );
                let lines = results::relevant(log, &check.name);
                for line in lines.iter().take(SHOWN_LINES) {
                    println!("    {line}");
                }
                if lines.len() > SHOWN_LINES {
                    println!(
                        "    ({} more lines in the console log)",
                        lines.len() - SHOWN_LINES
                    );
                }
            }
            _ => println!("vm-test: {label}: not run: {}", check.name),
        }
    }
    if !console.done {
        println!("vm-test: {label}: the guest did not finish; its console ended with:");
        for line in results::tail(log, 30) {
            println!("    {line}");
        }
    }
}

/// (checks that did not pass, all checks), the boot counting as one per kernel.
fn tally(columns: &[(String, Console)]) -> (usize, usize) {
    let per_kernel = results::CHECKS.len() + 1;
    let missed = columns
        .iter()
        .map(|(_, c)| usize::from(c.release.is_none()) + c.failures().count())
        .sum();
    (missed, columns.len() * per_kernel)
}

/// The release qbench-trace and libqbench.so, and the C targets built with `cc`: situations
/// (workloads/c) against the release runtime, plain_target (no runtime, its update point
/// exported) for `--point`.
fn build_programs() -> anyhow::Result<Vec<PathBuf>> {
    workspace::cargo(&[
        "build",
        "--release",
        "-p",
        "qbench-user",
        "-p",
        "qbench-runtime",
    ])?;
    let root = workspace::root();
    let lib = workspace::profile_dir(Profile::Release);
    let out = lib.join("qbench-vm");
    std::fs::create_dir_all(&out)?;
    let situations = out.join("situations");
    cc(Command::new("cc")
        .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(root.join("qbench-runtime/include"))
        .arg(root.join("workloads/c/situations.c"))
        .arg("-o")
        .arg(&situations)
        .arg("-L")
        .arg(&lib)
        .arg("-lqbench")
        .arg(format!("-Wl,-rpath,{}", lib.display())))?;
    let plain = out.join("plain_target");
    cc(Command::new("cc")
        .args(["-O2", "-g", "-pthread", "-rdynamic"])
        .arg(root.join("tests/c/plain_target.c"))
        .arg("-o")
        .arg(&plain))?;
    let trace = lib.join("qbench-trace");
    ensure!(trace.exists(), "{} was not built", trace.display());
    // For the capabilities check: util-linux's, present on every Debian system.
    let setpriv = PathBuf::from("/usr/bin/setpriv");
    ensure!(
        setpriv.exists(),
        "{} is missing (Debian package util-linux)",
        setpriv.display()
    );
    Ok(vec![trace, situations, plain, setpriv])
}

fn cc(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().context("cannot run cc")?;
    ensure!(status.success(), "cc failed: {}", crate::run::display(cmd));
    Ok(())
}
