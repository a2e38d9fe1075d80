//! A lock-free table of the participating threads' ids, readable from the signal handler.
//!
//! The request handler interrupts every participating thread itself, at once, instead of
//! waking the helper to do it: a thread wake-up in a VM costs tens of microseconds, which would
//! otherwise come before every interruption. Threads beyond the table's size, and those waiting
//! inside runtime wrappers (woken by a broadcast or the update flag's futex, not by a signal),
//! are left to the helper.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use crate::sys;

/// The same size as the exported participants table, whose entries sit at the same indices.
const CAPACITY: usize = qbench_common::state::CAPACITY;

struct Slot {
    tid: AtomicI32,
    /// Set while the thread waits inside a runtime wrapper that a request ends without a signal.
    in_runtime_wait: AtomicBool,
}

static TABLE: [Slot; CAPACITY] = [const {
    Slot {
        tid: AtomicI32::new(0),
        in_runtime_wait: AtomicBool::new(false),
    }
}; CAPACITY];
/// One past the highest slot ever used: the handler scans no further.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// Takes a free slot for `tid`; None when the table is full (the helper then interrupts it).
/// Called under the registry lock, so two registrations never race for a slot.
pub fn claim(tid: libc::pid_t) -> Option<usize> {
    let index = TABLE
        .iter()
        .position(|s| s.tid.load(Ordering::Relaxed) == 0)?;
    TABLE[index].in_runtime_wait.store(false, Ordering::Relaxed);
    TABLE[index].tid.store(tid, Ordering::Release);
    HIGH_WATER.fetch_max(index + 1, Ordering::AcqRel);
    Some(index)
}

pub fn release(index: usize) {
    TABLE[index].tid.store(0, Ordering::Release);
}

pub fn set_in_runtime_wait(index: usize, waiting: bool) {
    TABLE[index]
        .in_runtime_wait
        .store(waiting, Ordering::SeqCst);
}

/// Empties the table (in a forked child, whose other threads do not exist).
pub fn clear() {
    for slot in &TABLE[..HIGH_WATER.load(Ordering::Acquire)] {
        slot.tid.store(0, Ordering::Relaxed);
    }
}

/// Interrupts every thread in the table but the caller and those in runtime waits.
/// Async-signal-safe: atomic loads and system calls only.
pub fn interrupt_all(signal: libc::c_int) {
    let me = sys::raw_gettid();
    let sender = sys::Sender::current();
    for slot in &TABLE[..HIGH_WATER.load(Ordering::Acquire)] {
        let tid = slot.tid.load(Ordering::Acquire);
        if tid != 0 && tid != me && !slot.in_runtime_wait.load(Ordering::SeqCst) {
            sender.kick(tid, signal);
        }
    }
}
