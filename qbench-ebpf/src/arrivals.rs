//! The update's arrivals, read at its release from the runtime's participants table
//! (`qbench_state`, in the target's memory) instead of one uprobe per arrival: the threads racing
//! to park then run no probe on the way, and the observer's arrival times are the runtime's own.
//!
//! User-memory contract (`qbench_common::state`, the layout the runtime exports): `u32
//! table_len` at `OFF_TABLE_LEN`, then from `HEADER_BYTES` the table of `CAPACITY` entries of
//! `{i32 tid, u32 parked, u64 arrival_ns}`. At `qbench_probe_release` the update's threads are
//! still parked, and the runtime clears the table only after it, so what is read here is the
//! update's.

use aya_ebpf::{bindings::BPF_RB_NO_WAKEUP, helpers};
use qbench_common::{
    ARRIVALS_PER_EVENT, ArrivalsEvent, EVENT_ARRIVALS, MISS_RINGBUF_FULL, MISS_STATE_UNREADABLE,
    state,
};

use crate::maps::{QBENCH_EVENTS, count_miss, header};

/// `qbench_common::globals::STATE_ADDRESS`, set by the loader before the object is loaded.
#[unsafe(no_mangle)]
static STATE_ADDRESS: u64 = 0;

/// Runs of the table per release: the whole table, whatever its length.
const RUNS: usize = state::CAPACITY / ARRIVALS_PER_EVENT;
const RUN_BYTES: usize = ARRIVALS_PER_EVENT * state::ENTRY_BYTES;

/// Where the runtime's state is in the target (0: not known). Volatile, as `target_tgid`.
#[inline(always)]
fn state_address() -> u64 {
    // SAFETY: a read of a plain `u64` static through a valid reference.
    unsafe { core::ptr::read_volatile(&raw const STATE_ADDRESS) }
}

/// Emits the table in use as [`ArrivalsEvent`]s for update `seq`, stamped `now` and about the
/// releasing thread `tid`; a table that cannot be read is counted as a loss (the update is then
/// reported incomplete, never a DNQ).
#[inline(always)]
pub fn emit_arrivals(tid: u32, seq: u64, now: u64) {
    let at = state_address();
    if at == 0 {
        return;
    }
    let len_at = (at + state::OFF_TABLE_LEN as u64) as *const u32;
    // SAFETY: the helper checks the address; a fault is an error, not a crash.
    let len = match unsafe { helpers::bpf_probe_read_user(len_at) } {
        Ok(len) => (len as usize).min(state::CAPACITY),
        Err(_) => {
            count_miss(MISS_STATE_UNREADABLE);
            return;
        }
    };
    for run in 0..RUNS {
        let first = run * ARRIVALS_PER_EVENT;
        if first >= len {
            return;
        }
        let Some(mut entry) = QBENCH_EVENTS.reserve::<ArrivalsEvent>(0) else {
            count_miss(MISS_RINGBUF_FULL);
            return;
        };
        let event = entry.as_mut_ptr();
        let from = (at + (state::HEADER_BYTES + first * state::ENTRY_BYTES) as u64) as *const u8;
        // SAFETY: `event` points at the reserved record, `RUN_BYTES` long in `entries`; the
        // helper checks the user address.
        let read = unsafe {
            let entries: &mut [u8; RUN_BYTES] = &mut (*event).entries;
            helpers::bpf_probe_read_user_buf(from, entries)
        };
        if read.is_err() {
            entry.discard(0);
            count_miss(MISS_STATE_UNREADABLE);
            return;
        }
        // SAFETY: as above; plain stores into the reserved record.
        unsafe {
            (*event).header = header(EVENT_ARRIVALS, tid, now);
            (*event).seq = seq;
            (*event).first = first as u32;
            (*event).count = (len - first).min(ARRIVALS_PER_EVENT) as u32;
        }
        // Read with the release that follows: no wake-up of its own.
        entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    }
}
