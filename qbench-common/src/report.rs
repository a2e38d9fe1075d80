//! One update's record, as the runtime writes it to `QBENCH_REPORT` (a JSON line).
//!
//! The runtime writes it and every reader (the integration tests, the benchmarks) reads it with
//! these same types; it lives here, with serde its only dependency, because linking the runtime
//! into a reader would run the runtime's constructor there.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

/// How an update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every participating thread was parked at an update point at once.
    Quiesced,
    /// Did not quiesce before the timeout; everyone was released.
    Dnq,
}

/// A participating thread that had not reached an update point when a DNQ update was abandoned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingThread {
    pub tid: i32,
    pub name: String,
}

/// One update, timed with CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub pid: i32,
    /// The request's sequence number in this process (1 for the first).
    pub seq: u64,
    pub outcome: Outcome,
    pub request_ns: u64,
    pub first_arrival_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
    /// Last arrival minus first arrival: the study's quiescence time. None for a DNQ.
    pub quiescence_ns: Option<u64>,
    /// Full quiescence minus the request. None for a DNQ.
    pub request_latency_ns: Option<u64>,
    /// Participating threads when the update ended.
    pub threads: usize,
    /// Empty when quiesced.
    pub missing: Vec<MissingThread>,
}

/// What the helper knows when an update ends; `Report::new` derives the rest.
#[derive(Debug)]
pub struct Ending {
    pub pid: i32,
    pub seq: u64,
    pub request_ns: u64,
    pub first_arrival_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
    pub threads: usize,
    pub missing: Vec<MissingThread>,
}

impl Report {
    pub fn new(end: Ending) -> Report {
        let outcome = if end.missing.is_empty() {
            Outcome::Quiesced
        } else {
            Outcome::Dnq
        };
        let (quiescence_ns, request_latency_ns) =
            match (outcome, end.first_arrival_ns, end.last_arrival_ns) {
                (Outcome::Quiesced, Some(first), Some(last)) => (
                    Some(last.saturating_sub(first)),
                    Some(last.saturating_sub(end.request_ns)),
                ),
                // Quiesced with no participating thread at all: nothing to wait for.
                (Outcome::Quiesced, _, _) => (Some(0), Some(0)),
                (Outcome::Dnq, _, _) => (None, None),
            };
        Report {
            pid: end.pid,
            seq: end.seq,
            outcome,
            request_ns: end.request_ns,
            first_arrival_ns: end.first_arrival_ns,
            last_arrival_ns: end.last_arrival_ns,
            quiescence_ns,
            request_latency_ns,
            threads: end.threads,
            missing: end.missing,
        }
    }
}
