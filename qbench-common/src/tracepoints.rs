//! The tracepoint record fields the eBPF programs read. Where each field lies differs between
//! kernels (`sched_process_fork`'s pids moved when its names became `__data_loc` strings, after
//! Linux 6.12), so nothing here fixes an offset: userspace reads every field's offset from the
//! running kernel's `format` file under tracefs and hands them to the programs in the read-only
//! global [`globals::TRACEPOINT_OFFSETS`](crate::globals::TRACEPOINT_OFFSETS) before loading.
//! The verifier sees a frozen read-only global as a constant, but it allows a context load only at
//! an offset written in the instruction, so each field has a [`Field::usual`] offset (where Linux
//! 6.18 puts it): where the kernel agrees, the program loads the field directly and the verifier
//! drops the other branch as dead code; elsewhere it copies the field with
//! `bpf_probe_read_kernel`, a helper call per field, still right.

/// Which field: the index of its offset in [`Offsets::at`] (in declaration order, from 0).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
    /// `signal_generate`: the signal number.
    SignalSig,
    /// `signal_generate`: the `si_code` (SI_USER, SI_QUEUE, SI_TKILL...).
    SignalCode,
    /// `signal_generate`: the receiving task.
    SignalPid,
    /// `signal_generate`: delivered, ignored, already pending...
    SignalResult,
    /// `sched_process_fork`: the creating task.
    ForkParentPid,
    /// `sched_process_fork`: the new task.
    ForkChildPid,
    /// `signal_deliver`: the signal number.
    DeliverSig,
    /// `signal_deliver`: the `si_code`.
    DeliverCode,
    /// `signal_deliver`: the handler the signal runs (`SIG_DFL` 0, `SIG_IGN` 1, or a function).
    DeliverHandler,
    /// `signal_deliver`: the handler's `sa_flags` (`SA_RESTART`...).
    DeliverFlags,
}

/// Number of fields the programs read. (The syscall programs are raw tracepoints: they read the
/// tracepoint's arguments and the syscall's registers, no record.)
pub const FIELDS: usize = 10;

/// One field of a tracepoint record, as the programs read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub id: FieldId,
    /// `category/event`, as under `/sys/kernel/tracing/events/`.
    pub event: &'static str,
    /// The field's name in the `format` file.
    pub name: &'static str,
    /// The field's size in bytes, which the programs' loads assume.
    pub size: usize,
    /// The size of each load the programs make from it (`args` is read 8 bytes at a time); the
    /// verifier wants every context load naturally aligned.
    pub load: usize,
    /// Its offset on Linux 6.18, read with a direct load where the running kernel agrees.
    pub usual: usize,
}

const fn field(
    id: FieldId,
    event: &'static str,
    name: &'static str,
    size: usize,
    usual: usize,
) -> Field {
    let load = if size > 8 { 8 } else { size };
    Field {
        id,
        event,
        name,
        size,
        load,
        usual,
    }
}

const SIGNAL_GENERATE: &str = "signal/signal_generate";
const PROCESS_FORK: &str = "sched/sched_process_fork";
const SIGNAL_DELIVER: &str = "signal/signal_deliver";

/// Every field the programs read, in [`FieldId`] order.
pub const ALL: [Field; FIELDS] = [
    field(FieldId::SignalSig, SIGNAL_GENERATE, "sig", 4, 8),
    field(FieldId::SignalCode, SIGNAL_GENERATE, "code", 4, 16),
    field(FieldId::SignalPid, SIGNAL_GENERATE, "pid", 4, 36),
    field(FieldId::SignalResult, SIGNAL_GENERATE, "result", 4, 44),
    // 12 and 20 since the names became `__data_loc` strings; 24 and 44 before (5.10 to 6.12
    // among Debian's kernels).
    field(FieldId::ForkParentPid, PROCESS_FORK, "parent_pid", 4, 12),
    field(FieldId::ForkChildPid, PROCESS_FORK, "child_pid", 4, 20),
    // The same on Linux 5.10, 6.1 and 6.12: the event has not changed since 3.x.
    field(FieldId::DeliverSig, SIGNAL_DELIVER, "sig", 4, 8),
    field(FieldId::DeliverCode, SIGNAL_DELIVER, "code", 4, 16),
    field(FieldId::DeliverHandler, SIGNAL_DELIVER, "sa_handler", 8, 24),
    field(FieldId::DeliverFlags, SIGNAL_DELIVER, "sa_flags", 8, 32),
];

const _: () = {
    let mut i = 0;
    while i < FIELDS {
        assert!(ALL[i].id as usize == i);
        i += 1;
    }
};

/// The offset of every field in its record on the running kernel, indexed by [`FieldId`]: the
/// value of the global [`globals::TRACEPOINT_OFFSETS`](crate::globals::TRACEPOINT_OFFSETS).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub at: [u32; FIELDS],
}
const _: () = assert!(core::mem::size_of::<Offsets>() == 4 * FIELDS);

impl Offsets {
    /// All zero: the programs' placeholder until the loader sets the real value.
    pub const UNSET: Self = Self { at: [0; FIELDS] };

    /// The offset of field `id`.
    #[inline(always)]
    pub const fn get(&self, id: FieldId) -> u32 {
        self.at[id as usize]
    }
}

/// The [`Field::usual`] offset of field `id`, for a const generic argument.
pub const fn usual(id: FieldId) -> usize {
    ALL[id as usize].usual
}
