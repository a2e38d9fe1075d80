//! `cargo xtask bench watch`: what `qbench-trace --watch` costs, side by side in one run with no
//! observer and with the diagnosis mode (`--pid`, which attaches the syscall tracepoints):
//! per update point and per blocking syscall in the watched process, per syscall in another
//! process, and qbench-trace's own CPU and memory; and, for comparison, the bpftrace script a
//! user would write for the same uprobe and syscall tracing. Needs root.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::bench::runtime::percentile;
use crate::workspace::{self, Profile};

/// Calls per timed loop.
const CALLS: &str = "2000000";
/// How long qbench-trace's own CPU is measured on an idle target.
const IDLE: Duration = Duration::from_secs(3);

/// The ways the target runs.
const MODES: [&str; 4] = ["none", "watch", "diagnosis", "bpftrace"];

/// The obvious alternative: bpftrace counting update points and timing the target's system
/// calls, as one would to see which threads are blocked where. `PID` and `LIB` are filled in.
const BPFTRACE_SCRIPT: &str = "uprobe:LIB:qbench_update /pid == PID/ { @points[tid] = count(); }
tracepoint:raw_syscalls:sys_enter /pid == PID/ { @since[tid] = nsecs; @nr[tid] = args->id; }
tracepoint:raw_syscalls:sys_exit /pid == PID/ { delete(@since[tid]); delete(@nr[tid]); }";

#[derive(Debug, Default, Clone)]
struct Round {
    update_ns: f64,
    read_ns: f64,
    getppid_ns: f64,
    /// qbench-trace's CPU while the target ran its loops, and while it sat idle (ms of CPU per
    /// second of wall time), and its resident memory (KiB).
    busy_cpu_ms_per_s: Option<f64>,
    idle_cpu_ms_per_s: Option<f64>,
    rss_kib: Option<u64>,
}

pub fn run(rounds: usize, checks_only: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    ensure!(root, "bench watch needs root (it loads eBPF programs)");
    ensure!(rounds > 0, "--rounds must be at least 1");
    if !checks_only {
        per_call(rounds)?;
    }
    let figures = crate::bench::watch_checks::run(rounds)?;
    let machine = crate::bench::machine();
    let mut json = crate::bench::watch_checks::json(&figures);
    json["machine"] = machine.clone().into();
    let out = crate::bench::write_result("watch-checks.json", &json)?;
    println!(
        "Machine: {machine}\n\n{}",
        crate::bench::watch_checks::markdown(&figures)
    );
    println!("written {}", out.display());
    Ok(())
}

/// The per-call costs of the modes side by side, `rounds` times.
fn per_call(rounds: usize) -> anyhow::Result<()> {
    let trace = crate::bench::build_release(&[])?.join("qbench-trace");
    let exe = build_program()?;
    ensure_bpftrace()?;
    let mut results: Vec<(&str, Vec<Round>)> = MODES.iter().map(|m| (*m, Vec::new())).collect();
    for _ in 0..rounds {
        for (i, mode) in MODES.iter().enumerate() {
            let round = measure(&exe, &trace, mode)?;
            results[i].1.push(round);
        }
    }
    let machine = crate::bench::machine();
    let json = report_json(&results, &machine, rounds);
    let out = crate::bench::write_result("watch-overhead.json", &json)?;
    println!("{}", markdown(&results, &machine));
    println!("written {}", out.display());
    Ok(())
}

fn build_program() -> anyhow::Result<PathBuf> {
    crate::bench::runtime::build_c_release("watch_cost", "watch_cost")
}

fn measure(exe: &Path, trace: &Path, mode: &str) -> anyhow::Result<Round> {
    let mut target = Command::new(exe)
        .args(["target", CALLS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start watch_cost")?;
    let mut lines = BufReader::new(target.stdout.take().expect("stdout")).lines();
    ensure!(
        lines.next().transpose()?.as_deref() == Some("ready"),
        "watch_cost did not start"
    );
    crate::target::ensure_release_runtime(target.id())?;
    let mut observer = match mode {
        "none" => None,
        "bpftrace" => Some(start_bpftrace(target.id())?),
        _ => {
            let mut cmd = Command::new(trace);
            if mode == "watch" {
                cmd.arg("--watch");
            }
            cmd.args(["--pid", &target.id().to_string()]);
            Some(start_observer(cmd)?)
        }
    };
    let mut round = Round::default();
    if let Some(o) = &observer {
        let (cpu, _) = cpu_over(o.id(), IDLE)?;
        round.idle_cpu_ms_per_s = Some(cpu);
    }
    let cpu_before = observer.as_ref().map(|o| cpu_ms(o.id())).transpose()?;
    let t0 = Instant::now();
    let stdin = target.stdin.as_mut().expect("stdin");
    stdin.write_all(b"go\n")?;
    stdin.flush()?;
    let result = lines.next().transpose()?.unwrap_or_default();
    let fields: Vec<&str> = result.split_whitespace().collect();
    let [_, update, _, read] = fields[..] else {
        bail!("unexpected output of watch_cost: {result:?}");
    };
    round.update_ns = update.parse()?;
    round.read_ns = read.parse()?;
    round.getppid_ns = crate::bench::probe_effect::getppid_ns(exe, CALLS)?;
    if let (Some(o), Some(before)) = (&observer, cpu_before) {
        let spent = cpu_ms(o.id())? - before;
        round.busy_cpu_ms_per_s = Some(spent / t0.elapsed().as_secs_f64());
        round.rss_kib = rss_kib(o.id());
    }
    let _ = target.wait();
    if let Some(o) = observer.as_mut() {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(o.id() as i32, libc::SIGTERM) };
        let _ = o.wait();
    }
    Ok(round)
}

/// Installs Debian's bpftrace when it is missing (only this benchmark uses it).
fn ensure_bpftrace() -> anyhow::Result<()> {
    if Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("bench: installing bpftrace (apt-get install -y bpftrace) for the comparison");
    let status = Command::new("apt-get")
        .args(["install", "-y", "bpftrace"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    ensure!(
        status.success(),
        "apt-get install bpftrace failed: run `apt-get update` first"
    );
    Ok(())
}

/// Starts the bpftrace script on `pid` and waits (at most 30 s) until its probes are attached.
fn start_bpftrace(pid: u32) -> anyhow::Result<Child> {
    let lib = workspace::profile_dir(Profile::Release).join("libqbench.so");
    let script = BPFTRACE_SCRIPT
        .replace("PID", &pid.to_string())
        .replace("LIB", &lib.display().to_string());
    let mut child = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start bpftrace")?;
    let stdout = child.stdout.take().expect("stdout");
    let rx = on_line(stdout, |line| line.starts_with("Attaching"));
    rx.recv_timeout(Duration::from_secs(30))
        .context("bpftrace did not attach")?;
    // "Attaching N probes..." comes before the probes are attached: give them time.
    std::thread::sleep(Duration::from_secs(2));
    Ok(child)
}

/// Starts qbench-trace and waits (at most 10 s) until it says it is attached.
fn start_observer(mut cmd: Command) -> anyhow::Result<Child> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qbench-trace")?;
    let stderr = child.stderr.take().expect("stderr");
    let rx = on_line(stderr, |line| {
        line.contains("watching pid") || line.contains("attached to pid")
    });
    rx.recv_timeout(Duration::from_secs(10))
        .context("qbench-trace did not attach")?;
    Ok(child)
}

/// Reads `output` to its end on a thread of its own (so the writer never blocks on a full pipe),
/// and sends on the channel returned each time a line satisfies `wanted`.
fn on_line(
    output: impl std::io::Read + Send + 'static,
    wanted: fn(&str) -> bool,
) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if wanted(&line) {
                let _ = tx.send(());
            }
        }
    });
    rx
}

/// utime + stime of `pid` in milliseconds (/proc/PID/stat fields 14 and 15, in clock ticks).
pub fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks * 1000.0 / hz)
}

/// CPU milliseconds per second of `pid` over `span`.
fn cpu_over(pid: u32, span: Duration) -> anyhow::Result<(f64, f64)> {
    let before = cpu_ms(pid)?;
    std::thread::sleep(span);
    let spent = cpu_ms(pid)? - before;
    Ok((spent / span.as_secs_f64(), spent))
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        percentile(&v, 50.0)
    }
}

struct Row {
    mode: &'static str,
    update_ns: f64,
    read_ns: f64,
    getppid_ns: f64,
    idle_cpu: f64,
    busy_cpu: f64,
    rss_kib: f64,
}

fn rows(results: &[(&'static str, Vec<Round>)]) -> Vec<Row> {
    results
        .iter()
        .map(|(mode, rounds)| Row {
            mode,
            update_ns: median(rounds.iter().map(|r| r.update_ns)),
            read_ns: median(rounds.iter().map(|r| r.read_ns)),
            getppid_ns: median(rounds.iter().map(|r| r.getppid_ns)),
            idle_cpu: median(rounds.iter().filter_map(|r| r.idle_cpu_ms_per_s)),
            busy_cpu: median(rounds.iter().filter_map(|r| r.busy_cpu_ms_per_s)),
            rss_kib: median(rounds.iter().filter_map(|r| r.rss_kib.map(|k| k as f64))),
        })
        .collect()
}

fn report_json(
    results: &[(&'static str, Vec<Round>)],
    machine: &str,
    rounds: usize,
) -> serde_json::Value {
    let modes: Vec<serde_json::Value> = rows(results)
        .iter()
        .map(|r| {
            serde_json::json!({
                "mode": r.mode,
                "update_point_ns": r.update_ns,
                "pipe_read_ns": r.read_ns,
                "getppid_other_process_ns": r.getppid_ns,
                "observer_cpu_idle_ms_per_s": r.idle_cpu.is_finite().then_some(r.idle_cpu),
                "observer_cpu_busy_ms_per_s": r.busy_cpu.is_finite().then_some(r.busy_cpu),
                "observer_rss_kib": r.rss_kib.is_finite().then_some(r.rss_kib),
            })
        })
        .collect();
    serde_json::json!({
        "machine": machine,
        "rounds": rounds,
        "calls_per_loop": CALLS.parse::<u64>().unwrap_or(0),
        "statistic": "median of rounds",
        "modes": modes,
        "memcached_throughput": "see bench/results/observer-overhead.json (cargo xtask bench overhead)",
    })
}

fn markdown(results: &[(&'static str, Vec<Round>)], machine: &str) -> String {
    let mut out = format!(
        "Machine: {machine}\n\n| observer | update point (ns) | pipe read (ns) | getppid, other process (ns) | its CPU, idle target (ms/s) | its CPU, busy target (ms/s) | its RSS (MiB) |\n|---|---|---|---|---|---|---|\n"
    );
    let opt = |v: f64, scale: f64| {
        if v.is_finite() {
            format!("{:.1}", v / scale)
        } else {
            "—".to_string()
        }
    };
    for r in rows(results) {
        out += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            r.mode,
            r.update_ns,
            r.read_ns,
            r.getppid_ns,
            opt(r.idle_cpu, 1.0),
            opt(r.busy_cpu, 1.0),
            opt(r.rss_kib, 1024.0)
        );
    }
    out
}
