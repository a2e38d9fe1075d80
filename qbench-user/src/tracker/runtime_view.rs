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
    pub fn set_runtime_participants(&mut self, tids: impl IntoIterator<Item = u32>, complete: bool) {
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
