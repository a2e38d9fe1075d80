//! What the report of an update that did not quiesce costs for a live process whose threads are
//! all missing: `diagnosis-cost PID` reads the process's threads from /proc, builds the update
//! qbench-trace would report for it (every thread missing, blocked in the call /proc shows), and
//! times the diagnosis (`evidence::diagnose`) and the two reports (`output::human`, `output::json`)
//! as qbench-trace runs them after a DNQ. `cargo xtask bench watch` runs it (as root: the
//! diagnosis reads the target's memory).
//!
//! Prints one line: `threads N diagnosed D diagnose_ms X human_ms Y json_ms Z cpu_ms C bytes B`,
//! the three times wall-clock, C the CPU (user and system) of all three together.
//! Exit codes: 0 measured, 1 the process cannot be read, 2 usage error.

use std::process::ExitCode;
use std::time::Instant;

use qbench_user::diagnosis::evidence;
use qbench_user::procfs;
use qbench_user::report::output::{self, Context};
use qbench_user::tracker::{Blocked, Outcome, RequestSeen, ThreadReport, Update};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(pid), None) = (args.next(), args.next()) else {
        eprintln!("usage: diagnosis-cost PID (a live process to diagnose)");
        return ExitCode::from(2);
    };
    let Ok(pid) = pid.parse::<u32>() else {
        eprintln!("diagnosis-cost: {pid:?} is not a pid");
        return ExitCode::from(2);
    };
    let Some(threads) = procfs::threads(pid) else {
        eprintln!("diagnosis-cost: process {pid} does not exist or /proc/{pid} is not readable");
        return ExitCode::from(1);
    };
    let update = dnq(&threads);
    let cpu_before = cpu_ms();
    let started = Instant::now();
    let diagnoses = evidence::diagnose(pid, &update, 0);
    let diagnose = started.elapsed();
    let state_of = move |tid: u32| procfs::state(pid, tid);
    let ctx = Context {
        pid,
        lost_events: 0,
        state_of: &state_of,
        diagnoses: &diagnoses,
    };
    let started = Instant::now();
    let human = output::human(&update, &ctx);
    let human_time = started.elapsed();
    let started = Instant::now();
    let json = output::json(&update, &ctx);
    let json_time = started.elapsed();
    let cpu = cpu_ms() - cpu_before;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "threads {} diagnosed {} diagnose_ms {:.1} human_ms {:.1} json_ms {:.1} cpu_ms {cpu:.1} bytes {}",
        update.threads.len(),
        diagnoses.len(),
        ms(diagnose),
        ms(human_time),
        ms(json_time),
        human.len() + json.len()
    );
    ExitCode::SUCCESS
}

/// The CPU this process has used so far (user and system), in milliseconds.
fn cpu_ms() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the valid one given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The report of an update none of `threads` arrived at, each blocked where /proc shows it (as
/// qbench-trace's `--watch` reads the stragglers before diagnosing them).
fn dnq(threads: &[procfs::ProcThread]) -> Update {
    let threads = threads
        .iter()
        .map(|t| ThreadReport {
            tid: t.tid,
            comm: t.comm.clone(),
            arrival_ns: None,
            blocked: t.syscall.map(|(nr, args)| Blocked {
                nr,
                args,
                since_ns: None,
            }),
            calls: Vec::new(),
            ever_arrived: true,
            participating: true,
            runtime_knows: None,
        })
        .collect();
    Update {
        number: 1,
        outcome: Outcome::Dnq,
        ended_by_thread_exit: false,
        seen: RequestSeen::Runtime,
        window_seq: 1,
        runtime_seq: None,
        request_ns: 0,
        handled_ns: None,
        first_arrival_ns: None,
        last_arrival_ns: None,
        end_ns: 1_000_000_000,
        threads,
    }
}
