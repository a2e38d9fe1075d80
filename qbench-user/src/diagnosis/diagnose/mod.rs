//! Why a thread did not reach an update point, from facts gathered about it: the cause (a stable
//! vocabulary, documented in the README), and the change that would fix it. Pure: the facts are
//! collected elsewhere (`evidence`), so every rule is tested without a target.

use crate::syscalls::{self, Wake};
use crate::tracker::{Blocked, Call};

/// The cause codes. Stable: scripts match on `code()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A futex wait under a plain `pthread_cond_wait`: a signal never ends it.
    CondWaitUnwrapped,
    /// A futex wait under `pthread_mutex_lock`, for a lock another thread holds.
    MutexWait,
    /// A mutex wait whose owner is parked at an update point: the deadlock the study warns about.
    LockHeldAtUpdatePoint,
    /// The call was interrupted by the request and restarted by the kernel (SA_RESTART).
    IoRestarted,
    /// Blocked in an I/O call nothing interrupted.
    IoBlocked,
    /// In a plain sleep.
    Sleeping,
    /// On a CPU, not in a blocking call.
    Running,
    /// In uninterruptible sleep (D): no signal can wake it.
    Uninterruptible,
    /// Stopped (T: SIGSTOP or job control; t: held by a tracer such as a debugger): it runs no
    /// code, so it reaches no update point, until it is continued.
    Stopped,
    /// Not a thread the update waits on: the runtime quiesced without it, or it never reached an
    /// update point in any update observed.
    NotParticipating,
}

impl Cause {
    pub fn code(self) -> &'static str {
        match self {
            Cause::CondWaitUnwrapped => "cond_wait_unwrapped",
            Cause::MutexWait => "mutex_wait",
            Cause::LockHeldAtUpdatePoint => "lock_held_at_update_point",
            Cause::IoRestarted => "io_restarted",
            Cause::IoBlocked => "io_blocked",
            Cause::Sleeping => "sleeping",
            Cause::Running => "running",
            Cause::Uninterruptible => "uninterruptible",
            Cause::Stopped => "stopped",
            Cause::NotParticipating => "not_participating",
        }
    }
}

/// What a futex wait is known to be about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Futex {
    /// The data symbol holding the futex word, as `symbol+offset`.
    pub symbol: Option<String>,
    /// For a mutex: its owner (glibc keeps it in `__owner`, 8 bytes in), if a thread of the
    /// target.
    pub owner_tid: Option<u32>,
    pub owner_comm: Option<String>,
    /// The owner is parked at an update point in this window.
    pub owner_parked: bool,
}

/// Everything known about one thread at the end of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Scheduler state letter at the end (R, S, D, ...).
    pub state: Option<char>,
    /// The kernel function a D-state thread waits in (/proc/.../wchan).
    pub wchan: Option<String>,
    /// The call it is in at the end.
    pub blocked: Option<Blocked>,
    /// Its calls during the window.
    pub calls: Vec<Call>,
    /// False when the runtime quiesced without it.
    pub participating: bool,
    /// It reached an update point in some earlier update since attach.
    pub ever_arrived: bool,
    /// The runtime's own list said whether it participates (`participating`): nothing to infer.
    pub participation_known: bool,
    /// Updates observed before this one.
    pub earlier_updates: u64,
    /// Function names of its user stack, innermost first (empty when unknown).
    pub stack_functions: Vec<String>,
    pub futex: Option<Futex>,
    /// What the call's file descriptor is ("TCP 127.0.0.1:5555 LISTEN", "pipe", a path).
    pub fd: Option<String>,
    /// The duration a sleep asked for.
    pub sleep_ns: Option<u64>,
}

/// The cause of a thread's absence, by the first rule that applies.
pub fn classify(f: &Facts) -> Cause {
    if !f.participating || (!f.participation_known && f.earlier_updates > 0 && !f.ever_arrived) {
        return Cause::NotParticipating;
    }
    if matches!(f.state, Some('T' | 't')) {
        return Cause::Stopped;
    }
    if f.state == Some('D') {
        return Cause::Uninterruptible;
    }
    let Some(blocked) = f.blocked else {
        return Cause::Running;
    };
    let Some(call) = syscalls::by_number(blocked.nr) else {
        return Cause::IoBlocked;
    };
    if call.wake == Wake::Futex {
        return futex_cause(f, blocked);
    }
    // Interrupted, restarted by the kernel, and back in the same call: SA_RESTART.
    if f.calls.iter().any(|c| c.restarted() && c.nr == blocked.nr) {
        return Cause::IoRestarted;
    }
    match call.name {
        "nanosleep" | "clock_nanosleep" => Cause::Sleeping,
        _ => Cause::IoBlocked,
    }
}

fn futex_cause(f: &Facts, blocked: Blocked) -> Cause {
    let in_stack = |names: &[&str]| {
        f.stack_functions.iter().any(|frame| {
            names
                .iter()
                .any(|n| frame.trim_start_matches('_').starts_with(n))
        })
    };
    let mutex = if in_stack(&[
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "pthread_cond_clockwait",
    ]) {
        false
    } else if in_stack(&[
        "pthread_mutex_lock",
        "pthread_mutex_timedlock",
        "pthread_mutex_clocklock",
        "lll_lock_wait",
    ]) {
        true
    } else {
        // No stack: glibc's mutexes wait with FUTEX_WAIT, its condition variables with
        // FUTEX_WAIT_BITSET (op 9); an owner that is a thread of ours also says mutex.
        let op = blocked.args[1] & 0x7f;
        op != 9 || f.futex.as_ref().is_some_and(|x| x.owner_tid.is_some())
    };
    if !mutex {
        return Cause::CondWaitUnwrapped;
    }
    if f.futex.as_ref().is_some_and(|x| x.owner_parked) {
        Cause::LockHeldAtUpdatePoint
    } else {
        Cause::MutexWait
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
        Cause::CondWaitUnwrapped => {
            "use qbench_pthread_cond_wait and check qbench_update_requested() in the wait loop".into()
        }
        Cause::MutexWait => format!("waits for {lock}, held by {owner}: see why that thread is late"),
        Cause::LockHeldAtUpdatePoint => {
            format!("release {lock} before the update point: {owner} is parked holding it")
        }
        Cause::IoRestarted => "install the update signal's handler without SA_RESTART".into(),
        Cause::IoBlocked => "add an update point before the call, or make the call interruptible".into(),
        Cause::Sleeping => "use qbench_sleep or qbench_nanosleep, which return when an update is requested".into(),
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
        }
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

#[cfg(test)]
mod tests;
