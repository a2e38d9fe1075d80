//! The update signal delivered to a thread before the syscall tracepoints were attached (someone
//! else's request to a target without the runtime): the call the thread was in at the request
//! ended then, unseen, and the call the tracepoints find it in afterwards is a later one. The
//! delivery says when, and its handler's `SA_RESTART` (with what kind of call it was) whether
//! the kernel restarted the call or returned EINTR to the program: the interrupted call is put
//! back in the thread's calls as the tracepoints would have recorded it, and the diagnosis
//! rules (`eintr_retried`, `io_restarted`) decide on it as on any other.

use super::{Blocked, Call, Tracker};
use crate::syscalls::{self, Wake};

/// `sa_handler` values that run no handler: `SIG_DFL`, `SIG_IGN`. A call the signal ended is
/// then restarted without the program knowing (or the process ends): nothing to add.
const NO_HANDLER: [u64; 2] = [0, 1];
/// `sa_flags`: restart a call the handler interrupted (where the call allows it).
const SA_RESTART: u64 = 0x1000_0000;
/// `-EINTR`: what a call the kernel does not restart returns to the program.
const EINTR_RETURN: i64 = -4;
/// `-ERESTARTSYS`: what the exit tracepoint sees of a call the kernel then restarts.
const ERESTARTSYS: i64 = -512;

impl Tracker {
    /// The syscall tracepoints were attached at `ns` (CLOCK_MONOTONIC); for an open window they
    /// opened after, the calls deliveries before `ns` ended were not seen.
    pub fn tracking_attached(&mut self, ns: u64) {
        if let Some(w) = self.window.as_mut() {
            w.tracked_from_ns = Some(ns);
        }
    }

    /// The update signal was delivered to thread `tid` at `ts_ns`, to `handler` with `flags`.
    pub(super) fn on_deliver(&mut self, tid: u32, ts_ns: u64, handler: u64, flags: u64) {
        let unseen = self.window.as_ref().is_some_and(|w| {
            w.tracked_from_ns
                .is_some_and(|from| w.request_ns <= from && ts_ns < from)
        });
        if !unseen || NO_HANDLER.contains(&handler) {
            return;
        }
        let Some(thread) = self.threads.get_mut(&tid) else {
            return;
        };
        // A call seen ending came after the attach: the tracepoints saw the interruption.
        if thread.arrival_ns.is_some() || thread.calls.iter().any(|c| c.end_ns.is_some()) {
            return;
        }
        // One delivery ends the one call the thread was in at the request.
        if let Some(was) = thread.at_request.take() {
            thread.calls.insert(0, ended_by_signal(was, ts_ns, flags));
        }
    }
}

/// Call `was`, ended at `ts_ns` by a signal whose handler has `flags`: restarted by the kernel
/// when the handler has `SA_RESTART` and the call is one the kernel restarts, else returned to
/// the program with EINTR.
fn ended_by_signal(was: Blocked, ts_ns: u64, flags: u64) -> Call {
    let restartable = syscalls::by_number(was.nr).is_some_and(|c| c.wake != Wake::SignalAlways);
    let restarted = flags & SA_RESTART != 0 && restartable;
    Call {
        nr: was.nr,
        args: was.args,
        start_ns: was.since_ns,
        end_ns: Some(ts_ns),
        ret: Some(if restarted { ERESTARTSYS } else { EINTR_RETURN }),
        restarted,
    }
}

#[cfg(test)]
mod tests {
    use qbench_common::ThreadState;

    use super::*;
    use crate::diagnosis::diagnose::{Cause, Facts, classify};
    use crate::kernel::decode::tests::signal_request;
    use crate::kernel::decode::{Event, Payload};
    use crate::tracker::ThreadReport;

    const READ: i64 = 0;
    const EPOLL_WAIT: i64 = 232;
    const MS: u64 = 1_000_000;
    /// `SA_RESTORER`, which glibc sets on every handler: not `SA_RESTART`.
    const SA_RESTORER: u64 = 0x0400_0000;
    const HANDLER: u64 = 0x5555_0000_1234;
    const LOOPER: u32 = 101;

    fn blocked(nr: i64) -> Blocked {
        Blocked {
            nr,
            args: [3, 0x7000, 1, 0, 0, 0],
            since_ns: None,
        }
    }

    fn deliver(ts_ns: u64, handler: u64, flags: u64) -> Event {
        let payload = Payload::Deliver {
            signal: 12,
            code: 0,
            handler,
            flags,
        };
        Event::new(LOOPER, ts_ns, payload)
    }

    /// A thread seeded at attach blocked in `nr`, a request at 10 ms, the syscall tracepoints
    /// attached at `attached_ns` and the thread found in `nr` again (seeded from /proc), then
    /// `events`: the thread's report once the update timed out.
    fn observed(nr: i64, attached_ns: u64, events: Vec<Event>) -> ThreadReport {
        let mut tracker = Tracker::new(100 * MS);
        let b = blocked(nr);
        tracker.seed(LOOPER, "looper", Some((b.nr, b.args)));
        assert!(tracker.on_event(signal_request(100, 10 * MS, 1)).is_none());
        tracker.tracking_attached(attached_ns);
        let again = ThreadState {
            nr,
            since_ns: 0,
            args: b.args,
            arrived_seq: 0,
        };
        tracker.apply_snapshot(&[(LOOPER, again)]);
        for event in events {
            assert!(tracker.on_event(event).is_none());
        }
        let update = tracker.on_tick(200 * MS).expect("a DNQ");
        update.threads.into_iter().next().expect("the thread")
    }

    fn cause(t: &ThreadReport) -> Cause {
        classify(&Facts {
            blocked: t.blocked,
            calls: t.calls.clone(),
            participating: true,
            state: Some('S'),
            ..Facts::default()
        })
    }

    #[test]
    fn an_interruption_before_the_attach_is_an_eintr_the_program_retried() {
        let t = observed(READ, 15 * MS, vec![deliver(11 * MS, HANDLER, SA_RESTORER)]);
        assert_eq!(t.calls.len(), 2, "{t:?}");
        assert_eq!(
            (t.calls[0].end_ns, t.calls[0].ret),
            (Some(11 * MS), Some(-4))
        );
        assert_eq!(t.blocked.map(|b| b.nr), Some(READ));
        assert_eq!(cause(&t), Cause::EintrRetried);
        // Without the delivery: one call, nothing interrupted it.
        assert_eq!(cause(&observed(READ, 15 * MS, vec![])), Cause::IoBlocked);
    }

    #[test]
    fn sa_restart_makes_it_a_restart_where_the_kernel_restarts_the_call() {
        let read = observed(READ, 15 * MS, vec![deliver(11 * MS, HANDLER, SA_RESTART)]);
        assert_eq!(cause(&read), Cause::IoRestarted);
        let epoll = observed(
            EPOLL_WAIT,
            15 * MS,
            vec![deliver(11 * MS, HANDLER, SA_RESTART)],
        );
        assert_eq!(cause(&epoll), Cause::EintrRetried);
    }

    #[test]
    fn what_the_tracepoints_saw_is_not_counted_twice() {
        // Attached before the request (`--request`): the tracepoints saw the call end.
        let before = observed(READ, 5 * MS, vec![deliver(11 * MS, HANDLER, SA_RESTORER)]);
        assert_eq!(before.calls.len(), 1, "{before:?}");
        // Delivered after the attach: its exit came first.
        let exit = Event::new(
            LOOPER,
            16 * MS,
            Payload::SysExit {
                nr: READ,
                ret: -512,
            },
        );
        let after = observed(
            READ,
            15 * MS,
            vec![exit, deliver(16 * MS, HANDLER, SA_RESTORER)],
        );
        assert_eq!(after.calls.len(), 1, "{after:?}");
        // No handler runs (SIG_DFL, SIG_IGN): the kernel restarts the call unseen.
        let ignored = observed(READ, 15 * MS, vec![deliver(11 * MS, 1, 0)]);
        assert_eq!(ignored.calls.len(), 1, "{ignored:?}");
        // A second delivery ends no second call.
        let twice = observed(
            READ,
            15 * MS,
            vec![
                deliver(11 * MS, HANDLER, SA_RESTORER),
                deliver(12 * MS, HANDLER, SA_RESTORER),
            ],
        );
        assert_eq!(twice.calls.len(), 2, "{twice:?}");
    }

    #[test]
    fn a_handler_without_sa_restart_returns_eintr() {
        let call = ended_by_signal(blocked(READ), 50, SA_RESTORER);
        assert_eq!(
            (call.end_ns, call.ret, call.restarted),
            (Some(50), Some(-4), false)
        );
        assert!(crate::diagnosis::diagnose::interrupted(&call));
        let read = ended_by_signal(blocked(READ), 50, SA_RESTART);
        assert_eq!((read.ret, read.restarted), (Some(-512), true));
        assert!(!crate::diagnosis::diagnose::interrupted(&read));
        // epoll_wait returns EINTR after a handler whatever SA_RESTART says (signal(7)).
        let epoll = ended_by_signal(blocked(EPOLL_WAIT), 50, SA_RESTART);
        assert_eq!((epoll.ret, epoll.restarted), (Some(-4), false));
    }
}
