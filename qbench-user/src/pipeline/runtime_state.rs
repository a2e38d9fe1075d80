//! The runtime's exported state (`qbench_state`), read at attach and at each request: the
//! participants it knows, and an update it has pending at attach, which the tracker then
//! observes as one in progress (no request event will come for it).

use super::Observed;
use crate::kernel::loader::AttachMode;
use crate::runstate::{self, RuntimeState};
use crate::tracker::{TableAtDeadline, Tracker, Update};

/// Participants above which the arrival anchor is probed after all: the runtime's table names
/// 1,024 threads, and half leaves a process room to grow between attach and an update (one
/// that outgrows it anyway is reported incomplete).
const STATE_ARRIVALS_MOST: u32 = (qbench_common::state::CAPACITY / 2) as u32;

/// Where the release program reads the update's arrivals from (the runtime's `qbench_state`
/// at `state_at` in `pid`), instead of one uprobe per arrival: for a runtime that exports a
/// state this process can read, with a release anchor, and a table that names every
/// participant. None: the arrival anchor is probed.
pub fn arrivals_from_state(pid: u32, mode: &AttachMode, state_at: Option<u64>) -> Option<u64> {
    let AttachMode::Runtime(anchors) = mode else {
        return None;
    };
    anchors.release.as_ref()?;
    let at = state_at?;
    let state = runstate::read(pid, at).ok()?;
    (state.threads <= STATE_ARRIVALS_MOST).then_some(at)
}

impl Observed {
    /// Reads the state at attach; an update pending then opens the window, in the kernel too
    /// (so the missing threads' calls are tracked) with the runtime's request time as its start.
    pub(super) fn take_up_pending(&mut self) -> anyhow::Result<()> {
        let Some(state) = read(self.pid(), self.state_at, self.verbose) else {
            return Ok(());
        };
        apply_participants(&mut self.tracker, &state);
        if !state.pending {
            return Ok(());
        }
        let parked: Vec<(u32, u64)> = state
            .participants
            .iter()
            .filter_map(|p| Some((p.tid, p.arrival_ns?)))
            .collect();
        if self.blocked == super::Blocked::TracedWhilePending {
            super::tracking::start(&mut self.probes, self.verbose)?;
        }
        let window_seq = self.probes.open_window(state.request_ns)?;
        if !self
            .tracker
            .open_before_attach(state.request_ns, window_seq, state.seq, &parked)
        {
            self.probes.close_window()?;
        } else if self.verbose > 0 {
            eprintln!(
                "qbench-trace: update {} of pid {} was pending at attach ({} of {} threads parked)",
                state.seq,
                self.pid(),
                parked.len(),
                state.threads
            );
        }
        Ok(())
    }
}

impl Observed {
    /// Past the deadline of an update whose arrivals are read from the runtime's table, that
    /// table now: the threads parked by the deadline count before the deadline is judged. The
    /// table of an update already released (its release record is on its way) is not judged
    /// on: the release will say.
    pub(super) fn deadline_arrivals(&mut self, now_ns: u64) -> Option<Update> {
        if !self.tracker.awaits_arrivals(now_ns) {
            return None;
        }
        let read = self.state_at.map(|at| runstate::read(self.pid(), at));
        let parked: Vec<(u32, u64)> = match &read {
            Some(Ok(state)) => state
                .participants
                .iter()
                .filter_map(|p| Some((p.tid, p.arrival_ns?)))
                .collect(),
            _ => Vec::new(),
        };
        let table = match &read {
            Some(Ok(state)) if state.pending => TableAtDeadline::Pending {
                seq: state.seq,
                parked: &parked,
            },
            Some(Ok(state)) => TableAtDeadline::Idle { seq: state.seq },
            Some(Err(e)) => {
                if self.verbose > 0 {
                    eprintln!("qbench-trace: {e}; the update's arrivals are not known");
                }
                TableAtDeadline::Unreadable
            }
            None => TableAtDeadline::Unreadable,
        };
        self.tracker.deadline_arrivals(table)
    }
}

/// At a request: the runtime's participants, for the tracker to tell them from the rest.
pub fn on_window_opened(tracker: &mut Tracker, pid: u32, state_at: Option<u64>, verbose: u8) {
    if let Some(state) = read(pid, state_at, verbose) {
        apply_participants(tracker, &state);
    }
}

fn apply_participants(tracker: &mut Tracker, state: &RuntimeState) {
    let tids = state.participants.iter().map(|p| p.tid);
    tracker.set_runtime_participants(tids, state.complete());
}

/// The state at `state_at` in process `pid`; None (said on stderr with `-v`) when the runtime
/// does not export it or it cannot be read: the observer then infers what it needs.
fn read(pid: u32, state_at: Option<u64>, verbose: u8) -> Option<RuntimeState> {
    match runstate::read(pid, state_at?) {
        Ok(state) => Some(state),
        Err(e) => {
            if verbose > 0 {
                eprintln!("qbench-trace: {e}; participation is inferred");
            }
            None
        }
    }
}
