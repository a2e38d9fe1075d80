//! uprobes on the runtime's slow-path anchors (the probe contract, docs/ARCHITECTURE.md). The runtime enters them only while an
//! update is pending, so attaching them costs the target nothing in steady state.
//!
//! Kernel contract (x86-64 SysV: the first argument is in rdi, read with `ctx.arg(0)`):
//! - `void qbench_probe_request(uint64_t seq)`: an update was requested (in the signal handler,
//!   or by `qbench_request_update` in the process);
//! - `void qbench_probe_arrive(uint64_t seq)`: the calling thread parks at an update point;
//! - `void qbench_probe_depart(uint64_t seq)`: the calling thread is released;
//! - `void qbench_probe_release(uint64_t seq, uint32_t quiesced, uint32_t threads)`: the runtime
//!   ends an update (arguments in rdi, esi, edx).
//!
//! Every uprobe is scoped to the target process by the loader, and still filters on the tgid
//! first: the scope is a perf-event filter that a shared library's other users may pass.

use aya_ebpf::{EbpfContext as _, macros::uprobe, programs::ProbeContext};
use qbench_common::{
    ArriveEvent, DepartEvent, EVENT_ARRIVE, EVENT_DEPART, EVENT_RELEASE, EVENT_REQUEST,
    EventHeader, ReleaseEvent, RequestEvent, SOURCE_RUNTIME,
};

use crate::maps::{
    emit, emit_quietly, emit_request, header, mark_arrived, now_ns, open_window, open_window_seq,
    target_tgid,
};

/// `qbench_common::programs::ARRIVE`. The anchor only runs while an update is pending: always
/// worth an event.
#[uprobe]
pub fn qbench_arrive(ctx: ProbeContext) -> u32 {
    if ctx.tgid() == target_tgid() {
        let tid = ctx.pid();
        // Its later calls (the park's futex wait) are the runtime's, not why anyone is late.
        if let Some(window_seq) = open_window_seq() {
            mark_arrived(tid, window_seq);
        }
        emit_quietly(ArriveEvent {
            header: header(EVENT_ARRIVE, tid, now_ns()),
            seq: ctx.arg(0).unwrap_or(0),
            source: SOURCE_RUNTIME,
            _pad: 0,
        });
    }
    // A uprobe's return value is ignored by the kernel.
    0
}

/// `qbench_common::programs::DEPART`.
#[uprobe]
pub fn qbench_depart(ctx: ProbeContext) -> u32 {
    if let Some(header) = target_header(&ctx, EVENT_DEPART) {
        let seq = ctx.arg(0).unwrap_or(0);
        emit_quietly(DepartEvent { header, seq });
    }
    0
}

/// `qbench_common::programs::RELEASE`: the update's arrivals from the runtime's state, then the
/// release itself, which wakes the reader for both.
#[uprobe]
pub fn qbench_release(ctx: ProbeContext) -> u32 {
    if let Some(header) = target_header(&ctx, EVENT_RELEASE) {
        let seq = ctx.arg(0).unwrap_or(0);
        crate::arrivals::emit_arrivals(header.tid, seq, header.ts_ns);
        emit(ReleaseEvent {
            header,
            seq,
            quiesced: ctx.arg(1).unwrap_or(0),
            threads: ctx.arg(2).unwrap_or(0),
        });
    }
    0
}

/// The header of an event of `kind` about the calling thread, stamped now, when that thread is
/// the target's; None in any other process.
#[inline(always)]
fn target_header(ctx: &ProbeContext, kind: u32) -> Option<EventHeader> {
    (ctx.tgid() == target_tgid()).then(|| header(kind, ctx.pid(), now_ns()))
}

/// `qbench_common::programs::REQUEST`: a request the signal tracepoint did not see (made inside
/// the process, or with another signal) opens the window here. When the signal already opened
/// it, this is the same update: the record then tells userspace the runtime's sequence number and
/// when its handler took the signal up (the signal's delivery).
#[uprobe]
pub fn qbench_request(ctx: ProbeContext) -> u32 {
    if ctx.tgid() != target_tgid() {
        return 0;
    }
    let now = now_ns();
    let opened = open_window(now);
    if let Some(window_seq) = opened.or_else(open_window_seq) {
        let event = RequestEvent {
            header: header(EVENT_REQUEST, ctx.pid(), now),
            window_seq,
            runtime_seq: ctx.arg(0).unwrap_or(0),
            source: SOURCE_RUNTIME,
            signal: 0,
            code: 0,
            sender_tgid: target_tgid(),
        };
        if opened.is_some() {
            // Woken only when the syscall programs are detached, as for the signal (`signal.rs`).
            emit_request(event);
        } else {
            // The signal's request woke the reader already, if it had to.
            emit_quietly(event);
        }
    }
    0
}
