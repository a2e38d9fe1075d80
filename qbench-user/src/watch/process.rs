//! One watched process: its own load of the programs (the object's globals name one process),
//! without the syscall tracepoints (what a thread is blocked in comes from /proc), observed by
//! the pipeline; here is where its reports go: the metrics, each DNQ logged, and readiness
//! checks between updates.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};

use super::metrics::{Metrics, ProcessLabels};
use crate::diagnosis::readiness;
use crate::host::preflight;
use crate::mode::Watch;
use crate::pipeline::{Blocked, Cadence, Gone, Next, Observed, Report, Sink};
use crate::tracker::Outcome;

/// How often, between updates, the ring buffer is read (a request wakes nobody: the update's
/// events are read from then on every 5 ms, and its deadline judged by the kernel's clock) and
/// the process is checked to run the same program (its exit wakes the loop at once). Each
/// wake-up costs qbench-trace about 0.1 ms of CPU on a 2-vCPU VM, so this is what `--watch`
/// costs while nothing happens.
const SLOW_TICK: Duration = Duration::from_millis(500);

/// A process being watched.
#[derive(Debug)]
pub struct Watched {
    observed: Observed,
    sink: Watching,
}

/// Where a watched process's reports go.
#[derive(Debug)]
struct Watching {
    labels: ProcessLabels,
    settings: Arc<Watch>,
    metrics: Arc<Metrics>,
}

impl Watched {
    /// Loads and attaches the programs for `pid`, without the syscall tracepoints; returns the
    /// watcher and its ring buffer (for [`Self::run`]).
    pub fn attach(
        pid: u32,
        settings: Arc<Watch>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let target = preflight::target(pid)?;
        let (observed, events) = Observed::attach(target, &settings.probing, Blocked::FromProc)?;
        let labels = ProcessLabels {
            pid,
            comm: observed.comm().to_string(),
        };
        metrics.add_process(&labels);
        eprintln!("qbench-trace: watching {}", observed.describe());
        let sink = Watching {
            labels,
            settings,
            metrics,
        };
        Ok((Self { observed, sink }, events))
    }

    /// Watches until the process exits (or the task is dropped, which detaches everything).
    pub async fn run(self, events: RingBuf<MapData>) {
        let Self { observed, mut sink } = self;
        let pid = observed.pid();
        let cadence = Cadence {
            alive: SLOW_TICK,
            idle: Some(sink.settings.readiness_interval),
        };
        if let Err(err) = observed.run(events, cadence, &mut sink).await {
            eprintln!("qbench-trace: stopped watching pid {pid}: {err:#}");
        }
    }
}

impl Sink for Watching {
    fn report(&mut self, report: Report) -> anyhow::Result<()> {
        let Report {
            pid, update, lost, ..
        } = &report;
        if *lost > 0 {
            self.metrics.lost(&self.labels, *lost);
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
        match update.outcome {
            Outcome::Exited(how) => eprintln!(
                "qbench-trace: pid {pid} {} during update {}",
                crate::report::output::exit_words(how),
                update.number
            ),
            Outcome::Dnq | Outcome::Incomplete if self.settings.json => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all((report.render(true) + "\n").as_bytes())?;
                stdout.flush()?;
            }
            Outcome::Dnq => eprintln!(
                "qbench-trace: pid {pid} did not quiesce:\n{}",
                report.render(false)
            ),
            Outcome::Incomplete => eprintln!(
                "qbench-trace: pid {pid}: events were lost during update {}:\n{}",
                update.number,
                report.render(false)
            ),
            Outcome::Quiesced if self.settings.probing.verbose > 0 => eprintln!(
                "qbench-trace: pid {pid}: update {} quiesced in {} us",
                update.number,
                update.quiescence_ns().unwrap_or(0) / 1000
            ),
            Outcome::Quiesced => {}
        }
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Next> {
        Ok(Next::Continue)
    }

    fn gone(&mut self, pid: u32, gone: Gone) {
        match gone {
            Gone::Exited(_) => eprintln!("qbench-trace: pid {pid} exited"),
            Gone::Executed => eprintln!("qbench-trace: pid {pid} {}", gone.words()),
        }
        self.metrics.exited(&self.labels);
    }

    /// What an update requested now would wait for: a line on stderr and the gauges.
    fn idle(&mut self) -> anyhow::Result<()> {
        let pid = self.labels.pid;
        let Some((threads, views)) = super::ready_io::views(pid) else {
            return Ok(());
        };
        let summary = readiness::Summary::of(views.iter().filter_map(readiness::classify));
        let states: Vec<char> = threads.iter().map(|t| t.state).collect();
        self.metrics.readiness(&self.labels, &states, &summary);
        eprintln!(
            "qbench-trace: {}",
            readiness::line(pid, &self.labels.comm, &summary)
        );
        Ok(())
    }
}
