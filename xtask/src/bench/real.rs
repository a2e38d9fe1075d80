//! `cargo xtask bench real` (root): Debian's memcached with the whole qbench patch, idle and
//! under load, its updates measured by the runtime (`QBENCH_REPORT`) and by qbench-trace, side by
//! side: blocks of updates requested by the benchmark's own signal with nothing attached,
//! alternating (in a rotating order) with blocks requested by `qbench-trace --request`, so that
//! the runtime's figure with and without the observer compares in one run.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::bench::runtime::median;
use crate::real::observe::{Memcached, trace};
use crate::target;

/// Load connections, as the study's memslap runs had.
const CONNECTIONS: usize = 4;
/// Between an update's report and the next request.
const GAP: Duration = Duration::from_millis(50);

/// One cell (idle or loaded): the runtime's quiescence without and with qbench-trace attached,
/// and qbench-trace's own figure for the updates it requested.
#[derive(Debug, Default)]
struct Cell {
    loaded: bool,
    runtime_alone_us: Vec<f64>,
    runtime_observed_us: Vec<f64>,
    observer_us: Vec<f64>,
    dnq: usize,
    ops_per_s: Option<f64>,
}

pub fn run(updates: usize, rounds: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the observer needs root");
    let exe = crate::real::patched_memcached()?;
    let trace_exe = crate::bench::build_release(&[])?.join("qbench-trace");
    let mut cells = Vec::new();
    for loaded in [false, true] {
        cells.push(cell(&exe, &trace_exe, loaded, updates, rounds)?);
    }
    let machine = crate::bench::machine();
    println!("Machine: {machine}\n\n{}", markdown(&cells));
    let json = serde_json::json!({
        "benchmark": "real-memcached",
        "machine": machine,
        "updates_per_block": updates,
        "rounds": rounds,
        "cells": cells.iter().map(|c| serde_json::json!({
            "loaded": c.loaded,
            "runtime_alone_us": c.runtime_alone_us,
            "runtime_observed_us": c.runtime_observed_us,
            "observer_us": c.observer_us,
            "dnq": c.dnq,
            "ops_per_s": c.ops_per_s,
        })).collect::<Vec<_>>(),
    });
    let path = crate::bench::write_result("real-memcached.json", &json)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn cell(
    exe: &Path,
    trace_exe: &Path,
    loaded: bool,
    updates: usize,
    rounds: usize,
) -> anyhow::Result<Cell> {
    // memcached drops to `nobody`: the runtime's report goes where that user may write.
    let dir = std::env::temp_dir().join(format!("qbench-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(
        &dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
    )?;
    let report = dir.join(if loaded { "loaded.jsonl" } else { "idle.jsonl" });
    let _ = std::fs::remove_file(&report);
    // The runtime's helper thread besides memcached's own.
    let memcached = Memcached::start_with(exe, 1, &[("QBENCH_REPORT", &report)])?;
    let pid = memcached.pid();
    let load = loaded.then(|| Load::start(memcached.port));
    if load.is_some() {
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut c = Cell {
        loaded,
        ..Cell::default()
    };
    let started = Instant::now();
    let mut requested = 0;
    let mut observed_seqs = Vec::new();
    for round in 0..rounds {
        // Alternate which block goes first, so that a drift of the machine or of memcached
        // favours neither.
        for observed_block in [round % 2 == 1, round % 2 == 0] {
            if !observed_block {
                for _ in 0..updates {
                    std::thread::sleep(GAP);
                    requested += 1;
                    target::request_update(pid as i32)?;
                    target::wait_report_lines(&report, requested, Duration::from_secs(20))?;
                }
                continue;
            }
            let count = updates.to_string();
            let observed = trace(trace_exe, pid, &["--request", "--count", &count])?;
            requested += observed.len();
            for o in &observed {
                observed_seqs.push(o["runtime_seq"].as_u64());
                match o["quiescence_ns"].as_u64() {
                    Some(q) => c.observer_us.push(q as f64 / 1e3),
                    None => c.dnq += 1,
                }
            }
            target::wait_report_lines(&report, requested, Duration::from_secs(20))?;
            std::thread::sleep(GAP);
        }
    }
    if let Some(load) = load {
        c.ops_per_s = Some(load.stop() as f64 / started.elapsed().as_secs_f64());
    }
    drop(memcached);
    for line in std::fs::read_to_string(&report)?.lines() {
        let r: Value = serde_json::from_str(line).context("bad report line")?;
        let Some(q) = r["quiescence_ns"].as_u64() else {
            c.dnq += 1;
            continue;
        };
        let us = q as f64 / 1e3;
        if observed_seqs.contains(&r["seq"].as_u64()) {
            c.runtime_observed_us.push(us);
        } else {
            c.runtime_alone_us.push(us);
        }
    }
    Ok(c)
}

fn markdown(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| memcached 1.6.18, whole patch, -t 4 | runtime, nothing attached (µs) | runtime, qbench-trace attached (µs) | ratio | qbench-trace's own figure (µs) | updates a side | DNQ | load (ops/s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let (alone, observed) = (median(&c.runtime_alone_us), median(&c.runtime_observed_us));
        out.push_str(&format!(
            "| {} | {alone:.1} | {observed:.1} | {:.2}× | {:.1} | {} | {} | {} |\n",
            if c.loaded { "under load" } else { "idle" },
            observed / alone,
            median(&c.observer_us),
            c.runtime_alone_us.len().min(c.runtime_observed_us.len()),
            c.dnq,
            c.ops_per_s.map_or("—".to_string(), |o| format!("{o:.0}")),
        ));
    }
    out
}

/// A memslap-like load on real memcached's text protocol: `CONNECTIONS` connections, 90 % get
/// and 10 % set over 10,000 keys, one request at a time each.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let threads = (0..CONNECTIONS)
            .map(|n| {
                let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
                std::thread::spawn(move || {
                    let _ = client(port, n as u64, &stop, &done);
                })
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    /// Stops the load; the requests it completed.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.done.load(Ordering::Relaxed)
    }
}

fn client(port: u16, seed: u64, stop: &AtomicBool, done: &AtomicU64) -> anyhow::Result<()> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let key = (x >> 33) % 10_000;
        let (request, last) = if (x >> 20).is_multiple_of(10) {
            let value = format!("value-{key:0100}");
            (
                format!("set key{key} 0 0 {}\r\n{value}\r\n", value.len()),
                "STORED",
            )
        } else {
            (format!("get key{key}\r\n"), "END")
        };
        writer.write_all(request.as_bytes())?;
        loop {
            line.clear();
            anyhow::ensure!(reader.read_line(&mut line)? > 0, "memcached closed");
            if line.trim_end() == last {
                break;
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
