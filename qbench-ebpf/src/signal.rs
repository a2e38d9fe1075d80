//! The update request: the configured signal generated for the target opens the window, in the
//! kernel, with no round trip to userspace; and, for a target without the runtime, the signal
//! delivered to each of its threads during the window ([`qbench_deliver`]).
//!
//! Kernel contract, `/sys/kernel/tracing/events/signal/signal_generate/format` (Linux 6.18; the
//! loader reads the offsets from the running kernel):
//! ```text
//! field:int sig;       offset:8;  size:4;   field:int errno;  offset:12; size:4;
//! field:int code;      offset:16; size:4;   field:char comm[16]; offset:20; size:16;
//! field:pid_t pid;     offset:36; size:4;   field:int group;  offset:40; size:4;
//! field:int result;    offset:44; size:4;
//! ```
//! It runs in the **sender's** context; `pid` is the signalled task (the tgid for a signal sent
//! to the process, `kill(2)`), so the "tgid first" filter here is on `pid`.

use aya_ebpf::{EbpfContext as _, macros::tracepoint, programs::TracePointContext};
use qbench_common::{DeliverEvent, EVENT_DELIVER, EVENT_REQUEST, RequestEvent, SOURCE_SIGNAL};

use crate::{
    maps::{
        emit_quietly, emit_request, header, now_ns, open_window, open_window_seq, target_tgid,
        update_signal,
    },
    tp::field,
};

/// `enum trace_signal_result`: the signal was queued (`TRACE_SIGNAL_DELIVERED`), or queued
/// without its siginfo (`TRACE_SIGNAL_LOSE_INFO`). Ignored, already pending or overflowed
/// signals request nothing new.
const DELIVERED: i32 = 0;
const LOSE_INFO: i32 = 4;
/// How the runtime's helper interrupts the target's own blocked threads: not a request.
const SI_QUEUE: i32 = qbench_common::runtime::SELF_INTERRUPT_CODE;

/// `qbench_common::programs::SIGNAL`.
#[tracepoint]
pub fn qbench_signal(ctx: TracePointContext) -> u32 {
    try_signal(&ctx);
    0
}

#[inline(always)]
fn try_signal(ctx: &TracePointContext) {
    let pid: i32 = field!(ctx, SignalPid, i32);
    let target = target_tgid();
    if pid as u32 != target {
        return;
    }
    let sig: i32 = field!(ctx, SignalSig, i32);
    if sig as u32 != update_signal() {
        return;
    }
    let result: i32 = field!(ctx, SignalResult, i32);
    if result != DELIVERED && result != LOSE_INFO {
        return;
    }
    let code: i32 = field!(ctx, SignalCode, i32);
    let sender = ctx.tgid();
    if sender == target && code == SI_QUEUE {
        return;
    }
    let now = now_ns();
    if let Some(window_seq) = open_window(now) {
        // Not woken while the syscall programs are attached: the reader would take a core from
        // the threads racing to park; it finds the request on its next tick, and every figure
        // is stamped here. Woken otherwise, to attach them.
        emit_request(RequestEvent {
            header: header(EVENT_REQUEST, pid as u32, now),
            window_seq,
            runtime_seq: 0,
            source: SOURCE_SIGNAL,
            signal: sig as u32,
            code,
            sender_tgid: sender,
        });
    }
}

/// `qbench_common::programs::DELIVER`, attached only for a target without the runtime: the
/// update signal delivered to one of its threads while the window is open. A call the thread
/// was blocked in ended for it, before anything else of the thread's runs; without the syscall
/// tracepoints (attached later, for someone else's request) this is all that tells.
///
/// Kernel contract, `/sys/kernel/tracing/events/signal/signal_deliver/format` (the same on Linux
/// 5.10 to 6.18; the loader reads the offsets from the running kernel):
/// ```text
/// field:int sig;     offset:8;  size:4;   field:int errno;  offset:12; size:4;
/// field:int code;    offset:16; size:4;   field:unsigned long sa_handler; offset:24; size:8;
/// field:unsigned long sa_flags; offset:32; size:8;
/// ```
/// It runs in the **receiving** thread's context (`get_signal`, on its way back to user space),
/// for every signal delivered on the machine: the tgid test comes first, then the signal's.
#[tracepoint]
pub fn qbench_deliver(ctx: TracePointContext) -> u32 {
    if ctx.tgid() == target_tgid() {
        try_deliver(&ctx);
    }
    0
}

#[inline(always)]
fn try_deliver(ctx: &TracePointContext) {
    let sig: i32 = field!(ctx, DeliverSig, i32);
    if sig as u32 != update_signal() || open_window_seq().is_none() {
        return;
    }
    emit_quietly(DeliverEvent {
        header: header(EVENT_DELIVER, ctx.pid(), now_ns()),
        signal: sig as u32,
        code: field!(ctx, DeliverCode, i32),
        handler: field!(ctx, DeliverHandler, u64),
        flags: field!(ctx, DeliverFlags, u64),
    });
}
