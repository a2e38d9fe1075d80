//! `cargo xtask bench`: the project's benchmarks. Figures go to bench/results/ as JSON and to
//! the terminal as the Markdown table BENCHMARKS.md shows.

pub mod accuracy;
mod bpf_stats;
mod guard;
mod one_load;
pub mod overhead;
pub mod probe_effect;
pub mod real;
pub mod runtime;
pub mod table1;
pub mod table1_report;
pub mod table1_svg;
pub mod watch;
pub mod watch_checks;

use anyhow::Context as _;

use self::runtime::{KINDS, THREADS};
use crate::workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Which,
}

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Quiescence time of the runtime by situation and thread count (2, 8, 64, 512).
    Runtime {
        /// A few requests on small thread counts, to keep the benchmark working (no figures).
        #[arg(long)]
        quick: bool,
        /// Update requests per cell.
        #[arg(long, default_value_t = 31)]
        requests: usize,
    },
    /// The study's Table I: six workloads × {load, idle} × {all, update-only}, the runtime's
    /// and (as root) the observer's median quiescence time.
    Table1 {
        /// 3 requests per cell and short timeouts, to keep the benchmark working (no figures).
        #[arg(long)]
        quick: bool,
    },
    /// What qbench-trace changes, side by side in one run (needs root). First the probe effect:
    /// an 8-thread process's quiescence, the CPU each update costs it and an unrelated
    /// process's syscall, without qbench-trace and with the diagnosis mode and `--watch`
    /// attached, interleaved. Then the throughput and the CPU per request of memcached-like
    /// (or Debian's memcached) under load, in blocks of one load run: without qbench-trace, with
    /// the diagnosis mode and `--watch` attached and idle, and `--watch` of another process.
    Overhead {
        /// Seconds per throughput block (with --separate-runs: per load run).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds (each runs every mode once, in a rotating order).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Only the throughput, not the probe effect first.
        #[arg(long, alias = "watch-only")]
        one_load: bool,
        /// The throughput of Debian's memcached (whole qbench patch, built by `cargo xtask real
        /// memcached`) under a memslap-like load, instead of memcached-like's.
        #[arg(long, conflicts_with = "separate_runs")]
        real: bool,
        /// The throughput of memcached-like in a load run of its own per mode (also measuring
        /// an update a second), instead of blocks of one load run.
        #[arg(long)]
        separate_runs: bool,
        /// Pin the server to CPU 0 and the load generator to CPU 1 (memcached-like).
        #[arg(long)]
        pin: bool,
        /// Only the probe effect, not the throughput.
        #[arg(long, conflicts_with = "one_load")]
        probe_effect_only: bool,
    },
    /// Debian's memcached (or iperf) with the whole qbench patch, idle and under load: the
    /// runtime's quiescence with and without qbench-trace attached, and qbench-trace's own
    /// (needs root).
    Real {
        /// The program.
        #[arg(value_enum, default_value = "memcached")]
        program: crate::real::Program,
        /// Updates per block (each round: a block by signal alone, one by qbench-trace).
        #[arg(long, default_value_t = 6)]
        updates: usize,
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// What `qbench-trace --watch` costs the target, other processes and itself, beside no
    /// observer and the diagnosis mode; what a readiness check and the report of a DNQ of
    /// 10,000 threads cost (needs root).
    Watch {
        /// Rounds of the three modes, and of the readiness and idle figures (figures are
        /// medians of rounds).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Only the readiness checks and the DNQ report (not the per-call costs).
        #[arg(long)]
        checks_only: bool,
    },
    /// The observer's quiescence time against the runtime's, for the same updates (needs root).
    Accuracy {
        /// Updates per situation.
        #[arg(long, default_value_t = 11)]
        updates: usize,
    },
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match args.which {
        Which::Runtime { quick, requests } => runtime(quick, requests),
        Which::Accuracy { updates } => crate::bench::accuracy::run(updates),
        Which::Watch {
            rounds,
            checks_only,
        } => crate::bench::watch::run(rounds, checks_only),
        Which::Table1 { quick } => crate::bench::table1_report::run(quick),
        Which::Real {
            program,
            updates,
            rounds,
        } => crate::bench::real::run(program, updates, rounds),
        Which::Overhead {
            seconds,
            rounds,
            one_load,
            real,
            separate_runs,
            pin,
            probe_effect_only,
        } => {
            use crate::bench::overhead::{Method, Subject};
            if !one_load {
                probe_effect(rounds)?;
            }
            if probe_effect_only {
                return Ok(());
            }
            let method = match (separate_runs, real) {
                (true, _) => Method::SeparateRuns,
                (false, false) => Method::OneLoad(Subject::MemcachedLike),
                (false, true) => Method::OneLoad(Subject::Memcached),
            };
            crate::bench::overhead::run(seconds, rounds, method, pin)
        }
    }
}

/// Builds the release runtime and qbench-trace (with `extra` cargo arguments, e.g. an example
/// besides) and returns the release profile directory, where both are.
pub fn build_release(extra: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let mut args = vec![
        "build",
        "--release",
        "-p",
        "qbench-runtime",
        "-p",
        "qbench-user",
    ];
    args.extend_from_slice(extra);
    workspace::cargo(&args)?;
    Ok(workspace::profile_dir(workspace::Profile::Release))
}

/// Updates per block of the probe effect: 45 a side with the default 5 rounds.
const PROBE_EFFECT_UPDATES: usize = 9;

fn probe_effect(rounds: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the observer needs root");
    let trace = build_release(&[])?.join("qbench-trace");
    let arms = probe_effect::run(&trace, rounds, PROBE_EFFECT_UPDATES)?;
    let mut json = probe_effect::json(&arms);
    json["benchmark"] = "probe-effect".into();
    json["machine"] = machine().into();
    json["rounds"] = rounds.into();
    json["updates_per_block"] = PROBE_EFFECT_UPDATES.into();
    let path = write_result("probe-effect.json", &json)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn runtime(quick: bool, requests: usize) -> anyhow::Result<()> {
    let exe = runtime::build_target()?;
    let (threads, requests): (&[usize], usize) = if quick {
        (&THREADS[..2], 3)
    } else {
        (&THREADS, requests)
    };
    let mut cells = Vec::new();
    for &n in threads {
        for kind in KINDS {
            let cell = runtime::measure(&exe, kind, n, requests)
                .with_context(|| format!("{kind} with {n} threads"))?;
            eprintln!(
                "bench: {kind:>8} {n:>4} threads: median {:.1} µs, {} DNQ",
                runtime::percentile(&cell.quiescence_us, 50.0),
                cell.dnq
            );
            cells.push(cell);
        }
    }
    println!("{}", runtime::markdown(&cells));
    if !quick {
        let json = runtime::json(&cells, &machine());
        let path = write_result("runtime-quiescence.json", &json)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Writes `json`, pretty-printed, to bench/results/`name` and returns the path written.
pub fn write_result(name: &str, json: &serde_json::Value) -> anyhow::Result<std::path::PathBuf> {
    let dir = workspace::root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(json)? + "\n")?;
    Ok(path)
}

/// Nanoseconds of CPU process `pid` has used, summed over its threads from what the scheduler
/// counts for each (/proc/PID/task/TID/schedstat, first field). A thread that ended meanwhile
/// is not counted.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let first = text.split_whitespace().next().context("empty schedstat")?;
        ns += first.parse::<u64>()?;
    }
    Ok(ns)
}

/// CPU model, core count and kernel, for the record.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}
