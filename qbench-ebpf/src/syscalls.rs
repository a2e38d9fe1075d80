//! Blocking system calls of the target's threads: entry and exit keep `THREADS` up to date at all
//! times (a request then finds every thread's state without a round trip), and become events only
//! while the window is open. Which calls are tracked is `BLOCKING`, filled by the loader.
//!
//! Kernel contract, `/sys/kernel/tracing/events/raw_syscalls/{sys_enter,sys_exit}/format` (the
//! loader reads the offsets from the running kernel):
//! ```text
//! sys_enter: field:long id; offset:8; size:8;   field:unsigned long args[6]; offset:16; size:48;
//! sys_exit:  field:long id; offset:8; size:8;   field:long ret; offset:16; size:8;
//! ```
//! These fire for every syscall of every process on the machine (docs/ARCHITECTURE.md, measured costs), so the tgid test
//! comes first and the rest stays short.

use aya_ebpf::{
    EbpfContext as _, bindings::BPF_NOEXIST, macros::tracepoint, programs::TracePointContext,
};
use qbench_common::{
    EVENT_SYS_ENTER, EVENT_SYS_EXIT, MAX_SYSCALLS, MISS_THREADS_FULL, NO_SYSCALL, SysEnterEvent,
    SysExitEvent, ThreadState,
};

use crate::{
    maps::{
        QBENCH_BLOCKING, QBENCH_THREADS, count_miss, emit, header, now_ns, open_window_seq,
        target_tgid,
    },
    tp::field,
};

/// `id` (the record's syscall number) if it is a tracked call, or `None`.
#[inline(always)]
fn tracked(id: i64) -> Option<i64> {
    // Negative for a syscall the kernel rejected before dispatch; large for x32 or garbage.
    if !(0..i64::from(MAX_SYSCALLS)).contains(&id) {
        return None;
    }
    match QBENCH_BLOCKING.get(id as u32) {
        Some(&flag) if flag != 0 => Some(id),
        _ => None,
    }
}

/// `qbench_common::programs::SYS_ENTER`.
#[tracepoint]
pub fn qbench_sys_enter(ctx: TracePointContext) -> u32 {
    if ctx.tgid() == target_tgid()
        && let Some(nr) = tracked(field!(&ctx, SysEnterId, i64))
    {
        enter(&ctx, ctx.pid(), nr);
    }
    0
}

#[inline(always)]
fn enter(ctx: &TracePointContext, tid: u32, nr: i64) {
    let now = now_ns();
    let args = [
        field!(ctx, SysEnterArgs, u64, 0),
        field!(ctx, SysEnterArgs, u64, 8),
        field!(ctx, SysEnterArgs, u64, 16),
        field!(ctx, SysEnterArgs, u64, 24),
        field!(ctx, SysEnterArgs, u64, 32),
        field!(ctx, SysEnterArgs, u64, 40),
    ];
    match QBENCH_THREADS.get_ptr_mut(tid) {
        // SAFETY: this thread's own entry (see `point.rs`); `arrived_seq` is kept.
        Some(state) => unsafe {
            (*state).nr = nr;
            (*state).since_ns = now;
            (*state).args = args;
        },
        None => {
            let state = ThreadState {
                nr,
                since_ns: now,
                args,
                arrived_seq: 0,
            };
            if QBENCH_THREADS
                .insert(tid, state, u64::from(BPF_NOEXIST))
                .is_err()
            {
                count_miss(MISS_THREADS_FULL);
            }
        }
    }
    if open_window_seq().is_some() {
        emit(SysEnterEvent {
            header: header(EVENT_SYS_ENTER, tid, now),
            nr,
            args,
        });
    }
}

/// rt_sigreturn: tracked for its exit, whose return value is the restored rax (the interrupted
/// call's number when the kernel restarts it under SA_RESTART, -EINTR otherwise).
const RT_SIGRETURN: i64 = qbench_common::runtime::RT_SIGRETURN;

/// `qbench_common::programs::SYS_EXIT`.
#[tracepoint]
pub fn qbench_sys_exit(ctx: TracePointContext) -> u32 {
    if ctx.tgid() != target_tgid() {
        return 0;
    }
    let tid = ctx.pid();
    let id = field!(&ctx, SysExitId, i64);
    if let Some(nr) = tracked(id) {
        exit(&ctx, tid, nr);
    } else if id == -1
        // SAFETY: this thread's own entry, read without a concurrent writer.
        && QBENCH_THREADS.get_ptr(tid).is_some_and(|s| unsafe { (*s).nr } == RT_SIGRETURN)
    {
        // rt_sigreturn restores the interrupted context and sets orig_ax to -1, so its exit
        // reports id -1; the thread's state says which call this was.
        exit(&ctx, tid, RT_SIGRETURN);
    }
    0
}

#[inline(always)]
fn exit(ctx: &TracePointContext, tid: u32, nr: i64) {
    match QBENCH_THREADS.get_ptr_mut(tid) {
        // SAFETY: this thread's own entry (see `point.rs`).
        Some(state) => unsafe {
            if (*state).nr != NO_SYSCALL {
                (*state).nr = NO_SYSCALL;
            }
        },
        None => {
            // A thread blocked since before attach: record that it is out of the call, so that
            // userspace seeding from /proc (which only inserts missing entries) cannot put back
            // the call it has just left.
            let state = ThreadState {
                nr: NO_SYSCALL,
                ..ThreadState::default()
            };
            if QBENCH_THREADS
                .insert(tid, state, u64::from(BPF_NOEXIST))
                .is_err()
            {
                count_miss(MISS_THREADS_FULL);
            }
        }
    }
    if open_window_seq().is_some() {
        emit(SysExitEvent {
            header: header(EVENT_SYS_EXIT, tid, now_ns()),
            nr,
            ret: field!(ctx, SysExitRet, i64),
        });
    }
}
