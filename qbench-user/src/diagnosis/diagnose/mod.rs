//! Why a thread did not reach an update point, from facts gathered about it: the cause (a stable
//! vocabulary, documented in the README), and the change that would fix it. Pure: the facts are
//! collected elsewhere (`evidence`), so every rule is tested without a target.
//!
//! This folder: the causes and the rules for a missing thread (here), the rules for the thread
//! that arrived last (`arrived`), the runtime's own waits (`runtime`), calls a signal interrupted
//! and the program called again (`retry`), how long a thread has waited (`span`), and the texts
//! for people (`text`).

mod arrived;
mod retry;
mod runtime;
mod span;
mod text;

pub use self::arrived::{arrived_evidence, arrived_hint, classify_arrived};
pub use self::retry::{eintr_retries, interrupted, loop_frame};
pub use self::runtime::{is_runtime_symbol, runtime_wait};
pub use self::span::{WaitSpan, wait_span};
pub use self::text::{evidence, hint, stack_not_read};

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
    /// A signal interrupted the call during the window (EINTR reached the program), and the
    /// program called it again without passing an update point (a retry loop, libevent's say).
    EintrRetried,
    /// In one of the runtime's own interruptible waits (`qbench_usleep`, a wrapped condition
    /// wait): the runtime ends it when it interrupts the thread for an update.
    RuntimeWait,
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
            Cause::EintrRetried => "eintr_retried",
            Cause::RuntimeWait => "runtime_wait",
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
    /// Its user stack's frames, innermost first, with the object each is in (empty when
    /// unknown).
    pub frames: Vec<FrameFact>,
    pub futex: Option<Futex>,
    /// What the call's file descriptor is ("TCP 127.0.0.1:5555 LISTEN", "pipe", a path).
    pub fd: Option<String>,
    /// The duration a sleep asked for.
    pub sleep_ns: Option<u64>,
    /// Why the duration a sleep asked for is left out, when it was not read.
    pub sleep_note: Option<String>,
    /// For the thread that arrived last: from the request to its arrival. None for a thread
    /// that did not arrive.
    pub arrived_after_ns: Option<u64>,
}

/// One frame of a user stack, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameFact {
    pub function: Option<String>,
    /// The file name of the object (`libc.so.6`, `libqbench.so`), or `[vdso]`.
    pub object: Option<String>,
}

impl FrameFact {
    /// The C library, the dynamic loader or the vDSO: frames between the program and the kernel.
    pub fn is_system(&self) -> bool {
        self.object.as_deref().is_some_and(|o| {
            [
                "libc.so",
                "libc-",
                "libpthread",
                "ld-linux",
                "ld-musl",
                "[vdso]",
            ]
            .iter()
            .any(|p| o.starts_with(p))
        })
    }
}

/// The cause (None where the evidence supports none), the evidence and the hint: by the rules
/// for a missing thread, or for the last arrival when `arrived_after_ns` is known.
pub fn explain(f: &Facts) -> (Option<Cause>, String, String) {
    if f.arrived_after_ns.is_some() {
        let cause = classify_arrived(f);
        (cause, arrived_evidence(cause, f), arrived_hint(cause, f))
    } else {
        let cause = classify(f);
        (Some(cause), evidence(cause, f), hint(cause, f))
    }
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
    // The runtime's wait ends at the runtime's interruption: whatever call it is, the program
    // is not the one waiting.
    if runtime_wait(f).is_some() {
        return Cause::RuntimeWait;
    }
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
        // A sleep's fix is the runtime's sleep, whether or not a signal cut one short before.
        "nanosleep" | "clock_nanosleep" => Cause::Sleeping,
        _ if eintr_retries(f) > 0 => Cause::EintrRetried,
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

#[cfg(test)]
mod tests;
