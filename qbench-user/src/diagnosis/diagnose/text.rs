//! The diagnosis for people: the evidence seen and the change that would fix it.

use super::{Cause, Facts, eintr_retries, loop_frame, runtime_wait};
use crate::syscalls;

/// The runtime's wrapper for the condition wait `f` is in: the timed one for a wait with a
/// timeout (by its stack, or without one, by the futex call's timeout argument).
fn cond_wrapper(f: &Facts) -> &'static str {
    let timed_frame = |name: &String| {
        let name = name.trim_start_matches('_');
        name.starts_with("pthread_cond_timedwait") || name.starts_with("pthread_cond_clockwait")
    };
    let timed = if f.stack_functions.is_empty() {
        f.blocked.is_some_and(|b| b.args[3] != 0)
    } else {
        f.stack_functions.iter().any(timed_frame)
    };
    if timed {
        "qbench_pthread_cond_timedwait"
    } else {
        "qbench_pthread_cond_wait"
    }
}

/// The change that would fix it, for people.
pub fn hint(cause: Cause, f: &Facts) -> String {
    let owner = f
        .futex
        .as_ref()
        .and_then(|x| {
            x.owner_tid
                .map(|t| format!("thread {t} ({})", x.owner_comm.as_deref().unwrap_or("?")))
        })
        .unwrap_or_else(|| "its owner".to_string());
    let lock = f
        .futex
        .as_ref()
        .and_then(|x| x.symbol.clone())
        .unwrap_or_else(|| "the lock".to_string());
    match cause {
        Cause::CondWaitUnwrapped => format!(
            "use {} and check qbench_update_requested() in the wait loop; \
             it returns after an update (a spurious wake-up, as POSIX allows), so re-check the predicate",
            cond_wrapper(f)
        ),
        Cause::MutexWait => format!("waits for {lock}, held by {owner}: see why that thread is late"),
        Cause::LockHeldAtUpdatePoint => {
            format!("release {lock} before the update point: {owner} is parked holding it")
        }
        Cause::IoRestarted => "install the update signal's handler without SA_RESTART".into(),
        Cause::EintrRetried => format!(
            "break {} from an update callback (event_base_loopbreak, pcap_breakloop, a write to a \
             notify pipe or eventfd), or put an update point in it",
            loop_frame(&f.frames).unwrap_or("the loop that calls it again")
        ),
        Cause::RuntimeWait => {
            let wait = runtime_wait(f).unwrap_or_else(|| "the runtime's wait".into());
            format!(
                "nothing to change in the wait: {wait} returns when the runtime interrupts the \
                 thread for an update; if the thread waits again, the loop around it needs an \
                 update point"
            )
        }
        Cause::IoBlocked => "add an update point before the call, or make the call interruptible".into(),
        Cause::Sleeping => "use qbench_sleep, qbench_usleep or qbench_nanosleep, which return when an update is \
             requested, and put an update point in the loop around the sleep"
            .into(),
        Cause::Running => "add an update point inside the long-running loop".into(),
        Cause::Uninterruptible => format!(
            "nothing can wake it: it waits in the kernel in {}",
            f.wchan.as_deref().filter(|w| !w.is_empty() && *w != "0").unwrap_or("an unknown function")
        ),
        Cause::Stopped if f.state == Some('t') => {
            "a tracer (a debugger, strace) holds it stopped: detach it or continue the thread".into()
        }
        Cause::Stopped => "it was stopped by a signal (SIGSTOP, Ctrl-Z): continue it with SIGCONT".into(),
        Cause::NotParticipating => {
            "register it (qbench_thread_register) if the update must wait for it; otherwise nothing to do".into()
        }
    }
}

/// The evidence, one line for people.
pub fn evidence(cause: Cause, f: &Facts) -> String {
    let call = f.blocked.map(|b| syscalls::describe(b.nr, &b.args));
    let mut parts: Vec<String> = Vec::new();
    match cause {
        Cause::Uninterruptible => {
            parts.push(format!("state D in {}", f.wchan.as_deref().unwrap_or("?")))
        }
        Cause::Stopped => parts.push(match f.state {
            Some('t') => "state t: stopped by a tracer".to_string(),
            _ => "state T: stopped by a signal".to_string(),
        }),
        Cause::Running => parts.push(format!(
            "state {} with no blocking call",
            f.state.unwrap_or('?')
        )),
        Cause::NotParticipating if !f.participating && f.participation_known => {
            parts.push("the runtime does not list it among its participating threads".into())
        }
        Cause::NotParticipating if !f.participating => {
            parts.push("the runtime reached full quiescence without it".into())
        }
        Cause::NotParticipating => parts.push(format!(
            "no update point reached in {} earlier update(s)",
            f.earlier_updates
        )),
        Cause::IoRestarted => {
            let restarts = f.calls.iter().filter(|c| c.restarted()).count();
            parts.push(format!("restarted {restarts} time(s) by the kernel after the update signal's handler: it has SA_RESTART"));
        }
        Cause::Sleeping => {
            if let Some(ns) = f.sleep_ns {
                parts.push(format!("asked to sleep {:.3} s", ns as f64 / 1e9));
            }
            let retries = eintr_retries(f);
            if retries > 0 {
                parts.push(format!("interrupted {retries} time(s) and slept again"));
            }
        }
        Cause::EintrRetried => parts.push(format!(
            "interrupted {} time(s) by a signal during the update (EINTR) and called again{}",
            eintr_retries(f),
            loop_frame(&f.frames)
                .map(|l| format!(" by {l}"))
                .unwrap_or_default()
        )),
        Cause::RuntimeWait => parts.push(format!(
            "in the runtime's interruptible wait {}: it arrives when the runtime interrupts it",
            runtime_wait(f).unwrap_or_else(|| "?".into())
        )),
        _ => {}
    }
    if let Some(call) = call {
        parts.push(call);
    }
    if let Some(fd) = &f.fd {
        parts.push(format!("fd is {fd}"));
    }
    if let Some(x) = &f.futex {
        if let Some(symbol) = &x.symbol {
            parts.push(format!("futex in {symbol}"));
        }
        if let Some(owner) = x.owner_tid {
            let parked = if x.owner_parked {
                ", parked at an update point"
            } else {
                ""
            };
            parts.push(format!(
                "owner thread {owner} ({}){parked}",
                x.owner_comm.as_deref().unwrap_or("?")
            ));
        }
    }
    parts.join("; ")
}

/// Why a diagnosed thread's stack was not read: only a missing thread blocked in a call has
/// registers `/proc` shows.
pub fn stack_not_read(arrived: bool) -> &'static str {
    if arrived {
        "not read: the thread had arrived (it is at an update point now)"
    } else {
        "not read: the thread was in no blocking call (a running thread's registers cannot be read from outside)"
    }
}
