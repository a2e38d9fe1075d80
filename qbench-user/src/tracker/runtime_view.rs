//! What the runtime's exported state (`qbench_state`) tells the tracker: which threads it counts
//! as participants, and an update that was already pending when the observer attached (no
//! request event will come for it).

use std::collections::BTreeSet;

use super::{RequestSeen, Thread, Tracker};

/// The participants the runtime listed when its state was last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Known {
    tids: BTreeSet<u32>,
    /// The table named every participant (it has a bounded size).
    complete: bool,
    /// The threads the tracker had then: one born later may have registered since.
    then: BTreeSet<u32>,
}

impl Tracker {
    /// Records the runtime's participants (`complete` when its table names all of them): from
    /// now on a thread participates iff the runtime knows it, for the threads it could judge.
    pub fn set_runtime_participants(
        &mut self,
        tids: impl IntoIterator<Item = u32>,
        complete: bool,
    ) {
        self.runtime = Some(Known {
            tids: tids.into_iter().collect(),
            complete,
            then: self.threads.keys().copied().collect(),
        });
    }

    /// Opens window `window_seq` for update `runtime_seq`, requested at `request_ns`, which was
    /// pending before the observer attached, with the `parked` threads and their arrival times.
    /// Its deadline counts from the request; it ends as any update does. False (nothing done)
    /// when a window is open already or that update was reported.
    pub fn open_before_attach(
        &mut self,
        request_ns: u64,
        window_seq: u64,
        runtime_seq: u64,
        parked: &[(u32, u64)],
    ) -> bool {
        if self.window.is_some() || self.last_runtime_seq.is_some_and(|l| runtime_seq <= l) {
            return false;
        }
        let seen = RequestSeen::BeforeAttach;
        self.open(request_ns, seen, window_seq, Some(runtime_seq));
        for &(tid, at) in parked {
            let thread = self.threads.entry(tid).or_default();
            thread.arrival_ns = Some(at);
            thread.ever_arrived = true;
            // What /proc showed it in at attach is the runtime's own wait.
            thread.blocked = None;
            thread.calls.clear();
            let w = self.window.as_mut().expect("opened above");
            w.first_arrival_ns = Some(w.first_arrival_ns.map_or(at, |f| f.min(at)));
            w.last_arrival_ns = Some(w.last_arrival_ns.map_or(at, |l| l.max(at)));
        }
        true
    }

    /// Whether the runtime counts `tid` as a participant: None when its state was not read, or
    /// its table could not say (full, or the thread is newer than the reading).
    pub(super) fn runtime_knows(&self, tid: u32) -> Option<bool> {
        let known = self.runtime.as_ref()?;
        if known.tids.contains(&tid) {
            Some(true)
        } else {
            (known.complete && known.then.contains(&tid)).then_some(false)
        }
    }

    /// Whether the update waits for `t`: unless the runtime says it does not know it.
    pub(super) fn waits_for(&self, tid: u32, t: &Thread) -> bool {
        t.arrival_ns.is_some() || self.runtime_knows(tid) != Some(false)
    }

    /// Whether `t` is reported participating: as the runtime says when it can, else as
    /// inferred (the runtime did not quiesce without it).
    pub(super) fn participating(&self, tid: u32, t: &Thread) -> bool {
        match self.runtime_knows(tid) {
            Some(known) => known || t.arrival_ns.is_some(),
            None => !t.outside_runtime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, RUNTIME_HELPER_COMM, Update};
    use super::*;
    use crate::kernel::decode::tests::{release, runtime_arrival as arrive};

    const MS: u64 = 1_000_000;

    /// main (100) and a worker (101) that the runtime lists, an outsider (102) it does not,
    /// the runtime's helper (103); a stuck participant (104).
    fn tracker() -> Tracker {
        let mut t = Tracker::new(1000 * MS);
        t.seed(100, "main", None);
        t.seed(101, "worker", None);
        t.seed(102, "outsider", Some((0, [0; 6])));
        t.seed(103, RUNTIME_HELPER_COMM, None);
        t.seed(104, "stuck", Some((202, [0x5000, 128, 0, 0, 0, 0])));
        t.set_runtime_participants([100, 101, 104], true);
        t
    }

    fn state_of(update: &Update, tid: u32) -> (Option<u64>, bool, Option<bool>) {
        let t = update
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("thread");
        (t.arrival_ns, t.participating, t.runtime_knows)
    }

    /// Update 7, requested at 1 ms before attach, with main and the worker parked.
    fn pending() -> Tracker {
        let mut t = tracker();
        assert!(t.open_before_attach(MS, 3, 7, &[(100, 2 * MS), (101, 3 * MS)]));
        assert!(t.window_open());
        t
    }

    #[test]
    fn an_update_pending_at_attach_is_a_dnq_at_the_timeout_counted_from_its_request() {
        let mut t = pending();
        assert_eq!(t.on_tick(1000 * MS), None);
        let update = t.on_tick(1001 * MS).expect("deadline");
        assert_eq!(update.outcome, Outcome::Dnq);
        assert_eq!(update.seen, RequestSeen::BeforeAttach);
        assert_eq!((update.request_ns, update.end_ns), (MS, 1001 * MS));
        assert_eq!((update.window_seq, update.runtime_seq), (3, Some(7)));
        assert_eq!(
            (update.first_arrival_ns, update.last_arrival_ns),
            (Some(2 * MS), Some(3 * MS))
        );
        assert_eq!(state_of(&update, 100), (Some(2 * MS), true, Some(true)));
        assert_eq!(state_of(&update, 101), (Some(3 * MS), true, Some(true)));
        assert_eq!(state_of(&update, 104), (None, true, Some(true)));
        assert_eq!(state_of(&update, 102), (None, false, Some(false)));
        let missing: Vec<u32> = update.missing().map(|t| t.tid).collect();
        assert_eq!(missing, [104]);
        let stuck = update.threads.iter().find(|t| t.tid == 104).expect("stuck");
        assert_eq!(stuck.blocked.map(|b| b.nr), Some(202));
    }

    #[test]
    fn an_update_pending_at_attach_quiesces_when_the_last_participant_arrives() {
        let mut t = pending();
        // The outsider, unknown to the runtime, is not waited for.
        let update = t.on_event(arrive(104, 50 * MS, 7)).expect("quiesced");
        assert_eq!(update.outcome, Outcome::Quiesced);
        assert_eq!(update.seen, RequestSeen::BeforeAttach);
        assert_eq!(update.end_ns, 50 * MS);
        assert_eq!(update.quiescence_ns(), Some(48 * MS));
        // A late departure of update 7 opens nothing.
        assert_eq!(t.on_event(arrive(100, 51 * MS, 7)), None);
        assert!(!t.window_open());
    }

    #[test]
    fn the_runtimes_release_ends_an_update_pending_at_attach() {
        let mut t = pending();
        let release = release(103, 9 * MS, 7, false, 3);
        assert_eq!(t.on_event(release).expect("released").outcome, Outcome::Dnq);
    }

    #[test]
    fn a_window_open_or_an_update_reported_is_not_opened_again() {
        let mut t = pending();
        assert!(!t.open_before_attach(MS, 4, 7, &[]));
        let _ = t.on_event(arrive(104, 50 * MS, 7)).expect("quiesced");
        assert!(!t.open_before_attach(MS, 4, 7, &[]));
        assert!(!t.window_open());
    }

    #[test]
    fn a_listed_thread_that_never_arrived_before_still_participates() {
        let mut t = tracker();
        // Two updates the stuck thread missed: without the runtime's list it would be inferred
        // not to participate; with it, it is a participant each time.
        for (n, start) in [(1u64, 0), (2, 2000 * MS)] {
            assert!(t.open_before_attach(start + MS, n, n, &[(100, start + 2 * MS)]));
            assert_eq!(t.on_event(arrive(101, start + 3 * MS, n)), None);
            let update = t.on_tick(start + 1001 * MS).expect("dnq");
            let stuck = update.threads.iter().find(|t| t.tid == 104).expect("stuck");
            assert!(stuck.participating && !stuck.ever_arrived);
            assert_eq!(stuck.runtime_knows, Some(true));
        }
    }

    #[test]
    fn a_thread_newer_than_the_list_or_beyond_a_full_table_is_inferred() {
        let mut t = tracker();
        t.seed(105, "newborn", None);
        assert_eq!(t.runtime_knows(105), None);
        t.set_runtime_participants([100], false);
        assert_eq!(t.runtime_knows(100), Some(true));
        assert_eq!(t.runtime_knows(101), None);
    }
}
