//! The command line of `qbench-trace` (a placeholder until the full observer): attach the
//! arrival probe to a process, wait, and print how often each thread arrived.

use std::{num::NonZeroU32, path::PathBuf, thread, time::Duration};

use anyhow::Context as _;
use qbench_common::symbols;

use crate::loader::Probes;

const EXAMPLES: &str = "EXAMPLES:
    qbench-trace --pid 1234              # arrivals of process 1234 during 5 s
    qbench-trace --pid 1234 --duration 60 --binary /usr/lib/libqbench.so";

#[derive(Debug, clap::Parser)]
#[command(name = "qbench-trace", version, after_help = EXAMPLES)]
/// Count the arrivals of a process's threads at update points (needs root).
pub struct Args {
    /// Process to observe.
    #[arg(short, long)]
    pub pid: NonZeroU32,
    /// Executable or shared library that defines the symbol [default: /proc/PID/exe].
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Function to probe.
    #[arg(long, default_value = symbols::PROBE_ARRIVE)]
    pub symbol: String,
    /// Seconds to watch.
    #[arg(short, long, default_value_t = 5)]
    pub duration: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/proc/{}/exe", args.pid)));
    let mut probes = Probes::load(args.pid, 12, &crate::loader::LoadOptions::default())?;
    probes.attach_arrive(&binary, &args.symbol)?;
    thread::sleep(Duration::from_secs(args.duration));
    let arrivals = probes.arrivals()?;
    println!("{:>8} {:>10} {:>16}", "TID", "ARRIVALS", "LAST_GENERATION");
    for (tid, arrival) in &arrivals {
        println!(
            "{tid:>8} {:>10} {:>16}",
            arrival.count, arrival.last_generation
        );
    }
    let missed = probes.arrivals_missed().context("reading losses")?;
    if missed > 0 {
        eprintln!("qbench-trace: {missed} arrivals not recorded (per-thread map full)");
    }
    Ok(())
}
