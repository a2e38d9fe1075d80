//! The Prometheus metrics of `--watch`, in the shape of Go's `/sched/pauses/stopping`
//! histograms: one series per watched process (labels `pid` and `comm`, never a thread), in
//! seconds. Processes that exit keep their series for a while, so a scrape after a restart still
//! sees the updates of the old pid, but no more than [`EXITED_KEPT`] of them: labels stay bounded.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::diagnosis::readiness;

/// How many exited processes keep their series.
pub const EXITED_KEPT: usize = 16;

/// Bucket bounds in seconds: 10 us to 10 s, 1-2.5-5 per decade.
pub const BUCKETS: [f64; 19] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The scheduler states `qbench_threads{state}` counts, plus `arrived`.
pub const THREAD_STATES: [&str; 6] = [
    "running",
    "sleeping",
    "uninterruptible",
    "stopped",
    "other",
    "arrived",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProcessLabels {
    pub pid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    pid: u32,
    comm: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    pid: u32,
    comm: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    pid: u32,
    comm: String,
    cause: &'static str,
}

type Histograms = Family<ProcessLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Every metric, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    quiescence: Histograms,
    latency: Histograms,
    updates: Family<OutcomeLabels, Counter>,
    lost: Family<ProcessLabels, Counter>,
    threads: Family<StateLabels, Gauge>,
    blockers: Family<CauseLabels, Gauge>,
    exited: Mutex<VecDeque<ProcessLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let quiescence = Histograms::new_with_constructor(histogram as fn() -> Histogram);
        let latency = Histograms::new_with_constructor(histogram as fn() -> Histogram);
        let updates = Family::default();
        let lost = Family::default();
        let threads = Family::default();
        let blockers = Family::default();
        registry.register_with_unit(
            "qbench_quiescence",
            "Quiescence time of each update that quiesced: first to last thread at an update point",
            Unit::Seconds,
            quiescence.clone(),
        );
        registry.register_with_unit(
            "qbench_request_latency",
            "Request latency of each update that quiesced: request to full quiescence",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "qbench_updates",
            "Update requests observed, by outcome (quiesced, dnq, incomplete, exited)",
            updates.clone(),
        );
        registry.register(
            "qbench_lost_events",
            "Events the kernel programs could not record (ring buffer or thread table full)",
            lost.clone(),
        );
        registry.register(
            "qbench_threads",
            "Threads of the process by scheduler state at the last readiness check; arrived: \
             threads at an update point in the latest update",
            threads.clone(),
        );
        registry.register(
            "qbench_ready_blockers",
            "Threads an update requested now would wait for, by known cause",
            blockers.clone(),
        );
        Self {
            registry,
            quiescence,
            latency,
            updates,
            lost,
            threads,
            blockers,
            exited: Mutex::new(VecDeque::new()),
        }
    }

    /// Creates the series of a newly watched process (zero counts are visible at once).
    pub fn add_process(&self, p: &ProcessLabels) {
        let _ = self.quiescence.get_or_create(p);
        let _ = self.latency.get_or_create(p);
        for outcome in OUTCOMES {
            let _ = self.updates.get_or_create(&outcome_labels(p, outcome));
        }
        let _ = self.lost.get_or_create(p);
    }

    /// One observed update: its outcome (one of [`OUTCOMES`]), and for one that quiesced its
    /// two times in seconds.
    pub fn update(
        &self,
        p: &ProcessLabels,
        outcome: &'static str,
        times: Option<(f64, f64)>,
        arrived: u64,
    ) {
        self.updates
            .get_or_create(&outcome_labels(p, outcome))
            .inc();
        if let Some((quiescence, latency)) = times {
            self.quiescence.get_or_create(p).observe(quiescence);
            self.latency.get_or_create(p).observe(latency);
        }
        self.threads
            .get_or_create(&state_labels(p, "arrived"))
            .set(arrived as i64);
    }

    pub fn lost(&self, p: &ProcessLabels, n: u64) {
        self.lost.get_or_create(p).inc_by(n);
    }

    /// The threads by scheduler state letter, and what an update now would wait for.
    pub fn readiness(&self, p: &ProcessLabels, states: &[char], summary: &readiness::Summary) {
        for state in &THREAD_STATES[..5] {
            let n = states.iter().filter(|&&s| state_name(s) == *state).count();
            self.threads
                .get_or_create(&state_labels(p, state))
                .set(n as i64);
        }
        for cause in readiness::Blocker::CAUSES {
            let labels = CauseLabels {
                pid: p.pid,
                comm: p.comm.clone(),
                cause,
            };
            self.blockers
                .get_or_create(&labels)
                .set(summary.count(cause) as i64);
        }
    }

    /// A watched process exited: its gauges go, its counters stay until [`EXITED_KEPT`] newer
    /// exits push them out.
    pub fn exited(&self, p: &ProcessLabels) {
        self.remove_gauges(p);
        let mut exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        exited.push_back(p.clone());
        while exited.len() > EXITED_KEPT {
            if let Some(old) = exited.pop_front() {
                self.quiescence.remove(&old);
                self.latency.remove(&old);
                self.lost.remove(&old);
                for outcome in OUTCOMES {
                    self.updates.remove(&outcome_labels(&old, outcome));
                }
            }
        }
    }

    fn remove_gauges(&self, p: &ProcessLabels) {
        for state in THREAD_STATES {
            self.threads.remove(&state_labels(p, state));
        }
        for cause in readiness::Blocker::CAUSES {
            self.blockers.remove(&CauseLabels {
                pid: p.pid,
                comm: p.comm.clone(),
                cause,
            });
        }
    }

    /// The OpenMetrics text exposition (Prometheus reads it), ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The values of the `outcome` label of `qbench_updates_total`.
pub const OUTCOMES: [&str; 3] = ["quiesced", "dnq", "exited"];

fn outcome_labels(p: &ProcessLabels, outcome: &'static str) -> OutcomeLabels {
    OutcomeLabels {
        pid: p.pid,
        comm: p.comm.clone(),
        outcome,
    }
}

fn state_labels(p: &ProcessLabels, state: &'static str) -> StateLabels {
    StateLabels {
        pid: p.pid,
        comm: p.comm.clone(),
        state,
    }
}

/// The `state` label of a scheduler state letter.
fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' | 'I' => "sleeping",
        'D' => "uninterruptible",
        'T' | 't' => "stopped",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_with_bounded_labels() {
        let m = Metrics::new();
        let p = ProcessLabels {
            pid: 42,
            comm: "srv".into(),
        };
        m.add_process(&p);
        m.update(&p, "quiesced", Some((150e-6, 400e-6)), 3);
        m.update(&p, "dnq", None, 2);
        m.lost(&p, 2);
        let summary = readiness::Summary {
            plain_condition_waits: 2,
            sleeping: 1,
            ..Default::default()
        };
        m.readiness(&p, &['S', 'S', 'R', 'D'], &summary);
        let text = m.encode();
        for line in [
            "qbench_quiescence_seconds_count{pid=\"42\",comm=\"srv\"} 1",
            "qbench_quiescence_seconds_bucket{le=\"0.00025\",pid=\"42\",comm=\"srv\"} 1",
            "qbench_quiescence_seconds_bucket{le=\"0.0001\",pid=\"42\",comm=\"srv\"} 0",
            "qbench_request_latency_seconds_count{pid=\"42\",comm=\"srv\"} 1",
            "qbench_updates_total{pid=\"42\",comm=\"srv\",outcome=\"quiesced\"} 1",
            "qbench_updates_total{pid=\"42\",comm=\"srv\",outcome=\"dnq\"} 1",
            "qbench_updates_total{pid=\"42\",comm=\"srv\",outcome=\"exited\"} 0",
            "qbench_lost_events_total{pid=\"42\",comm=\"srv\"} 2",
            "qbench_threads{pid=\"42\",comm=\"srv\",state=\"sleeping\"} 2",
            "qbench_threads{pid=\"42\",comm=\"srv\",state=\"arrived\"} 2",
            "qbench_ready_blockers{pid=\"42\",comm=\"srv\",cause=\"plain_condition_wait\"} 2",
            "qbench_ready_blockers{pid=\"42\",comm=\"srv\",cause=\"uninterruptible\"} 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        m.exited(&p);
        let text = m.encode();
        assert!(!text.contains("qbench_threads{"), "{text}");
        assert!(text.contains("qbench_quiescence_seconds_count{pid=\"42\""));
    }

    #[test]
    fn exited_processes_are_forgotten_after_a_while() {
        let m = Metrics::new();
        for pid in 1..=(EXITED_KEPT as u32 + 1) {
            let p = ProcessLabels {
                pid,
                comm: "x".into(),
            };
            m.add_process(&p);
            m.exited(&p);
        }
        let text = m.encode();
        assert!(!text.contains("{pid=\"1\","), "{text}");
        assert!(text.contains("{pid=\"2\","), "{text}");
    }
}
