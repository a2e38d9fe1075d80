//! The diagnosis mode (`qbench-trace --pid N`): one process, with the syscall tracepoints while
//! an update is pending (`Blocked::TracedWhilePending`), each
//! update reported on stdout (a table, or JSON lines) and drawn to `--trace-out`/`--svg`;
//! with `--request`, qbench-trace makes the requests, one after each report, until `--count`.
//! Stops on Ctrl-C, SIGTERM, the target's exit or the wanted count.

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use crate::host::preflight;
use crate::host::request::{RequestError, Requester};
use crate::mode::Observe;
use crate::pipeline::{Blocked, Cadence, Gone, Next, Observed, Report, Sink};
use crate::report::pictures;
use crate::tracker::{Outcome, Update};

/// How often, with no update pending, the loop reads the ring buffer (a request wakes nobody:
/// it is found here) and checks that the target still lives. While an update is pending the
/// loop reads every 5 ms.
const ALIVE: Duration = Duration::from_millis(50);
/// Pause between a report and the next `--request`: the threads the runtime released are back
/// in their own work, so that each update starts from the program's steady state rather than
/// from the tail of the last one.
const REQUEST_GAP: Duration = Duration::from_millis(50);
/// How often, with `--request` and no update pending, qbench-trace checks that its last request
/// opened one.
const ANSWER_CHECK: Duration = Duration::from_millis(100);
/// The least time a request may take to open an update before it is said to have opened none
/// (`--timeout` when longer): the request's record is read on the loop's own tick.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// How the observation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub updates: u64,
    pub dnq: u64,
    /// Updates not seen to quiesce while events were lost: neither quiesced nor DNQ.
    pub incomplete: u64,
    /// The target exited while observed.
    pub target_exited: bool,
}

/// Observes `settings.pid` until done. An error is one line for the user.
pub fn run(settings: &Observe) -> anyhow::Result<Summary> {
    let target = preflight::target(settings.pid)?;
    preflight::privileges()?;
    preflight::kernel()?;
    // Held by a pidfd from here on, and checked to catch the signal before anything is loaded.
    let requester = if settings.request {
        let probing = &settings.probing;
        Some(Requester::open(
            settings.pid,
            probing.signal,
            settings.force_signal,
        )?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ctrl-C is caught from before attaching: one that comes just after the "attached" line
    // detaches and exits 0 like any other.
    let (mut interrupt, mut terminate) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let (observed, events) =
        Observed::attach(target, &settings.probing, Blocked::TracedWhilePending)?;
    if !settings.json || settings.probing.verbose > 0 {
        eprintln!(
            "qbench-trace: attached to {}; {}",
            observed.describe(),
            if settings.request {
                "requesting updates"
            } else {
                "waiting for update requests (Ctrl-C to stop)"
            },
        );
    }
    let mut sink = Diagnosis {
        settings,
        summary: Summary::default(),
        reported: Vec::new(),
        requester,
        unanswered_since: None,
    };
    let cadence = Cadence {
        alive: ALIVE,
        idle: settings.request.then_some(ANSWER_CHECK),
    };
    runtime.block_on(async {
        tokio::select! {
            done = observed.run(events, cadence, &mut sink) => done?,
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    Ok(sink.summary)
}

/// Where the diagnosis mode's reports go.
#[derive(Debug)]
struct Diagnosis<'a> {
    settings: &'a Observe,
    summary: Summary,
    /// The updates reported so far, kept for `--trace-out` and `--svg` only.
    reported: Vec<Update>,
    /// Sends `--request`s: to the attached process only, and only while it catches the signal.
    requester: Option<Requester>,
    /// When the latest request was sent, until an update is reported.
    unanswered_since: Option<Instant>,
}

impl Diagnosis<'_> {
    /// Rewrites `--trace-out` and `--svg` with every update so far.
    fn draw(&mut self, pid: u32, update: Update) {
        let (trace_out, svg) = (
            self.settings.trace_out.as_deref(),
            self.settings.svg.as_deref(),
        );
        if trace_out.is_none() && svg.is_none() {
            return;
        }
        self.reported.push(update);
        if let Err(err) = pictures::write_files(trace_out, svg, pid, &self.reported) {
            eprintln!("qbench-trace: cannot write the timeline: {err}");
        }
    }
}

impl Sink for Diagnosis<'_> {
    /// Sends the next `--request`, if qbench-trace makes them. A target that has exited or
    /// executed another program is not sent it, and not an error here: the next check of its
    /// life reports it.
    fn request(&mut self) -> anyhow::Result<()> {
        match self.requester.as_ref().map(Requester::send) {
            Some(Ok(())) => {
                self.unanswered_since = Some(Instant::now());
                Ok(())
            }
            None | Some(Err(RequestError::Exited(_) | RequestError::Executed { .. })) => Ok(()),
            Some(Err(err)) => Err(err.into()),
        }
    }

    fn requests(&self) -> bool {
        self.requester.is_some()
    }

    fn report(&mut self, report: Report) -> anyhow::Result<()> {
        self.unanswered_since = None;
        if report.lost > 0 {
            eprintln!(
                "qbench-trace: {} events lost during update {} (ring buffer or thread table full)",
                report.lost, report.update.number
            );
        }
        let text = report.render(self.settings.json) + "\n";
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        self.summary.updates += 1;
        match report.update.outcome {
            Outcome::Dnq => self.summary.dnq += 1,
            Outcome::Incomplete => self.summary.incomplete += 1,
            Outcome::Quiesced | Outcome::Exited(_) => {}
        }
        self.draw(report.pid, report.update);
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Next> {
        if self
            .settings
            .wanted
            .is_some_and(|w| self.summary.updates >= w)
        {
            return Ok(Next::Stop);
        }
        if self.requester.is_some() {
            tokio::time::sleep(REQUEST_GAP).await;
        }
        Ok(Next::Continue)
    }

    /// A request that opened no update (the kernel dropped the signal) would be waited for
    /// forever: past `--timeout` (at least [`ANSWER_WAIT`]), it is an error.
    fn idle(&mut self) -> anyhow::Result<()> {
        let wait = self.settings.probing.timeout.max(ANSWER_WAIT);
        match (&self.requester, self.unanswered_since) {
            (Some(requester), Some(sent)) if sent.elapsed() > wait => {
                Err(requester.unanswered(sent.elapsed()).into())
            }
            _ => Ok(()),
        }
    }

    fn gone(&mut self, pid: u32, gone: Gone) {
        eprintln!("qbench-trace: process {pid} {}", gone.words());
        self.summary.target_exited = true;
    }
}
