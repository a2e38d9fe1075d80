//! `cargo xtask bench runtime`: the runtime's quiescence time with 2, 8, 64 and 512 threads
//! blocked in each situation of workloads/c/situations.c, updates requested by real signals from
//! outside the process, figures taken from the runtime's own reports (QBENCH_REPORT).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::target;
use crate::workspace::{self, Profile};

pub const KINDS: [&str; 6] = ["accept", "read", "epoll", "condwait", "sleep", "callback"];
pub const THREADS: [usize; 4] = [2, 8, 64, 512];

/// The figures of one (situation, thread count) cell, in microseconds.
#[derive(Debug, Clone)]
pub struct Cell {
    pub kind: &'static str,
    pub threads: usize,
    pub requests: usize,
    pub dnq: usize,
    /// Quiescence times of the quiesced updates, sorted.
    pub quiescence_us: Vec<f64>,
    /// Request latencies of the quiesced updates, sorted.
    pub latency_us: Vec<f64>,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The median of `values`, in any order: [`percentile`] 50 of them sorted; NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// Builds the release runtime and the situations program linked with it.
pub fn build_target() -> anyhow::Result<PathBuf> {
    workspace::cargo(&["build", "--release", "-p", "qbench-runtime"])?;
    build_c_release("situations", "situations-bench")
}

/// Compiles `workloads/c/<source>.c` into `<target>/release/qbench-c/<exe>`, linked with the
/// release runtime (which must be built).
pub fn build_c_release(source: &str, exe: &str) -> anyhow::Result<PathBuf> {
    let root = workspace::root();
    let lib_dir = workspace::profile_dir(Profile::Release);
    let out = lib_dir.join("qbench-c");
    std::fs::create_dir_all(&out)?;
    let exe = out.join(exe);
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-I"])
        .arg(root.join("qbench-runtime/include"))
        .arg(root.join(format!("workloads/c/{source}.c")))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lqbench")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .status()
        .context("cannot run cc")?;
    ensure!(status.success(), "cc failed to build {}", exe.display());
    Ok(exe)
}

/// Measures one cell: `requests` updates of a program with `threads` threads (main, blocked in
/// read on stdin, plus threads-1 of `kind`).
pub fn measure(
    exe: &Path,
    kind: &'static str,
    threads: usize,
    requests: usize,
) -> anyhow::Result<Cell> {
    let dir = std::env::temp_dir().join(format!("qbench-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = dir.join(format!("{kind}-{threads}.jsonl"));
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(exe)
        .arg(format!("{kind}:{}", threads - 1))
        .env("QBENCH_REPORT", &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let result = drive(&mut child, &report, requests);
    let _ = child.kill();
    let _ = child.wait();
    let reports = result?;
    let _ = std::fs::remove_file(&report);
    let mut cell = Cell {
        kind,
        threads,
        requests,
        dnq: 0,
        quiescence_us: Vec::new(),
        latency_us: Vec::new(),
    };
    for r in reports {
        match (
            r["quiescence_ns"].as_u64(),
            r["request_latency_ns"].as_u64(),
        ) {
            (Some(q), Some(l)) => {
                cell.quiescence_us.push(q as f64 / 1e3);
                cell.latency_us.push(l as f64 / 1e3);
            }
            _ => cell.dnq += 1,
        }
    }
    cell.quiescence_us.sort_by(f64::total_cmp);
    cell.latency_us.sort_by(f64::total_cmp);
    Ok(cell)
}

fn drive(
    child: &mut Child,
    report: &Path,
    requests: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    target::read_ready(child, "the target")?;
    target::ensure_release_runtime(child.id())?;
    let pid = child.id() as i32;
    for n in 1..=requests {
        wait_all_blocked(pid)?;
        target::request_update(pid)?;
        target::wait_report_lines(report, n, Duration::from_secs(20))?;
    }
    let text = std::fs::read_to_string(report)?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("bad report line"))
        .collect()
}

/// Every thread of `pid` asleep, i.e. back in its blocking call: the situation under test.
fn wait_all_blocked(pid: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = true;
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let stat = std::fs::read_to_string(entry?.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            all &= state == Some('S');
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("threads of {pid} never all blocked");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The cells as a Markdown table: median and spread of both figures.
pub fn markdown(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| situation | threads | quiesced | quiescence median µs | p10–p90 µs | max µs | request latency median µs |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let q = &c.quiescence_us;
        out.push_str(&format!(
            "| {} | {} | {}/{} | {:.1} | {:.1}–{:.1} | {:.1} | {:.1} |\n",
            c.kind,
            c.threads,
            c.requests - c.dnq,
            c.requests,
            percentile(q, 50.0),
            percentile(q, 10.0),
            percentile(q, 90.0),
            percentile(q, 100.0),
            percentile(&c.latency_us, 50.0),
        ));
    }
    out
}

/// The cells as JSON for bench/results/.
pub fn json(cells: &[Cell], machine: &str) -> serde_json::Value {
    serde_json::json!({
        "benchmark": "runtime-quiescence",
        "machine": machine,
        "cells": cells.iter().map(|c| serde_json::json!({
            "situation": c.kind,
            "threads": c.threads,
            "requests": c.requests,
            "dnq": c.dnq,
            "quiescence_us": c.quiescence_us,
            "request_latency_us": c.latency_us,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&v, 10.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
