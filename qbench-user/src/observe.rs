//! The observing loop: seed the thread table, read the ring buffer as it fills, feed the
//! tracker, close the kernel's window after each report, print, and stop on Ctrl-C, SIGTERM,
//! the target's exit or the wanted count. All decisions are the tracker's; this is the I/O.

use std::io::Write;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use qbench_common::ThreadState;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Args;
use crate::host::request::{Image, RequestError, Requester};
use crate::kernel::reader;
use crate::procfs;
use crate::report::output::{self, Context};
use crate::report::pictures;
use crate::tracker::{Outcome, Tracker, Update};

/// How often the loop wakes to check timeouts and whether the target still lives.
const TICK: Duration = Duration::from_millis(5);
/// Pause between a report and the next `--request`: the runtime finishes releasing its threads
/// first (a request during its release would be merged into the update just reported).
const REQUEST_GAP: Duration = Duration::from_millis(50);

/// What the loop needs from the loaded programs (implemented by the loader).
pub trait Kernel {
    /// The per-thread state the programs keep whether or not a window is open.
    fn snapshot_threads(&self) -> anyhow::Result<Vec<(u32, ThreadState)>>;
    /// Lets the next request open a new window.
    fn close_window(&mut self) -> anyhow::Result<()>;
    /// Events the programs could not record, all kinds, all CPUs, since load.
    fn lost_events(&self) -> anyhow::Result<u64>;
}

/// How the observation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub updates: u64,
    pub dnq: u64,
    /// The target exited while observed.
    pub target_exited: bool,
}

struct Loop<'a, K: Kernel> {
    args: &'a Args,
    kernel: K,
    tracker: Tracker,
    summary: Summary,
    lost_reported: u64,
    undecodable: u64,
    /// The updates reported so far, kept for `--trace-out` and `--svg` only.
    reported: Vec<Update>,
    /// Sends `--request`s: to the attached process only, and only while it catches the signal.
    requester: Option<Requester>,
    /// The program the target ran at attach; another one means its update points are gone.
    image: Option<Image>,
}

/// Observes `args.pid()` until done. `events` is the programs' ring buffer; `requester` sends
/// the `--request`s.
pub async fn run<K: Kernel>(
    args: &Args,
    kernel: K,
    events: RingBuf<MapData>,
    requester: Option<Requester>,
) -> anyhow::Result<Summary> {
    let mut l = Loop::start(args, kernel, requester)?;
    // SAFETY: the ring buffer owns its map descriptor, which stays open and the same for as long
    // as the AsyncFd holds it.
    let mut events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(TICK);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let wanted = args.updates_wanted();
    l.request()?;
    loop {
        tokio::select! {
            ready = events.readable_mut() => {
                let mut guard = ready?;
                let (finished, more) = l.drain(guard.get_inner_mut())?;
                // Records left over (a flood): keep the readiness so the loop comes straight
                // back, after the other branches (the timeout above all) had their turn.
                if !more {
                    guard.clear_ready();
                }
                if l.finish_all(finished, wanted).await? {
                    return Ok(l.summary);
                }
            }
            _ = tick.tick() => {
                if l.tick(events.get_mut(), wanted).await? {
                    return Ok(l.summary);
                }
            }
            _ = interrupt.recv() => return Ok(l.summary),
            _ = terminate.recv() => return Ok(l.summary),
        }
    }
}

impl<'a, K: Kernel> Loop<'a, K> {
    /// The loop's state, its tracker seeded with the target's threads as /proc shows them.
    fn start(args: &'a Args, kernel: K, requester: Option<Requester>) -> anyhow::Result<Self> {
        let mut l = Loop {
            args,
            kernel,
            tracker: Tracker::new(args.timeout.as_nanos() as u64),
            summary: Summary {
                updates: 0,
                dnq: 0,
                target_exited: false,
            },
            lost_reported: 0,
            undecodable: 0,
            reported: Vec::new(),
            requester,
            image: Image::of(args.pid()),
        };
        let threads = procfs::threads(args.pid())
            .ok_or_else(|| anyhow::anyhow!("process {} exited", args.pid()))?;
        for t in &threads {
            l.tracker.seed(t.tid, &t.comm, t.syscall);
        }
        if args.verbose > 0 {
            eprintln!(
                "qbench-trace: seeded {} threads of pid {} from /proc",
                threads.len(),
                args.pid()
            );
        }
        Ok(l)
    }

    /// Finishes each of `updates` in turn; says whether the wanted count is reached.
    async fn finish_all(
        &mut self,
        updates: Vec<Update>,
        wanted: Option<u64>,
    ) -> anyhow::Result<bool> {
        for update in updates {
            if self.finish(&update, wanted).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The periodic check: ends an update past its deadline, and notices that the target exited
    /// or executed another program. Says whether observing is over.
    async fn tick(
        &mut self,
        ring: &mut RingBuf<MapData>,
        wanted: Option<u64>,
    ) -> anyhow::Result<bool> {
        // Records already written come first: a deadline is judged on all of them.
        let (finished, _) = self.drain(ring)?;
        if self.finish_all(finished, wanted).await? {
            return Ok(true);
        }
        if let Some(update) = self.tracker.on_tick(crate::clock::monotonic_ns())
            && self.finish(&update, wanted).await?
        {
            return Ok(true);
        }
        let Some(how) = self.target_gone()? else {
            return Ok(false);
        };
        eprintln!("qbench-trace: process {} {how}", self.args.pid());
        self.summary.target_exited = true;
        Ok(true)
    }

    /// How the target went away, if it did: exited, or executed a new program. What was seen of
    /// an update in progress is reported first.
    fn target_gone(&mut self) -> anyhow::Result<Option<String>> {
        let pid = self.args.pid();
        // Gone, or a zombie its parent has not reaped yet: either way it has exited.
        if matches!(procfs::state(pid, pid), None | Some('Z' | 'X')) {
            // Read while it is a zombie, before its parent reaps it.
            let how = procfs::exit(pid);
            if let Some(update) = self.tracker.on_exit(crate::clock::monotonic_ns(), how) {
                self.report(&update)?;
            }
            return Ok(Some(crate::report::output::exit_words(how)));
        }
        if Image::changed(self.image, pid) {
            // Report what was seen of an update in progress, then stop.
            if let Some(update) = self.tracker.on_tick(u64::MAX) {
                self.report(&update)?;
            }
            return Ok(Some(
                "executed a new program; its update points are gone".to_string(),
            ));
        }
        Ok(None)
    }
}

impl<K: Kernel> Loop<'_, K> {
    /// Applies a batch of the ring buffer's records; returns the updates they completed, and
    /// whether records may be left.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> anyhow::Result<(Vec<Update>, bool)> {
        let pid = self.args.pid();
        let kernel = &self.kernel;
        let batch = reader::drain(ring, &mut self.tracker, pid, self.args.verbose, |tracker| {
            on_window_opened(tracker, kernel, pid)
        })?;
        self.undecodable += batch.undecodable;
        Ok((batch.finished, batch.more))
    }

    /// Reports `update`; says whether the wanted count is reached, and otherwise, when
    /// qbench-trace makes the requests, requests the next update.
    async fn finish(&mut self, update: &Update, wanted: Option<u64>) -> anyhow::Result<bool> {
        if update.ended_by_thread_exit && procfs::exiting(self.args.pid()) {
            // The threads left because the process is dying: that is no quiescence.
            let how = dying_process_exit(self.args.pid()).await;
            let update = Update {
                outcome: Outcome::Exited(how),
                ..update.clone()
            };
            self.report(&update)?;
            eprintln!(
                "qbench-trace: process {} {}",
                self.args.pid(),
                crate::report::output::exit_words(how)
            );
            self.summary.target_exited = true;
            return Ok(true);
        }
        self.report(update)?;
        if wanted.is_some_and(|w| self.summary.updates >= w) {
            return Ok(true);
        }
        if self.requester.is_some() {
            tokio::time::sleep(REQUEST_GAP).await;
            self.request()?;
        }
        Ok(false)
    }

    /// Sends the next `--request`, if qbench-trace makes them. A target that has exited or
    /// executed another program is not sent it, and not an error here: the next tick reports it.
    fn request(&self) -> anyhow::Result<()> {
        match self.requester.as_ref().map(Requester::send) {
            None | Some(Ok(()) | Err(RequestError::Exited(_) | RequestError::Executed { .. })) => {
                Ok(())
            }
            Some(Err(err)) => Err(err.into()),
        }
    }

    fn report(&mut self, update: &Update) -> anyhow::Result<()> {
        self.kernel.close_window()?;
        let lost_total = self.kernel.lost_events()? + self.undecodable;
        let lost = lost_total - self.lost_reported.min(lost_total);
        self.lost_reported = lost_total;
        if lost > 0 {
            eprintln!(
                "qbench-trace: {lost} events lost during update {} (ring buffer or thread table full)",
                update.number
            );
        }
        let pid = self.args.pid();
        let state_of = move |tid: u32| procfs::state(pid, tid);
        let diagnoses = crate::diagnosis::evidence::diagnose(pid, update, self.summary.updates);
        let ctx = Context {
            pid,
            lost_events: lost,
            state_of: &state_of,
            diagnoses: &diagnoses,
        };
        let text = if self.args.json {
            output::json(update, &ctx) + "\n"
        } else {
            output::human(update, &ctx) + "\n"
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        let (trace_out, svg) = (self.args.trace_out.as_deref(), self.args.svg.as_deref());
        if trace_out.is_some() || svg.is_some() {
            self.reported.push(update.clone());
            if let Err(err) = pictures::write_files(trace_out, svg, pid, &self.reported) {
                eprintln!("qbench-trace: cannot write the timeline: {err}");
            }
        }
        self.summary.updates += 1;
        if update.outcome == Outcome::Dnq {
            self.summary.dnq += 1;
        }
        Ok(())
    }
}

/// How a dying process ended, once its main thread is a zombie (at most 200 ms from now).
async fn dying_process_exit(pid: u32) -> crate::tracker::Exit {
    for _ in 0..40 {
        if matches!(procfs::state(pid, pid), None | Some('Z' | 'X')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    procfs::exit(pid)
}

/// At a request: current thread names (the helper is recognised by its name) and the kernel's
/// record of who is blocked in what since before the request.
fn on_window_opened<K: Kernel>(tracker: &mut Tracker, kernel: &K, pid: u32) -> anyhow::Result<()> {
    for tid in tracker.tids() {
        if let Some(comm) = procfs::comm(pid, tid) {
            tracker.set_comm(tid, &comm);
        }
    }
    tracker.apply_snapshot(&kernel.snapshot_threads()?);
    Ok(())
}
