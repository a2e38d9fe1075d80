//! `cargo xtask bench overhead` (root): what qbench-trace costs a busy program. The throughput
//! of memcached-like (`all` variant) under its load generator, four ways in one run: without
//! the observer, with qbench-trace (diagnosis mode) attached and idle, with it measuring an
//! update requested every second, and with the production mode (`--watch`) attached, idle and
//! with an update every second. Modes alternate within each round, in a rotating order, so a
//! drift of the machine does not favour one of them; each mode is compared with the run without
//! qbench-trace of the same round. `--one-load` (module `one_load`) counts blocks of one long
//! load run instead, of memcached-like or of Debian's memcached, precisely enough to tell a 1 %
//! cost from none.

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::bench::runtime::median;
use crate::bench::table1;
use crate::target;
use crate::workspace::{self, Profile};

pub(super) const MODES: [&str; 6] = [
    "without qbench-trace",
    "attached, idle",
    "measuring 1 update/s",
    "--watch attached, idle",
    "--watch, 1 update/s",
    "--watch of another process",
];

/// The modes in which qbench-trace runs in `--watch`, and those in which an update is requested
/// every second.
const WATCH: [usize; 2] = [3, 4];
const UPDATING: [usize; 2] = [2, 4];

/// The modes of separate load runs, and of `--one-load` blocks, in their rotating order.
const SEPARATE_RUNS: [usize; 5] = [0, 1, 2, 3, 4];
pub(super) const ONE_LOAD_BLOCKS: [usize; 4] = [0, 1, 3, 5];

/// Kills a child when dropped.
pub(super) struct Guard(pub(super) Child);
impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::MemcachedLike => "memcached-like under `table1-load memcached`, one load",
            Subject::Memcached => "Debian's memcached -t 4 under a memslap-like load, one load",
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the throughput is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// memcached-like, every mode a load run of its own.
    SeparateRuns,
    /// One load for the whole benchmark, in blocks: without qbench-trace, the diagnosis mode
    /// and `--watch` attached and idle, and `--watch` of another process.
    OneLoad(Subject),
}

/// The program measured under one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// memcached-like (`all` variant) under `table1-load memcached`.
    MemcachedLike,
    /// Debian's memcached with the whole qbench patch, under the benchmark's memslap-like load.
    Memcached,
}

pub fn run(seconds: u64, rounds: usize, method: Method, pin: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "the observer needs root");
    ensure!(
        rounds >= 2,
        "--rounds must be at least 2 (the interval needs two pairs)"
    );
    workspace::cargo(&["build", "--release", "-p", "qbench-user"])?;
    let trace = workspace::profile_dir(Profile::Release).join("qbench-trace");
    let (active, measured, label): (&[usize], _, _) = match method {
        Method::SeparateRuns => {
            let programs = table1::build()?;
            let (mut server, port) = start_server(&programs, pin)?;
            let pid = server.0.id() as i32;
            let measured = separate_loads(&programs, &trace, pid, &port, seconds, rounds, pin);
            drop(server.0.stdin.take());
            (
                &SEPARATE_RUNS,
                measured?,
                "memcached-like under `table1-load memcached`",
            )
        }
        Method::OneLoad(subject) => (
            &ONE_LOAD_BLOCKS,
            crate::bench::one_load::run(subject, &trace, seconds, rounds, pin)?,
            subject.label(),
        ),
    };
    let (cpu_table, cpu_json) = crate::bench::one_load::cpu_table(&measured, active);
    let Measured {
        rates,
        observer_cpu,
        observer_rss,
        stop_s,
        updates,
        ..
    } = measured;
    let base = median(&rates[0]);
    let mut table = format!(
        "| {label} | median ops/s | runs (ops/s) | \
         median vs without | paired difference, mean (95 % CI) | qbench-trace CPU (ms/s) | \
         its RSS (MiB) |\n\
         |---|---:|---|---:|---|---:|---:|\n",
    );
    let mut json_diffs = serde_json::Map::new();
    for &mode in active {
        let r = &rates[mode];
        let runs: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        let paired = if mode == 0 {
            "—".to_string()
        } else {
            let d = PairedDifference::of(&rates[0], r);
            json_diffs.insert(MODES[mode].to_string(), d.json());
            d.to_string()
        };
        let own = |v: &[f64], scale: f64| {
            if v.is_empty() {
                "—".to_string()
            } else {
                format!("{:.1}", median(v) / scale)
            }
        };
        table.push_str(&format!(
            "| {} | {:.0} | {} | {:+.2} % | {paired} | {} | {} |\n",
            MODES[mode],
            median(r),
            runs.join(", "),
            (median(r) / base - 1.0) * 100.0,
            own(&observer_cpu[mode], 1.0),
            own(&observer_rss[mode], 1024.0),
        ));
    }
    for &mode in active {
        let mut stops = stop_s[mode].clone();
        if stops.is_empty() {
            continue;
        }
        stops.sort_by(f64::total_cmp);
        table.push_str(&format!(
            "\n{}: qbench-trace exited {:.2} s (median), {:.2} s (max) after SIGINT.",
            MODES[mode],
            stops[stops.len() / 2],
            stops[stops.len() - 1]
        ));
    }
    println!("{table}");
    if method != Method::SeparateRuns {
        println!("\n{cpu_table}");
    }
    let json = serde_json::json!({
        "cpu_per_request_ns": cpu_json,
        "benchmark": "observer-overhead",
        "machine": crate::bench::machine(),
        "workload": label,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "pinned": pin.then_some("server on CPU 0, load generator on CPU 1"),
        "updates_requested": updates,
        "ops_per_s": active.iter().map(|&m| (MODES[m].to_string(), serde_json::json!(rates[m])))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "paired_difference_vs_without": json_diffs,
        "observer_cpu_ms_per_s": active.iter().map(|&m| (MODES[m].to_string(), serde_json::json!(observer_cpu[m])))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "observer_stop_s": active.iter().map(|&m| (MODES[m].to_string(), serde_json::json!(stop_s[m])))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "observer_rss_kib": active.iter().map(|&m| (MODES[m].to_string(), serde_json::json!(observer_rss[m])))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    let name = match method {
        Method::SeparateRuns => "observer-overhead",
        Method::OneLoad(Subject::MemcachedLike) => "observer-overhead-one-load",
        Method::OneLoad(Subject::Memcached) => "observer-overhead-one-load-memcached",
    };
    let pinned = if pin { "-pinned" } else { "" };
    let path = crate::bench::write_result(&format!("{name}{pinned}.json"), &json)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Starts memcached-like (`all` variant) and returns it with its port, once it is ready and
/// has loaded the release runtime. It exits when its stdin closes.
pub(super) fn start_server(
    programs: &table1::Programs,
    pin: bool,
) -> anyhow::Result<(Guard, String)> {
    let mut server = Guard(
        on_cpu(&programs.workload("memcached"), pin.then_some(SERVER_CPU))
            .args(["--variant", "all"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start memcached-like")?,
    );
    let port = target::read_ready(&mut server.0, "memcached-like")?;
    target::ensure_release_runtime(server.0.id())?;
    Ok((server, port))
}

/// With `--pin`, the server runs on the first CPU and the load generator on the second, so that
/// they stop trading places; qbench-trace runs wherever the scheduler puts it.
const SERVER_CPU: usize = 0;
pub(super) const LOAD_CPU: usize = 1;

/// A command running `program` on `cpu` alone (`taskset`, util-linux), or anywhere.
pub(super) fn on_cpu(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Throughput per mode, qbench-trace's own CPU (ms per second of load) and resident memory
/// (KiB) per mode, and the updates requested.
#[derive(Debug, Default)]
pub(super) struct Measured {
    pub(super) rates: [Vec<f64>; MODES.len()],
    pub(super) observer_cpu: [Vec<f64>; MODES.len()],
    pub(super) observer_rss: [Vec<f64>; MODES.len()],
    /// Seconds from SIGINT to qbench-trace's exit, per mode.
    pub(super) stop_s: [Vec<f64>; MODES.len()],
    /// `--one-load`, per block: the CPU one request cost the server, and the server and the load
    /// together (ns).
    pub(super) cpu_per_op: [Vec<(f64, f64)>; MODES.len()],
    /// `--one-load`, per block with qbench-trace attached: its BPF programs' runs in the block
    /// (the kernel's count), and their time per request (ns).
    pub(super) bpf_runs: [Vec<(u64, f64)>; MODES.len()],
    pub(super) updates: usize,
}

impl Measured {
    pub(super) fn observer(&mut self, mode: usize, obs: &Guard, cpu_before: f64, since: Instant) {
        if let Ok(after) = crate::bench::watch::cpu_ms(obs.0.id()) {
            self.observer_cpu[mode].push((after - cpu_before) / since.elapsed().as_secs_f64());
        }
        if let Some(kib) = crate::bench::watch::rss_kib(obs.0.id()) {
            self.observer_rss[mode].push(kib as f64);
        }
    }
}

/// Every mode of every round is a load run of its own, qbench-trace attached before it starts.
fn separate_loads(
    programs: &table1::Programs,
    trace: &Path,
    pid: i32,
    port: &str,
    seconds: u64,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<Measured> {
    let active = SEPARATE_RUNS;
    let mut m = Measured::default();
    for round in 0..rounds {
        for k in 0..active.len() {
            let mode = active[(round + k) % active.len()];
            let observer = match mode {
                0 => None,
                w => Some(attach(trace, pid, WATCH.contains(&w))?),
            };
            let cpu_before = observer
                .as_ref()
                .map(|o| crate::bench::watch::cpu_ms(o.0.id()))
                .transpose()?;
            let started = Instant::now();
            let mut load = Guard(
                on_cpu(&programs.load(), pin.then_some(LOAD_CPU))
                    .args(["memcached", port, &seconds.to_string()])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("cannot start the load")?,
            );
            if UPDATING.contains(&mode) {
                // An update every second while the load runs (the first after 0.5 s).
                let mut next = Instant::now() + Duration::from_millis(500);
                while load.0.try_wait()?.is_none() {
                    if Instant::now() >= next {
                        target::request_update(pid)?;
                        m.updates += 1;
                        next += Duration::from_secs(1);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let rate = load_rate(&mut load.0)?;
            if let (Some(obs), Some(before)) = (&observer, cpu_before) {
                m.observer(mode, obs, before, started);
            }
            if let Some(obs) = observer {
                m.stop_s[mode].push(detach(obs)?.as_secs_f64());
            }
            eprintln!(
                "bench: round {} {:<22} {rate:.0} ops/s",
                round + 1,
                MODES[mode]
            );
            m.rates[mode].push(rate);
        }
    }
    Ok(m)
}

/// The relative throughput difference between a mode and the run without qbench-trace in the
/// same round, over all rounds: its mean and a 95 % confidence interval (Student's t). Pairing
/// runs that were close in time removes the machine's slow drift from the comparison; the
/// interval says whether the rounds can tell a cost of 1 % from none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PairedDifference {
    pairs: usize,
    mean: f64,
    low: f64,
    high: f64,
}

impl PairedDifference {
    /// `base[i]` and `with[i]` were measured in round `i`; needs at least two rounds.
    pub(super) fn of(base: &[f64], with: &[f64]) -> Self {
        use statrs::distribution::{ContinuousCDF as _, StudentsT};
        let d: Vec<f64> = base.iter().zip(with).map(|(b, w)| w / b - 1.0).collect();
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let t = StudentsT::new(0.0, 1.0, n - 1.0)
            .map(|t| t.inverse_cdf(0.975))
            .unwrap_or(f64::NAN);
        let half = t * (var / n).sqrt();
        Self {
            pairs: d.len(),
            mean,
            low: mean - half,
            high: mean + half,
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pairs": self.pairs,
            "mean": self.mean,
            "ci95": [self.low, self.high],
        })
    }
}

impl std::fmt::Display for PairedDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:+.2} % ({:+.2} % to {:+.2} %, {} pairs)",
            self.mean * 100.0,
            self.low * 100.0,
            self.high * 100.0,
            self.pairs
        )
    }
}

/// Starts qbench-trace on `pid` and returns once it has attached: its "seeded" note (-v) in the
/// diagnosis mode, its "watching pid" note with --watch.
pub(super) fn attach(trace: &Path, pid: i32, watch: bool) -> anyhow::Result<Guard> {
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
/// Detaching waits for the kernel: removing a uprobe takes an RCU grace period, and the kernel
/// removes them one at a time; while the load keeps both cores busy that has taken from half a
/// second to more than 30 s. Returns how long qbench-trace took to exit.
pub(super) fn detach(mut obs: Guard) -> anyhow::Result<Duration> {
    let started = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(obs.0.id() as i32, libc::SIGINT) };
    let limit = Duration::from_secs(180);
    while obs.0.try_wait()?.is_none() {
        ensure!(
            started.elapsed() < limit,
            "qbench-trace did not stop within {limit:?} of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(started.elapsed())
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

#[cfg(test)]
mod tests {
    use super::PairedDifference;

    #[test]
    fn paired_difference_mean_and_interval() {
        // Differences of -1 %, +1 %, -2 %, +2 %: mean 0, sd 1.826 %, t(3) = 3.182.
        let d = PairedDifference::of(&[100.0; 4], &[99.0, 101.0, 98.0, 102.0]);
        assert_eq!(d.pairs, 4);
        assert!(d.mean.abs() < 1e-12);
        let half = 3.182_446 * 0.018_257_4 / 2.0;
        assert!((d.high - half).abs() < 1e-5, "{d:?}");
        assert!((d.low + half).abs() < 1e-5, "{d:?}");
    }
}
