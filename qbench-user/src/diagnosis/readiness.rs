//! Readiness: what an update requested now would wait for, judged from /proc alone (no request,
//! no syscall tracepoints). Pure: the caller reads each thread's state, blocked call, requested
//! sleep and (for futex waits) stack; this module decides and words it.
//!
//! Only what is knowable is counted. A plain condition wait is never ended by a signal; a thread
//! in uninterruptible sleep cannot be woken; a sleep ends when it ends (the signal interrupts it,
//! but a loop that resumes it without an update point sleeps on). Any other blocking call
//! (`read`, `accept`, ...) returns EINTR or is restarted, and whether the thread then reaches an
//! update point depends on code this cannot see: such threads are not counted.

use std::sync::Arc;
use std::time::Duration;

use crate::syscalls;
use crate::tracker::RUNTIME_HELPER_COMM;

/// `futex(2)` operation of glibc's condition variables (`FUTEX_WAIT_BITSET`).
const FUTEX_WAIT_BITSET: u64 = 9;
/// `clock_nanosleep(2)` flag: the requested time is an absolute time on the clock.
const TIMER_ABSTIME: u64 = 1;

/// What an update requested now would wait for, for one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// A futex wait under a plain `pthread_cond_wait` (not the runtime's wrapper).
    PlainConditionWait,
    /// A sleep; `left` is what remains (an absolute `clock_nanosleep`) or the requested
    /// duration, an upper bound (a relative one); None when the request could not be read.
    Sleeping { left: Option<Duration> },
    /// Uninterruptible sleep (D): no signal wakes it.
    Uninterruptible,
}

impl Blocker {
    /// The label value of `qbench_ready_blockers{cause}`.
    pub fn cause(self) -> &'static str {
        match self {
            Blocker::PlainConditionWait => "plain_condition_wait",
            Blocker::Sleeping { .. } => "sleeping",
            Blocker::Uninterruptible => "uninterruptible",
        }
    }

    /// Every cause, so that gauges can be set to zero too.
    pub const CAUSES: [&'static str; 3] = ["plain_condition_wait", "sleeping", "uninterruptible"];
}

/// One thread as read from /proc (and the target's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadView {
    pub comm: String,
    /// Scheduler state letter (R, S, D, ...).
    pub state: char,
    /// The syscall it is blocked in, with its arguments.
    pub syscall: Option<(i64, [u64; 6])>,
    /// For a sleep: the `struct timespec` it asked for, read from its memory.
    pub requested: Option<Duration>,
    /// For an absolute `clock_nanosleep`: that clock's time now.
    pub clock_now: Option<Duration>,
    /// Function names of its user stack (read only for futex waits; empty when unknown), shared
    /// with the checks that find the thread still in the same wait.
    pub stack_functions: Arc<[String]>,
}

/// Whether a thread blocked in `syscall` needs its requested sleep (and the clock) read: the
/// address of the timespec, and the clock id for an absolute sleep.
pub fn sleep_request(syscall: (i64, [u64; 6])) -> Option<(u64, Option<i32>)> {
    let (nr, args) = syscall;
    match syscalls::name(nr).as_str() {
        "nanosleep" => Some((args[0], None)),
        "clock_nanosleep" => {
            let absolute = args[1] & TIMER_ABSTIME != 0;
            Some((args[2], absolute.then_some(args[0] as i32)))
        }
        _ => None,
    }
}

/// Whether a thread blocked in `syscall` is in a futex wait worth a stack (a condition wait).
pub fn wants_stack(syscall: (i64, [u64; 6])) -> bool {
    syscalls::name(syscall.0) == "futex" && syscall.1[1] & 0x7f == FUTEX_WAIT_BITSET
}

/// What would hold an update back in this thread, if anything known.
pub fn classify(t: &ThreadView) -> Option<Blocker> {
    // The runtime's helper never takes part in an update.
    if t.comm == RUNTIME_HELPER_COMM {
        return None;
    }
    if t.state == 'D' {
        return Some(Blocker::Uninterruptible);
    }
    let syscall = t.syscall?;
    if wants_stack(syscall) {
        // The runtime's own waits (qbench_pthread_cond_wait, its park) are woken by the request;
        // without a stack, FUTEX_WAIT_BITSET alone says condition variable, as `diagnose` does.
        let in_runtime = t
            .stack_functions
            .iter()
            .any(|f| f.trim_start_matches('_').starts_with("qbench_"));
        return (!in_runtime).then_some(Blocker::PlainConditionWait);
    }
    let (_, absolute_clock) = sleep_request(syscall)?;
    let left = match (absolute_clock, t.requested, t.clock_now) {
        (Some(_), Some(at), Some(now)) => Some(at.saturating_sub(now)),
        (Some(_), _, _) => None,
        (None, requested, _) => requested,
    };
    Some(Blocker::Sleeping { left })
}

/// The blockers of one process, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub plain_condition_waits: u64,
    pub sleeping: u64,
    /// The longest sleep left among the sleeping threads whose request was read.
    pub longest_sleep: Option<Duration>,
    pub uninterruptible: u64,
}

impl Summary {
    pub fn of(blockers: impl IntoIterator<Item = Blocker>) -> Self {
        let mut s = Summary::default();
        for b in blockers {
            match b {
                Blocker::PlainConditionWait => s.plain_condition_waits += 1,
                Blocker::Uninterruptible => s.uninterruptible += 1,
                Blocker::Sleeping { left } => {
                    s.sleeping += 1;
                    s.longest_sleep = s.longest_sleep.max(left);
                }
            }
        }
        s
    }

    /// The count for `qbench_ready_blockers{cause}`.
    pub fn count(&self, cause: &str) -> u64 {
        match cause {
            "plain_condition_wait" => self.plain_condition_waits,
            "sleeping" => self.sleeping,
            "uninterruptible" => self.uninterruptible,
            _ => 0,
        }
    }
}

/// The stderr line: `pid 123 (name): an update now would wait for 2 threads in plain condition
/// waits, 1 sleeping (up to 800 ms)`.
pub fn line(pid: u32, comm: &str, s: &Summary) -> String {
    let mut parts = Vec::new();
    let threads = |n: u64| if n == 1 { "thread" } else { "threads" };
    if s.plain_condition_waits > 0 {
        let n = s.plain_condition_waits;
        let waits = if n == 1 { "wait" } else { "waits" };
        parts.push(format!("{n} {} in plain condition {waits}", threads(n)));
    }
    if s.sleeping > 0 {
        let up_to = s
            .longest_sleep
            .map(|d| format!(" (up to {})", human_duration(d)))
            .unwrap_or_default();
        parts.push(format!("{} sleeping{up_to}", s.sleeping));
    }
    if s.uninterruptible > 0 {
        let n = s.uninterruptible;
        parts.push(format!("{n} {} in uninterruptible sleep", threads(n)));
    }
    let what = if parts.is_empty() {
        "nothing known would hold an update back".to_string()
    } else {
        format!("an update now would wait for {}", parts.join(", "))
    };
    format!(
        "pid {pid} ({}): {what}",
        crate::report::output::escape(comm)
    )
}

/// 800 ms, 1.5 s, 250 us: three significant digits at most.
pub fn human_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (value, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "us")
    } else {
        (ns, "ns")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUTEX: i64 = 202;
    const NANOSLEEP: i64 = 35;
    const CLOCK_NANOSLEEP: i64 = 230;
    const READ: i64 = 0;

    fn view(state: char, syscall: Option<(i64, [u64; 6])>) -> ThreadView {
        ThreadView {
            comm: "worker".into(),
            state,
            syscall,
            ..ThreadView::default()
        }
    }

    #[test]
    fn classification_table() {
        let ms = Duration::from_millis;
        let cond = (FUTEX, [0x1000, 0x89, 0, 0, 0, 0xffff_ffff]); // WAIT_BITSET|PRIVATE
        let mutex = (FUTEX, [0x1000, 0x80, 2, 0, 0, 0]); // WAIT|PRIVATE
        let rel_sleep = (CLOCK_NANOSLEEP, [0, 0, 0x7ff0, 0x7ff0, 0, 0]);
        let abs_sleep = (CLOCK_NANOSLEEP, [1, 1, 0x7ff0, 0, 0, 0]);
        let mut in_runtime = view('S', Some(cond));
        in_runtime.stack_functions = [
            "__futex_abstimed_wait_common".into(),
            "pthread_cond_wait".into(),
            "qbench_pthread_cond_wait".into(),
        ]
        .into();
        let mut plain_with_stack = view('S', Some(cond));
        plain_with_stack.stack_functions = ["pthread_cond_wait".into(), "worker".into()].into();
        let mut helper = view('S', Some(cond));
        helper.comm = RUNTIME_HELPER_COMM.into();
        let with = |mut v: ThreadView, requested: Option<Duration>, now: Option<Duration>| {
            v.requested = requested;
            v.clock_now = now;
            v
        };
        let table: Vec<(ThreadView, Option<Blocker>)> = vec![
            (view('S', Some(cond)), Some(Blocker::PlainConditionWait)),
            (plain_with_stack, Some(Blocker::PlainConditionWait)),
            (in_runtime, None),
            (helper, None),
            (view('S', Some(mutex)), None),
            (view('S', Some((READ, [3, 0, 1, 0, 0, 0]))), None),
            (view('R', None), None),
            (view('D', None), Some(Blocker::Uninterruptible)),
            (
                view('D', Some((READ, [3, 0, 1, 0, 0, 0]))),
                Some(Blocker::Uninterruptible),
            ),
            (
                with(
                    view('S', Some((NANOSLEEP, [0x7ff0, 0, 0, 0, 0, 0]))),
                    Some(ms(800)),
                    None,
                ),
                Some(Blocker::Sleeping {
                    left: Some(ms(800)),
                }),
            ),
            (
                with(view('S', Some(rel_sleep)), Some(ms(100_000)), None),
                Some(Blocker::Sleeping {
                    left: Some(ms(100_000)),
                }),
            ),
            (
                view('S', Some(rel_sleep)),
                Some(Blocker::Sleeping { left: None }),
            ),
            (
                with(view('S', Some(abs_sleep)), Some(ms(5_300)), Some(ms(5_000))),
                Some(Blocker::Sleeping {
                    left: Some(ms(300)),
                }),
            ),
            (
                with(view('S', Some(abs_sleep)), Some(ms(4_000)), Some(ms(5_000))),
                Some(Blocker::Sleeping {
                    left: Some(Duration::ZERO),
                }),
            ),
            (
                with(view('S', Some(abs_sleep)), Some(ms(4_000)), None),
                Some(Blocker::Sleeping { left: None }),
            ),
        ];
        for (i, (thread, want)) in table.iter().enumerate() {
            assert_eq!(classify(thread), *want, "row {i}: {thread:?}");
        }
    }

    #[test]
    fn what_to_read() {
        assert_eq!(
            sleep_request((NANOSLEEP, [0x10, 0, 0, 0, 0, 0])),
            Some((0x10, None))
        );
        assert_eq!(
            sleep_request((CLOCK_NANOSLEEP, [1, 1, 0x20, 0, 0, 0])),
            Some((0x20, Some(1)))
        );
        assert_eq!(
            sleep_request((CLOCK_NANOSLEEP, [0, 0, 0x20, 0, 0, 0])),
            Some((0x20, None))
        );
        assert_eq!(sleep_request((READ, [0; 6])), None);
        assert!(wants_stack((FUTEX, [0, 0x89, 0, 0, 0, 0])));
        assert!(!wants_stack((FUTEX, [0, 0x80, 0, 0, 0, 0])));
    }

    #[test]
    fn lines() {
        let ms = Duration::from_millis;
        let s = Summary::of([
            Blocker::PlainConditionWait,
            Blocker::PlainConditionWait,
            Blocker::Sleeping {
                left: Some(ms(300)),
            },
            Blocker::Sleeping {
                left: Some(ms(800)),
            },
            Blocker::Sleeping { left: None },
        ]);
        assert_eq!(
            (
                s.count("plain_condition_wait"),
                s.count("sleeping"),
                s.count("uninterruptible")
            ),
            (2, 3, 0)
        );
        assert_eq!(
            line(123, "memcached-like", &s),
            "pid 123 (memcached-like): an update now would wait for 2 threads in plain condition \
             waits, 3 sleeping (up to 800 ms)"
        );
        let s = Summary::of([
            Blocker::PlainConditionWait,
            Blocker::Sleeping { left: None },
            Blocker::Uninterruptible,
        ]);
        assert_eq!(
            line(7, "x", &s),
            "pid 7 (x): an update now would wait for 1 thread in plain condition wait, 1 sleeping, \
             1 thread in uninterruptible sleep"
        );
        assert_eq!(
            line(7, "x", &Summary::default()),
            "pid 7 (x): nothing known would hold an update back"
        );
        assert_eq!(human_duration(ms(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_secs(100)), "100 s");
        assert_eq!(human_duration(Duration::from_micros(250)), "250 us");
    }
}
