//! The observing loop: read the ring buffer as it fills, feed the tracker, judge the open
//! update's deadline, check that the process lives, and hand each finished update to the sink.
//! All decisions about updates are the tracker's; this is the I/O.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::gone::{self, Gone, Liveness};
use super::{Blocked, Cadence, Next, Observed, Sink, refresh};
use crate::kernel::reader;
use crate::procfs;
use crate::tracker::{Outcome, Update};

/// How often an open update is checked against its deadline.
const DEADLINE_TICK: Duration = Duration::from_millis(5);
/// Ring-buffer batches read per tick before the deadline is judged: 16 × 4,096 records, an update
/// of 10,000 threads.
const BATCHES_PER_TICK: usize = 16;
/// The period of a tick that is not wanted ([`Cadence::idle`] of None); long, never zero.
const NEVER: Duration = Duration::from_secs(3600);
/// How long a wake-up while syscall tracking is detached (anyone else's request, mostly) waits
/// before the ring buffer is read and tracking attached: the threads racing to park are not
/// slowed by the reader and the attach, most updates have quiesced by then (their release is
/// read in the same batch), and the runtime interrupts a straggler again within 5 ms (its
/// longest gap), which the tracepoints then see.
const SETTLE: Duration = Duration::from_millis(5);

impl Observed {
    /// Observes until the process goes away or the sink says to stop; `ring` is the programs'
    /// ring buffer (from [`Observed::attach`]). Dropping the future stops observing.
    pub(crate) async fn run(
        mut self,
        ring: RingBuf<MapData>,
        cadence: Cadence,
        sink: &mut impl Sink,
    ) -> anyhow::Result<()> {
        // SAFETY: the ring buffer owns its map descriptor, which stays open and the same for as
        // long as the AsyncFd holds it.
        let mut events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let mut deadline = tokio::time::interval(DEADLINE_TICK);
        let alive = Ticker::every(cadence.alive)?;
        let mut idle = tokio::time::interval(cadence.idle.unwrap_or(NEVER));
        for tick in [&mut deadline, &mut idle] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        // An alive check as frequent as the deadline check judges the deadline itself.
        let deadline_apart = cadence.alive > DEADLINE_TICK;
        let mut liveness = Liveness::new(self.pid(), self.image);
        // The process's exit is learnt at once from its pidfd, not at the next alive check.
        let mut exit_notice = gone::exit_notice(self.pid());
        if self.tracks_ahead(sink) {
            // Attached before the request is sent: its window sees every call from the start.
            super::tracking::start(&mut self.probes, self.verbose)?;
        }
        self.request(sink)?;
        loop {
            let next = tokio::select! {
                ready = events.readable_mut() => {
                    let mut guard = ready?;
                    if let Some(wait) = self.race_left()? {
                        tokio::time::sleep(wait).await;
                    }
                    let (finished, more) = self.drain(guard.get_inner_mut())?;
                    // Records left over (a flood): keep the readiness so the loop comes straight
                    // back, after the other branches (the deadline above all) had their turn.
                    if !more {
                        guard.clear_ready();
                    }
                    self.finish_all(finished, sink).await?
                }
                _ = deadline.tick(), if deadline_apart && self.tracker.window_open() => {
                    self.judge_deadline(events.get_mut(), sink).await?
                }
                ticked = alive.tick() => {
                    ticked?;
                    self.judge_and_check(events.get_mut(), &mut liveness, sink).await?
                }
                _ = exited(exit_notice.as_ref()) => {
                    // Readable for good once the process has exited: should /proc not agree
                    // yet, the alive checks decide from here on.
                    exit_notice = None;
                    self.judge_and_check(events.get_mut(), &mut liveness, sink).await?
                }
                _ = idle.tick(), if cadence.idle.is_some() && !self.tracker.window_open() => {
                    sink.idle()?;
                    Next::Continue
                }
            };
            if next == Next::Stop {
                return Ok(());
            }
        }
    }

    /// Applies a batch of the ring buffer's records; returns the updates they completed, and
    /// whether records may be left.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> anyhow::Result<(Vec<Update>, bool)> {
        let (pid, blocked, probes) = (self.target.pid, self.blocked, &mut self.probes);
        let (state_at, verbose) = (self.state_at, self.verbose);
        let at_own_request = &mut self.at_own_request;
        let batch = reader::drain(ring, &mut self.tracker, pid, verbose, |tracker, opened| {
            super::runtime_state::on_window_opened(tracker, pid, state_at, verbose);
            let before = at_own_request.take();
            refresh::on_window_opened(tracker, probes, pid, blocked, opened, before, verbose)
        })?;
        self.undecodable += batch.undecodable;
        Ok((batch.finished, batch.more))
    }

    /// The periodic check: the open update's deadline, then whether the process went away.
    async fn judge_and_check(
        &mut self,
        ring: &mut RingBuf<MapData>,
        liveness: &mut Liveness,
        sink: &mut impl Sink,
    ) -> anyhow::Result<Next> {
        // Read on a tick in a runtime target's race to park, a request would have /proc read
        // or syscall tracking attached there: its late wake-up or its release will say.
        if self.runtime && self.race_left()?.is_some() {
            return self.check_alive(liveness, sink);
        }
        match self.judge_deadline(ring, sink).await? {
            Next::Continue => self.check_alive(liveness, sink),
            Next::Stop => Ok(Next::Stop),
        }
    }

    /// How long the threads' race to park may still run, when the ring buffer is about to be
    /// read with no update known (and syscall tracking detached): a request read now would have
    /// the threads' state read from /proc (`--watch`) or tracking attached (the diagnosis mode)
    /// while they race, or its update, over a moment later, tracked for nothing. Without the
    /// runtime the diagnosis mode's wake-up came from the request: the race is [`SETTLE`] long
    /// from now. With the runtime, no request wakes the reader: what is left of `LATE_NS` since
    /// the request the kernel holds open, if any.
    fn race_left(&self) -> anyhow::Result<Option<Duration>> {
        if self.probes.tracking() || self.tracker.window_open() {
            return Ok(None);
        }
        if !self.runtime {
            return Ok((self.blocked == Blocked::TracedWhilePending).then_some(SETTLE));
        }
        let window = self.probes.window()?;
        let age = crate::clock::monotonic_ns().saturating_sub(window.t0_ns);
        Ok((window.open != 0 && age < qbench_common::LATE_NS)
            .then(|| Duration::from_nanos(qbench_common::LATE_NS - age)))
    }

    /// Ends the open update if its deadline has passed, judged on every record already written.
    async fn judge_deadline(
        &mut self,
        ring: &mut RingBuf<MapData>,
        sink: &mut impl Sink,
    ) -> anyhow::Result<Next> {
        // The events of an update wake nobody, so a tick may find many: read them in batches
        // (the other branches get their turn between ticks).
        for _ in 0..BATCHES_PER_TICK {
            let (finished, more) = self.drain(ring)?;
            if self.finish_all(finished, sink).await? == Next::Stop {
                return Ok(Next::Stop);
            }
            if !more {
                return self.judge_by_clock(sink).await;
            }
        }
        // Records are still waiting: the deadline is judged by the clock only once they are
        // read, lest an arrival already written be taken for none. Their own timestamps end the
        // update if they pass the deadline.
        Ok(Next::Continue)
    }

    /// Ends the open update if the clock says its deadline has passed.
    async fn judge_by_clock(&mut self, sink: &mut impl Sink) -> anyhow::Result<Next> {
        let now = crate::clock::monotonic_ns();
        if let Some(update) = self.deadline_arrivals(now) {
            return self.finish(update, sink).await;
        }
        match self.tracker.on_tick(now) {
            Some(update) => self.finish(update, sink).await,
            None => Ok(Next::Continue),
        }
    }

    /// Finishes each of `updates` in turn, until the sink says to stop.
    async fn finish_all(
        &mut self,
        updates: Vec<Update>,
        sink: &mut impl Sink,
    ) -> anyhow::Result<Next> {
        for update in updates {
            if self.finish(update, sink).await? == Next::Stop {
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Continue)
    }

    /// Reports `update` and asks the sink what next; an update its threads ended by leaving
    /// because the process is dying is no quiescence: it is reported as the exit it was.
    async fn finish(&mut self, update: Update, sink: &mut impl Sink) -> anyhow::Result<Next> {
        let pid = self.pid();
        if update.ended_by_thread_exit && procfs::exiting(pid) {
            let how = gone::dying_process_exit(pid).await;
            let update = Update {
                outcome: Outcome::Exited(how),
                ..update
            };
            self.report(update, sink)?;
            sink.gone(pid, Gone::Exited(how));
            return Ok(Next::Stop);
        }
        self.report(update, sink)?;
        let next = sink.next().await?;
        if next == Next::Continue {
            self.request(sink)?;
        }
        Ok(next)
    }

    /// Stops when the process has exited or executed another program, after reporting what was
    /// seen of an update in progress.
    fn check_alive(
        &mut self,
        liveness: &mut Liveness,
        sink: &mut impl Sink,
    ) -> anyhow::Result<Next> {
        let pid = self.pid();
        let Some(gone) = liveness.check() else {
            return Ok(Next::Continue);
        };
        let update = match gone {
            Gone::Exited(how) => self.tracker.on_exit(crate::clock::monotonic_ns(), how),
            Gone::Executed => self.tracker.on_tick(u64::MAX),
        };
        if let Some(update) = update {
            self.report(update, sink)?;
        }
        sink.gone(pid, gone);
        Ok(Next::Stop)
    }
}

/// A periodic timer of the kernel's (a timerfd): one wake-up a period, where tokio's timer wheel
/// wakes twice for a period over 64 ms (once to move the timer to a finer level, once for it).
/// Ticks missed while the loop was busy are not made up.
struct Ticker(AsyncFd<std::os::fd::OwnedFd>);

impl Ticker {
    fn every(period: Duration) -> std::io::Result<Self> {
        use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let period = rustix::time::Timespec::try_from(period)
            .map_err(|_| std::io::Error::other("alive period out of range"))?;
        let spec = Itimerspec {
            it_interval: period,
            it_value: period,
        };
        rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the same for its lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self(fd))
    }

    /// Waits for the next expiry (or returns at once if one passed unread).
    async fn tick(&self) -> std::io::Result<()> {
        loop {
            let mut guard = self.0.readable().await?;
            let mut expiries = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expiries)?)) {
                Ok(read) => {
                    // The read took every expiry: not readable until the next one, which
                    // spares the next call a read that would fail.
                    guard.clear_ready();
                    return read.map(drop);
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// Once `notice` (a pidfd) is readable: the process has exited. Never, without one.
async fn exited(notice: Option<&AsyncFd<std::os::fd::OwnedFd>>) {
    match notice {
        Some(fd) => {
            // An error polling a pidfd leaves the alive checks to tell.
            let _ = fd.readable().await;
        }
        None => std::future::pending().await,
    }
}
