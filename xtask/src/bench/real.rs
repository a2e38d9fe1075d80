//! `cargo xtask bench real [PROGRAM]` (root): Debian's memcached (the default) or iperf with the
//! whole qbench patch, idle and under load, its updates measured by the runtime
//! (`QBENCH_REPORT`) and by qbench-trace, side by side: blocks of updates requested by the
//! benchmark's own signal with nothing attached, alternating (in a rotating order) with blocks
//! requested by `qbench-trace --request`, so that the runtime's figure with and without the
//! observer compares in one run. memcached's load is memslap-like clients on its text protocol,
//! iperf's one loopback `iperf -c` of the same build sending for the whole cell.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::bench::runtime::median;
use crate::real::Program;
use crate::real::observe::{Server, trace};
use crate::target;

/// memcached's load connections, as the study's memslap runs had.
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
    /// memcached: requests per second; iperf: bits per second.
    load_per_s: Option<f64>,
}

pub fn run(program: Program, updates: usize, rounds: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the observer needs root");
    let exe = crate::real::patched(program)?;
    let trace_exe = crate::bench::build_release(&[])?.join("qbench-trace");
    let mut cells = Vec::new();
    for loaded in [false, true] {
        cells.push(cell(program, &exe, &trace_exe, loaded, updates, rounds)?);
    }
    let machine = crate::bench::machine();
    println!("Machine: {machine}\n\n{}", markdown(program, &cells));
    let name = program.spec().name;
    let json = serde_json::json!({
        "benchmark": format!("real-{name}"),
        "machine": machine,
        "updates_per_block": updates,
        "rounds": rounds,
        "cells": cells.iter().map(|c| serde_json::json!({
            "loaded": c.loaded,
            "runtime_alone_us": c.runtime_alone_us,
            "runtime_observed_us": c.runtime_observed_us,
            "observer_us": c.observer_us,
            "dnq": c.dnq,
            load_key(program): c.load_per_s,
        })).collect::<Vec<_>>(),
    });
    let path = crate::bench::write_result(&format!("real-{name}.json"), &json)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn load_key(program: Program) -> &'static str {
    match program {
        Program::Memcached => "ops_per_s",
        Program::Iperf => "bits_per_s",
    }
}

fn cell(
    program: Program,
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
    // The runtime's helper thread besides the program's own (and, loaded, iperf's server thread).
    let server = Server::start_with(program.spec(), exe, 1, &[("QBENCH_REPORT", &report)])?;
    let pid = server.pid();
    let load = if loaded {
        Some(Load::start(program, exe, server.port)?)
    } else {
        None
    };
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
        c.load_per_s = Some(load.stop(started.elapsed())?);
    }
    drop(server);
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

fn markdown(program: Program, cells: &[Cell]) -> String {
    let (what, load) = match program {
        Program::Memcached => ("memcached 1.6.18, whole patch, -t 4", "load (ops/s)"),
        Program::Iperf => ("iperf 2.1.8, whole patch, -s", "load (Gbit/s)"),
    };
    let mut out = format!(
        "| {what} | runtime, nothing attached (µs) | runtime, qbench-trace attached (µs) | ratio | qbench-trace's own figure (µs) | updates a side | DNQ | {load} |\n\
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
            c.load_per_s.map_or("—".to_string(), |o| match program {
                Program::Memcached => format!("{o:.0}"),
                Program::Iperf => format!("{:.1}", o / 1e9),
            }),
        ));
    }
    out
}

/// The load of a cell.
enum Load {
    Memcached(MemcachedLoad),
    Iperf(IperfClient),
}

impl Load {
    /// The load for `program` served at `port` (`exe`: the build whose client iperf's is).
    fn start(program: Program, exe: &Path, port: u16) -> anyhow::Result<Load> {
        Ok(match program {
            Program::Memcached => Load::Memcached(MemcachedLoad::start(port)),
            Program::Iperf => Load::Iperf(IperfClient::start(exe, port)?),
        })
    }

    /// Stops the load; what it did per second of `elapsed` (requests, or bits for iperf).
    fn stop(self, elapsed: Duration) -> anyhow::Result<f64> {
        match self {
            Load::Memcached(load) => Ok(load.stop() as f64 / elapsed.as_secs_f64()),
            Load::Iperf(client) => client.stop(),
        }
    }
}

/// `iperf -c 127.0.0.1 -p PORT`, sending until stopped (by SIGINT, after which it prints its
/// summary as CSV, `-y C`, and exits).
struct IperfClient {
    child: Child,
}

impl IperfClient {
    fn start(exe: &Path, port: u16) -> anyhow::Result<IperfClient> {
        let child = Command::new(exe)
            .args([
                "-c",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "3600",
                "-y",
                "C",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} -c", exe.display()))?;
        Ok(IperfClient { child })
    }

    /// The bits per second of its summary.
    fn stop(mut self) -> anyhow::Result<f64> {
        // SAFETY: kill has no memory preconditions; the child is ours and not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut text)?;
        }
        self.child.wait()?;
        csv_bits_per_s(&text).with_context(|| format!("iperf -c printed no summary: {text:?}"))
    }
}

impl Drop for IperfClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bandwidth (the last field, bits/s) of iperf's last CSV line.
fn csv_bits_per_s(text: &str) -> Option<f64> {
    text.lines().last()?.rsplit(',').next()?.trim().parse().ok()
}

/// A memslap-like load on real memcached's text protocol: `CONNECTIONS` connections, 90 % get
/// and 10 % set over 10,000 keys, one request at a time each.
pub(crate) struct MemcachedLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MemcachedLoad {
    pub(crate) fn start(port: u16) -> MemcachedLoad {
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
        MemcachedLoad {
            stop,
            done,
            threads,
        }
    }

    /// The requests completed so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether every client is still sending (one stops when memcached closes its connection).
    pub(crate) fn clients_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops the load; the requests it completed.
    pub(crate) fn stop(self) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::csv_bits_per_s;

    #[test]
    fn the_bandwidth_is_the_last_field_of_the_last_csv_line() {
        let out =
            "19700101000000,127.0.0.1,37586,127.0.0.1,5302,1,0.0-2.0,6491865148,25762660323\n";
        assert_eq!(csv_bits_per_s(out), Some(25_762_660_323.0));
        assert_eq!(csv_bits_per_s(""), None);
    }
}
