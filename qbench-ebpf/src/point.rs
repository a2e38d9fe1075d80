//! uprobe on an update point of a program without the runtime: `qbench_update` itself or a
//! function the user names (`--point [LIB:]SYMBOL`).
//!
//! Kernel contract: any function; no argument is read. Every call traps into this program while
//! it is attached (docs/ARCHITECTURE.md, measured costs), so it does as little as possible outside a window: the tgid check
//! and one read of the window.

use aya_ebpf::{EbpfContext as _, macros::uprobe, programs::ProbeContext};
use qbench_common::{ArriveEvent, EVENT_ARRIVE, SOURCE_POINT};

use crate::maps::{emit_quietly, header, mark_arrived, now_ns, open_window_seq, target_tgid};

/// `qbench_common::programs::POINT`.
#[uprobe]
pub fn qbench_point(ctx: ProbeContext) -> u32 {
    if ctx.tgid() == target_tgid() {
        try_point(ctx.pid());
    }
    0
}

/// Emits the thread's first arrival in the open window; later ones in the same window are
/// dropped here, in the kernel, since a loop can pass its update point millions of times.
#[inline(always)]
fn try_point(tid: u32) {
    let Some(seq) = open_window_seq() else {
        return;
    };
    if mark_arrived(tid, seq) {
        emit_quietly(ArriveEvent {
            header: header(EVENT_ARRIVE, tid, now_ns()),
            seq,
            source: SOURCE_POINT,
            _pad: 0,
        });
    }
}
