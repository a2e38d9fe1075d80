//! The threads' state the moment a request opens a window, before any later event is applied:
//! the kernel's record of who is blocked in what (with the syscall tracepoints, attached here if
//! someone else's request opened the window, and then seeded from /proc), or /proc's (without
//! them). Either way the names come from /proc: the helper is recognised by its name.

use qbench_common::{NO_SYSCALL, ThreadState};

use super::Blocked;
use crate::kernel::loader::Probes;
use crate::kernel::reader::Opened;
use crate::procfs::{self, ProcThread};
use crate::tracker::{Blocked as BlockedIn, Tracker, Update};

/// Applies to `tracker` the threads of `pid` as they are now, from where `blocked` says.
///
/// With syscall tracking attached only while an update is pending, an update whose release is
/// already read with its request (a request read once the race to park is over) gets no
/// tracking: it has ended, so what the threads do now explains nothing of it, and attaching
/// and detaching would cost the machine about a millisecond of kernel work for nothing. Its
/// threads are named all the same, and, for qbench-trace's own request, shown in the calls
/// /proc showed them in just before it was sent (`before`), since an unknown time.
pub fn on_window_opened(
    tracker: &mut Tracker,
    probes: &mut Probes,
    pid: u32,
    blocked: Blocked,
    opened: Opened,
    before: Option<Vec<ProcThread>>,
    verbose: u8,
) -> anyhow::Result<()> {
    match blocked {
        Blocked::TracedWhilePending => {
            let track = probes.tracking() || !opened.released_in_batch;
            if track {
                super::tracking::start(probes, verbose)?;
                tracker.tracking_attached(probes.tracking_since_ns());
            } else if verbose > 0 {
                eprintln!(
                    "qbench-trace: syscall tracking not attached: the update was over when its \
                     request was read"
                );
            }
            for tid in tracker.tids() {
                if let Some(comm) = procfs::comm(pid, tid) {
                    tracker.set_comm(tid, &comm);
                }
            }
            if track {
                tracker.apply_snapshot(&probes.snapshot_threads()?);
            } else if let Some(before) = before {
                apply_proc(tracker, before);
            } else {
                // Unknown, rather than the calls an earlier window left.
                let unknown = tracker.tids().into_iter();
                let unknown = unknown.map(|tid| (tid, ThreadState::in_no_call(0)));
                tracker.apply_snapshot(&unknown.collect::<Vec<_>>());
            }
        }
        Blocked::FromProc => apply_proc(tracker, procfs::threads(pid).unwrap_or_default()),
    }
    Ok(())
}

/// Who is blocked in what, from /proc's `threads`, since no syscall event tells.
fn apply_proc(tracker: &mut Tracker, threads: Vec<ProcThread>) {
    let known = tracker.tids();
    let mut snapshot = Vec::with_capacity(threads.len());
    for t in threads {
        if known.binary_search(&t.tid).is_err() {
            tracker.seed(t.tid, &t.comm, None);
        } else {
            tracker.set_comm(t.tid, &t.comm);
        }
        let (nr, args) = t.syscall.unwrap_or((NO_SYSCALL, [0; 6]));
        // Blocked since an unknown time before the request.
        let state = ThreadState {
            nr,
            since_ns: 0,
            args,
            arrived_seq: 0,
        };
        snapshot.push((t.tid, state));
    }
    tracker.apply_snapshot(&snapshot);
}

/// What the stragglers of a DNQ are in now, from /proc: the calls seen at the request may have
/// been interrupted and entered again, and no syscall event told.
pub fn stragglers(pid: u32, update: &mut Update) {
    if update.outcome != crate::tracker::Outcome::Dnq {
        return;
    }
    for t in update.threads.iter_mut().filter(|t| t.arrival_ns.is_none()) {
        if let Some(now) = procfs::thread(pid, t.tid) {
            t.blocked = now.syscall.map(|(nr, args)| BlockedIn {
                nr,
                args,
                since_ns: None,
            });
        }
    }
}
