//! The tracepoint record fields the eBPF programs read, and where they are. A tracepoint program
//! loads its fields at constant offsets (cheaper than a helper call per field, and these run for
//! every syscall on the machine), so the offsets are fixed at build time from the events'
//! `format` files under tracefs. They have been stable for years on x86-64, but nothing promises
//! it: userspace compares every field here with the running kernel's `format` file before it
//! attaches, and refuses to attach rather than read the wrong bytes.

/// One field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// `category/event`, as under `/sys/kernel/tracing/events/`.
    pub event: &'static str,
    /// The field's name in the `format` file.
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

const fn field(event: &'static str, name: &'static str, offset: usize, size: usize) -> Field {
    Field {
        event,
        name,
        offset,
        size,
    }
}

const SIGNAL_GENERATE: &str = "signal/signal_generate";
const SYS_ENTER: &str = "raw_syscalls/sys_enter";
const SYS_EXIT: &str = "raw_syscalls/sys_exit";
const PROCESS_FORK: &str = "sched/sched_process_fork";

/// `signal_generate`: the signal number.
pub const SIGNAL_SIG: Field = field(SIGNAL_GENERATE, "sig", 8, 4);
/// `signal_generate`: the `si_code` (SI_USER, SI_QUEUE, SI_TKILL...).
pub const SIGNAL_CODE: Field = field(SIGNAL_GENERATE, "code", 16, 4);
/// `signal_generate`: the receiving task.
pub const SIGNAL_PID: Field = field(SIGNAL_GENERATE, "pid", 36, 4);
/// `signal_generate`: delivered, ignored, already pending...
pub const SIGNAL_RESULT: Field = field(SIGNAL_GENERATE, "result", 44, 4);
/// `sys_enter`: the syscall number.
pub const SYS_ENTER_ID: Field = field(SYS_ENTER, "id", 8, 8);
/// `sys_enter`: the six arguments, 8 bytes each.
pub const SYS_ENTER_ARGS: Field = field(SYS_ENTER, "args", 16, 48);
/// `sys_exit`: the syscall number (-1 after `rt_sigreturn` into a restart).
pub const SYS_EXIT_ID: Field = field(SYS_EXIT, "id", 8, 8);
/// `sys_exit`: the return value.
pub const SYS_EXIT_RET: Field = field(SYS_EXIT, "ret", 16, 8);
/// `sched_process_fork`: the creating task.
pub const FORK_PARENT_PID: Field = field(PROCESS_FORK, "parent_pid", 12, 4);
/// `sched_process_fork`: the new task.
pub const FORK_CHILD_PID: Field = field(PROCESS_FORK, "child_pid", 20, 4);

/// Every field the programs read.
pub const ALL: [Field; 10] = [
    SIGNAL_SIG,
    SIGNAL_CODE,
    SIGNAL_PID,
    SIGNAL_RESULT,
    SYS_ENTER_ID,
    SYS_ENTER_ARGS,
    SYS_EXIT_ID,
    SYS_EXIT_RET,
    FORK_PARENT_PID,
    FORK_CHILD_PID,
];
