//! `cargo xtask demo`: the main job on a built-in target. Sets up, builds, starts qbench-demo,
//! lets qbench-trace (as root) request updates and measure them from outside, and prints the
//! runtime's own report of each update next to the observer's.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};

use crate::target;
use crate::workspace::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Update requests to send.
    #[arg(long, default_value_t = 5)]
    pub updates: usize,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.no_setup {
        crate::setup::run(&crate::setup::Args::default())?;
    }
    workspace::cargo(&[
        "build",
        "--release",
        "-p",
        "qbench-workloads",
        "-p",
        "qbench-user",
    ])?;
    let bin = workspace::profile_dir(Profile::Release);
    let report = std::env::temp_dir().join(format!("qbench-demo-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&report);

    println!(
        "demo: starting qbench-demo (threads blocked in accept, read, condition waits, sleeps)"
    );
    let mut demo = Command::new(bin.join("qbench-demo"))
        .env("QBENCH_REPORT", &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start qbench-demo")?;
    let result = drive(&mut demo, &bin, &report, args.updates);
    if let Some(mut stdin) = demo.stdin.take() {
        let _ = stdin.write_all(b"q");
    }
    let _ = demo.wait();
    let _ = std::fs::remove_file(&report);
    result
}

fn drive(demo: &mut Child, bin: &Path, report: &Path, updates: usize) -> anyhow::Result<()> {
    let mut stdout = BufReader::new(demo.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let pid: i32 = crate::target::parse_ready(&line)
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("qbench-demo did not start: {line:?}"))?;
    println!("demo: qbench-demo is pid {pid}");

    let observed = request_updates(bin, pid, report, updates)?;
    target::wait_report_lines(report, updates, Duration::from_secs(10))?;
    for n in 1..=updates {
        line.clear();
        stdout.read_line(&mut line)?;
        ensure!(
            line.trim() == format!("applied {n}"),
            "unexpected hook output {line:?}"
        );
    }

    print_table(report, &observed)
}

/// Requests `updates` updates of the demo: with qbench-trace when root (its JSON reports are
/// returned), else by the signal alone (no reports from outside).
fn request_updates(
    bin: &Path,
    pid: i32,
    report: &Path,
    updates: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        println!("demo: qbench-trace --pid {pid} --request --count {updates} --json");
        let out = crate::target::observe_updates(&bin.join("qbench-trace"), pid, updates)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run qbench-trace")?;
        ensure!(
            out.status.code() == Some(0),
            "qbench-trace ended with {}",
            out.status
        );
        let reports = String::from_utf8(out.stdout)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<serde_json::Value>, _>>()?;
        Ok(reports)
    } else {
        println!(
            "demo: not root, so qbench-trace is skipped (it needs CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH); sending SIGUSR2 instead"
        );
        for n in 1..=updates {
            std::thread::sleep(Duration::from_millis(50));
            target::request_update(pid)?;
            target::wait_report_lines(report, n, Duration::from_secs(10))?;
        }
        Ok(Vec::new())
    }
}

/// Each update as the runtime and as qbench-trace measured it, side by side.
fn print_table(report: &Path, observed: &[serde_json::Value]) -> anyhow::Result<()> {
    println!("\nEach update as the runtime measured it inside the process (QBENCH_REPORT) and as");
    println!(
        "qbench-trace measured it from outside (eBPF); the quiescence hook ran once per update."
    );
    println!(
        "The runtime's request latency starts when its signal handler ran, the observer's when the"
    );
    println!("signal was sent: they differ by the signal's delivery (DELIVERY_US).");
    println!(
        "{:>4} {:<9} {:>8} {:>16} {:>16} {:>16} {:>16} {:>12}",
        "SEQ",
        "OUTCOME",
        "THREADS",
        "RUNTIME_QUIES_US",
        "OBSERVER_QUIES_US",
        "RUNTIME_LAT_US",
        "OBSERVER_LAT_US",
        "DELIVERY_US"
    );
    let us = |v: &serde_json::Value, k: &str| {
        v[k].as_u64()
            .map_or("-".to_string(), |n| format!("{:.1}", n as f64 / 1e3))
    };
    for l in std::fs::read_to_string(report)?.lines() {
        let r: serde_json::Value = serde_json::from_str(l)?;
        let o = observed
            .iter()
            .find(|o| o["runtime_seq"] == r["seq"])
            .cloned()
            .unwrap_or_default();
        println!(
            "{:>4} {:<9} {:>8} {:>16} {:>16} {:>16} {:>16} {:>12}",
            r["seq"].as_u64().unwrap_or(0),
            r["outcome"].as_str().unwrap_or("?"),
            r["threads"].as_u64().unwrap_or(0),
            us(&r, "quiescence_ns"),
            us(&o, "quiescence_ns"),
            us(&r, "request_latency_ns"),
            us(&o, "request_latency_ns"),
            us(&o, "signal_delivery_ns"),
        );
    }
    Ok(())
}
