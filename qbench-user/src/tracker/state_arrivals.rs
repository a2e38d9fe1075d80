//! Arrivals read from the runtime's participants table (`qbench_state`) rather than seen at its
//! arrival anchor: at the release, in the records the release program writes just before the
//! release's own, and at the deadline, read by the pipeline from the target's memory, since
//! until the release nothing else says who has parked.

use super::{Outcome, Tracker, Update};

/// What the runtime's table said when read past an update's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAtDeadline<'a> {
    /// It could not be read.
    Unreadable,
    /// No update pending; `seq` is the latest the runtime took up.
    Idle { seq: u64 },
    /// Update `seq` pending, with these threads parked (thread, arrival time).
    Pending { seq: u64, parked: &'a [(u32, u64)] },
}

impl Tracker {
    /// Whether the open update's deadline has passed (at `now_ns`) with its arrivals known only
    /// from the runtime's table, not yet read: the pipeline reads it and hands it to
    /// [`Self::deadline_arrivals`] before the deadline may end the update.
    pub fn awaits_arrivals(&self, now_ns: u64) -> bool {
        self.arrivals_from_state
            && self
                .window
                .as_ref()
                .is_some_and(|w| now_ns >= w.deadline_ns && !w.arrivals_read)
    }

    /// The runtime's table as read past the deadline ([`TableAtDeadline`]). Threads parked by
    /// the deadline count, which may complete the update; an update whose arrivals cannot be
    /// known is incomplete, never a DNQ; one the runtime has released already is left to its
    /// release record, on its way.
    pub fn deadline_arrivals(&mut self, table: TableAtDeadline<'_>) -> Option<Update> {
        let w = self.window.as_mut()?;
        let deadline = w.deadline_ns;
        let ours = w.runtime_seq;
        let (seq, parked) = match table {
            TableAtDeadline::Unreadable => (None, None),
            TableAtDeadline::Idle { seq } if ours.is_some_and(|ours| seq >= ours) => return None,
            TableAtDeadline::Idle { .. } => (None, Some(&[][..])),
            TableAtDeadline::Pending { seq, .. } if ours.is_some_and(|ours| seq > ours) => {
                return None;
            }
            TableAtDeadline::Pending { seq, parked } => (Some(seq), Some(parked)),
        };
        w.arrivals_read = true;
        let Some(parked) = parked else {
            return Some(self.finish(Outcome::Incomplete, deadline));
        };
        if let Some(seq) = seq {
            w.runtime_seq.get_or_insert(seq);
        }
        for &(tid, arrival_ns) in parked.iter().filter(|(_, at)| *at <= deadline) {
            self.count_arrival(tid, arrival_ns);
        }
        self.complete_if_quiesced(deadline)
    }

    /// An arrival read from the runtime's table at its release of update `seq`: counted if it
    /// is the open update's, and never opening a window; the release that follows ends the
    /// update as the runtime says. A thread that parked past the deadline came too late: the
    /// update did not quiesce in time, whatever the runtime, with a longer timeout, says.
    pub(super) fn on_arrive_at_release(
        &mut self,
        tid: u32,
        ts_ns: u64,
        seq: u64,
    ) -> Option<Update> {
        let w = self.window.as_mut()?;
        if w.closing || *w.runtime_seq.get_or_insert(seq) != seq {
            return None;
        }
        if ts_ns > w.deadline_ns {
            w.closing = true;
            return None;
        }
        self.count_arrival(tid, ts_ns);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::tests::{release, signal_request};
    use crate::kernel::decode::{ArriveSource, Event, Payload};

    const MS: u64 = 1_000_000;

    /// Two workers and the runtime's helper (103), arrivals from the runtime's table, a
    /// request at 1,000 ns and a 1 ms timeout.
    fn requested() -> Tracker {
        let mut t = Tracker::new(MS);
        t.take_arrivals_from_state();
        t.seed(101, "worker", None);
        t.seed(102, "worker", None);
        t.seed(103, crate::tracker::RUNTIME_HELPER_COMM, None);
        assert_eq!(t.on_event(signal_request(100, 1000, 1)), None);
        t
    }

    /// Thread `tid`'s arrival at `ts_ns` in update `seq`, read at the release.
    fn at_release(tid: u32, ts_ns: u64, seq: u64) -> Event {
        let source = ArriveSource::State;
        Event::new(tid, ts_ns, Payload::Arrive { seq, source })
    }

    fn arrivals(update: &Update) -> Vec<(u32, Option<u64>)> {
        update
            .threads
            .iter()
            .map(|t| (t.tid, t.arrival_ns))
            .collect()
    }

    #[test]
    fn arrivals_read_at_the_release_end_the_update_as_the_release_says() {
        let mut t = requested();
        // The park's futex wait, seen before the arrival it follows is known.
        let park = Payload::SysEnter {
            nr: 202,
            args: [0; 6],
        };
        assert_eq!(t.on_event(Event::new(101, 1600, park)), None);
        assert_eq!(t.on_event(at_release(102, 1900, 4)), None);
        // Every participant has arrived, yet only the release ends the update.
        assert_eq!(t.on_event(at_release(101, 1500, 4)), None);
        let update = t.on_event(release(103, 2500, 4, true, 2)).expect("ended");
        assert_eq!(update.outcome, Outcome::Quiesced);
        assert_eq!(
            (update.first_arrival_ns, update.last_arrival_ns),
            (Some(1500), Some(1900))
        );
        assert_eq!(update.end_ns, 1900);
        assert_eq!(
            arrivals(&update),
            vec![(101, Some(1500)), (102, Some(1900))]
        );
        let worker = &update.threads[0];
        assert_eq!(worker.calls, vec![], "the park is not one of its calls");
        assert_eq!(worker.blocked, None);
    }

    #[test]
    fn the_runtime_giving_up_is_a_dnq_whatever_the_table_holds() {
        let mut t = requested();
        assert_eq!(t.on_event(at_release(101, 1500, 4)), None);
        assert_eq!(t.on_event(at_release(102, 1900, 4)), None);
        let update = t.on_event(release(103, 2500, 4, false, 2)).expect("ended");
        assert_eq!(update.outcome, Outcome::Dnq);
    }

    #[test]
    fn an_arrival_past_the_deadline_makes_a_dnq_that_names_the_late_thread() {
        let mut t = requested();
        assert_eq!(t.on_event(at_release(101, 1500, 4)), None);
        assert_eq!(t.on_event(at_release(102, 1000 + 2 * MS, 4)), None);
        let update = t.on_event(release(103, 1000 + 3 * MS, 4, true, 2));
        let update = update.expect("ended");
        assert_eq!(update.outcome, Outcome::Dnq);
        assert_eq!(arrivals(&update), vec![(102, None), (101, Some(1500))]);
    }

    #[test]
    fn another_updates_table_and_a_closed_window_are_not_arrivals() {
        let mut t = requested();
        assert_eq!(t.on_event(at_release(101, 1500, 4)), None);
        assert_eq!(
            t.on_event(release(103, 1200, 3, true, 2)),
            None,
            "update 3's"
        );
        assert_eq!(t.on_event(at_release(102, 1600, 5)), None, "update 5's");
        let update = t.on_event(release(103, 2500, 4, false, 2)).expect("ended");
        assert_eq!(arrivals(&update), vec![(102, None), (101, Some(1500))]);
        // No window: the table's arrivals open none.
        assert_eq!(t.on_event(at_release(101, 9000, 6)), None);
        assert!(!t.window_open());
    }

    #[test]
    fn more_participants_than_the_table_holds_is_incomplete() {
        let mut t = requested();
        let threads = qbench_common::state::CAPACITY as u32 + 1;
        let update = t.on_event(release(103, 2500, 4, true, threads));
        assert_eq!(update.expect("ended").outcome, Outcome::Incomplete);
    }

    #[test]
    fn the_deadline_waits_for_the_table_and_counts_who_parked_by_then() {
        let mut t = requested();
        let past = 1000 + 2 * MS;
        assert!(t.awaits_arrivals(past));
        assert!(!t.awaits_arrivals(1000 + MS - 1));
        assert_eq!(t.on_tick(past), None, "not judged before the table is read");
        let parked = [(101, 1500), (102, 1000 + MS + 1)];
        let table = TableAtDeadline::Pending {
            seq: 4,
            parked: &parked,
        };
        assert_eq!(t.deadline_arrivals(table), None, "102 parked too late");
        assert!(!t.awaits_arrivals(past));
        let update = t.on_tick(past).expect("judged");
        assert_eq!(update.outcome, Outcome::Dnq);
        assert_eq!(update.end_ns, 1000 + MS);
        assert_eq!(arrivals(&update), vec![(102, None), (101, Some(1500))]);
    }

    #[test]
    fn a_table_showing_everyone_parked_by_the_deadline_completes_the_update() {
        let mut t = requested();
        let parked = [(101, 1500), (102, 1900)];
        let table = TableAtDeadline::Pending {
            seq: 4,
            parked: &parked,
        };
        let update = t.deadline_arrivals(table).expect("complete");
        assert_eq!(update.outcome, Outcome::Quiesced);
        assert_eq!(update.last_arrival_ns, Some(1900));
    }

    #[test]
    fn a_released_update_is_left_to_its_release_and_an_unreadable_table_is_incomplete() {
        let mut t = requested();
        assert_eq!(t.on_event(at_release(101, 1500, 4)), None, "update 4's");
        // The runtime is idle again after update 4: its release record is on its way.
        assert_eq!(t.deadline_arrivals(TableAtDeadline::Idle { seq: 4 }), None);
        assert!(t.awaits_arrivals(1000 + 2 * MS));
        let update = t.deadline_arrivals(TableAtDeadline::Unreadable);
        assert_eq!(update.expect("ended").outcome, Outcome::Incomplete);
    }

    #[test]
    fn a_request_the_runtime_never_took_up_is_judged_with_nobody_parked() {
        let mut t = requested();
        // The runtime is idle after update 3, the window's update unknown to it.
        assert_eq!(t.deadline_arrivals(TableAtDeadline::Idle { seq: 3 }), None);
        let update = t.on_tick(1000 + 2 * MS).expect("judged");
        assert_eq!(update.outcome, Outcome::Dnq);
        assert_eq!(arrivals(&update), vec![(101, None), (102, None)]);
    }
}
