//! Calls a signal interrupted during the window and the program called again: the signal's
//! EINTR reached the program, which retried (libevent's `epoll_dispatch` does on EINTR) instead of
//! going on to an update point.

use super::{Facts, FrameFact};
use crate::tracker::{Call, RESTART_RETURNS};

/// `-EINTR`, as a system call's exit sees it.
const EINTR_RETURN: i64 = -4;

/// A signal ended `call` and the program saw it: it returned `-EINTR`, or an `-ERESTART*` the
/// kernel did not restart (a handler without `SA_RESTART`, or one of the calls never restarted).
pub fn interrupted(call: &Call) -> bool {
    call.ret
        .is_some_and(|r| r == EINTR_RETURN || RESTART_RETURNS.contains(&r))
        && !call.restarted()
}

/// How many calls of the syscall the thread is blocked in (or was in at the request) returned
/// to the program interrupted during the window and were followed by another call of it: each
/// is a retry.
pub fn eintr_retries(f: &Facts) -> usize {
    let Some(blocked) = f.blocked else {
        return 0;
    };
    let Some(last) = f.calls.iter().rposition(|c| c.nr == blocked.nr) else {
        return 0;
    };
    f.calls[..last]
        .iter()
        .filter(|c| c.nr == blocked.nr && interrupted(c))
        .count()
}

/// The function that loops: the innermost named frame of the program's own code, past the C
/// library (and past frames no symbol names, such as a library's static functions).
pub fn loop_frame(frames: &[FrameFact]) -> Option<&str> {
    frames
        .iter()
        .filter(|f| !f.is_system())
        .find_map(|f| f.function.as_deref())
}
