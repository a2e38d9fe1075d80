//! Threads of the target that appear or exit, so that a window handles threads created or gone
//! during an update. Both are rare, so both always emit.

use aya_ebpf::{EbpfContext as _, macros::tracepoint, programs::TracePointContext};
use qbench_common::{EVENT_THREAD_EXIT, EVENT_THREAD_NEW, ThreadEvent};

use crate::{
    maps::{QBENCH_THREADS, emit, header, now_ns, target_tgid},
    tp::field,
};

/// `qbench_common::programs::FORK`: `sched:sched_process_fork` (Linux 6.18; 5.10 to 6.12 have
/// `char parent_comm[16]` at 8 and the pids at 24 and 44, and the loader hands the programs
/// whichever the running kernel has):
/// ```text
/// field:__data_loc char[] parent_comm; offset:8;  size:4;
/// field:pid_t parent_pid;              offset:12; size:4;
/// field:__data_loc char[] child_comm;  offset:16; size:4;
/// field:pid_t child_pid;               offset:20; size:4;
/// ```
/// Runs in the parent's context. It fires for `fork(2)` of a child process as well as for a new
/// thread; a child process's exit is never seen here (it is not the target's tgid), so userspace
/// tells them apart by `/proc/TGID/task/TID`.
#[tracepoint]
pub fn qbench_fork(ctx: TracePointContext) -> u32 {
    if ctx.tgid() == target_tgid() {
        let child: i32 = field!(&ctx, ForkChildPid, i32);
        let parent: i32 = field!(&ctx, ForkParentPid, i32);
        emit(ThreadEvent {
            header: header(EVENT_THREAD_NEW, child as u32, now_ns()),
            other: parent as u32,
            _pad: 0,
        });
    }
    0
}

/// `sched:sched_process_exit`, in the exiting thread's context:
/// ```text
/// field:char comm[16]; offset:8;  size:16;   field:pid_t pid;       offset:24; size:4;
/// field:int prio;      offset:28; size:4;    field:bool group_dead; offset:32; size:1;
/// ```
/// Only the tgid and tid of the current task are needed, so no field is read.
#[tracepoint]
pub fn qbench_exit(ctx: TracePointContext) -> u32 {
    if ctx.tgid() == target_tgid() {
        let tid = ctx.pid();
        // Missing entries (a thread that never blocked in a tracked call) are fine.
        let _ = QBENCH_THREADS.remove(tid);
        emit(ThreadEvent {
            header: header(EVENT_THREAD_EXIT, tid, now_ns()),
            other: 0,
            _pad: 0,
        });
    }
    0
}
