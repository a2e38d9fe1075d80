//! The thread that arrived last in an update that quiesced: it set the time, but it is not
//! stuck, so it gets a cause only when what it was in at the request kept it from the update
//! point on its own: a call that ran its course (a sleep that ended, a wait that timed out), or
//! a lock a thread of the target held. A call the request interrupted, or one of the runtime's
//! waits, made it arrive as soon as the request reached it: no cause. Nor a call that returned
//! because I/O came: that may be the update's own doing (an update callback writing the thread's
//! notify pipe or eventfd, as event loops are broken), which nothing here can tell apart.
//! Nor when no call is known at the request: the per-thread state is read just after the
//! request, by when a thread the request woke is out of its call, so that is no evidence that it
//! was running.
//!
//! The facts: `blocked` is the call it was in at the request (the first of `calls`), and
//! `arrived_after_ns` the time from the request to its arrival.

use super::{Cause, Facts, classify, evidence, hint, interrupted, runtime_wait};
use crate::syscalls::{self, Wake};

/// Its cause, where the evidence supports one.
pub fn classify_arrived(f: &Facts) -> Option<Cause> {
    let blocked = f.blocked?;
    let first = f.calls.first()?;
    if runtime_wait(f).is_some() || first.end_ns.is_none() || interrupted(first) {
        return None;
    }
    if first.ret.is_some_and(|ret| ran_its_course(blocked.nr, ret)) {
        return Some(classify(f));
    }
    let futex = syscalls::by_number(blocked.nr).is_some_and(|c| c.wake == Wake::Futex);
    // A futex wait was ended by the lock's release when a thread of the target owned it.
    let owned = futex && f.futex.as_ref().is_some_and(|x| x.owner_tid.is_some());
    owned.then(|| classify(f))
}

/// Whether call `nr` returning `ret` ended because its own time was up: a sleep that completed,
/// a poll-like wait or a timed wait that timed out.
fn ran_its_course(nr: i64, ret: i64) -> bool {
    const EAGAIN: i64 = -11;
    const ETIMEDOUT: i64 = -110;
    match syscalls::name(nr).as_str() {
        "nanosleep" | "clock_nanosleep" | "poll" | "ppoll" | "select" | "pselect6"
        | "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => ret == 0,
        "rt_sigtimedwait" => ret == EAGAIN,
        "futex" => ret == ETIMEDOUT,
        _ => false,
    }
}

/// ", which returned RET after T ms" as far as the call's end is known ("" when it is not).
fn returned(f: &Facts) -> String {
    let Some(call) = f.calls.first() else {
        return String::new();
    };
    let took = call
        .end_ns
        .zip(call.start_ns)
        .map(|(end, start)| format!(" after {:.3} ms", end.saturating_sub(start) as f64 / 1e6));
    match call.ret {
        Some(ret) => format!(", which returned {ret}{}", took.unwrap_or_default()),
        None => String::new(),
    }
}

/// The evidence for the last arrival, one line.
pub fn arrived_evidence(cause: Option<Cause>, f: &Facts) -> String {
    let after = format!(
        "arrived {:.3} ms after the request",
        f.arrived_after_ns.unwrap_or(0) as f64 / 1e6
    );
    let call = f.blocked.map(|b| syscalls::describe(b.nr, &b.args));
    let first = f.calls.first();
    let what = match (cause, call) {
        (Some(cause), Some(call)) => format!(
            "at the request in {call}{}, not interrupted; {}",
            returned(f),
            evidence(cause, f)
        ),
        (None, Some(call)) => match runtime_wait(f) {
            Some(wait) => format!(
                "at the request in the runtime's wait {wait} ({call}), which the request ends"
            ),
            None if first.is_some_and(interrupted) => {
                format!("at the request in {call}, which the request interrupted")
            }
            None if first.is_some_and(|c| c.ret.is_some()) => format!(
                "at the request in {call}{}: woken, by whom is not known (it may be the update's own callback)",
                returned(f)
            ),
            None => format!("at the request in {call}"),
        },
        (_, None) => format!(
            "no blocking call seen at the request; {} call(s) before arriving",
            f.calls.len()
        ),
    };
    format!("{after}; {what}")
}

/// The change that would make it arrive sooner, or that none is needed.
pub fn arrived_hint(cause: Option<Cause>, f: &Facts) -> String {
    match cause {
        Some(cause) => hint(cause, f),
        None => "nothing to change: it arrived once the request reached it".into(),
    }
}
