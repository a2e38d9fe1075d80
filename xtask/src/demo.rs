//! `cargo xtask demo`: the main job on a built-in target. Sets up, builds, starts qbench-demo,
//! attaches qbench-trace to it (as root), requests updates with SIGUSR2, and prints the
//! runtime's own report of each update next to what the eBPF probe saw.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
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

fn drive(
    demo: &mut Child,
    bin: &std::path::Path,
    report: &PathBuf,
    updates: usize,
) -> anyhow::Result<()> {
    let mut stdout = BufReader::new(demo.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let pid: i32 = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("qbench-demo did not start: {line:?}"))?;
    println!("demo: qbench-demo is pid {pid}");

    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let watch_secs = 2 + updates as u64 / 5;
    let trace = if root {
        println!("demo: attaching qbench-trace (uprobe on qbench_probe_arrive) for {watch_secs} s");
        let child = Command::new(bin.join("qbench-trace"))
            .args([
                "--pid",
                &pid.to_string(),
                "--duration",
                &watch_secs.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start qbench-trace")?;
        std::thread::sleep(Duration::from_millis(500));
        Some(child)
    } else {
        println!("demo: not root, so qbench-trace is skipped (it needs CAP_BPF and CAP_PERFMON)");
        None
    };

    for n in 1..=updates {
        std::thread::sleep(Duration::from_millis(100));
        target::request_update(pid)?;
        target::wait_report_lines(report, n, Duration::from_secs(10))?;
        line.clear();
        stdout.read_line(&mut line)?;
        ensure!(
            line.trim() == format!("applied {n}"),
            "unexpected hook output {line:?}"
        );
    }

    println!(
        "\nThe runtime's own measurement (QBENCH_REPORT; the quiescence hook ran once per update):"
    );
    println!(
        "{:>4} {:<9} {:>8} {:>14} {:>18}",
        "SEQ", "OUTCOME", "THREADS", "QUIESCENCE_US", "REQ_LATENCY_US"
    );
    let text = std::fs::read_to_string(report)?;
    let mut threads = 0;
    for l in text.lines() {
        let r: serde_json::Value = serde_json::from_str(l)?;
        let us = |k: &str| {
            r[k].as_u64()
                .map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1e3))
        };
        threads = r["threads"].as_u64().unwrap_or(0);
        println!(
            "{:>4} {:<9} {:>8} {:>14} {:>18}",
            r["seq"].as_u64().unwrap_or(0),
            r["outcome"].as_str().unwrap_or("?"),
            threads,
            us("quiescence_ns"),
            us("request_latency_ns")
        );
    }
    if let Some(trace) = trace {
        let out = trace.wait_with_output()?;
        ensure!(out.status.success(), "qbench-trace failed ({})", out.status);
        let table = String::from_utf8_lossy(&out.stdout);
        println!("\nqbench-trace (eBPF, from outside the process): arrivals per thread");
        print!("{table}");
        let seen: u64 = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        println!(
            "\ndemo: the probe saw {seen} arrivals; the runtime reported {updates} updates x {threads} threads = {}",
            updates as u64 * threads
        );
    }
    Ok(())
}
