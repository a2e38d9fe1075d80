//! The helper thread: woken by a request (never by polling), it runs the threads' update
//! callbacks, interrupts the threads that have not arrived, waits for full quiescence or the
//! timeout, runs the quiescence hook, writes the report and releases everyone, opening the next
//! update in the same step when a request came after the decision.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::interrupt::{self, Round};
use crate::report::{Ending, MissingThread, Report};
use crate::state::{
    CLOSING, CLOSING_REQUESTED, IDLE, OPEN, PENDING, REQUEST_NS, Registry, Runtime, SEQ, lock,
};
use crate::sys;

/// The first re-interruption comes soon (a thread may have checked the flag just before the
/// request and then entered a blocking call); later ones back off so a thread running a long
/// computation is not flooded with signals.
const FIRST_REKICK: Duration = Duration::from_micros(50);
const MAX_REKICK: Duration = Duration::from_millis(5);
/// Past the deadline, how often the helper looks whether the arrivals being announced are done.
const ANNOUNCED_SOON: Duration = Duration::from_micros(100);

pub fn spawn(rt: &'static Runtime) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(qbench_common::runtime::HELPER_COMM.to_string())
        .spawn(move || {
            sys::block_all_signals();
            serve(rt)
        })
        .map(drop)
}

fn serve(rt: &'static Runtime) {
    loop {
        sys::eventfd_wait(rt.wake_fd, None);
        if PENDING.load(Ordering::Acquire) == IDLE {
            continue; // a late arrival's or exit's wake-up for an update already ended
        }
        // Each release may open the next update (requested while the last was closing).
        while serve_one(rt) {}
    }
}

/// Runs the pending update; returns true when its release opened the next one.
fn serve_one(rt: &Runtime) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| coordinate(rt))) {
        Ok(next) => next,
        Err(_) => {
            // Never leave threads parked, whatever went wrong.
            let next = release(rt);
            crate::warn("internal error while coordinating an update; threads released");
            next
        }
    }
}

/// Runs one update from request to release; returns true when the release opened the next one.
fn coordinate(rt: &Runtime) -> bool {
    let request_ns = REQUEST_NS.load(Ordering::Acquire);
    let seq = SEQ.load(Ordering::Acquire);
    let deadline = request_ns.saturating_add(rt.config.timeout.as_nanos() as u64);
    {
        let _reg = rt.lock();
        crate::published::pending(seq, request_ns);
    }
    // The request handler interrupted the threads in its table; wake the rest, then run the
    // callbacks (which may take a while), then re-interrupt stragglers with backoff.
    interrupt::stragglers(&mut rt.lock(), rt.config.signal, Round::First);
    run_update_callbacks(rt);

    let mut next_kick = sys::monotonic_ns() + FIRST_REKICK.as_nanos() as u64;
    let mut backoff = FIRST_REKICK * 2;
    let ending = loop {
        {
            let mut reg = rt.lock();
            let now = sys::monotonic_ns();
            if reg.may_decide(now, deadline) {
                // Decided: a request from now on is for the next update (only this thread
                // changes the flag from OPEN).
                PENDING.store(CLOSING, Ordering::SeqCst);
                break ending_of(&reg, seq, request_ns);
            }
            if now >= next_kick {
                interrupt::stragglers(&mut reg, rt.config.signal, Round::Again);
                next_kick = now + backoff.as_nanos() as u64;
                backoff = (backoff * 2).min(MAX_REKICK);
            }
        }
        // Past the deadline only an arrival being announced holds the decision: look again
        // soon (its thread wakes this one only when every thread has parked).
        let wait = if sys::monotonic_ns() >= deadline {
            ANNOUNCED_SOON.as_nanos() as u64
        } else {
            next_kick.min(deadline).saturating_sub(sys::monotonic_ns())
        };
        sys::eventfd_wait(rt.wake_fd, Some(Duration::from_nanos(wait)));
    };
    if ending.missing.is_empty() {
        run_quiescence_hook(rt);
    }
    let mut report = Report::new(ending);
    for m in &mut report.missing {
        m.name = sys::thread_name(m.tid);
    }
    // Published before the release: a program may exit as soon as its threads run again, and
    // the report of its last update must not be lost.
    let quiesced = u32::from(report.outcome == crate::report::Outcome::Quiesced);
    let threads = u32::try_from(report.threads).unwrap_or(u32::MAX);
    let seq = report.seq;
    publish(rt, report);
    crate::anchors::qbench_probe_release(seq, quiesced, threads);
    release(rt)
}

/// Captures the update's figures at the moment of decision, under the same lock that decided.
fn ending_of(reg: &Registry, seq: u64, request_ns: u64) -> Ending {
    let mut missing: Vec<MissingThread> = reg
        .threads
        .iter()
        .filter(|(_, e)| !e.parked)
        .map(|(&tid, _)| MissingThread {
            tid,
            name: String::new(),
        })
        .collect();
    missing.sort_by_key(|m| m.tid);
    Ending {
        pid: sys::getpid(),
        seq,
        request_ns,
        first_arrival_ns: reg.first_arrival_ns,
        last_arrival_ns: reg.last_arrival_ns,
        threads: reg.threads.len(),
        missing,
    }
}

/// Runs each participating thread's update callback once, outside the registry lock (a
/// callback typically takes the program's own locks to wake its thread).
fn run_update_callbacks(rt: &Runtime) {
    let _running = lock(&rt.callbacks);
    let callbacks: Vec<_> = rt
        .lock()
        .threads
        .values()
        .filter_map(|e| e.callback.clone())
        .collect();
    for cb in callbacks {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb.call())).is_err() {
            crate::warn("an update callback panicked");
        }
    }
}

fn run_quiescence_hook(rt: &Runtime) {
    let hook = lock(&rt.hook).clone();
    if let Some(hook) = hook
        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.call())).is_err()
    {
        crate::warn("the quiescence hook panicked; threads released");
    }
}

/// Ends the pending update: clears the flag and wakes every parked thread. A request that came
/// while it was closing opens the next update in the same step, so it can be neither lost nor
/// merged; returns true when one did.
fn release(rt: &Runtime) -> bool {
    let mut reg = rt.lock();
    let was = PENDING
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
            Some(if state == CLOSING_REQUESTED {
                OPEN
            } else {
                IDLE
            })
        })
        .unwrap_or(IDLE);
    // Under the registry lock, so the next update's first arrival reads its sequence number.
    let next = (was == CLOSING_REQUESTED).then(|| SEQ.fetch_add(1, Ordering::SeqCst) + 1);
    crate::published::released();
    reg.generation = reg.generation.wrapping_add(1);
    reg.parked = 0;
    reg.first_arrival_ns = None;
    reg.last_arrival_ns = None;
    reg.waiters_woken = false;
    for entry in reg.threads.values_mut() {
        entry.parked = false;
    }
    rt.released.notify_all();
    drop(reg);
    if let Some(seq) = next {
        crate::request::announce(seq);
    }
    next.is_some()
}

fn publish(rt: &Runtime, report: Report) {
    rt.sink.write(&report);
    *lock(&rt.last_report) = Some(report);
    rt.report_ready.notify_all();
}
