//! The observing loop: read the ring buffer as it fills, feed the tracker, judge the open
//! update's deadline, check that the process lives, and hand each finished update to the sink.
//! All decisions about updates are the tracker's; this is the I/O.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::gone::{self, Gone};
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
        let mut alive = tokio::time::interval(cadence.alive);
        let mut idle = tokio::time::interval(cadence.idle.unwrap_or(NEVER));
        for tick in [&mut deadline, &mut alive, &mut idle] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        // An alive check as frequent as the deadline check judges the deadline itself.
        let deadline_apart = cadence.alive > DEADLINE_TICK;
        if self.blocked == Blocked::TracedWhilePending && sink.requests() {
            // Attached before the request is sent: its window sees every call from the start.
            super::tracking::start(&mut self.probes, self.verbose)?;
        }
        sink.started()?;
        loop {
            let next = tokio::select! {
                ready = events.readable_mut() => {
                    let mut guard = ready?;
                    if self.blocked == Blocked::TracedWhilePending
                        && !self.probes.tracking()
                        && !self.tracker.window_open()
                    {
                        tokio::time::sleep(SETTLE).await;
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
                _ = alive.tick() => match self.judge_deadline(events.get_mut(), sink).await? {
                    Next::Continue => self.check_alive(sink)?,
                    Next::Stop => Next::Stop,
                },
                _ = idle.tick(), if cadence.idle.is_some() && !self.tracker.window_open() => {
                    sink.idle();
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
        let batch = reader::drain(ring, &mut self.tracker, pid, verbose, |tracker| {
            super::runtime_state::on_window_opened(tracker, pid, state_at, verbose);
            refresh::on_window_opened(tracker, probes, pid, blocked, verbose)
        })?;
        self.undecodable += batch.undecodable;
        Ok((batch.finished, batch.more))
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
        match self.tracker.on_tick(crate::clock::monotonic_ns()) {
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
        sink.next().await
    }

    /// Stops when the process has exited or executed another program, after reporting what was
    /// seen of an update in progress.
    fn check_alive(&mut self, sink: &mut impl Sink) -> anyhow::Result<Next> {
        let pid = self.pid();
        let Some(gone) = Gone::check(pid, self.image) else {
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
