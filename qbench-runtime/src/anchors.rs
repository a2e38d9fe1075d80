//! The probe contract (docs/ARCHITECTURE.md states it): exported, never-inlined functions whose first instruction
//! is a 5-byte NOP, so that a uprobe placed on them is turned by the kernel into a cheap call
//! instead of a trap. They are naked so that no prologue can come before the NOP.
//!
//! The `qbench_probe_*` anchors run only while an update is pending, so probing them costs a
//! target nothing in steady state.

use std::arch::naked_asm;

use crate::state::PENDING;

/// An update point. Fast path: one relaxed load of the update flag and a branch predicted not
/// taken; while an update is pending it tail-calls the slow path, which parks the thread.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn qbench_update() {
    naked_asm!(
        ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
        "cmp dword ptr [rip + {pending}], 0",
        "jne {slow}",
        "ret",
        pending = sym PENDING,
        slow = sym crate::park::update_slow,
    )
}

/// Probe anchor: update `seq` was opened. Called from the signal handler (or, for a request
/// that came while the update before was closing, by the helper at that update's release), so
/// it does nothing.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn qbench_probe_request(_seq: u64) {
    naked_asm!(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00", "ret")
}

/// Probe anchor: the calling thread parks at an update point for update `seq`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn qbench_probe_arrive(_seq: u64) {
    naked_asm!(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00", "ret")
}

/// Probe anchor: the runtime ends update `seq`, on its helper thread, just before releasing the
/// parked threads: `quiesced` is 1 for full quiescence and 0 for a DNQ, `threads` the number of
/// participating threads. Tells an observer which threads the runtime waited for.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn qbench_probe_release(_seq: u64, _quiesced: u32, _threads: u32) {
    naked_asm!(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00", "ret")
}

/// Probe anchor: the calling thread was released from update `seq`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn qbench_probe_depart(_seq: u64) {
    naked_asm!(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00", "ret")
}
