//! The update request: the configured signal generated for the target opens the window, in the
//! kernel, with no round trip to userspace ([`qbench_signal_raw`], or [`qbench_signal`] where
//! the kernel has no BTF); and, for a target without the runtime, the signal delivered to each
//! of its threads during the window ([`qbench_deliver`]).
//!
//! `signal_generate` fires for every signal generated on the machine, in the **sender's**
//! context, and the runtime's helper raises one for each of the target's threads during an
//! update (its interruption, which is no request). The raw tracepoint runs the program on the
//! tracepoint's own arguments; the formatted one first copies every signal's record (the
//! signalled task's comm among it), a cost paid on the interrupting thread's path while the
//! threads race to park. So the raw one is attached wherever the loader finds `task_struct`'s
//! `pid` and `tgid` in the kernel's BTF, and the formatted one elsewhere; both emit the same
//! event. The formatted record has only the signalled task's pid (the tgid for a signal sent to
//! the process, `kill(2)`), which the fallback filters on; the raw program reads the task's
//! tgid, so a signal sent to any one of the target's threads (`tgkill(2)`) is seen too.
//!
//! Kernel contract of the raw tracepoint (the same from Linux 5.0 to 6.18):
//! `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int
//! result)`; `info` may be `SEND_SIG_NOINFO` (0, si_code SI_USER) or `SEND_SIG_PRIV` (1,
//! SI_KERNEL), else `si_code` is the `int` at byte 8 (after `si_signo` and `si_errno`).
//!
//! Kernel contract of the formatted one,
//! `/sys/kernel/tracing/events/signal/signal_generate/format` (Linux 6.18; the loader reads the
//! offsets from the running kernel):
//! ```text
//! field:int sig;       offset:8;  size:4;   field:int errno;  offset:12; size:4;
//! field:int code;      offset:16; size:4;   field:char comm[16]; offset:20; size:16;
//! field:pid_t pid;     offset:36; size:4;   field:int group;  offset:40; size:4;
//! field:int result;    offset:44; size:4;
//! ```
//! `pid` is the signalled task (the tgid for a signal sent to the process, `kill(2)`).

use aya_ebpf::{
    EbpfContext as _,
    helpers::bpf_probe_read_kernel,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use qbench_common::{DeliverEvent, EVENT_DELIVER, EVENT_REQUEST, RequestEvent, SOURCE_SIGNAL};

use crate::{
    maps::{
        emit_quietly, emit_request, header, now_ns, on_self_interrupt, open_window,
        open_window_seq, target_tgid, task_offsets, update_signal,
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

/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: `info` values that are no pointer, and the codes
/// the kernel's own record gives them (`TP_STORE_SIGINFO`).
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
/// `offsetof(struct kernel_siginfo, si_code)`: after `int si_signo; int si_errno;`.
const SI_CODE: usize = 8;

/// `qbench_common::programs::SIGNAL_RAW`. The tests are ordered so that the machine's other
/// signals cost least: the signal number (an argument), the result (an argument), then the
/// sender (a helper call); only then a read of kernel memory, the `si_code` for a signal the
/// target sent itself (the runtime's interruptions end there), or else the signalled task's
/// tgid.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn qbench_signal_raw(ctx: RawTracePointContext) -> i32 {
    try_signal_raw(&ctx);
    0
}

#[inline(always)]
fn try_signal_raw(ctx: &RawTracePointContext) {
    let sig = ctx.arg::<u64>(0) as i32;
    if sig as u32 != update_signal() {
        return;
    }
    let result = ctx.arg::<u64>(4) as i32;
    if result != DELIVERED && result != LOSE_INFO {
        return;
    }
    let info = ctx.arg::<u64>(1);
    let task = ctx.arg::<*const u8>(2);
    let sender = ctx.tgid();
    let target = target_tgid();
    let self_sent = sender == target;
    let mut code = 0;
    if self_sent {
        code = si_code(info);
        if code == SI_QUEUE {
            on_self_interrupt(ctx.pid());
            return;
        }
    }
    let (pid_at, tgid_at) = task_offsets();
    // SAFETY: `task` is the tracepoint's task pointer, a kernel address, and the offset is the
    // member's in this kernel's BTF; the helper checks the copy and fails cleanly.
    let Ok(tgid) = (unsafe { bpf_probe_read_kernel(task.wrapping_add(tgid_at).cast::<i32>()) })
    else {
        return;
    };
    if tgid as u32 != target {
        return;
    }
    if !self_sent {
        code = si_code(info);
    }
    // SAFETY: as for `tgid`.
    let pid =
        unsafe { bpf_probe_read_kernel(task.wrapping_add(pid_at).cast::<i32>()) }.unwrap_or(tgid);
    request(pid as u32, sig, code, sender);
}

/// The `si_code` of the tracepoint's `info` argument, as the kernel's record gives it.
#[inline(always)]
fn si_code(info: u64) -> i32 {
    match info {
        SEND_SIG_NOINFO => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        // SAFETY: `info` is then a pointer to the kernel's siginfo; the helper checks the copy
        // and fails cleanly (a code of 0 then, SI_USER).
        _ => unsafe { bpf_probe_read_kernel((info as *const u8).wrapping_add(SI_CODE).cast()) }
            .unwrap_or(SI_USER),
    }
}

/// Opens the window for a request of signal `sig` with `code`, from process `sender`, to the
/// target's task `tid`, and emits it; nothing when the window is open already.
#[inline(always)]
fn request(tid: u32, sig: i32, code: i32, sender: u32) {
    let now = now_ns();
    if let Some(window_seq) = open_window(now) {
        // Woken only for a target without the runtime whose syscall programs are detached, to
        // attach them; otherwise the reader would take a core from the threads racing to park:
        // it finds the request later (its tick, the release, or the runtime's interruptions
        // once the update is late), and every figure is stamped here.
        emit_request(RequestEvent {
            header: header(EVENT_REQUEST, tid, now),
            window_seq,
            runtime_seq: 0,
            source: SOURCE_SIGNAL,
            signal: sig as u32,
            code,
            sender_tgid: sender,
        });
    }
}

/// `qbench_common::programs::SIGNAL`: [`qbench_signal_raw`] from the formatted record.
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
        on_self_interrupt(ctx.pid());
        return;
    }
    request(pid as u32, sig, code, sender);
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
