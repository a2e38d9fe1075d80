//! The thread that arrived last in an update that quiesced: it set the time, but it is not
//! stuck, so it gets a cause only when what it was in at the request kept it from the update
//! point on its own (an I/O call or a sleep that ran to its end). A call the request interrupted,
//! or one of the runtime's waits, made it arrive as soon as the request reached it: no cause.
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
    let futex = syscalls::by_number(blocked.nr).is_some_and(|c| c.wake == Wake::Futex);
    if futex {
        // Woken: by the lock's release only when a thread of the target owned it.
        let owned = f.futex.as_ref().is_some_and(|x| x.owner_tid.is_some());
        return owned.then(|| classify(f));
    }
    Some(classify(f))
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
        (Some(cause), Some(call)) => {
            let ret = first.and_then(|c| Some((c.ret?, c.end_ns?.saturating_sub(c.start_ns?))));
            let returned = ret.map_or(String::new(), |(ret, ns)| {
                format!(
                    " returned {ret} after {:.3} ms, not interrupted",
                    ns as f64 / 1e6
                )
            });
            format!(
                "at the request in {call}, which{returned}; {}",
                evidence(cause, f)
            )
        }
        (None, Some(call)) => match runtime_wait(f) {
            Some(wait) => format!(
                "at the request in the runtime's wait {wait} ({call}), which the request ends"
            ),
            None if first.is_some_and(interrupted) => {
                format!("at the request in {call}, which the request interrupted")
            }
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
