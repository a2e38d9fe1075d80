//! uprobe on an update point of a program without the runtime: `qbench_update` itself or a
//! function the user names (`--point [LIB:]SYMBOL`).
//!
//! Kernel contract: any function; no argument is read. Every call traps into this program while
//! it is attached (docs/ARCHITECTURE.md, measured costs), so it does as little as possible outside a window: the tgid check
//! and one read of the window.

use aya_ebpf::{EbpfContext as _, bindings::BPF_NOEXIST, macros::uprobe, programs::ProbeContext};
use qbench_common::{
    ArriveEvent, EVENT_ARRIVE, MISS_THREADS_FULL, NO_SYSCALL, SOURCE_POINT, ThreadState,
};

use crate::maps::{QBENCH_THREADS, count_miss, emit, header, now_ns, open_window_seq, target_tgid};

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
    match QBENCH_THREADS.get_ptr_mut(tid) {
        Some(state) => {
            // SAFETY: the entry is this thread's, written only from its own context (uprobe and
            // syscall tracepoints of one thread never run at once), and by userspace seeding,
            // which only inserts missing entries.
            unsafe {
                if (*state).arrived_seq == seq {
                    return;
                }
                (*state).arrived_seq = seq;
            }
        }
        None => {
            let state = ThreadState {
                nr: NO_SYSCALL,
                since_ns: 0,
                args: [0; 6],
                arrived_seq: seq,
            };
            // Without an entry a second arrival cannot be told from the first; report the
            // arrival anyway and count the loss of state.
            if QBENCH_THREADS
                .insert(tid, state, u64::from(BPF_NOEXIST))
                .is_err()
            {
                count_miss(MISS_THREADS_FULL);
            }
        }
    }
    emit(ArriveEvent {
        header: header(EVENT_ARRIVE, tid, now_ns()),
        seq,
        source: SOURCE_POINT,
        _pad: 0,
    });
}
