//! The runtime's exported state (`qbench_state`), read at attach and at each request: the
//! participants it knows, and an update it has pending at attach, which the tracker then
//! observes as one in progress (no request event will come for it).

use super::Observed;
use crate::runstate::{self, RuntimeState};
use crate::tracker::Tracker;

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
