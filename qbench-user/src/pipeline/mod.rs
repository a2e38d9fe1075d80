//! The observing pipeline both modes drive: load and attach the programs for one process, seed
//! the tracker, drain the ring buffer into it, judge deadlines, notice the process exiting or
//! executing another program, count what was lost, and hand each finished update to the mode's
//! [`Sink`] (the diagnosis mode prints it, `--watch` counts it and logs DNQs).
//!
//! What differs between the modes is a setting: where what a thread is blocked in comes from
//! ([`Blocked`]: the syscall tracepoints, or /proc), how often the pipeline wakes ([`Cadence`]),
//! and the sink. This folder: the attached process ([`Observed`], here), the loop (`run`), how a
//! process goes away (`gone`), the threads' state at a request (`refresh`) and when the syscall
//! tracepoints are attached (`tracking`).

mod gone;
mod refresh;
mod run;
mod runtime_state;
mod tracking;

use std::num::NonZeroU32;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};

pub use self::gone::Gone;
use crate::host::preflight;
use crate::host::request::Image;
use crate::kernel::loader::{AttachMode, LoadOptions, Probes, SyscallTracking};
use crate::kernel::symbols::TargetObjects;
use crate::report::output::{self, Context};
use crate::tracker::{Outcome, Tracker, Update};
use crate::{procfs, syscalls};

/// What both modes set about the programs and the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probing {
    /// The update request signal.
    pub signal: i32,
    /// How long an update may take before it is a DNQ.
    pub timeout: Duration,
    /// `--point`s: the update points of a program without the runtime.
    pub points: Vec<String>,
    /// The event ring buffer's size in bytes (None: the default).
    pub ring_bytes: Option<u32>,
    /// More diagnostics on stderr.
    pub verbose: u8,
}

/// Where what a thread is blocked in comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The syscall tracepoints (the diagnosis mode), attached only while an update is pending:
    /// before qbench-trace's own request to a program without the runtime
    /// ([`Observed::tracks_ahead`]), or as soon as the kernel reports any other, then
    /// seeded from /proc (calls entered before were not seen); detached after the report. The
    /// kernel keeps each thread's call meanwhile, and a request takes its snapshot. Attached,
    /// they tax every syscall on the machine; detached, nothing.
    TracedWhilePending,
    /// /proc (`--watch`, at no per-syscall cost): read at each request, and again for the
    /// stragglers of a DNQ before they are diagnosed.
    FromProc,
}

/// How often the pipeline wakes besides for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// How often it checks that the process still lives and runs the same program (and, when
    /// this is no slower than the deadline check, the open update's deadline too).
    pub alive: Duration,
    /// How often, between updates, the sink's [`Sink::idle`] runs (None: never).
    pub idle: Option<Duration>,
}

/// What the loop does after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Stop,
}

/// A finished update, as handed to the sink.
#[derive(Debug, Clone)]
pub struct Report {
    pub pid: u32,
    pub update: Update,
    /// Events lost (not recorded, or not decodable) since the previous report.
    pub lost: u64,
    /// Updates of this process reported before this one.
    pub earlier: u64,
}

impl Report {
    /// The update with its diagnoses, as one JSON object or as the human table.
    pub fn render(&self, json: bool) -> String {
        let pid = self.pid;
        let diagnoses = if self.update.outcome == Outcome::Incomplete {
            Vec::new()
        } else {
            crate::diagnosis::evidence::diagnose(pid, &self.update, self.earlier)
        };
        let state_of = move |tid: u32| procfs::state(pid, tid);
        let ctx = Context {
            pid,
            lost_events: self.lost,
            state_of: &state_of,
            diagnoses: &diagnoses,
        };
        if json {
            output::json(&self.update, &ctx)
        } else {
            output::human(&self.update, &ctx)
        }
    }
}

/// Where a mode's reports go.
pub(crate) trait Sink {
    /// Sends a request, if the mode makes them: once the ring buffer is read, and after each
    /// [`Self::next`] that goes on.
    fn request(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether the mode makes the requests ([`Self::request`]): for a target
    /// without the runtime, syscall tracking is then attached before the first and kept between
    /// them ([`Observed::tracks_ahead`]).
    fn requests(&self) -> bool {
        false
    }

    /// Reports a finished update.
    fn report(&mut self, report: Report) -> anyhow::Result<()>;

    /// After a report while the process lives: whether to go on (and, if the mode makes the
    /// requests, after the pause before the next one).
    async fn next(&mut self) -> anyhow::Result<Next>;

    /// The process went away (after the update it ended, if any, was reported).
    fn gone(&mut self, pid: u32, gone: Gone);

    /// Between updates, every [`Cadence::idle`]; an error ends the observation.
    fn idle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One process with qbench's programs attached: its tracker and what has been counted of it.
#[derive(Debug)]
pub struct Observed {
    target: preflight::Target,
    probes: Probes,
    tracker: Tracker,
    blocked: Blocked,
    verbose: u8,
    /// Whether the target runs the runtime, whose helper interrupts a thread that has not
    /// arrived again every 5 ms at most ([`Self::tracks_ahead`]).
    runtime: bool,
    /// The threads as /proc showed them just before qbench-trace's own request, when syscall
    /// tracking is not attached ahead of it: what they were in at the request, for an update
    /// over before tracking could attach.
    at_own_request: Option<Vec<procfs::ProcThread>>,
    /// How the update points are probed, for [`Self::describe`].
    how: String,
    /// The program the process ran at attach; another one means its update points are gone.
    image: Option<Image>,
    /// Where the runtime's exported state is in the process (None: no runtime, or one that
    /// does not export it).
    state_at: Option<u64>,
    /// Updates reported so far.
    reported: u64,
    /// Lost events already reported, and records that could not be decoded.
    lost_reported: u64,
    undecodable: u64,
}

impl Observed {
    /// Loads and attaches the programs for `target` (checked by [`preflight::target`]), with
    /// the syscall tracepoints when `blocked` says so, and seeds the tracker with its threads
    /// as /proc shows them. Returns it and its ring buffer (for [`Self::run`]).
    pub fn attach(
        target: preflight::Target,
        probing: &Probing,
        blocked: Blocked,
    ) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let pid = target.pid;
        let tgid = NonZeroU32::new(pid).ok_or_else(|| anyhow::anyhow!("pid 0 is not a process"))?;
        let image = Image::of(pid);
        let mode = AttachMode::detect(&TargetObjects::of(tgid)?, &probing.points)?;
        let state_at = match &mode {
            AttachMode::Runtime(anchors) => crate::runstate::locate(pid, &anchors.arrive.object),
            AttachMode::Points(_) => None,
        };
        let options = LoadOptions {
            events_bytes: probing.ring_bytes,
            blocking: syscalls::tracked_numbers(),
            syscalls: match blocked {
                Blocked::TracedWhilePending => SyscallTracking::OnDemand,
                Blocked::FromProc => SyscallTracking::Off,
            },
            // Without the runtime nothing interrupts a thread again after the request's signal,
            // which anyone else's request delivers before the syscall tracepoints are attached.
            deliveries: matches!(mode, AttachMode::Points(_))
                && blocked == Blocked::TracedWhilePending,
            arrivals_from_state: runtime_state::arrivals_from_state(pid, &mode, state_at),
            // The runtime interrupts a straggler again within 5 ms: a request need wake nobody
            // in the threads' race to park.
            wake_when_late: matches!(mode, AttachMode::Runtime(_)),
        };
        let mut probes = Probes::load(tgid, probing.signal as u32, &options)?;
        probes.attach(&mode)?;
        if probing.verbose > 0 {
            eprintln!("qbench-trace: {}", probes.signal_probe().describe());
        }
        let events = probes.take_events()?;
        let mut tracker = Tracker::new(probing.timeout.as_nanos() as u64);
        if options.arrivals_from_state.is_some() {
            tracker.take_arrivals_from_state();
        }
        let mut observed = Self {
            target,
            probes,
            tracker,
            blocked,
            verbose: probing.verbose,
            runtime: matches!(mode, AttachMode::Runtime(_)),
            at_own_request: None,
            how: describe(&mode, blocked, options.arrivals_from_state.is_some()),
            image,
            state_at,
            reported: 0,
            lost_reported: 0,
            undecodable: 0,
        };
        observed.seed()?;
        observed.take_up_pending()?;
        Ok((observed, events))
    }

    pub fn pid(&self) -> u32 {
        self.target.pid
    }

    /// Whether syscall tracking is attached before qbench-trace's own requests and kept between
    /// them: only for a target without the runtime, which nothing interrupts again after the
    /// request's signal. Attached during the threads' race to park, the tracepoints run for every
    /// call they make on the way, which lengthens the quiescence measured (memcached under load:
    /// 1.3–1.4×). A runtime target's requests are treated as anyone else's: tracking is attached
    /// once the race is over, if the update is still pending, and the runtime's next
    /// interruption of each straggler, within 5 ms, is seen.
    fn tracks_ahead(&self, sink: &impl Sink) -> bool {
        self.blocked == Blocked::TracedWhilePending && sink.requests() && !self.runtime
    }

    /// Sends the sink's request, if it makes them; with syscall tracking not attached ahead of
    /// it, after reading what the threads are in from /proc, off the threads' race to park.
    fn request(&mut self, sink: &mut impl Sink) -> anyhow::Result<()> {
        if !sink.requests() {
            return Ok(());
        }
        if self.blocked == Blocked::TracedWhilePending && !self.tracks_ahead(sink) {
            self.at_own_request = procfs::threads(self.pid());
        }
        sink.request()
    }

    /// The process's name, as /proc showed it at attach.
    pub fn comm(&self) -> &str {
        &self.target.comm
    }

    /// `pid P (NAME): how it is probed`, for the line saying what was attached.
    pub fn describe(&self) -> String {
        format!(
            "pid {} ({}): {}",
            self.pid(),
            output::escape(self.comm()),
            self.how
        )
    }

    /// The tracker's threads, as /proc shows them now.
    fn seed(&mut self) -> anyhow::Result<()> {
        let pid = self.pid();
        let threads =
            procfs::threads(pid).ok_or_else(|| anyhow::anyhow!("process {pid} exited"))?;
        for t in &threads {
            self.tracker.seed(t.tid, &t.comm, t.syscall);
        }
        if self.verbose > 0 {
            eprintln!(
                "qbench-trace: seeded {} threads of pid {pid} from /proc",
                threads.len()
            );
        }
        Ok(())
    }

    /// Closes the kernel's window and hands `update` to `sink` with the events lost since the
    /// previous report.
    fn report(&mut self, mut update: Update, sink: &mut impl Sink) -> anyhow::Result<()> {
        self.probes.close_window()?;
        let lost_total = self.probes.lost_events()? + self.undecodable;
        let lost = lost_total.saturating_sub(self.lost_reported);
        self.lost_reported = lost_total;
        if lost > 0 && update.outcome == Outcome::Dnq {
            // A DNQ is a claim about every missing thread; with events lost it was not seen.
            update.outcome = Outcome::Incomplete;
        }
        if self.blocked == Blocked::FromProc {
            refresh::stragglers(self.pid(), &mut update);
        }
        let earlier = self.reported;
        self.reported += 1;
        let reported = sink.report(Report {
            pid: self.pid(),
            update,
            lost,
            earlier,
        });
        if self.blocked == Blocked::TracedWhilePending && !self.tracks_ahead(sink) {
            tracking::stop(&mut self.probes, self.verbose)?;
        }
        reported
    }
}

/// How the update points of `mode` are probed, and where blocked calls come from.
fn describe(mode: &AttachMode, blocked: Blocked, arrivals_from_state: bool) -> String {
    let points = match mode {
        AttachMode::Runtime(_) if arrivals_from_state => {
            "the runtime's probe anchors, arrivals read from its table at the release".to_string()
        }
        AttachMode::Runtime(_) => "the runtime's probe anchors".to_string(),
        AttachMode::Points(points) => format!(
            "{} update point(s), probed at every hit (no runtime)",
            points.len()
        ),
    };
    match blocked {
        Blocked::TracedWhilePending => format!(
            "{points}; {} blocking syscalls tracked while an update is pending",
            syscalls::TRACKED.len()
        ),
        Blocked::FromProc => points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::symbols::Location;
    use crate::tracker::Exit;

    #[test]
    fn the_attach_line_says_how_points_are_probed_and_where_blocked_calls_come_from() {
        let point = Location {
            symbol: "loop_top".to_string(),
            object: "/proc/7/exe".to_string(),
            path: "/proc/7/exe".into(),
            offset: 0x1139,
        };
        let points = AttachMode::Points(vec![point.clone(), point]);
        assert_eq!(
            describe(&points, Blocked::FromProc, false),
            "2 update point(s), probed at every hit (no runtime)"
        );
        assert_eq!(
            describe(&points, Blocked::TracedWhilePending, false),
            format!(
                "2 update point(s), probed at every hit (no runtime); {} blocking syscalls \
                 tracked while an update is pending",
                syscalls::TRACKED.len()
            )
        );
    }

    #[test]
    fn how_a_process_went_away_is_worded_once() {
        assert_eq!(
            Gone::Exited(Exit::Status(0)).words(),
            "exited with status 0"
        );
        assert_eq!(
            Gone::Executed.words(),
            "executed a new program; its update points are gone"
        );
    }
}
