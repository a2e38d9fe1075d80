//! `cargo xtask bench overhead --one-load`: the throughput of one load that runs for the whole
//! benchmark, counted in blocks: without qbench-trace, with the diagnosis mode (`--pid`) attached
//! and idle, with `--watch` attached and idle, and, as a control, with `--watch` on a second, idle
//! instance of the same program, so that qbench-trace starts, runs and stops on the machine but
//! nothing is attached to the loaded process. Separate load runs differ by several per cent from
//! one another (connections and threads land on the two cores differently each time), which
//! would hide a cost of 1 %; neighbouring blocks of one run do not.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::overhead::{
    Guard, LOAD_CPU, MODES, Measured, ONE_LOAD_BLOCKS, PairedDifference, Subject, attach, detach,
    on_cpu, start_server,
};
use crate::bench::bpf_stats;
use crate::bench::real::MemcachedLoad;
use crate::bench::runtime::median;
use crate::bench::table1;
use crate::real::Program;
use crate::real::observe::Server;

/// How long after attaching or detaching qbench-trace a block starts counting: attaching reads
/// the target's ELF files and loads the programs, which is not the steady state being measured.
const SETTLE: Duration = Duration::from_secs(1);

/// A program under a load that runs for the whole benchmark, and an idle twin for the control.
trait Loaded {
    /// The loaded process and its idle twin.
    fn pids(&self) -> [i32; 2];
    /// Requests completed so far, and when (seconds on the load's own clock).
    fn sample(&mut self) -> anyhow::Result<(f64, f64)>;
    /// Fails if the load stopped.
    fn running(&mut self) -> anyhow::Result<()>;
    /// The CPU the loaded process and the load have used so far (ns).
    fn cpu_ns(&self) -> anyhow::Result<(u64, u64)>;
}

/// Measures `subject` in `rounds` rounds of one block of `seconds` per mode, in a rotating order.
pub(super) fn run(
    subject: Subject,
    trace: &Path,
    seconds: u64,
    rounds: usize,
    pin: bool,
) -> anyhow::Result<Measured> {
    let _stats = crate::bench::bpf_stats::Enabled::new()?;
    match subject {
        Subject::MemcachedLike => {
            let programs = table1::build()?;
            blocks(
                &mut LikeLoad::start(&programs, pin)?,
                trace,
                seconds,
                rounds,
            )
        }
        Subject::Memcached => {
            ensure!(
                !pin,
                "--pin is for memcached-like; Debian's memcached runs where the scheduler puts it"
            );
            blocks(&mut RealLoad::start()?, trace, seconds, rounds)
        }
    }
}

fn blocks(
    load: &mut impl Loaded,
    trace: &Path,
    seconds: u64,
    rounds: usize,
) -> anyhow::Result<Measured> {
    let [loaded, idle] = load.pids();
    let mut m = Measured::default();
    std::thread::sleep(SETTLE);
    for round in 0..rounds {
        let arms = ONE_LOAD_BLOCKS;
        for k in 0..arms.len() {
            let mode = arms[(round + k) % arms.len()];
            let observer = match mode {
                1 => Some(attach(trace, loaded, false)?),
                3 => Some(attach(trace, loaded, true)?),
                5 => Some(attach(trace, idle, true)?),
                _ => None,
            };
            std::thread::sleep(SETTLE);
            let cpu_before = observer
                .as_ref()
                .map(|o| crate::bench::watch::cpu_ms(o.0.id()))
                .transpose()?;
            let started = Instant::now();
            let runs0 = observer
                .as_ref()
                .map(|o| bpf_stats::of_process(o.0.id()))
                .transpose()?;
            let cpu0 = load.cpu_ns()?;
            let (ops0, t0) = load.sample()?;
            std::thread::sleep(Duration::from_secs(seconds));
            let (ops1, t1) = load.sample()?;
            let cpu1 = load.cpu_ns()?;
            load.running()?;
            let rate = (ops1 - ops0) / (t1 - t0);
            let per_op = |ns: u64| ns as f64 / (ops1 - ops0);
            let server = cpu1.0.saturating_sub(cpu0.0);
            let both = server + cpu1.1.saturating_sub(cpu0.1);
            m.cpu_per_op[mode].push((per_op(server), per_op(both)));
            if let (Some(obs), Some(runs0)) = (&observer, runs0) {
                let runs = runs0.since(bpf_stats::of_process(obs.0.id())?);
                m.bpf_runs[mode].push((runs.count, per_op(runs.ns)));
            }
            if let (Some(obs), Some(before)) = (&observer, cpu_before) {
                m.observer(mode, obs, before, started);
            }
            let stop = match observer {
                Some(obs) => {
                    let took = detach(obs)?.as_secs_f64();
                    m.stop_s[mode].push(took);
                    format!(" (stopped {took:.2} s after SIGINT)")
                }
                None => String::new(),
            };
            eprintln!(
                "bench: block {} {:<22} {rate:.0} ops/s{stop}",
                round + 1,
                MODES[mode]
            );
            m.rates[mode].push(rate);
        }
    }
    Ok(m)
}

/// memcached-like (`all` variant) and its twin, under `table1-load memcached`, which reports
/// its running count on SIGUSR1.
struct LikeLoad {
    servers: [Guard; 2],
    load: Guard,
    out: BufReader<ChildStdout>,
}

impl LikeLoad {
    fn start(programs: &table1::Programs, pin: bool) -> anyhow::Result<Self> {
        let (server, port) = start_server(programs, pin)?;
        let (idle, _) = start_server(programs, pin)?;
        let mut load = Guard(
            on_cpu(&programs.load(), pin.then_some(LOAD_CPU))
                .args(["memcached", &port, "3600"])
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start the load")?,
        );
        let out = BufReader::new(load.0.stdout.take().context("load stdout")?);
        Ok(Self {
            servers: [server, idle],
            load,
            out,
        })
    }
}

impl Loaded for LikeLoad {
    fn pids(&self) -> [i32; 2] {
        self.servers.each_ref().map(|s| s.0.id() as i32)
    }

    fn sample(&mut self) -> anyhow::Result<(f64, f64)> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.load.0.id() as i32, libc::SIGUSR1) };
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["sample", "ops", ops, "seconds", at] => Ok((ops.parse()?, at.parse()?)),
            _ => bail!("unexpected sample from the load generator: {line:?}"),
        }
    }

    fn running(&mut self) -> anyhow::Result<()> {
        ensure!(
            self.load.0.try_wait()?.is_none(),
            "the load generator stopped early"
        );
        Ok(())
    }

    fn cpu_ns(&self) -> anyhow::Result<(u64, u64)> {
        Ok((
            crate::bench::cpu_ns(self.servers[0].0.id())?,
            crate::bench::cpu_ns(self.load.0.id())?,
        ))
    }
}

impl Drop for LikeLoad {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.load.0.id() as i32, libc::SIGTERM) };
        let _ = self.load.0.wait();
        // The servers exit when their stdin closes.
        for server in &mut self.servers {
            drop(server.0.stdin.take());
        }
    }
}

/// Debian's memcached with the whole qbench patch (`-t 4`) and its twin, under the memslap-like
/// load of `cargo xtask bench real`, whose clients run in this process.
struct RealLoad {
    servers: [Server; 2],
    load: Option<MemcachedLoad>,
    started: Instant,
}

impl RealLoad {
    fn start() -> anyhow::Result<Self> {
        let exe = crate::real::patched(Program::Memcached)?;
        let spec = Program::Memcached.spec();
        // The runtime's helper thread besides memcached's own.
        let servers = [Server::start(spec, &exe, 1)?, Server::start(spec, &exe, 1)?];
        let load = Some(MemcachedLoad::start(servers[0].port));
        Ok(Self {
            servers,
            load,
            started: Instant::now(),
        })
    }
}

impl Loaded for RealLoad {
    fn pids(&self) -> [i32; 2] {
        self.servers.each_ref().map(|s| s.pid() as i32)
    }

    fn sample(&mut self) -> anyhow::Result<(f64, f64)> {
        let load = self.load.as_ref().context("the load stopped")?;
        Ok((load.done() as f64, self.started.elapsed().as_secs_f64()))
    }

    fn running(&mut self) -> anyhow::Result<()> {
        let load = self.load.as_ref().context("the load stopped")?;
        ensure!(
            load.clients_running(),
            "a load client stopped: memcached closed its connection"
        );
        Ok(())
    }

    /// The load's clients are threads of this process, which does little else meanwhile.
    fn cpu_ns(&self) -> anyhow::Result<(u64, u64)> {
        Ok((
            crate::bench::cpu_ns(self.servers[0].pid())?,
            crate::bench::cpu_ns(std::process::id())?,
        ))
    }
}

impl Drop for RealLoad {
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            load.stop();
        }
    }
}

/// The CPU one request cost, per mode: the server's, and the server's and the load's together,
/// with the paired difference of the latter from the block without qbench-trace of the same
/// round. On a machine whose cores the server and the load share, throughput swings with how
/// their threads land on the cores (a core may sit idle); the CPU a request costs moves far less,
/// and a cost the observer adds to each request, or to the machine, shows in it.
pub(super) fn cpu_table(m: &Measured, active: &[usize]) -> (String, serde_json::Value) {
    let mut table = String::from(
        "| CPU per request | server (ns), median | server and load (ns), median | \
         server and load, paired difference, mean (95 % CI) | qbench-trace's BPF programs: \
         runs per block, median (max) | their time per request (ns), median |\n\
         |---|---:|---:|---|---:|---:|\n",
    );
    let mut json = serde_json::Map::new();
    let both = |mode: usize| -> Vec<f64> { m.cpu_per_op[mode].iter().map(|c| c.1).collect() };
    for &mode in active {
        let blocks = &m.cpu_per_op[mode];
        if blocks.is_empty() {
            continue;
        }
        let server: Vec<f64> = blocks.iter().map(|c| c.0).collect();
        let paired = if mode == 0 {
            "—".to_string()
        } else {
            PairedDifference::of(&both(0), &both(mode)).to_string()
        };
        let runs = &m.bpf_runs[mode];
        let (count, time) = if runs.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            let counts: Vec<f64> = runs.iter().map(|r| r.0 as f64).collect();
            let most = runs.iter().map(|r| r.0).max().unwrap_or(0);
            let ns: Vec<f64> = runs.iter().map(|r| r.1).collect();
            (
                format!("{:.0} ({most})", median(&counts)),
                format!("{:.3}", median(&ns)),
            )
        };
        table.push_str(&format!(
            "| {} | {:.0} | {:.0} | {paired} | {count} | {time} |\n",
            MODES[mode],
            median(&server),
            median(&both(mode)),
        ));
        json.insert(
            MODES[mode].to_string(),
            serde_json::json!({
                "server": server,
                "server_and_load": both(mode),
                "bpf_runs_per_block": runs.iter().map(|r| r.0).collect::<Vec<_>>(),
                "bpf_ns_per_request": runs.iter().map(|r| r.1).collect::<Vec<_>>(),
            }),
        );
    }
    (table, json.into())
}
