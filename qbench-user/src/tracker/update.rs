//! What the tracker reports: one update, its outcome and its threads.

use super::{Blocked, Call, Exit, RequestSeen};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Quiesced,
    Dnq,
    /// The target exited while the update was pending: no thread is missing, they are gone.
    Exited(Exit),
    /// Not seen to quiesce before the timeout, but events were lost meanwhile: a thread counted
    /// missing may have arrived unseen, so nothing is said to be stuck.
    Incomplete,
}

/// One thread in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadReport {
    pub tid: u32,
    pub comm: String,
    pub arrival_ns: Option<u64>,
    /// What it is blocked in, for a thread that did not arrive.
    pub blocked: Option<Blocked>,
    /// Its tracked calls during the window, in order.
    pub calls: Vec<Call>,
    /// Whether it reached an update point in any update observed since attach.
    pub ever_arrived: bool,
    /// False for a thread the runtime did not wait for (it quiesced without it).
    pub participating: bool,
    /// Whether the runtime's exported state names it a participant (None: not read, or it
    /// could not say).
    pub runtime_knows: Option<bool>,
}

/// One observed update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Counts the updates this observer reported (1 for the first).
    pub number: u64,
    pub outcome: Outcome,
    /// It completed when the last thread missing exited rather than arrived.
    pub ended_by_thread_exit: bool,
    pub seen: RequestSeen,
    pub window_seq: u64,
    pub runtime_seq: Option<u64>,
    pub request_ns: u64,
    /// When the runtime's handler took a signalled request up (its request anchor); None when
    /// not seen, and for requests that were no signal.
    pub handled_ns: Option<u64>,
    pub first_arrival_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
    /// When the update ended: the last arrival, the runtime's release, or the timeout.
    pub end_ns: u64,
    /// Missing threads first (by tid), then the arrived ones in arrival order.
    pub threads: Vec<ThreadReport>,
}

impl Update {
    /// From the update signal's sending to the runtime's handler taking it up: the signal's
    /// delivery, by which the runtime's own request time is later than the observer's.
    pub fn signal_delivery_ns(&self) -> Option<u64> {
        match self.seen {
            RequestSeen::Signal { .. } => Some(self.handled_ns?.saturating_sub(self.request_ns)),
            _ => None,
        }
    }

    /// Last arrival minus first: the study's quiescence time (None for a DNQ).
    pub fn quiescence_ns(&self) -> Option<u64> {
        match (self.outcome, self.first_arrival_ns, self.last_arrival_ns) {
            (Outcome::Quiesced, Some(first), Some(last)) => Some(last - first),
            _ => None,
        }
    }

    /// Last arrival minus the request (None for a DNQ).
    pub fn request_latency_ns(&self) -> Option<u64> {
        match (self.outcome, self.last_arrival_ns) {
            (Outcome::Quiesced, Some(last)) => Some(last.saturating_sub(self.request_ns)),
            _ => None,
        }
    }

    /// Participating threads that did not arrive.
    pub fn missing(&self) -> impl Iterator<Item = &ThreadReport> {
        self.threads
            .iter()
            .filter(|t| t.participating && t.arrival_ns.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(seen: RequestSeen, handled_ns: Option<u64>) -> Update {
        Update {
            number: 1,
            outcome: Outcome::Quiesced,
            ended_by_thread_exit: false,
            seen,
            window_seq: 1,
            runtime_seq: Some(1),
            request_ns: 1_000,
            handled_ns,
            first_arrival_ns: Some(1_100),
            last_arrival_ns: Some(1_300),
            end_ns: 1_300,
            threads: Vec::new(),
        }
    }

    #[test]
    fn the_signal_delivery_is_from_the_sending_to_the_runtimes_handler() {
        let signal = RequestSeen::Signal {
            signal: 12,
            sender_tgid: 7,
        };
        assert_eq!(update(signal, Some(1_040)).signal_delivery_ns(), Some(40));
        assert_eq!(update(signal, None).signal_delivery_ns(), None);
        // A request made inside the process has no signal to deliver.
        let inside = update(RequestSeen::Runtime, Some(1_000));
        assert_eq!(inside.signal_delivery_ns(), None);
    }
}
