//! The slow path of an update point: park the calling thread until the update is released.

use std::sync::atomic::Ordering;

use crate::anchors::{qbench_probe_arrive, qbench_probe_depart};
use crate::state::{PENDING, SEQ, runtime};
use crate::sys::{gettid, monotonic_ns};

/// Entered from `qbench_update` only while an update is pending. A panic must not unwind into
/// the C caller, and there is nothing useful to do with one here but carry on.
pub extern "C" fn update_slow() {
    let _ = std::panic::catch_unwind(park_here);
}

/// Parks the calling thread at an update point if an update is pending and the thread
/// participates; returns once the update is released (quiesced or abandoned).
pub fn park_here() {
    let Some(rt) = runtime() else { return };
    let tid = gettid();
    let mut reg = rt.lock();
    // The update may have been released between the caller's check and taking the lock.
    if PENDING.load(Ordering::Acquire) == 0 {
        return;
    }
    let Some(entry) = reg.threads.get_mut(&tid) else {
        return; // not a participating thread: update points do not stop it
    };
    if entry.parked {
        return;
    }
    entry.parked = true;
    let slot = entry.slot;
    let now = monotonic_ns();
    crate::published::arrived(slot, now);
    reg.parked += 1;
    reg.first_arrival_ns.get_or_insert(now);
    reg.last_arrival_ns = Some(now);
    let seq = SEQ.load(Ordering::Relaxed);
    let generation = reg.generation;
    // The probe anchor runs outside the lock: a uprobe on it costs the thread microseconds,
    // which every other thread arriving at once would otherwise spend waiting for the lock (and
    // being put to sleep and woken for it). The helper does not end the update while an arrival
    // is being announced, so an observer sees every counted arrival before the release.
    reg.announcing += 1;
    drop(reg);
    qbench_probe_arrive(seq);
    let mut reg = rt.lock();
    reg.announcing = reg.announcing.saturating_sub(1);
    crate::interrupt::waiters(&mut reg);
    if reg.all_parked() && reg.announcing == 0 {
        rt.wake_helper();
    }
    while reg.generation == generation {
        reg = rt.released.wait(reg).unwrap_or_else(|e| e.into_inner());
    }
    drop(reg);
    qbench_probe_depart(seq);
}
