//! `cargo xtask bench overhead` (root): what qbench-trace costs a busy program. The throughput
//! of memcached-like (`all` variant) under its load generator, four ways in one run: without
//! the observer, with qbench-trace (diagnosis mode) attached and idle, with it measuring an
//! update requested every second, and with the production mode (`--watch`) attached and idle. Modes alternate within each round, in a rotating order, so a drift of
//! the machine does not favour one of them.

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::bench_table1;
use crate::target;
use crate::workspace::{self, Profile};

const MODES: [&str; 4] = [
    "without qbench-trace",
    "attached, idle",
    "measuring 1 update/s",
    "--watch attached, idle",
];

/// Kills a child when dropped.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(seconds: u64, rounds: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "the observer needs root");
    let programs = bench_table1::build()?;
    workspace::cargo(&["build", "--release", "-p", "qbench-user"])?;
    let trace = workspace::profile_dir(Profile::Release).join("qbench-trace");
    let mut server = Guard(
        Command::new(programs.workload("memcached"))
            .args(["--variant", "all"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start memcached-like")?,
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
    let port = line
        .strip_prefix("ready ")
        .context("no ready line")?
        .trim()
        .to_string();
    target::ensure_release_runtime(server.0.id())?;
    let pid = server.0.id() as i32;
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut updates = 0;
    for round in 0..rounds {
        for k in 0..MODES.len() {
            let mode = (round + k) % MODES.len();
            let observer = match mode {
                0 => None,
                3 => Some(attach(&trace, pid, true)?),
                _ => Some(attach(&trace, pid, false)?),
            };
            let mut load = Guard(
                Command::new(programs.load())
                    .args(["memcached", &port, &seconds.to_string()])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("cannot start the load")?,
            );
            if mode == 2 {
                // An update every second while the load runs (the first after 0.5 s).
                let mut next = Instant::now() + Duration::from_millis(500);
                while load.0.try_wait()?.is_none() {
                    if Instant::now() >= next {
                        target::request_update(pid)?;
                        updates += 1;
                        next += Duration::from_secs(1);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let rate = load_rate(&mut load.0)?;
            if let Some(obs) = observer {
                detach(obs)?;
            }
            eprintln!(
                "bench: round {} {:<22} {rate:.0} ops/s",
                round + 1,
                MODES[mode]
            );
            rates[mode].push(rate);
        }
    }
    drop(server.0.stdin.take());
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&rates[0]);
    let mut table = String::from(
        "| memcached-like under `table1-load memcached` | median ops/s | runs (ops/s) | vs without |\n\
         |---|---:|---|---:|\n",
    );
    for (mode, r) in MODES.iter().zip(&rates) {
        let runs: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        table.push_str(&format!(
            "| {mode} | {:.0} | {} | {:+.2} % |\n",
            median(r),
            runs.join(", "),
            (median(r) / base - 1.0) * 100.0
        ));
    }
    println!("{table}");
    let dir = workspace::root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "benchmark": "observer-overhead",
        "machine": crate::bench::machine(),
        "workload": "memcached-like (all) under table1-load memcached",
        "seconds_per_run": seconds,
        "updates_requested": updates,
        "ops_per_s": MODES.iter().zip(&rates).map(|(m, r)| (m.to_string(), serde_json::json!(r)))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    let path = dir.join("observer-overhead.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Starts qbench-trace on `pid` and returns once it has attached: its "seeded" note (-v) in the
/// diagnosis mode, its "watching pid" note with --watch.
fn attach(trace: &Path, pid: i32, watch: bool) -> anyhow::Result<Guard> {
    let (args, marker): (&[&str], &str) = if watch {
        (&["--watch"], "watching pid")
    } else {
        (&["--json", "--timeout", "1s", "-v"], "seeded")
    };
    let mut child = Guard(
        Command::new(trace)
            .args(["--pid", &pid.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start qbench-trace")?,
    );
    let mut stderr = BufReader::new(child.0.stderr.take().context("stderr")?);
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            bail!("qbench-trace exited before attaching");
        }
        if line.contains(marker) {
            break;
        }
    }
    // Keep draining its diagnostics so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink);
    });
    Ok(child)
}

/// Stops qbench-trace the way a user does (Ctrl-C: it detaches cleanly).
fn detach(mut obs: Guard) -> anyhow::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(obs.0.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while obs.0.try_wait()?.is_none() {
        ensure!(Instant::now() < deadline, "qbench-trace did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits for the load generator and returns its operations per second.
fn load_rate(load: &mut Child) -> anyhow::Result<f64> {
    let mut out = String::new();
    load.stdout
        .take()
        .context("load stdout")?
        .read_to_string(&mut out)?;
    let status = load.wait()?;
    ensure!(status.success(), "the load generator failed: {out}");
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "ops_per_s")
        .and_then(|_| words.next())
        .and_then(|x| x.parse().ok())
        .with_context(|| format!("no rate in {out:?}"))
}
