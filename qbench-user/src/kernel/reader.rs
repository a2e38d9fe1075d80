//! Draining the ring buffer into the tracker, shared by the one-process loop (`observe`) and the
//! watch mode: decode, drop what is not a thread of the target, apply, and let the caller fill
//! in the threads' state the moment a window opens (before any later event is applied).

use std::path::Path;

use aya::maps::{MapData, RingBuf};

use crate::kernel::decode::{self, Event, Payload};
use crate::tracker::{Tracker, Update};

/// Records applied per wake-up: a target flooding the ring buffer with system calls must not
/// keep the loop from its timeout checks.
pub const DRAIN_LIMIT: usize = 4096;

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// The updates the batch completed.
    pub finished: Vec<Update>,
    /// The batch stopped at [`DRAIN_LIMIT`]: records may be left.
    pub more: bool,
    /// Records that could not be decoded (counted with the losses).
    pub undecodable: u64,
}

/// What the batch says of a window just opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The runtime's release of the update comes later in the same batch: the update is over
    /// (it quiesced, or the runtime gave up), so nothing the threads do from now on explains it.
    pub released_in_batch: bool,
}

/// Applies up to [`DRAIN_LIMIT`] records to `tracker`. `on_open` runs right after a request
/// opens a window, to apply the threads' current state. With `verbose` > 0 undecodable records
/// are said on stderr, with > 1 every event.
pub fn drain(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    pid: u32,
    verbose: u8,
    mut on_open: impl FnMut(&mut Tracker, Opened) -> anyhow::Result<()>,
) -> anyhow::Result<Batch> {
    let mut batch = Batch::default();
    let events = read(ring, pid, verbose, &mut batch);
    for (i, event) in events.iter().enumerate() {
        // An event past the open update's deadline happened after that update ended: finish it
        // first, so that its stragglers are reported as they were at the deadline (a thread
        // interrupted just after it would otherwise show as between two calls).
        batch.finished.extend(tracker.on_tick(event.ts_ns));
        let opens = matches!(event.payload, Payload::Request { .. }) && !tracker.window_open();
        let done = tracker.on_event(*event);
        if opens && tracker.window_open() {
            let released_in_batch = events[i + 1..]
                .iter()
                .any(|e| matches!(e.payload, Payload::Release { .. }));
            on_open(tracker, Opened { released_in_batch })?;
        }
        batch.finished.extend(done);
    }
    Ok(batch)
}

/// Decodes up to [`DRAIN_LIMIT`] records, leaving out a child process's creation; sets
/// `batch.more` when the limit was reached and counts what could not be decoded.
fn read(ring: &mut RingBuf<MapData>, pid: u32, verbose: u8, batch: &mut Batch) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..DRAIN_LIMIT {
        let Some(record) = ring.next() else {
            return events;
        };
        let decoded = events.len();
        let result = decode::decode_into(&record, &mut events);
        drop(record);
        if let Err(err) = result {
            batch.undecodable += 1;
            if verbose > 0 {
                eprintln!("qbench-trace: undecodable event: {err}");
            }
            continue;
        }
        // sched_process_fork fires for fork() too: a child process is not a new thread.
        if let [event] = &events[decoded..]
            && let Payload::ThreadNew { .. } = event.payload
            && !Path::new(&format!("/proc/{pid}/task/{}", event.tid)).exists()
        {
            events.truncate(decoded);
            continue;
        }
        if verbose > 1 {
            for event in &events[decoded..] {
                eprintln!("qbench-trace: {event:?}");
            }
        }
    }
    batch.more = true;
    events
}
