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
    match syscalls::by_number(nr).map_or("", |c| c.name) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{EPOLL_WAIT, FUTEX, PENDING, blocked, ended, facts};
    use super::*;
    use crate::diagnosis::diagnose::{Futex, eintr_retries};

    #[test]
    fn the_last_arrival_gets_a_cause_only_where_the_evidence_supports_one() {
        // A worker whose epoll_wait the request interrupted: it arrived at once.
        let interrupted = Facts {
            blocked: blocked(EPOLL_WAIT, [5, 0x1000, 32, u64::from(u32::MAX), 0, 0]),
            calls: vec![ended(EPOLL_WAIT, 5, -4, false)],
            arrived_after_ns: Some(400_000),
            ..facts()
        };
        assert_eq!(classify_arrived(&interrupted), None);
        assert_eq!(
            eintr_retries(&interrupted),
            0,
            "interrupted, but not called again"
        );
        assert_eq!(
            arrived_evidence(None, &interrupted),
            "arrived 0.400 ms after the request; at the request in \
             epoll_wait(epfd=5, events=0x1000, maxevents=32, timeout_ms=-1), which the request interrupted"
        );
        assert_eq!(
            arrived_hint(None, &interrupted),
            "nothing to change: it arrived once the request reached it"
        );
        // In the runtime's wait at the request.
        let parked = Facts {
            blocked: blocked(FUTEX, [0x7000, 128, 0, 0, 0, 0]),
            calls: vec![ended(FUTEX, 5, 0, false)],
            futex: Some(Futex {
                symbol: Some(PENDING.into()),
                ..Futex::default()
            }),
            arrived_after_ns: Some(300_000),
            ..facts()
        };
        assert_eq!(classify_arrived(&parked), None);
        // A futex wait that ended with no owner known: woken, by whom is not known.
        let woken = Facts {
            futex: None,
            ..parked.clone()
        };
        assert_eq!(classify_arrived(&woken), None);
        // An epoll_wait that timed out on its own, then the thread arrived: the wait held it.
        let timed_out = Facts {
            blocked: blocked(EPOLL_WAIT, [5, 0x1000, 32, 1000, 0, 0]),
            calls: vec![ended(EPOLL_WAIT, 5, 0, false)],
            arrived_after_ns: Some(2_000_000),
            ..facts()
        };
        assert_eq!(classify_arrived(&timed_out), Some(Cause::IoBlocked));
        let said = arrived_evidence(Some(Cause::IoBlocked), &timed_out);
        assert!(
            said.starts_with(
                "arrived 2.000 ms after the request; at the request in epoll_wait(epfd=5, \
                 events=0x1000, maxevents=32, timeout_ms=1000), which returned 0 after 0.000 ms, \
                 not interrupted; "
            ),
            "{said}"
        );
        // A read (or an event wait) that returned because I/O came: that may be the update's own
        // callback waking the thread, so no cause; what is known is said, whatever is unknown.
        let mut read = Facts {
            blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
            calls: vec![ended(0, 5, 1, false)],
            arrived_after_ns: Some(2_000_000),
            ..facts()
        };
        assert_eq!(classify_arrived(&read), None);
        let woken = "arrived 2.000 ms after the request; at the request in read(fd=3, buf=NULL, count=1), \
                     which returned 1";
        assert_eq!(
            arrived_evidence(None, &read),
            format!(
                "{woken} after 0.000 ms: woken, by whom is not known (it may be the update's own callback)"
            )
        );
        read.calls[0].start_ns = None;
        assert_eq!(
            arrived_evidence(None, &read),
            format!("{woken}: woken, by whom is not known (it may be the update's own callback)")
        );
        // No call seen at the request: a thread the request woke at once looks the same as one
        // that was running, so no cause.
        let unseen = Facts {
            arrived_after_ns: Some(386_000),
            ..facts()
        };
        assert_eq!(classify_arrived(&unseen), None);
        assert_eq!(
            arrived_evidence(None, &unseen),
            "arrived 0.386 ms after the request; no blocking call seen at the request; 0 call(s) before arriving"
        );
        // It blocked after the request: what held it is not one call.
        let later = Facts {
            calls: vec![ended(0, 50, 1, false)],
            ..unseen
        };
        assert_eq!(classify_arrived(&later), None);
    }
}
