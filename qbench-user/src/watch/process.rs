//! One watched process: its own load of the programs (the object's globals name one process),
//! its ring buffer, its tracker, its readiness checks. With no syscall tracepoints attached, what
//! a thread is blocked in comes from /proc: at each request (as the attach-time seed does), and
//! again for the stragglers of a DNQ before they are diagnosed.

use std::io::Write as _;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use qbench_common::{NO_SYSCALL, ThreadState};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::metrics::{Metrics, ProcessLabels};
use crate::diagnosis::{evidence, readiness};
use crate::host::preflight;
use crate::kernel::loader::{AttachMode, LoadOptions, Probes};
use crate::kernel::reader;
use crate::kernel::symbols::TargetObjects;
use crate::report::output::{self, Context};
use crate::tracker::{Outcome, Tracker, Update};
use crate::{procfs, syscalls};

/// How often an open window is checked against its timeout.
const FAST_TICK: Duration = Duration::from_millis(5);
/// How often, with no update pending, the loop checks that the process still lives.
const SLOW_TICK: Duration = Duration::from_millis(250);

/// What every watched process shares from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub signal: i32,
    pub timeout: Duration,
    pub readiness_interval: Duration,
    pub json: bool,
    pub verbose: u8,
    pub ring_bytes: Option<u32>,
    pub points: Vec<String>,
}

/// A process being watched.
#[derive(Debug)]
pub struct Watched {
    labels: ProcessLabels,
    probes: Probes,
    tracker: Tracker,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    updates: u64,
    lost_reported: u64,
    undecodable: u64,
}

impl Watched {
    /// Loads and attaches the programs for `pid`, without the syscall tracepoints; returns the
    /// watcher and its ring buffer (for [`Self::run`]).
    pub fn attach(
        pid: u32,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let target = preflight::target(pid)?;
        let tgid = NonZeroU32::new(pid).ok_or_else(|| anyhow::anyhow!("pid 0 is not a process"))?;
        let mode = AttachMode::detect(&TargetObjects::of(tgid)?, &settings.points)?;
        let options = LoadOptions {
            events_bytes: settings.ring_bytes,
            blocking: syscalls::tracked_numbers(),
            track_syscalls: false,
        };
        let mut probes = Probes::load(tgid, settings.signal as u32, &options)?;
        probes.attach(&mode)?;
        let events = probes.take_events()?;
        let mut tracker = Tracker::new(settings.timeout.as_nanos() as u64);
        for t in procfs::threads(pid).unwrap_or_default() {
            tracker.seed(t.tid, &t.comm, t.syscall);
        }
        let labels = ProcessLabels {
            pid,
            comm: target.comm,
        };
        metrics.add_process(&labels);
        let how = match mode {
            AttachMode::Runtime(_) => "the runtime's probe anchors".to_string(),
            AttachMode::Points(points) => format!(
                "{} update point(s), probed at every hit (no runtime)",
                points.len()
            ),
        };
        eprintln!(
            "qbench-trace: watching pid {pid} ({}): {how}",
            output::escape(&labels.comm)
        );
        let watched = Self {
            labels,
            probes,
            tracker,
            settings,
            metrics,
            updates: 0,
            lost_reported: 0,
            undecodable: 0,
        };
        Ok((watched, events))
    }

    pub fn pid(&self) -> u32 {
        self.labels.pid
    }

    /// Watches until the process exits (or the task is dropped, which detaches everything).
    pub async fn run(self, events: RingBuf<MapData>) {
        let pid = self.pid();
        if let Err(err) = self.watch(events).await {
            eprintln!("qbench-trace: stopped watching pid {pid}: {err:#}");
        }
    }

    async fn watch(mut self, ring: RingBuf<MapData>) -> anyhow::Result<()> {
        let pid = self.pid();
        // SAFETY: the ring buffer owns its map descriptor, which stays open and the same for as
        // long as the AsyncFd holds it.
        let mut events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let mut fast = tokio::time::interval(FAST_TICK);
        let mut slow = tokio::time::interval(SLOW_TICK);
        let mut ready = tokio::time::interval(self.settings.readiness_interval);
        for tick in [&mut fast, &mut slow, &mut ready] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard?;
                    let (finished, more) = self.drain(guard.get_inner_mut());
                    // Records left over (a flood): keep the readiness, let the ticks run first.
                    if !more {
                        guard.clear_ready();
                    }
                    for update in finished {
                        self.report(update)?;
                    }
                }
                _ = fast.tick(), if self.tracker.window_open() => {
                    // Records already written come first: a deadline is judged on all of them.
                    let (finished, _) = self.drain(events.get_mut());
                    for update in finished {
                        self.report(update)?;
                    }
                    if let Some(update) = self.tracker.on_tick(crate::clock::monotonic_ns()) {
                        self.report(update)?;
                    }
                }
                _ = slow.tick() => {
                    if matches!(procfs::state(pid, pid), None | Some('Z' | 'X')) {
                        let how = procfs::exit(pid);
                        if let Some(update) = self.tracker.on_exit(crate::clock::monotonic_ns(), how) {
                            self.report(update)?;
                        }
                        eprintln!("qbench-trace: pid {pid} exited");
                        self.metrics.exited(&self.labels);
                        return Ok(());
                    }
                }
                _ = ready.tick(), if !self.tracker.window_open() => self.readiness(),
            }
        }
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> (Vec<Update>, bool) {
        let pid = self.pid();
        let drained = reader::drain(ring, &mut self.tracker, pid, 0, |tracker| {
            refresh_from_proc(tracker, pid);
            Ok(())
        });
        // The window-open step here cannot fail; a batch is never an error.
        let batch = drained.unwrap_or_default();
        self.undecodable += batch.undecodable;
        (batch.finished, batch.more)
    }

    fn report(&mut self, mut update: Update) -> anyhow::Result<()> {
        self.probes.close_window()?;
        let misses = self.probes.misses()?;
        let lost_total = misses[qbench_common::MISS_RINGBUF_FULL as usize]
            + misses[qbench_common::MISS_THREADS_FULL as usize]
            + self.undecodable;
        let lost = lost_total.saturating_sub(self.lost_reported);
        self.lost_reported = lost_total;
        if lost > 0 {
            self.metrics.lost(&self.labels, lost);
        }
        let arrived = update
            .threads
            .iter()
            .filter(|t| t.arrival_ns.is_some())
            .count() as u64;
        let times = update
            .quiescence_ns()
            .zip(update.request_latency_ns())
            .map(|(q, l)| (q as f64 / 1e9, l as f64 / 1e9));
        self.metrics.update(
            &self.labels,
            crate::report::output::outcome_word(update.outcome),
            times,
            arrived,
        );
        let earlier = self.updates;
        self.updates += 1;
        if let Outcome::Exited(how) = update.outcome {
            eprintln!(
                "qbench-trace: pid {} {} during update {}",
                self.pid(),
                crate::report::output::exit_words(how),
                update.number
            );
            return Ok(());
        }
        if update.outcome != Outcome::Dnq {
            if self.settings.verbose > 0 {
                eprintln!(
                    "qbench-trace: pid {}: update {} quiesced in {} us",
                    self.pid(),
                    update.number,
                    update.quiescence_ns().unwrap_or(0) / 1000
                );
            }
            return Ok(());
        }
        let pid = self.pid();
        // What the stragglers are in now: the calls seen at the request may have been
        // interrupted and entered again.
        for t in update.threads.iter_mut().filter(|t| t.arrival_ns.is_none()) {
            if let Some(now) = procfs::thread(pid, t.tid) {
                t.blocked = now.syscall.map(|(nr, args)| crate::tracker::Blocked {
                    nr,
                    args,
                    since_ns: None,
                });
            }
        }
        let diagnoses = evidence::diagnose(pid, &update, earlier);
        let state_of = move |tid: u32| procfs::state(pid, tid);
        let ctx = Context {
            pid,
            lost_events: lost,
            state_of: &state_of,
            diagnoses: &diagnoses,
        };
        if self.settings.json {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all((output::json(&update, &ctx) + "\n").as_bytes())?;
            stdout.flush()?;
        } else {
            let block = output::human(&update, &ctx);
            eprintln!("qbench-trace: pid {pid} did not quiesce:\n{block}");
        }
        Ok(())
    }

    /// What an update requested now would wait for: a line on stderr and the gauges.
    fn readiness(&mut self) {
        let pid = self.pid();
        let Some(threads) = procfs::threads(pid) else {
            return;
        };
        let views = super::ready_io::views(pid, &threads);
        let summary = readiness::Summary::of(views.iter().filter_map(readiness::classify));
        let states: Vec<char> = threads.iter().map(|t| t.state).collect();
        self.metrics.readiness(&self.labels, &states, &summary);
        eprintln!(
            "qbench-trace: {}",
            readiness::line(pid, &self.labels.comm, &summary)
        );
    }
}

/// At a request: who is blocked in what, from /proc, since no syscall event tells.
fn refresh_from_proc(tracker: &mut Tracker, pid: u32) {
    let threads = procfs::threads(pid).unwrap_or_default();
    let known = tracker.tids();
    let mut snapshot = Vec::with_capacity(threads.len());
    for t in threads {
        if known.binary_search(&t.tid).is_err() {
            tracker.seed(t.tid, &t.comm, None);
        } else {
            tracker.set_comm(t.tid, &t.comm);
        }
        let (nr, args) = t.syscall.unwrap_or((NO_SYSCALL, [0; 6]));
        // Blocked since an unknown time before the request.
        let state = ThreadState {
            nr,
            since_ns: 0,
            args,
            arrived_seq: 0,
        };
        snapshot.push((t.tid, state));
    }
    tracker.apply_snapshot(&snapshot);
}
