//! How long a thread has waited: the runtime interrupts a straggler every few milliseconds, so
//! the call it is in now began recently; the wait began at its first call of that syscall in the
//! window.

use crate::tracker::{Blocked, Call};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSpan {
    /// When it first entered the syscall it is blocked in, in this window; None when that call
    /// began before attach.
    pub first_blocked_ns: Option<u64>,
    /// How many times it entered that syscall again since.
    pub reentries: usize,
}

/// The span of the wait in `blocked`, from the window's `calls`.
pub fn wait_span(blocked: &Blocked, calls: &[Call]) -> WaitSpan {
    let mut same = calls.iter().filter(|c| c.nr == blocked.nr);
    match same.next() {
        Some(first) => WaitSpan {
            first_blocked_ns: first.start_ns,
            reentries: same.count(),
        },
        None => WaitSpan {
            first_blocked_ns: blocked.since_ns,
            reentries: 0,
        },
    }
}
