//! The tracker, event by event: every path through an update, and the out-of-order, duplicate
//! and unknown-thread cases the ring buffer can deliver.

use super::*;
use crate::kernel::decode;
use crate::kernel::decode::tests::{runtime_arrival, runtime_request, signal_request};

const MS: u64 = 1_000_000;

fn request(ts_ns: u64) -> Event {
    signal_request(100, ts_ns, 1)
}

fn arrive(tid: u32, ts_ns: u64) -> Event {
    runtime_arrival(tid, ts_ns, 1)
}

fn enter(tid: u32, ts_ns: u64, nr: i64, args: [u64; 6]) -> Event {
    Event::new(tid, ts_ns, Payload::SysEnter { nr, args })
}

fn exit(tid: u32, ts_ns: u64, nr: i64, ret: i64) -> Event {
    Event::new(tid, ts_ns, Payload::SysExit { nr, ret })
}

fn depart(tid: u32, ts_ns: u64) -> Event {
    Event::new(tid, ts_ns, Payload::Depart { seq: 1 })
}

fn thread_exit(tid: u32, ts_ns: u64) -> Event {
    Event::new(tid, ts_ns, Payload::ThreadExit)
}

/// The runtime's helper (103) releasing update 1.
fn release(ts_ns: u64, quiesced: bool, threads: u32) -> Event {
    decode::tests::release(103, ts_ns, 1, quiesced, threads)
}

fn blocked(nr: i64, args: [u64; 6], since_ns: Option<u64>) -> Option<Blocked> {
    Some(Blocked { nr, args, since_ns })
}

/// The request, first arrival and last arrival of `update`.
fn instants(update: &Update) -> (u64, Option<u64>, Option<u64>) {
    (
        update.request_ns,
        update.first_arrival_ns,
        update.last_arrival_ns,
    )
}

/// The report of thread `tid` in `update`.
fn thread(update: &Update, tid: u32) -> &ThreadReport {
    update
        .threads
        .iter()
        .find(|t| t.tid == tid)
        .unwrap_or_else(|| panic!("no thread {tid}"))
}

/// [`tracker`] after a request at `request_ns` and the `arrivals` (tid, time) that followed.
fn requested(request_ns: u64, arrivals: &[(u32, u64)]) -> Tracker {
    let mut t = tracker();
    assert_eq!(t.on_event(request(request_ns)), None);
    for &(tid, ts_ns) in arrivals {
        assert_eq!(
            t.on_event(arrive(tid, ts_ns)),
            None,
            "{tid} completed the update"
        );
    }
    t
}

/// main (100) blocked in read on stdin, two workers, and the runtime's helper.
fn tracker() -> Tracker {
    let mut t = Tracker::new(1000 * MS);
    t.seed(100, "main", Some((0, [0, 0, 1, 0, 0, 0])));
    t.seed(101, "worker", None);
    t.seed(102, "worker", None);
    t.seed(103, RUNTIME_HELPER_COMM, None);
    t
}

#[test]
fn all_arrivals_complete_a_quiesced_update_excluding_the_helper() {
    let mut t = tracker();
    assert_eq!(t.on_event(request(1000)), None);
    assert!(t.window_open());
    assert_eq!(t.on_event(arrive(101, 1500)), None);
    assert_eq!(t.on_event(arrive(100, 1200)), None);
    let update = t.on_event(arrive(102, 1900)).expect("complete");
    assert_eq!(update.outcome, Outcome::Quiesced);
    assert_eq!(instants(&update), (1000, Some(1200), Some(1900)));
    assert_eq!(
        (update.quiescence_ns(), update.request_latency_ns()),
        (Some(700), Some(900))
    );
    assert_eq!(update.end_ns, 1900);
    assert_eq!(
        update.seen,
        RequestSeen::Signal {
            signal: 12,
            sender_tgid: 55
        }
    );
    let order: Vec<u32> = update.threads.iter().map(|t| t.tid).collect();
    assert_eq!(order, vec![100, 101, 102], "arrival order, helper excluded");
    assert!(update.threads.iter().all(|t| t.blocked.is_none()));
    assert!(!t.window_open());
    assert_eq!(update.number, 1);
}

#[test]
fn the_timeout_ends_a_window_as_dnq_naming_missing_threads_first() {
    let mut t = requested(1000, &[(100, 1200)]);
    t.on_event(enter(102, 1300, 202, [0xabc, 128, 0, 0, 0, 0]));
    assert_eq!(t.on_tick(1000 + 999 * MS), None);
    let update = t.on_tick(1000 + 1000 * MS).expect("timed out");
    assert_eq!(update.outcome, Outcome::Dnq);
    assert_eq!(
        (update.quiescence_ns(), update.request_latency_ns()),
        (None, None)
    );
    assert_eq!(update.end_ns, 1000 + 1000 * MS);
    let missing: Vec<u32> = update.missing().map(|t| t.tid).collect();
    assert_eq!(missing, vec![101, 102]);
    assert_eq!(
        update.threads[0].blocked, None,
        "101 never entered a tracked call"
    );
    assert_eq!(
        update.threads[1].blocked,
        blocked(202, [0xabc, 128, 0, 0, 0, 0], Some(1300))
    );
    assert_eq!(update.threads[2].tid, 100);
    assert_eq!(t.on_tick(u64::MAX), None, "nothing left open");
}

#[test]
fn the_runtime_releasing_before_everyone_arrived_is_a_dnq() {
    let mut t = requested(1000, &[(100, 1100), (101, 1200)]);
    let update = t.on_event(depart(100, 5000)).expect("released");
    assert_eq!(update.outcome, Outcome::Dnq);
    assert_eq!(
        update.missing().map(|t| t.tid).collect::<Vec<_>>(),
        vec![102]
    );
    // The other departures of the same release change nothing.
    assert_eq!(t.on_event(depart(101, 5001)), None);
}

#[test]
fn departures_from_an_update_already_ended_do_not_end_the_next() {
    // Update 1 quiesces and is released; a request that reached the runtime while it was
    // closing opens update 2 before update 1's threads depart.
    let mut t = tracker();
    t.on_event(request(1000));
    let first = [100, 101, 102]
        .into_iter()
        .find_map(|tid| t.on_event(arrive(tid, 1100 + u64::from(tid))))
        .expect("update 1 quiesced");
    assert_eq!(
        (first.outcome, first.runtime_seq),
        (Outcome::Quiesced, Some(1))
    );
    assert_eq!(
        t.on_event(decode::tests::release(100, 1300, 1, true, 3)),
        None
    );
    assert_eq!(t.on_event(runtime_request(100, 1400, 2, 2)), None);
    for tid in [100, 101, 102] {
        assert_eq!(t.on_event(depart(tid, 1500)), None, "update 1's departure");
    }
    // Update 2 goes on and quiesces.
    let second = [100, 101, 102]
        .into_iter()
        .find_map(|tid| t.on_event(runtime_arrival(tid, 1600 + u64::from(tid), 2)))
        .expect("update 2 quiesced");
    assert_eq!(
        (second.outcome, second.runtime_seq),
        (Outcome::Quiesced, Some(2))
    );
    assert_eq!(second.request_ns, 1400);
}

#[test]
fn threads_exiting_or_born_during_the_window() {
    let mut t = requested(1000, &[(100, 1100)]);
    t.on_event(Event::new(104, 1150, Payload::ThreadNew { parent: 100 }));
    t.on_event(arrive(101, 1200));
    // 102 exits without arriving; 104 is now a participant and still missing.
    assert_eq!(t.on_event(thread_exit(102, 1300)), None);
    let update = t.on_event(arrive(104, 1400)).expect("complete");
    assert_eq!(update.outcome, Outcome::Quiesced);
    assert_eq!(
        update.threads.iter().map(|t| t.tid).collect::<Vec<_>>(),
        vec![100, 101, 104]
    );
}

#[test]
fn the_last_missing_thread_exiting_completes_the_update() {
    let mut t = requested(1000, &[(100, 1100), (101, 1200)]);
    let update = t.on_event(thread_exit(102, 1300)).expect("complete");
    assert_eq!(update.outcome, Outcome::Quiesced);
    assert_eq!(update.last_arrival_ns, Some(1200));
    // Said so, for the caller to check the process is not dying.
    assert!(update.ended_by_thread_exit);
    t.on_event(request(2000));
    t.on_event(arrive(101, 2100));
    let update = t.on_event(arrive(100, 2200)).expect("complete");
    assert!(!update.ended_by_thread_exit);
}

#[test]
fn an_update_the_process_exit_ends_is_exited_not_dnq() {
    let mut t = tracker();
    assert_eq!(
        t.on_exit(500, Exit::Status(0)),
        None,
        "no update in progress"
    );
    t.on_event(request(1000));
    t.on_event(arrive(100, 1100));
    let how = Exit::Signal {
        signal: 9,
        core_dumped: false,
    };
    let update = t.on_exit(1500, how).expect("ended");
    assert_eq!(update.outcome, Outcome::Exited(how));
    assert_eq!((update.end_ns, update.quiescence_ns()), (1500, None));
    assert!(!t.window_open());
}

#[test]
fn the_snapshot_marks_threads_blocked_since_before_the_request() {
    let mut t = tracker();
    t.on_event(request(1000));
    let state = |nr: i64, since_ns: u64| ThreadState {
        nr,
        since_ns,
        args: [7, 0, 1, 0, 0, 0],
        arrived_seq: 0,
    };
    t.apply_snapshot(&[
        (100, state(NO_SYSCALL, 900)), // left its read after attach
        (101, state(0, 800)),          // in read since before the request
        (102, state(43, 1100)),        // entered accept after the request: events tell
        (999, state(0, 1)),            // not a thread we know
    ]);
    let update = t.on_tick(u64::MAX).expect("dnq");
    let seen: Vec<(u32, Option<Blocked>)> =
        update.threads.iter().map(|t| (t.tid, t.blocked)).collect();
    assert_eq!(
        seen,
        vec![
            (100, None),
            (101, blocked(0, [7, 0, 1, 0, 0, 0], Some(800))),
            (102, None),
        ]
    );
}

#[test]
fn the_seed_is_what_a_thread_blocked_before_attach_shows() {
    let mut t = tracker();
    t.on_event(request(1000));
    let update = t.on_tick(u64::MAX).expect("dnq");
    let main = thread(&update, 100);
    assert_eq!(main.blocked, blocked(0, [0, 0, 1, 0, 0, 0], None));
}

#[test]
fn out_of_order_duplicate_and_unknown_events() {
    let mut t = tracker();
    // A runtime arrival with no request seen (attached mid-update) opens the window itself.
    assert_eq!(t.on_event(arrive(100, 500)), None);
    assert!(t.window_open());
    // A request after that is the same update.
    assert_eq!(t.on_event(request(400)), None);
    // A second arrival of the same thread keeps the first time.
    t.on_event(arrive(100, 900));
    // A thread never seen before arrives: it joins the table.
    t.on_event(arrive(200, 600));
    // Syscalls of a parked thread (the runtime's own futex) do not make it blocked.
    t.on_event(enter(100, 700, 202, [0; 6]));
    t.on_event(arrive(101, 800));
    let update = t.on_event(arrive(102, 1000)).expect("complete");
    assert_eq!(update.seen, RequestSeen::Arrival);
    assert_eq!(instants(&update), (500, Some(500), Some(1000)));
    assert_eq!(
        update
            .threads
            .iter()
            .find(|t| t.tid == 100)
            .map(|t| t.arrival_ns),
        Some(Some(500))
    );
    assert_eq!(update.threads.len(), 4);
    // Probed update points outside a window are late hits, not a new update.
    let late = Event::new(
        101,
        2000,
        Payload::Arrive {
            seq: 1,
            source: ArriveSource::Point,
        },
    );
    assert_eq!(t.on_event(late), None);
    assert!(!t.window_open());
    // Events for threads that are gone, and exits of unknown threads, are harmless.
    assert_eq!(t.on_event(exit(4242, 2100, 0, -4)), None);
    assert_eq!(t.on_event(thread_exit(4243, 2200)), None);
}

#[test]
fn second_update_starts_clean_and_is_numbered() {
    let mut t = tracker();
    t.on_event(request(1000));
    for (tid, ts) in [(100, 1100), (101, 1200), (102, 1300)] {
        t.on_event(arrive(tid, ts));
    }
    t.on_event(request(5000));
    t.on_event(arrive(100, 5100));
    t.on_event(arrive(101, 5200));
    let update = t.on_event(arrive(102, 5300)).expect("second");
    assert_eq!(
        (update.number, update.request_ns, update.first_arrival_ns),
        (2, 5000, Some(5100))
    );
}

#[test]
fn runtime_request_after_signal_records_the_runtime_sequence() {
    let mut t = tracker();
    t.on_event(request(1000));
    t.on_event(runtime_request(100, 1010, 1, 7));
    let update = t.on_tick(u64::MAX).expect("dnq");
    assert_eq!((update.runtime_seq, update.request_ns), (Some(7), 1000));
    // Its handler ran 10 ns after the signal was sent.
    assert_eq!(update.signal_delivery_ns(), Some(10));
}

#[test]
fn a_process_with_only_the_helper_never_quiesces_by_itself() {
    let mut t = Tracker::new(10);
    t.seed(5, RUNTIME_HELPER_COMM, None);
    t.on_event(request(100));
    assert_eq!(t.on_event(thread_exit(6, 101)), None);
    assert_eq!(t.on_tick(110).map(|u| u.outcome), Some(Outcome::Dnq));
}

#[test]
fn calls_of_the_window_are_kept_in_order_with_restarts() {
    let mut t = tracker();
    t.on_event(request(1000));
    // 101 was in read since 800 (snapshot); it returns ERESTARTSYS and re-enters: SA_RESTART.
    let state = ThreadState {
        nr: 0,
        since_ns: 800,
        args: [5, 0, 1, 0, 0, 0],
        arrived_seq: 0,
    };
    t.apply_snapshot(&[(101, state)]);
    t.on_event(exit(101, 1100, 0, -512));
    // The handler returns; rt_sigreturn restores rax = 0, the read's number: a restart.
    t.on_event(enter(101, 1100, 15, [0; 6]));
    t.on_event(exit(101, 1101, 15, 0));
    t.on_event(enter(101, 1101, 0, [5, 0, 1, 0, 0, 0]));
    // 102 is interrupted too, but its program sees EINTR (rt_sigreturn restores -4).
    t.on_event(enter(102, 1010, 43, [4, 0, 0, 0, 0, 0]));
    t.on_event(exit(102, 1100, 43, -512));
    t.on_event(exit(102, 1101, 15, -4));
    let update = t.on_tick(u64::MAX).expect("dnq");
    let reader = thread(&update, 101);
    assert_eq!(reader.calls.len(), 2);
    assert_eq!(
        (
            reader.calls[0].start_ns,
            reader.calls[0].end_ns,
            reader.calls[0].ret
        ),
        (Some(800), Some(1100), Some(-512))
    );
    assert!(reader.calls[0].restarted());
    assert_eq!(
        (reader.calls[1].start_ns, reader.calls[1].end_ns),
        (Some(1101), None)
    );
    assert!(!reader.calls[1].restarted());
    assert!(!reader.ever_arrived);
    let acceptor = thread(&update, 102);
    assert_eq!(
        acceptor.calls.len(),
        1,
        "rt_sigreturn is not kept as a call"
    );
    assert!(!acceptor.calls[0].restarted());
    // The seeded main thread's call began before attach.
    let main = thread(&update, 100);
    assert_eq!(main.calls.len(), 1);
    assert_eq!(main.calls[0].start_ns, None);
}

#[test]
fn ever_arrived_survives_later_windows() {
    let mut t = requested(1000, &[(101, 1100)]);
    t.on_tick(u64::MAX);
    t.on_event(request(5000));
    let update = t.on_tick(u64::MAX).expect("dnq");
    let ever: Vec<(u32, bool)> = update
        .threads
        .iter()
        .map(|t| (t.tid, t.ever_arrived))
        .collect();
    assert_eq!(ever, vec![(100, false), (101, true), (102, false)]);
}

#[test]
fn the_runtime_quiescing_without_a_thread_means_it_does_not_participate() {
    let mut t = requested(1000, &[(100, 1100), (101, 1200)]);
    let update = t.on_event(release(1300, true, 2)).expect("released");
    assert_eq!(update.outcome, Outcome::Quiesced);
    assert_eq!((update.quiescence_ns(), update.end_ns), (Some(100), 1200));
    assert_eq!(update.missing().count(), 0);
    let outsider = thread(&update, 102);
    assert!(!outsider.participating && outsider.arrival_ns.is_none());
    assert!(
        update
            .threads
            .iter()
            .filter(|t| t.tid != 102)
            .all(|t| t.participating)
    );
}

#[test]
fn the_runtime_abandoning_the_update_is_a_dnq() {
    let mut t = requested(1000, &[(100, 1100)]);
    let update = t.on_event(release(9000, false, 3)).expect("released");
    assert_eq!((update.outcome, update.end_ns), (Outcome::Dnq, 9000));
    assert_eq!(
        update.missing().map(|t| t.tid).collect::<Vec<_>>(),
        vec![101, 102]
    );
    assert_eq!(t.on_event(depart(100, 9001)), None);
}

#[test]
fn a_flood_of_calls_is_capped_keeping_the_first_and_the_latest() {
    let mut t = tracker();
    t.on_event(request(1000));
    for i in 0..2000u64 {
        t.on_event(enter(101, 2000 + 2 * i, 0, [3, 0, 1, 0, 0, 0]));
        t.on_event(exit(101, 2001 + 2 * i, 0, 1));
    }
    t.on_event(enter(101, 9000, 43, [4, 0, 0, 0, 0, 0]));
    let update = t.on_tick(u64::MAX).expect("dnq");
    let calls = &thread(&update, 101).calls;
    assert_eq!(calls.len(), MAX_CALLS);
    assert_eq!(calls[0].start_ns, Some(2000));
    assert_eq!(
        (calls[MAX_CALLS - 1].nr, calls[MAX_CALLS - 1].start_ns),
        (43, Some(9000))
    );
}

/// The reader's rule for an event past the deadline (`reader::drain`): the update is finished at
/// its deadline first, so a thread interrupted just after it is still reported in its call.
#[test]
fn an_exit_just_past_the_deadline_leaves_the_thread_in_its_call() {
    let mut t = tracker();
    t.on_event(request(1000));
    let read = enter(102, 1300, 0, [6, 0, 1, 0, 0, 0]);
    t.on_event(read);
    let late = exit(102, 1000 + 1000 * MS + 1, 0, -512);
    let update = t.on_tick(late.ts_ns).expect("past the deadline");
    assert_eq!(t.on_event(late), None);
    assert_eq!(update.end_ns, 1000 + 1000 * MS);
    let straggler = thread(&update, 102);
    assert_eq!(
        straggler.blocked,
        blocked(0, [6, 0, 1, 0, 0, 0], Some(1300))
    );
}

/// At the deadline the straggler is between two calls (interrupted, not yet back in its read):
/// the update waits for it to block again and reports it in that call, not as running.
#[test]
fn a_straggler_between_two_calls_at_the_deadline_is_reported_in_the_next() {
    let mut t = requested(0, &[(100, 10), (101, 20)]);
    let read = |ts_ns| enter(102, ts_ns, 0, [5, 0, 1, 0, 0, 0]);
    t.on_event(read(30));
    t.on_event(exit(102, 999 * MS, 0, -512));
    // The deadline (1000 ms) passes while it is in the handler: no verdict yet.
    assert_eq!(t.on_tick(1000 * MS), None);
    assert!(t.window_open());
    // Back in its read: the DNQ, in that read.
    let update = t.on_event(read(1003 * MS)).expect("the DNQ");
    assert_eq!((update.outcome, update.end_ns), (Outcome::Dnq, 1003 * MS));
    let straggler = &update.threads[0];
    assert_eq!(straggler.tid, 102);
    assert_eq!(straggler.blocked.map(|b| b.nr), Some(0));
    assert_eq!(
        straggler.calls.last().map(|c| c.end_ns),
        Some(None),
        "still blocked"
    );

    // One that never blocks again is judged at the end of the grace; one that arrives then is
    // too late to count.
    for late_arrival in [false, true] {
        t.on_event(request(2000 * MS));
        t.on_event(arrive(100, 2001 * MS));
        t.on_event(arrive(101, 2001 * MS));
        t.on_event(read(2002 * MS));
        t.on_event(exit(102, 2999 * MS, 0, -4));
        assert_eq!(t.on_tick(3000 * MS), None);
        let update = if late_arrival {
            t.on_event(arrive(102, 3001 * MS)).expect("the DNQ")
        } else {
            assert_eq!(t.on_tick(3000 * MS + BETWEEN_CALLS_GRACE_NS - 1), None);
            t.on_tick(u64::MAX).expect("the DNQ")
        };
        assert_eq!(update.outcome, Outcome::Dnq);
        assert_eq!(update.missing().count(), 1, "{late_arrival}");
    }
}

/// A thread created during an update parks for it after the report: that arrival (the same
/// runtime sequence number) opens no new window; one for a newer update does.
#[test]
fn a_late_arrival_for_a_reported_update_opens_no_window() {
    let mut t = tracker();
    t.on_event(request(1000));
    t.on_event(arrive(100, 1100));
    t.on_event(arrive(101, 1200));
    let update = t.on_event(arrive(102, 1300)).expect("quiesced");
    assert_eq!(update.runtime_seq, Some(1));
    assert_eq!(t.on_event(arrive(104, 1400)), None);
    assert!(!t.window_open(), "a late arrival is no new update");
    t.on_event(runtime_arrival(104, 5000, 2));
    assert!(
        t.window_open(),
        "an arrival for an update not seen yet opens one"
    );
}

#[test]
fn the_call_a_request_found_comes_with_its_entry_when_it_ends() {
    // Thread 100 was in read at the end of the previous window; by the next request it is in
    // epoll_wait (since 800, before attach for 101), and the table is read only after both
    // calls were interrupted: their entries come with their exits, stamped when they began.
    let mut t = tracker();
    t.seed(100, "worker", Some((0, [3, 0, 0, 0, 0, 0])));
    t.seed(101, "other", None);
    t.on_event(request(1000));
    let out = ThreadState::in_no_call(0);
    t.apply_snapshot(&[(100, out), (101, out)]);
    assert!(
        t.threads[&100].calls.is_empty(),
        "the guess from /proc is gone"
    );
    t.on_event(enter(100, 800, 232, [5, 0, 0, 0, 0, 0]));
    t.on_event(exit(100, 1200, 232, -4));
    t.on_event(enter(101, 0, 7, [9, 0, 0, 0, 0, 0]));
    t.on_event(exit(101, 1300, 7, -4));
    let update = t.on_tick(u64::MAX).expect("dnq");
    let calls = |tid| {
        thread(&update, tid)
            .calls
            .iter()
            .map(|c| (c.nr, c.start_ns, c.end_ns, c.ret))
            .collect::<Vec<_>>()
    };
    assert_eq!(calls(100), vec![(232, Some(800), Some(1200), Some(-4))]);
    assert_eq!(calls(101), vec![(7, None, Some(1300), Some(-4))]);
    assert_eq!(update.end_ns, 1000 + 1000 * MS);
}
