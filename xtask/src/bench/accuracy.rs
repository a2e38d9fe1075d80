//! `cargo xtask bench accuracy`: for the same updates, the observer's quiescence time (eBPF,
//! from outside) against the runtime's own (QBENCH_REPORT), on the 8-thread situations.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};

use crate::bench::runtime::{self, KINDS, percentile};
use crate::workspace::{self, Profile};

/// One situation's figures, in microseconds.
#[derive(Debug, Clone)]
pub struct Pair {
    pub kind: &'static str,
    pub updates: usize,
    pub runtime_us: Vec<f64>,
    pub observer_us: Vec<f64>,
    /// |observer − runtime| per update.
    pub difference_us: Vec<f64>,
}

impl Pair {
    /// The target: the medians differ by at most max(20 µs, 5 %).
    pub fn within_target(&self) -> bool {
        let runtime = percentile(&self.runtime_us, 50.0);
        let observer = percentile(&self.observer_us, 50.0);
        (observer - runtime).abs() <= (0.05 * runtime).max(20.0)
    }
}

pub fn measure(exe: &Path, kind: &'static str, updates: usize) -> anyhow::Result<Pair> {
    let trace = workspace::profile_dir(Profile::Release).join("qbench-trace");
    let dir = std::env::temp_dir().join(format!("qbench-accuracy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = dir.join(format!("{kind}.jsonl"));
    let _ = std::fs::remove_file(&report);
    let mut target = Command::new(exe)
        .arg(format!("{kind}:7"))
        .env("QBENCH_REPORT", &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = target.id();
    std::thread::sleep(std::time::Duration::from_millis(300));
    if let Err(e) = crate::target::ensure_release_runtime(pid) {
        let _ = target.kill();
        let _ = target.wait();
        return Err(e);
    }
    let out = crate::target::observe_updates(&trace, pid, updates)
        .output()
        .with_context(|| format!("cannot run {}", trace.display()));
    let _ = target.kill();
    let _ = target.wait();
    let out = out?;
    ensure!(
        out.status.success(),
        "qbench-trace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let observed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let reported: Vec<serde_json::Value> = std::fs::read_to_string(&report)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut pair = Pair {
        kind,
        updates,
        runtime_us: vec![],
        observer_us: vec![],
        difference_us: vec![],
    };
    for o in &observed {
        let Some(r) = reported.iter().find(|r| r["seq"] == o["runtime_seq"]) else {
            continue;
        };
        let (Some(oq), Some(rq)) = (o["quiescence_ns"].as_u64(), r["quiescence_ns"].as_u64())
        else {
            continue;
        };
        pair.observer_us.push(oq as f64 / 1e3);
        pair.runtime_us.push(rq as f64 / 1e3);
        pair.difference_us.push((oq as f64 - rq as f64).abs() / 1e3);
    }
    ensure!(
        !pair.runtime_us.is_empty(),
        "no update was measured by both for {kind}"
    );
    for v in [
        &mut pair.runtime_us,
        &mut pair.observer_us,
        &mut pair.difference_us,
    ] {
        v.sort_by(f64::total_cmp);
    }
    Ok(pair)
}

pub fn run(updates: usize) -> anyhow::Result<()> {
    let exe = runtime::build_target()?;
    workspace::cargo(&["build", "--release", "-p", "qbench-user"])?;
    let mut pairs = Vec::new();
    for kind in KINDS {
        let pair = measure(&exe, kind, updates).with_context(|| format!("accuracy for {kind}"))?;
        eprintln!(
            "bench: {kind:>8}: runtime median {:.1} µs, observer median {:.1} µs",
            percentile(&pair.runtime_us, 50.0),
            percentile(&pair.observer_us, 50.0)
        );
        pairs.push(pair);
    }
    let mut table = String::from(
        "| situation (8 threads) | updates paired | runtime median µs | observer median µs | median abs. difference µs | max abs. difference µs | within max(20 µs, 5 %) |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    for p in &pairs {
        table.push_str(&format!(
            "| {} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            p.kind,
            p.runtime_us.len(),
            p.updates,
            percentile(&p.runtime_us, 50.0),
            percentile(&p.observer_us, 50.0),
            percentile(&p.difference_us, 50.0),
            percentile(&p.difference_us, 100.0),
            if p.within_target() { "yes" } else { "no" },
        ));
    }
    println!("{table}");
    let json = serde_json::json!({
        "benchmark": "observer-accuracy",
        "machine": crate::bench::machine(),
        "pairs": pairs.iter().map(|p| serde_json::json!({
            "situation": p.kind, "threads": 8, "runtime_us": p.runtime_us,
            "observer_us": p.observer_us, "difference_us": p.difference_us,
        })).collect::<Vec<_>>(),
    });
    let path = crate::bench::write_result("observer-accuracy.json", &json)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}
