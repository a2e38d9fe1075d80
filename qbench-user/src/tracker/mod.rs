//! The observer's pure state machine: decoded events in, one report per update out. No I/O, no
//! clock: the caller feeds events, the kernel's per-thread snapshot at each request, and ticks
//! for the timeout, which is what makes it testable without root.
//!
//! This folder: the tracker here, and its tests (`tests.rs`), event sequences fed by hand.

mod delivery;
mod exit;
mod runtime_view;
mod state_arrivals;
mod update;

pub use self::exit::Exit;
pub use self::state_arrivals::TableAtDeadline;
pub use self::update::{Outcome, ThreadReport, Update};

use std::collections::BTreeMap;

use qbench_common::{NO_SYSCALL, ThreadState};

use crate::kernel::decode::{ArriveSource, Event, Payload, RequestSource};

/// The runtime's own helper thread: never a participant.
pub const RUNTIME_HELPER_COMM: &str = qbench_common::runtime::HELPER_COMM;

/// A blocking call a thread is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub nr: i64,
    pub args: [u64; 6],
    /// When it entered the call; None when it was already blocked at attach (no event).
    pub since_ns: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Thread {
    comm: String,
    blocked: Option<Blocked>,
    arrival_ns: Option<u64>,
    /// The tracked calls of the open window, in order (for timelines and diagnosis).
    calls: Vec<Call>,
    /// Whether the thread reached an update point in any window since attach.
    ever_arrived: bool,
    /// The runtime reached full quiescence without it in this window: not a participant.
    outside_runtime: bool,
    /// The call it was in when the window opened, as last known: what a delivery of the update
    /// signal ended, if the syscall tracepoints were not there to see it.
    at_request: Option<Blocked>,
}

/// Return values of a system call interrupted by a signal (ERESTARTSYS, ERESTARTNOINTR,
/// ERESTARTNOHAND, ERESTART_RESTARTBLOCK): seen by the exit tracepoint, never by the program.
/// Whether the kernel then restarts the call or returns EINTR is decided at signal delivery, by
/// the handler's SA_RESTART: see [`crate::syscalls::RT_SIGRETURN`].
pub const RESTART_RETURNS: [i64; 4] = qbench_common::runtime::RESTART_RETURNS;

/// How long past its deadline an update waits for a missing thread that is between two calls
/// (just interrupted, in the update signal's handler, about to block again) to be back in one,
/// so that it is reported in the call it keeps returning to rather than as running. The runtime
/// interrupts stragglers every few milliseconds, and under load or emulation the gap is long.
pub const BETWEEN_CALLS_GRACE_NS: u64 = 20_000_000;

/// The calls kept per thread and window (the first ones and the latest).
pub const MAX_CALLS: usize = 512;

/// One tracked call during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
    /// When it began: None before attach; may precede the request.
    pub start_ns: Option<u64>,
    /// When it returned, and what it returned; None while still blocked.
    pub end_ns: Option<u64>,
    pub ret: Option<i64>,
    /// The kernel restarted it after the signal handler returned (SA_RESTART), instead of
    /// returning EINTR to the program.
    pub restarted: bool,
}

impl Call {
    /// The kernel restarted it after a signal handler (the handler has SA_RESTART).
    pub fn restarted(&self) -> bool {
        self.restarted
    }
}

/// Where the window's request was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSeen {
    /// The update signal sent to the target.
    Signal { signal: u32, sender_tgid: u32 },
    /// The runtime's request anchor (a request from inside the process).
    Runtime,
    /// No request was seen: the first arrival opened the window (attached mid-update).
    Arrival,
    /// The runtime's state showed the update pending when the observer attached.
    BeforeAttach,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    request_ns: u64,
    deadline_ns: u64,
    seen: RequestSeen,
    window_seq: u64,
    runtime_seq: Option<u64>,
    /// When the runtime's handler took the request up (its request anchor), for a request seen
    /// as a signal.
    handled_ns: Option<u64>,
    first_arrival_ns: Option<u64>,
    last_arrival_ns: Option<u64>,
    /// Past the deadline, waiting (at most [`BETWEEN_CALLS_GRACE_NS`]) for missing threads
    /// between two calls to block again: the update has not quiesced, whatever comes now.
    closing: bool,
    /// When the syscall tracepoints were attached, if known (the diagnosis mode).
    tracked_from_ns: Option<u64>,
    /// With arrivals from the runtime's table: whether the table was consulted past the
    /// deadline ([`Tracker::deadline_arrivals`]); until it is, no deadline ends the update.
    arrivals_read: bool,
}

/// The thread table and the open window.
#[derive(Debug, Clone)]
pub struct Tracker {
    timeout_ns: u64,
    threads: BTreeMap<u32, Thread>,
    window: Option<Window>,
    reported: u64,
    /// The runtime's sequence number of the latest update reported, when known: a thread that
    /// parks for it after the report (one created during the update, say) opens no new window.
    last_runtime_seq: Option<u64>,
    /// The participants the runtime listed in its exported state, when read.
    runtime: Option<runtime_view::Known>,
    /// Arrivals come from the runtime's participants table at its release, not from its
    /// arrival anchor ([`Self::take_arrivals_from_state`]).
    arrivals_from_state: bool,
}

impl Tracker {
    pub fn new(timeout_ns: u64) -> Tracker {
        Tracker {
            timeout_ns,
            threads: BTreeMap::new(),
            window: None,
            reported: 0,
            last_runtime_seq: None,
            runtime: None,
            arrivals_from_state: false,
        }
    }

    /// Arrivals will come from the runtime's participants table, read at its release, and no
    /// longer from its arrival anchor: an update with more participants than the table holds
    /// is then reported incomplete, since the arrivals of the others are not seen.
    pub fn take_arrivals_from_state(&mut self) {
        self.arrivals_from_state = true;
    }

    /// Adds a thread known at attach, with the call /proc shows it blocked in.
    pub fn seed(&mut self, tid: u32, comm: &str, blocked: Option<(i64, [u64; 6])>) {
        let thread = self.threads.entry(tid).or_default();
        thread.comm = comm.to_string();
        thread.blocked = blocked.map(|(nr, args)| Blocked {
            nr,
            args,
            since_ns: None,
        });
    }

    /// Updates a thread's name (names change after creation; /proc is read lazily).
    pub fn set_comm(&mut self, tid: u32, comm: &str) {
        if let Some(thread) = self.threads.get_mut(&tid) {
            thread.comm = comm.to_string();
        }
    }

    pub fn tids(&self) -> Vec<u32> {
        self.threads.keys().copied().collect()
    }

    pub fn window_open(&self) -> bool {
        self.window.is_some()
    }

    /// Applies the kernel's per-thread state, read just after a request: a thread in a call
    /// since before the request is blocked in it; later changes arrive as events.
    pub fn apply_snapshot(&mut self, snapshot: &[(u32, ThreadState)]) {
        let Some(request_ns) = self.window.as_ref().map(|w| w.request_ns) else {
            return;
        };
        for (tid, state) in snapshot {
            let Some(thread) = self.threads.get_mut(tid) else {
                continue;
            };
            if state.nr == NO_SYSCALL || state.since_ns >= request_ns {
                // Not in the call guessed at the opening (from the previous window): the call it
                // was in at the request, if any, comes as an event when it ends.
                thread
                    .calls
                    .retain(|c| c.start_ns.is_some_and(|start| start >= request_ns));
                if state.nr == NO_SYSCALL {
                    thread.blocked = None;
                }
            } else {
                // Zero: seeded from /proc at attach, blocked since an unknown earlier time.
                let since_ns = (state.since_ns != 0).then_some(state.since_ns);
                thread.blocked = Some(Blocked {
                    nr: state.nr,
                    args: state.args,
                    since_ns,
                });
                thread.calls = vec![Call {
                    nr: state.nr,
                    args: state.args,
                    start_ns: since_ns,
                    end_ns: None,
                    ret: None,
                    restarted: false,
                }];
            }
        }
    }

    /// Applies one event; returns the update it completed, if any.
    pub fn on_event(&mut self, event: Event) -> Option<Update> {
        let Event {
            tid,
            ts_ns,
            payload,
        } = event;
        match payload {
            Payload::Request {
                window_seq,
                runtime_seq,
                source,
                signal,
                sender_tgid,
                ..
            } => {
                let seen = match source {
                    RequestSource::Signal => RequestSeen::Signal {
                        signal,
                        sender_tgid,
                    },
                    RequestSource::Runtime => RequestSeen::Runtime,
                };
                self.on_request(ts_ns, seen, window_seq, runtime_seq);
                None
            }
            Payload::Arrive { seq, source } => self.on_arrive(tid, ts_ns, seq, source),
            Payload::Depart { seq } => self.on_depart(ts_ns, seq),
            Payload::SysEnter { nr, args } => self.on_sys_enter(tid, ts_ns, nr, args),
            Payload::SysExit { nr, ret } => {
                self.on_sys_exit(tid, ts_ns, nr, ret);
                None
            }
            Payload::Release {
                seq,
                quiesced,
                threads,
            } => self.on_release(ts_ns, seq, quiesced, threads),
            // Only a wake-up, for the reader to attach syscall tracking.
            Payload::Late { .. } => None,
            Payload::ThreadNew { .. } => {
                self.threads.entry(tid).or_default();
                None
            }
            Payload::Deliver { handler, flags, .. } => {
                self.on_deliver(tid, ts_ns, handler, flags);
                None
            }
            Payload::ThreadExit => {
                self.threads.remove(&tid);
                // Complete because the last one missing left, not because it arrived: the
                // process may be dying, which the caller checks before calling it quiesced.
                self.complete_if_quiesced(ts_ns).map(|update| Update {
                    ended_by_thread_exit: true,
                    ..update
                })
            }
        }
    }

    /// A request (`seen` as the signal or the runtime's anchor) opens the window, unless one is
    /// open already.
    fn on_request(&mut self, ts_ns: u64, seen: RequestSeen, window_seq: u64, runtime_seq: u64) {
        let from_runtime = seen == RequestSeen::Runtime;
        if self.window.is_none() {
            self.open(ts_ns, seen, window_seq, from_runtime.then_some(runtime_seq));
        } else if let Some(w) = self.window.as_mut()
            && from_runtime
        {
            // The signal opened the window; the runtime's anchor names its sequence and says
            // when its handler ran.
            w.runtime_seq.get_or_insert(runtime_seq);
            w.handled_ns.get_or_insert(ts_ns);
        }
    }

    fn on_arrive(
        &mut self,
        tid: u32,
        ts_ns: u64,
        seq: u64,
        source: ArriveSource,
    ) -> Option<Update> {
        if source == ArriveSource::State {
            return self.on_arrive_at_release(tid, ts_ns, seq);
        }
        if self.window.as_ref().is_some_and(|w| w.closing) {
            // Past the deadline: too late to count; the update did not quiesce.
            return Some(self.finish(Outcome::Dnq, ts_ns));
        }
        if self.window.is_none() {
            if source == ArriveSource::Point {
                return None; // a late hit after the update was reported
            }
            if self.last_runtime_seq.is_some_and(|last| seq <= last) {
                return None; // a late arrival for an update already reported
            }
            self.open(ts_ns, RequestSeen::Arrival, 0, Some(seq));
        }
        if source == ArriveSource::Runtime
            && let Some(w) = self.window.as_mut()
        {
            // The runtime's arrival anchor names its own sequence number of the update.
            w.runtime_seq.get_or_insert(seq);
        }
        self.count_arrival(tid, ts_ns);
        self.complete_if_quiesced(ts_ns)
    }

    /// Records that `tid` arrived at `ts_ns` in the open window (its first arrival counts).
    /// Calls it began from then on are the runtime's park, not why anyone was late.
    pub(super) fn count_arrival(&mut self, tid: u32, ts_ns: u64) {
        let Some(w) = self.window.as_mut() else {
            return;
        };
        let thread = self.threads.entry(tid).or_default();
        if thread.arrival_ns.is_none() {
            thread.arrival_ns = Some(ts_ns);
            thread.ever_arrived = true;
            thread.blocked = None;
            thread
                .calls
                .retain(|c| c.start_ns.is_none_or(|start| start < ts_ns));
            w.first_arrival_ns = Some(w.first_arrival_ns.map_or(ts_ns, |f| f.min(ts_ns)));
            w.last_arrival_ns = Some(w.last_arrival_ns.map_or(ts_ns, |l| l.max(ts_ns)));
        }
    }

    fn on_sys_enter(&mut self, tid: u32, ts_ns: u64, nr: i64, args: [u64; 6]) -> Option<Update> {
        let thread = self.threads.entry(tid).or_default();
        // The return from a signal handler is no blocking call: only its exit matters.
        if nr == crate::syscalls::RT_SIGRETURN {
            return None;
        }
        // A parked thread's own futex wait is the runtime's, not a reason it is late.
        if thread.arrival_ns.is_none() {
            // Zero: the entry of a call the request found in progress, begun before attach.
            let since_ns = (ts_ns != 0).then_some(ts_ns);
            thread.blocked = Some(Blocked { nr, args, since_ns });
            if self.window.is_some() {
                // A thread looping over system calls must not grow this without bound:
                // past the cap, the newest call replaces the last kept one.
                if thread.calls.len() >= MAX_CALLS {
                    thread.calls.pop();
                }
                thread.calls.push(Call {
                    nr,
                    args,
                    start_ns: since_ns,
                    end_ns: None,
                    ret: None,
                    restarted: false,
                });
            }
        }
        // An entry stamped before the request (a call the request found) ends nothing earlier.
        let now = self
            .window
            .as_ref()
            .map_or(ts_ns, |w| ts_ns.max(w.request_ns));
        self.finish_closing(now)
    }

    fn on_sys_exit(&mut self, tid: u32, ts_ns: u64, nr: i64, ret: i64) {
        if nr == crate::syscalls::RT_SIGRETURN {
            // rt_sigreturn returns the restored rax: the interrupted call's number when
            // the kernel restarts it (SA_RESTART), -EINTR when the program sees EINTR.
            if let Some(call) = self
                .threads
                .get_mut(&tid)
                .and_then(|t| t.calls.last_mut())
                .filter(|c| c.ret.is_some_and(|r| RESTART_RETURNS.contains(&r)))
            {
                call.restarted = ret == call.nr;
            }
            return;
        }
        if let Some(thread) = self.threads.get_mut(&tid) {
            thread.blocked = None;
            if let Some(call) = thread.calls.last_mut().filter(|c| c.end_ns.is_none()) {
                call.end_ns = Some(ts_ns);
                call.ret = Some(ret);
            }
        }
    }

    /// A thread released from the runtime's update `seq`. Released before every thread we see
    /// arrived, the runtime gave up (its own timeout): this update did not quiesce. A departure
    /// from an earlier update is not one: the runtime opens the next update as it releases the
    /// threads of one that a request reached while it was closing, so their departures can
    /// follow the next request.
    fn on_depart(&mut self, ts_ns: u64, seq: u64) -> Option<Update> {
        let w = self.window.as_ref()?;
        let earlier = w.runtime_seq.is_some_and(|open| seq < open)
            || self.last_runtime_seq.is_some_and(|last| seq <= last);
        if earlier {
            return None;
        }
        Some(self.finish(Outcome::Dnq, ts_ns))
    }

    fn on_release(&mut self, ts_ns: u64, seq: u64, quiesced: bool, threads: u32) -> Option<Update> {
        let w = self.window.as_ref()?;
        if w.runtime_seq.is_some_and(|open| seq < open) {
            return None; // the release of an update before this one
        }
        if self.arrivals_from_state && threads as usize > qbench_common::state::CAPACITY {
            // The table names only the first threads: the others' arrivals were not seen.
            return Some(self.finish(Outcome::Incomplete, ts_ns));
        }
        if !quiesced || w.closing {
            return Some(self.finish(Outcome::Dnq, ts_ns));
        }
        // The runtime reached full quiescence: the threads that have not arrived are
        // ones it does not wait for (never registered, or a library's own threads).
        let end = w.last_arrival_ns.unwrap_or(ts_ns);
        for thread in self.threads.values_mut().filter(|t| t.arrival_ns.is_none()) {
            thread.outside_runtime = true;
        }
        Some(self.finish(Outcome::Quiesced, end))
    }

    /// The target has exited (`how`), noticed at `now_ns`: an update in progress ends as
    /// [`Outcome::Exited`].
    pub fn on_exit(&mut self, now_ns: u64, how: Exit) -> Option<Update> {
        self.window.as_ref()?;
        Some(self.finish(Outcome::Exited(how), now_ns))
    }

    /// Ends the window as DNQ when its timeout has passed at `now_ns`: at the deadline, or, when
    /// a missing thread is between two calls then, once it is back in one (at most
    /// [`BETWEEN_CALLS_GRACE_NS`] later).
    pub fn on_tick(&mut self, now_ns: u64) -> Option<Update> {
        let w = self.window.as_ref()?;
        let deadline = w.deadline_ns;
        if now_ns < deadline || self.awaits_arrivals(now_ns) {
            return None;
        }
        let last_chance = deadline.saturating_add(BETWEEN_CALLS_GRACE_NS);
        if w.closing {
            return (now_ns >= last_chance).then(|| self.finish(Outcome::Dnq, last_chance));
        }
        if self.missing_between_calls() && now_ns < last_chance {
            self.window.as_mut().expect("checked above").closing = true;
            return None;
        }
        Some(self.finish(Outcome::Dnq, deadline))
    }

    fn open(
        &mut self,
        request_ns: u64,
        seen: RequestSeen,
        window_seq: u64,
        runtime_seq: Option<u64>,
    ) {
        for thread in self.threads.values_mut() {
            thread.arrival_ns = None;
            thread.outside_runtime = false;
            thread.at_request = thread.blocked;
            // A call in progress at the request is the first of the new window's calls.
            thread.calls = thread
                .blocked
                .map(|b| Call {
                    nr: b.nr,
                    args: b.args,
                    start_ns: b.since_ns,
                    end_ns: None,
                    ret: None,
                    restarted: false,
                })
                .into_iter()
                .collect();
        }
        self.window = Some(Window {
            request_ns,
            deadline_ns: request_ns.saturating_add(self.timeout_ns),
            seen,
            window_seq,
            runtime_seq,
            handled_ns: None,
            first_arrival_ns: None,
            last_arrival_ns: None,
            closing: false,
            tracked_from_ns: None,
            arrivals_read: false,
        });
    }

    /// Whether a missing participant is between two calls: out of a call it made in this window
    /// (interrupted, or returned `EAGAIN` as a contended lock's futex does) and not yet back in
    /// one.
    fn missing_between_calls(&self) -> bool {
        self.participants().any(|(&tid, t)| {
            self.waits_for(tid, t)
                && t.arrival_ns.is_none()
                && t.blocked.is_none()
                && t.calls.last().is_some_and(|c| c.end_ns.is_some())
        })
    }

    /// During the grace after the deadline: the DNQ, at `ts_ns`, once no missing thread is
    /// between calls any more.
    fn finish_closing(&mut self, ts_ns: u64) -> Option<Update> {
        let closing = self.window.as_ref().is_some_and(|w| w.closing);
        (closing && !self.missing_between_calls()).then(|| self.finish(Outcome::Dnq, ts_ns))
    }

    fn participants(&self) -> impl Iterator<Item = (&u32, &Thread)> {
        self.threads
            .iter()
            .filter(|(_, t)| t.comm != RUNTIME_HELPER_COMM)
    }

    pub(super) fn complete_if_quiesced(&mut self, now_ns: u64) -> Option<Update> {
        let w = self.window.as_ref()?;
        let end = w.last_arrival_ns.unwrap_or(now_ns);
        let any_arrived = w.first_arrival_ns.is_some();
        let (any_participant, all_arrived) = {
            let mut participants = self
                .participants()
                .filter(|(tid, t)| self.waits_for(**tid, t))
                .peekable();
            (
                participants.peek().is_some(),
                participants.all(|(_, t)| t.arrival_ns.is_some()),
            )
        };
        (any_arrived && any_participant && all_arrived).then(|| self.finish(Outcome::Quiesced, end))
    }

    pub(super) fn finish(&mut self, outcome: Outcome, end_ns: u64) -> Update {
        let w = self.window.take().expect("finish needs an open window");
        if w.runtime_seq.is_some() {
            self.last_runtime_seq = w.runtime_seq;
        }
        self.reported += 1;
        let mut threads: Vec<ThreadReport> = self
            .participants()
            .map(|(&tid, t)| ThreadReport {
                tid,
                comm: t.comm.clone(),
                arrival_ns: t.arrival_ns,
                blocked: if t.arrival_ns.is_none() {
                    t.blocked
                } else {
                    None
                },
                calls: t.calls.clone(),
                ever_arrived: t.ever_arrived,
                participating: self.participating(tid, t),
                runtime_knows: self.runtime_knows(tid),
            })
            .collect();
        threads.sort_by_key(|t| (t.arrival_ns.is_some(), t.arrival_ns, t.tid));
        Update {
            number: self.reported,
            outcome,
            ended_by_thread_exit: false,
            seen: w.seen,
            window_seq: w.window_seq,
            runtime_seq: w.runtime_seq,
            request_ns: w.request_ns,
            handled_ns: w.handled_ns,
            first_arrival_ns: w.first_arrival_ns,
            last_arrival_ns: w.last_arrival_ns,
            end_ns,
            threads,
        }
    }
}

#[cfg(test)]
mod tests;
