//! A blocked sleeper's requested duration, read from its memory when the report is made. The
//! call's `req` pointer was taken when the call began; by the time it is read the thread may have
//! left that sleep (between two sleeps, or in another call), and the memory there may hold
//! anything. So the figure is read between two readings of `/proc/PID/task/TID/syscall`, and kept
//! only if both show the sleep diagnosed, with the same `req` pointer.

use std::time::Duration;

use crate::diagnosis::{evidence, memory::Memory};
use crate::tracker::Blocked;
use crate::{clock, syscalls};

/// `clock_nanosleep`'s flag for a time to sleep until rather than a duration.
const TIMER_ABSTIME: u64 = 1;

/// The duration sleep `blocked` asked for: `Ok(None)` for a call that is no sleep or a request
/// that cannot be read, `Err(note)` when the thread was not in that sleep while it was read.
pub fn requested(
    pid: u32,
    tid: u32,
    memory: Option<&Memory>,
    blocked: &Blocked,
) -> Result<Option<Duration>, String> {
    let Some(arg) = request_arg(blocked.nr) else {
        return Ok(None);
    };
    let Some(memory) = memory else {
        return Ok(None);
    };
    let before = evidence::settle(pid, tid).unwrap_or_default();
    // Not read at all when the thread is already elsewhere: nothing there is its request.
    let asked = left_sleep(blocked, arg, &before)
        .is_none()
        .then(|| memory.read_timespec(blocked.args[arg]))
        .flatten();
    let after = evidence::settle(pid, tid).unwrap_or_default();
    let asked = kept(blocked, arg, [&before, &after], asked)?;
    Ok(asked.and_then(|asked| from_call_start(blocked, asked)))
}

/// The request `asked`, read between two readings of the thread's syscall file (`texts`), if
/// both show sleep `blocked` with its `req` (argument `arg`); else why not.
fn kept(
    blocked: &Blocked,
    arg: usize,
    texts: [&str; 2],
    asked: Option<Duration>,
) -> Result<Option<Duration>, String> {
    if let Some(note) = texts.iter().find_map(|t| left_sleep(blocked, arg, t)) {
        return Err(note);
    }
    // A sleep that blocked asked for more than nothing: a zero read is of memory the thread
    // reused (the same pointer, a later request being built), not its request.
    Ok(asked.filter(|d| !d.is_zero()))
}

/// Which argument of call `nr` points at the requested `struct timespec`: `nanosleep(req, rem)`,
/// `clock_nanosleep(clock, flags, req, rem)`.
fn request_arg(nr: i64) -> Option<usize> {
    match syscalls::by_number(nr)?.name {
        "nanosleep" => Some(0),
        "clock_nanosleep" => Some(2),
        _ => None,
    }
}

/// Why a request read while the thread's syscall file said `text` is not the request of sleep
/// `blocked` (whose `req` is argument `arg`); None when the file shows that call with that pointer.
fn left_sleep(blocked: &Blocked, arg: usize, text: &str) -> Option<String> {
    let is = evidence::left_call(blocked, arg, "request", text)?;
    let was = syscalls::name(blocked.nr);
    Some(format!(
        "not read: when it could be read the thread had left {was} and was {is}, so the memory there would not be this sleep's request"
    ))
}

/// `asked` as a duration from the call's start: itself, or for a sleep until a time on a clock
/// (`TIMER_ABSTIME`), that time less the clock's reading when the call began.
fn from_call_start(blocked: &Blocked, asked: Duration) -> Option<Duration> {
    if request_arg(blocked.nr) != Some(2) || blocked.args[1] & TIMER_ABSTIME == 0 {
        return Some(asked);
    }
    let clock = blocked.args[0] as libc::clockid_t;
    let began = began_on_clock(
        blocked.since_ns?,
        clock::monotonic_ns(),
        clock::now_ns(clock)?,
    );
    Some(asked.saturating_sub(Duration::from_nanos(began)))
}

/// What a clock that reads `clock_now_ns` now read when CLOCK_MONOTONIC read `since_ns`
/// (CLOCK_MONOTONIC reading `monotonic_now_ns` now).
fn began_on_clock(since_ns: u64, monotonic_now_ns: u64, clock_now_ns: u64) -> u64 {
    clock_now_ns.saturating_sub(monotonic_now_ns.saturating_sub(since_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_until_a_time_is_the_time_from_when_the_call_began() {
        // Entered 2 s ago (monotonic 8 s then, 10 s now) on a clock that reads 1,000 s now.
        let began = began_on_clock(8_000_000_000, 10_000_000_000, 1_000_000_000_000);
        assert_eq!(began, 998_000_000_000);
    }

    #[test]
    fn the_request_pointer_is_the_calls_own_argument() {
        assert_eq!(request_arg(35), Some(0)); // nanosleep
        assert_eq!(request_arg(230), Some(2)); // clock_nanosleep
        assert_eq!(request_arg(0), None); // read
    }

    #[test]
    fn a_request_is_read_only_while_the_thread_is_in_that_sleep() {
        // Diagnosed in clock_nanosleep(CLOCK_MONOTONIC, 0, 0x7ffd1000, ...).
        let blocked = Blocked {
            nr: 230,
            args: [1, 0, 0x7ffd_1000, 0x7ffd_1000, 0, 0],
            since_ns: Some(5),
        };
        let sleeping = "230 0x1 0x0 0x7ffd1000 0x7ffd1000 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        assert_eq!(left_sleep(&blocked, 2, sleeping), None);
        // Another sleep of the same thread, whose request lies elsewhere: this pointer's memory
        // may be reused by then.
        let elsewhere = "230 0x1 0x0 0x7ffd2000 0x0 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        assert_eq!(
            left_sleep(&blocked, 2, elsewhere).as_deref(),
            Some(
                "not read: when it could be read the thread had left clock_nanosleep and was in clock_nanosleep with another request (0x7ffd2000), so the memory there would not be this sleep's request"
            )
        );
        let in_futex = "202 0x5000 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd0f00 0x7f0000005678";
        assert!(left_sleep(&blocked, 2, in_futex).is_some_and(|n| n.contains("was in futex")));
        assert!(
            left_sleep(&blocked, 2, "-1 0x7ffd0f00 0x7f0000001234")
                .is_some_and(|n| n.contains("was in no call"))
        );
        // On a CPU (after the settling wait): not known to be in the call, so not read.
        assert!(
            left_sleep(&blocked, 2, "running").is_some_and(|n| n.contains("was running on a CPU"))
        );
        // Unreadable (the thread is gone): nothing shows it in the call.
        assert!(left_sleep(&blocked, 2, "").is_some());
        // nanosleep's request is its first argument.
        let nano = Blocked {
            nr: 35,
            args: [0x7ffd_3000, 0x7ffd_3000, 0, 0, 0, 0],
            since_ns: None,
        };
        let in_nano = "35 0x7ffd3000 0x7ffd3000 0x0 0x0 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        assert_eq!(left_sleep(&nano, 0, in_nano), None);
    }

    #[test]
    fn a_request_is_kept_only_between_two_readings_of_that_sleep() {
        let blocked = Blocked {
            nr: 35,
            args: [0x7ffd_3000, 0, 0, 0, 0, 0],
            since_ns: None,
        };
        let sleeping = "35 0x7ffd3000 0x0 0x0 0x0 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        let woken = "-1 0x7ffd0f00 0x7f0000001234";
        let read = Some(Duration::from_secs(7));
        assert_eq!(kept(&blocked, 0, [sleeping, sleeping], read), Ok(read));
        // Left the sleep while its memory was read: whatever was read is not kept.
        assert!(kept(&blocked, 0, [sleeping, woken], read).is_err());
        assert!(kept(&blocked, 0, [woken, sleeping], read).is_err());
        // In the sleep throughout, but nothing there, or nothing at all, asked.
        assert_eq!(kept(&blocked, 0, [sleeping, sleeping], None), Ok(None));
        assert_eq!(
            kept(&blocked, 0, [sleeping, sleeping], Some(Duration::ZERO)),
            Ok(None)
        );
    }

    #[test]
    fn a_relative_request_is_the_duration_asked() {
        let blocked = Blocked {
            nr: 230,
            args: [1, 0, 0x7ffd_1000, 0, 0, 0],
            since_ns: None,
        };
        let asked = Duration::from_millis(1500);
        assert_eq!(from_call_start(&blocked, asked), Some(asked));
        // Until a time, with no known start: nothing to measure from.
        let until = Blocked {
            args: [1, TIMER_ABSTIME, 0x7ffd_1000, 0, 0, 0],
            ..blocked
        };
        assert_eq!(from_call_start(&until, asked), None);
    }
}
