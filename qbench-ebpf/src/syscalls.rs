//! Blocking system calls of the target's threads: entry and exit keep `THREADS` up to date while
//! these programs are attached (a request then finds every thread's state without a round trip),
//! and become events only while the window is open and only for threads that have not arrived (a
//! parked thread's own wait is the runtime's). Which calls are tracked is `BLOCKING`, filled by
//! the loader. The diagnosis mode attaches them only while an update is pending (userspace
//! clears `THREADS` and seeds it from /proc each time), so that the machine's other syscalls do
//! not pay for them between updates.
//!
//! Kernel contract: the raw tracepoints `sys_enter(struct pt_regs *regs, long id)` and
//! `sys_exit(struct pt_regs *regs, long ret)`. Raw rather than `raw_syscalls:*` records: these
//! fire for every syscall of every process on the machine (docs/ARCHITECTURE.md, measured
//! costs), and a raw tracepoint runs the program on the tracepoint's own arguments, where a
//! record tracepoint first formats a perf record of every call, the target's or not. The tgid
//! test comes first and the rest stays short.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_probe_read_kernel, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use qbench_common::{
    EVENT_SYS_ENTER, EVENT_SYS_EXIT, MAX_SYSCALLS, NO_SYSCALL, SysEnterEvent, SysExitEvent,
    ThreadState,
};

use crate::maps::{
    QBENCH_BLOCKING, QBENCH_THREADS, emit_quietly, header, insert_thread, now_ns,
    open_window_and_start, open_window_seq, target_tgid,
};

/// x86-64's `struct pt_regs` (arch/x86/include/asm/ptrace.h) from `r10` to `orig_ax`: the
/// syscall's arguments are di, si, dx, r10, r8, r9, and `orig_ax` its number. The layout has
/// been the same since the x86-64 port.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SyscallRegs {
    r10: u64,
    r9: u64,
    r8: u64,
    _ax: u64,
    _cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
}

/// `offsetof(struct pt_regs, r10)`.
const REGS_R10: usize = 56;

/// The registers of the syscall `regs` (the raw tracepoints' first argument) belongs to; zeros
/// if they cannot be read, which the verifier requires to be handled.
#[inline(always)]
fn syscall_regs(regs: *const u8) -> SyscallRegs {
    // SAFETY: `regs` is the tracepoint's pt_regs pointer, a kernel address; the helper checks
    // the copy and fails cleanly rather than faulting.
    unsafe { bpf_probe_read_kernel(regs.wrapping_add(REGS_R10).cast::<SyscallRegs>()) }
        .unwrap_or_default()
}

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

/// rt_sigreturn: tracked for its exit, whose return value is the restored rax (the interrupted
/// call's number when the kernel restarts it under SA_RESTART, -EINTR otherwise).
const RT_SIGRETURN: i64 = qbench_common::runtime::RT_SIGRETURN;

/// `qbench_common::programs::SYS_ENTER`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn qbench_sys_enter(ctx: RawTracePointContext) -> i32 {
    if ctx.tgid() == target_tgid()
        && let Some(nr) = tracked(ctx.arg::<i64>(1))
    {
        let regs = syscall_regs(ctx.arg::<*const u8>(0));
        enter(
            ctx.pid(),
            nr,
            [regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9],
        );
    }
    0
}

#[inline(always)]
fn enter(tid: u32, nr: i64, args: [u64; 6]) {
    let now = now_ns();
    let arrived_seq = match QBENCH_THREADS.get_ptr_mut(tid) {
        // SAFETY: this thread's own entry (see `maps::mark_arrived`); `arrived_seq` is kept.
        Some(state) => unsafe {
            (*state).nr = nr;
            (*state).since_ns = now;
            (*state).args = args;
            (*state).arrived_seq
        },
        None => {
            let state = ThreadState {
                nr,
                since_ns: now,
                args,
                arrived_seq: 0,
            };
            insert_thread(tid, state);
            0
        }
    };
    // rt_sigreturn's entry says nothing: only its exit tells a restart from an EINTR.
    if nr != RT_SIGRETURN && waited_for(arrived_seq) {
        emit_quietly(SysEnterEvent {
            header: header(EVENT_SYS_ENTER, tid, now),
            nr,
            args,
        });
    }
}

/// Whether a window is open and the thread, whose latest arrival was in window `arrived_seq`,
/// has not arrived in it: its calls are why it is late.
#[inline(always)]
fn waited_for(arrived_seq: u64) -> bool {
    open_window_seq().is_some_and(|seq| seq != arrived_seq)
}

/// `qbench_common::programs::SYS_EXIT`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn qbench_sys_exit(ctx: RawTracePointContext) -> i32 {
    if ctx.tgid() != target_tgid() {
        return 0;
    }
    let tid = ctx.pid();
    let id = syscall_regs(ctx.arg::<*const u8>(0)).orig_ax as i64;
    let ret = ctx.arg::<i64>(1);
    if let Some(nr) = tracked(id) {
        exit(tid, nr, ret);
    } else if id == -1
        // SAFETY: this thread's own entry, read without a concurrent writer.
        && QBENCH_THREADS.get_ptr(tid).is_some_and(|s| unsafe { (*s).nr } == RT_SIGRETURN)
    {
        // rt_sigreturn restores the interrupted context and sets orig_ax to -1, so its exit
        // reports id -1; the thread's state says which call this was.
        exit(tid, RT_SIGRETURN, ret);
    }
    0
}

#[inline(always)]
fn exit(tid: u32, nr: i64, ret: i64) {
    // What the thread was in, if it is this call: its entry, for a call that began before the
    // request (the window saw no entry of it). Plain initialized values rather than an
    // `Option` of them: Linux before 5.16 refuses to read a stack slot left unwritten, which an
    // `Option`'s empty payload is.
    let mut began_ns = u64::MAX;
    let mut args = [0u64; 6];
    let arrived_seq = match QBENCH_THREADS.get_ptr_mut(tid) {
        // SAFETY: this thread's own entry (see `maps::mark_arrived`).
        Some(state) => unsafe {
            if (*state).nr == nr {
                began_ns = (*state).since_ns;
                args = (*state).args;
            }
            if (*state).nr != NO_SYSCALL {
                (*state).nr = NO_SYSCALL;
            }
            (*state).arrived_seq
        },
        None => {
            // A thread blocked since before attach: record that it is out of the call, so that
            // userspace seeding from /proc (which only inserts missing entries) cannot put back
            // the call it has just left.
            insert_thread(tid, ThreadState::in_no_call(0));
            0
        }
    };
    let Some((seq, request_ns)) = open_window_and_start() else {
        return;
    };
    if seq == arrived_seq {
        return;
    }
    if began_ns < request_ns && nr != RT_SIGRETURN {
        // The call the request found the thread in: its entry, stamped when it began (0 when
        // it began before attach), so that userspace knows what the thread was blocked in even
        // when it reads the thread table only after the call ended.
        emit_quietly(SysEnterEvent {
            header: header(EVENT_SYS_ENTER, tid, began_ns),
            nr,
            args,
        });
    }
    emit_quietly(SysExitEvent {
        header: header(EVENT_SYS_EXIT, tid, now_ns()),
        nr,
        ret,
    });
}
