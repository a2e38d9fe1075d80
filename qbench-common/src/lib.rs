//! Wire types and names shared by qbench's eBPF programs (`qbench-ebpf`) and its userspace
//! observer (`qbench-user`).
//!
//! Every kernel→user type is defined once, here: `#[repr(C)]`, `Copy`, fixed-width fields only,
//! explicit padding, and a size assertion, so both sides agree on the layout byte for byte.
//! Every ring-buffer event starts with an [`EventHeader`] whose `kind` is one of the stable
//! `EVENT_*` numbers; userspace checks the length for the kind before reading the rest.
//! Names of programs, maps and globals are constants so that a rename cannot split the sides.

#![no_std]

#[cfg(feature = "report")]
extern crate alloc;

#[cfg(feature = "report")]
pub mod report;
pub mod signals;
pub mod tracepoints;

/// Symbols of the probe contract (docs/ARCHITECTURE.md) that the programs attach to.
pub mod symbols {
    /// The update point itself: `void qbench_update(void)`. Probed when the target has no
    /// runtime anchors (every hit traps, so it costs the target while attached).
    pub const UPDATE: &str = "qbench_update";
    /// `void qbench_probe_request(uint64_t seq)`: an update was requested (in the signal handler).
    pub const PROBE_REQUEST: &str = "qbench_probe_request";
    /// `void qbench_probe_arrive(uint64_t seq)`: a thread parks at an update point.
    pub const PROBE_ARRIVE: &str = "qbench_probe_arrive";
    /// `void qbench_probe_depart(uint64_t seq)`: a parked thread is released.
    pub const PROBE_DEPART: &str = "qbench_probe_depart";
    /// `void qbench_probe_release(uint64_t seq, uint32_t quiesced, uint32_t threads)`: the runtime
    /// ends an update (1 quiesced, 0 DNQ) with this many participating threads, before releasing.
    pub const PROBE_RELEASE: &str = "qbench_probe_release";
}

/// Names of the eBPF programs, as the loader looks them up in the object.
pub mod programs {
    /// uprobe on [`crate::symbols::PROBE_ARRIVE`]: emits [`crate::EVENT_ARRIVE`].
    pub const ARRIVE: &str = "qbench_arrive";
    /// uprobe on [`crate::symbols::PROBE_DEPART`]: emits [`crate::EVENT_DEPART`].
    pub const DEPART: &str = "qbench_depart";
    /// uprobe on [`crate::symbols::PROBE_RELEASE`]: emits the update's arrivals as the runtime's
    /// state holds them ([`crate::EVENT_ARRIVALS`], when [`crate::globals::STATE_ADDRESS`] is
    /// set), then [`crate::EVENT_RELEASE`].
    pub const RELEASE: &str = "qbench_release";
    /// uprobe on [`crate::symbols::PROBE_REQUEST`]: opens the window, emits [`crate::EVENT_REQUEST`].
    pub const REQUEST: &str = "qbench_request";
    /// uprobe on an update point of a program without the runtime ([`crate::symbols::UPDATE`]
    /// or `--point`): while the window is open, emits one [`crate::EVENT_ARRIVE`] per thread.
    pub const POINT: &str = "qbench_point";
    /// raw tracepoint signal_generate: the update signal sent to the target opens the window,
    /// read from the tracepoint's arguments (no record is formatted for the machine's signals).
    pub const SIGNAL_RAW: &str = "qbench_signal_raw";
    /// tracepoint signal:signal_generate: [`SIGNAL_RAW`] from the formatted record, on a kernel
    /// where that cannot be used (no BTF to find `task_struct.tgid` in).
    pub const SIGNAL: &str = "qbench_signal";
    /// tracepoint signal:signal_deliver: the update signal delivered to a thread of a target
    /// without the runtime, during an update: emits [`crate::EVENT_DELIVER`].
    pub const DELIVER: &str = "qbench_deliver";
    /// tracepoint raw_syscalls:sys_enter: per-thread blocking-call state.
    pub const SYS_ENTER: &str = "qbench_sys_enter";
    /// tracepoint raw_syscalls:sys_exit.
    pub const SYS_EXIT: &str = "qbench_sys_exit";
    /// tracepoint sched:sched_process_fork: a new thread of the target.
    pub const FORK: &str = "qbench_fork";
    /// tracepoint sched:sched_process_exit: a thread of the target exits.
    pub const EXIT: &str = "qbench_exit";
}

/// Names of the maps in the object.
pub mod maps {
    /// `PerCpuArray<u64>` of [`crate::MISS_COUNTERS`] entries: events that could not be recorded,
    /// indexed by the `MISS_*` constants. The observer reports them; nothing is lost silently.
    pub const MISSES: &str = "QBENCH_MISSES";
    /// `RingBuf`: the events, each starting with an [`crate::EventHeader`].
    pub const EVENTS: &str = "QBENCH_EVENTS";
    /// `HashMap<u32 tid, ThreadState>`: what each thread of the target is blocked in, kept up to
    /// date while the syscall programs are attached (whether or not a window is open), so a
    /// request finds it without a round trip.
    pub const THREADS: &str = "QBENCH_THREADS";
    /// `Array<Window>` of one entry: the update window, opened in the kernel by the request and
    /// closed by userspace when it has reported the update.
    pub const WINDOW: &str = "QBENCH_WINDOW";
    /// `Array<u32>` of [`crate::MAX_SYSCALLS`] entries: non-zero for the syscall numbers whose
    /// entry and exit are tracked (the blocking calls), set by userspace before attaching.
    pub const BLOCKING: &str = "QBENCH_BLOCKING";
    /// `Array<u32>` of one entry: when an update must wake the reader so that it attaches
    /// syscall tracking (wanted on demand, detached): [`crate::WAKE_NEVER`] (the default, and
    /// while tracking is attached or not used), [`crate::WAKE_AT_REQUEST`] or
    /// [`crate::WAKE_WHEN_LATE`]. The wake-up of the latter clears it; userspace sets it again.
    pub const WAKE_ON_REQUEST: &str = "QBENCH_WAKE_ON_REQUEST";
}

/// Names of the globals the loader sets before loading.
pub mod globals {
    /// `u32`: the tgid (process id) of the target; every program filters on it first.
    pub const TARGET_TGID: &str = "TARGET_TGID";
    /// `u32`: the update request signal number (SIGUSR2 = 12 by default).
    pub const UPDATE_SIGNAL: &str = "UPDATE_SIGNAL";
    /// [`crate::tracepoints::Offsets`]: where each tracepoint field the programs read lies in its
    /// record on the running kernel.
    pub const TRACEPOINT_OFFSETS: &str = "TRACEPOINT_OFFSETS";
    /// `u32`: the byte offset of `pid` in the running kernel's `struct task_struct` (from its
    /// BTF), for [`crate::programs::SIGNAL_RAW`]; 0 when that program is not used.
    pub const TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
    /// `u32`: the byte offset of `tgid` in `struct task_struct`, as [`TASK_PID_OFFSET`].
    pub const TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
    /// `u64`: where the runtime's `qbench_state` is in the target's memory (0: not known), read
    /// by the release program for the update's arrivals.
    pub const STATE_ADDRESS: &str = "STATE_ADDRESS";
}

/// Capacity of per-thread maps: threads of the target that can be tracked at once.
pub const MAX_THREADS: u32 = 16_384;
/// Entries of [`maps::BLOCKING`]: syscall numbers below this can be tracked.
pub const MAX_SYSCALLS: u32 = 512;
/// Default size of [`maps::EVENTS`] in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// [`maps::MISSES`] index: an event for which the ring buffer had no room.
pub const MISS_RINGBUF_FULL: u32 = 0;
/// [`maps::MISSES`] index: a thread that did not fit in [`maps::THREADS`].
pub const MISS_THREADS_FULL: u32 = 1;
/// [`maps::MISSES`] index: the runtime's state could not be read at a release, so its arrivals
/// are not known.
pub const MISS_STATE_UNREADABLE: u32 = 2;
/// Entries of [`maps::MISSES`]: every counter is an event lost to the report.
pub const MISS_COUNTERS: u32 = 3;

/// [`maps::WAKE_ON_REQUEST`]: no update wakes the reader.
pub const WAKE_NEVER: u32 = 0;
/// [`maps::WAKE_ON_REQUEST`]: the request that opens the window wakes the reader (a target
/// without the runtime: nothing else would, until the deadline).
pub const WAKE_AT_REQUEST: u32 = 1;
/// [`maps::WAKE_ON_REQUEST`]: the runtime's first interruption of a thread of its own at least
/// [`LATE_NS`] after the request wakes the reader, once ([`EVENT_LATE`]), so that no wake-up
/// takes a core from the threads racing to park, and an update over sooner needs none.
pub const WAKE_WHEN_LATE: u32 = 2;
/// How long after its request an update is late enough to attach syscall tracking for: the
/// threads' race to park is over by then, and the runtime interrupts a straggler again within
/// this long.
pub const LATE_NS: u64 = 5_000_000;

/// `ThreadState::nr` of a thread that is not inside a tracked syscall.
pub const NO_SYSCALL: i64 = -1;

/// Value of [`maps::THREADS`]: one thread's blocking state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// The tracked syscall the thread is in, or [`NO_SYSCALL`].
    pub nr: i64,
    /// When it entered that syscall (CLOCK_MONOTONIC ns).
    pub since_ns: u64,
    /// The syscall's arguments.
    pub args: [u64; 6],
    /// The window sequence number of the thread's latest arrival at a probed update point
    /// (only the first arrival of each window is reported).
    pub arrived_seq: u64,
}
const _: () = assert!(core::mem::size_of::<ThreadState>() == 72);

impl ThreadState {
    /// A thread in no tracked call, whose latest arrival was in window `arrived_seq` (0: none).
    pub const fn in_no_call(arrived_seq: u64) -> Self {
        Self {
            nr: NO_SYSCALL,
            since_ns: 0,
            args: [0; 6],
            arrived_seq,
        }
    }
}

/// Value of the single entry of [`maps::WINDOW`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Non-zero while an update is being observed.
    pub open: u32,
    pub _pad: u32,
    /// Counts windows opened since load (1 for the first).
    pub seq: u64,
    /// When the window opened: the request (CLOCK_MONOTONIC ns).
    pub t0_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Window>() == 24);

/// A `#[repr(u32)]` enum of stable wire numbers, never reused, with a `TryFrom<u32>` under which
/// an unknown number is an error (the number itself), never taken for another value.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $number:literal,)+ }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$variant_meta])* $variant = $number,)+ }

        impl TryFrom<u32> for $name {
            type Error = u32;

            fn try_from(number: u32) -> Result<Self, u32> {
                match number {
                    $($number => Ok(Self::$variant),)+
                    other => Err(other),
                }
            }
        }
    };
}

wire_enum! {
    /// Event kinds, on the wire as `EventHeader::kind`.
    pub enum EventKind {
        /// [`RequestEvent`]: an update was requested; the window opens.
        Request = 1,
        /// [`ArriveEvent`]: a thread reached an update point.
        Arrive = 2,
        /// [`DepartEvent`]: the runtime released a parked thread.
        Depart = 3,
        /// [`SysEnterEvent`]: a thread entered a tracked call while the window was open.
        SysEnter = 4,
        /// [`SysExitEvent`]: a thread left a tracked call while the window was open.
        SysExit = 5,
        /// [`ThreadEvent`]: a thread was created (`other`: its parent).
        ThreadNew = 6,
        /// [`ThreadEvent`]: a thread exited.
        ThreadExit = 7,
        /// [`ReleaseEvent`]: the runtime ends an update, before releasing its threads.
        Release = 8,
        /// [`DeliverEvent`]: the update signal was delivered to a thread while the window was
        /// open.
        Deliver = 9,
        /// [`ArrivalsEvent`]: a run of the runtime's participants table, read at its release.
        Arrivals = 10,
        /// [`LateEvent`]: the update is still pending [`LATE_NS`] after its request.
        Late = 11,
    }
}

pub const EVENT_REQUEST: u32 = EventKind::Request as u32;
pub const EVENT_ARRIVE: u32 = EventKind::Arrive as u32;
pub const EVENT_DEPART: u32 = EventKind::Depart as u32;
pub const EVENT_SYS_ENTER: u32 = EventKind::SysEnter as u32;
pub const EVENT_SYS_EXIT: u32 = EventKind::SysExit as u32;
pub const EVENT_THREAD_NEW: u32 = EventKind::ThreadNew as u32;
pub const EVENT_THREAD_EXIT: u32 = EventKind::ThreadExit as u32;
pub const EVENT_RELEASE: u32 = EventKind::Release as u32;
pub const EVENT_DELIVER: u32 = EventKind::Deliver as u32;
pub const EVENT_ARRIVALS: u32 = EventKind::Arrivals as u32;
pub const EVENT_LATE: u32 = EventKind::Late as u32;

/// Facts about the runtime and the kernel that the runtime, the eBPF programs and the observer
/// all rely on: defined here once.
pub mod runtime {
    /// The name of the runtime's helper thread, which is no participating thread.
    pub const HELPER_COMM: &str = "qbench-helper";
    /// `si_code` of `rt_sigqueueinfo`/`rt_tgsigqueueinfo` (SI_QUEUE): how the runtime's helper
    /// interrupts its own blocked threads, which is no update request.
    pub const SELF_INTERRUPT_CODE: i32 = -1;
    /// x86-64 `rt_sigreturn`: its exit returns the interrupted call's number when the kernel
    /// restarts the call (SA_RESTART), and -EINTR when the program sees the interruption.
    pub const RT_SIGRETURN: i64 = 15;
    /// What the exit tracepoint sees of a call a signal interrupted (ERESTARTSYS,
    /// ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK); the program never sees these.
    pub const RESTART_RETURNS: [i64; 4] = [-512, -513, -514, -516];
}

/// The layout of the runtime's exported `qbench_state` (docs/ARCHITECTURE.md, "The probe
/// contract"): what an observer attaching mid-update reads from the target's memory. All
/// fields are little-endian, naturally aligned; offsets are in bytes.
pub mod state {
    /// The exported data symbol.
    pub const SYMBOL: &str = "qbench_state";
    /// The first word: "QBST" read as a little-endian u32.
    pub const MAGIC: u32 = u32::from_le_bytes(*b"QBST");
    /// The second word: bumped when the layout below changes.
    pub const VERSION: u32 = 1;
    /// Entries in the participants table (the runtime's signal-handler slots).
    pub const CAPACITY: usize = 1024;
    /// `u32 magic`, `u32 version`, `u64 sequence` (odd while the runtime writes), `u64 seq`
    /// (the update's sequence), `u64 request_ns`, `u32 pending`, `u32 threads` (participants),
    /// `u32 table_len` (entries in use, some with tid 0), `u32 capacity`.
    pub const HEADER_BYTES: usize = 48;
    /// One participant: `i32 tid` (0: a free entry), `u32 parked`, `u64 arrival_ns`.
    pub const ENTRY_BYTES: usize = 16;
    /// Offsets in the header.
    pub const OFF_MAGIC: usize = 0;
    pub const OFF_VERSION: usize = 4;
    pub const OFF_SEQUENCE: usize = 8;
    pub const OFF_SEQ: usize = 16;
    pub const OFF_REQUEST_NS: usize = 24;
    pub const OFF_PENDING: usize = 32;
    pub const OFF_THREADS: usize = 36;
    pub const OFF_TABLE_LEN: usize = 40;
    pub const OFF_CAPACITY: usize = 44;
}

/// The start of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the `EVENT_*` numbers.
    pub kind: u32,
    /// The thread the event is about.
    pub tid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

wire_enum! {
    /// What made a request or an arrival (`RequestEvent::source`, `ArriveEvent::source`).
    pub enum Source {
        /// The update signal was sent to the target (requests only).
        Signal = 1,
        /// The runtime's anchor (requests and arrivals).
        Runtime = 2,
        /// A probed update point, `qbench_update` or `--point` (arrivals only).
        Point = 3,
    }
}

pub const SOURCE_SIGNAL: u32 = Source::Signal as u32;
pub const SOURCE_RUNTIME: u32 = Source::Runtime as u32;
pub const SOURCE_POINT: u32 = Source::Point as u32;

/// [`EVENT_REQUEST`]: a window opened. `header.tid` is the signalled task (signal) or the thread
/// whose handler ran the request anchor (runtime).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestEvent {
    pub header: EventHeader,
    /// The window's sequence number ([`Window::seq`]).
    pub window_seq: u64,
    /// The runtime's request sequence number (anchor), or 0 (signal).
    pub runtime_seq: u64,
    /// `SOURCE_SIGNAL` or `SOURCE_RUNTIME`.
    pub source: u32,
    /// The signal number (0 for the anchor).
    pub signal: u32,
    /// The signal's si_code (0 for the anchor).
    pub code: i32,
    /// The sending process (tgid) of a signal; the target itself for the anchor.
    pub sender_tgid: u32,
}
const _: () = assert!(core::mem::size_of::<RequestEvent>() == 48);

/// [`EVENT_ARRIVE`]: a thread reached an update point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArriveEvent {
    pub header: EventHeader,
    /// The runtime's sequence number (anchor) or the window's (probed update point).
    pub seq: u64,
    /// `SOURCE_RUNTIME` or `SOURCE_POINT`.
    pub source: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ArriveEvent>() == 32);

/// [`EVENT_DEPART`]: a parked thread was released by the runtime.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepartEvent {
    pub header: EventHeader,
    /// The runtime's sequence number.
    pub seq: u64,
}
const _: () = assert!(core::mem::size_of::<DepartEvent>() == 24);

/// [`EVENT_SYS_ENTER`]: a thread entered a tracked syscall while the window was open.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysEnterEvent {
    pub header: EventHeader,
    pub nr: i64,
    pub args: [u64; 6],
}
const _: () = assert!(core::mem::size_of::<SysEnterEvent>() == 72);

/// [`EVENT_SYS_EXIT`]: a thread left a tracked syscall while the window was open.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysExitEvent {
    pub header: EventHeader,
    pub nr: i64,
    /// The return value: negative errno on failure (-4 EINTR, -512 ERESTARTSYS never leaks).
    pub ret: i64,
}
const _: () = assert!(core::mem::size_of::<SysExitEvent>() == 32);

/// [`EVENT_THREAD_NEW`] (`header.tid` the new thread, `other` the creating thread) and
/// [`EVENT_THREAD_EXIT`] (`header.tid` the exiting thread, `other` 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadEvent {
    pub header: EventHeader,
    pub other: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ThreadEvent>() == 24);

/// [`EVENT_RELEASE`]: the runtime ends an update, just before releasing its parked threads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleaseEvent {
    pub header: EventHeader,
    /// The runtime's sequence number.
    pub seq: u64,
    /// 1 for full quiescence, 0 for a DNQ.
    pub quiesced: u32,
    /// The runtime's participating threads.
    pub threads: u32,
}
const _: () = assert!(core::mem::size_of::<ReleaseEvent>() == 32);

/// [`EVENT_LATE`]: the runtime interrupted a thread of its own again (`header.tid`: the thread
/// that sent the signal) at least [`LATE_NS`] after the request of the update still pending in
/// window `window_seq`; sent with a wake-up, so that the reader attaches syscall tracking.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateEvent {
    pub header: EventHeader,
    pub window_seq: u64,
}
const _: () = assert!(core::mem::size_of::<LateEvent>() == 24);

/// Participants table entries in one [`ArrivalsEvent`].
pub const ARRIVALS_PER_EVENT: usize = 64;

/// [`EVENT_ARRIVALS`]: entries `first..first + count` of the runtime's participants table
/// (`state::ENTRY_BYTES` each, as the runtime wrote them), read by the release program just
/// before [`ReleaseEvent`], while the update's threads are still parked: an entry with a tid,
/// `parked` set and an arrival time is a thread that arrived, at that time. One probe at the
/// release instead of one per arrival, so the threads racing to park are not slowed by the
/// observer. `header.tid` is the runtime's helper.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivalsEvent {
    pub header: EventHeader,
    /// The runtime's sequence number of the update released.
    pub seq: u64,
    /// The index of the first entry.
    pub first: u32,
    /// Entries of `entries` that belong to the table (the rest are not read).
    pub count: u32,
    pub entries: [u8; ARRIVALS_PER_EVENT * state::ENTRY_BYTES],
}
const _: () = assert!(core::mem::size_of::<ArrivalsEvent>() == 32 + 1024);

/// [`EVENT_DELIVER`]: the update signal was delivered to thread `header.tid` (in its own
/// context, on its way back to user space) while the window was open. A call the thread was
/// blocked in ended for it: with EINTR, or restarted by the kernel, as the handler says.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliverEvent {
    pub header: EventHeader,
    pub signal: u32,
    /// The signal's si_code.
    pub code: i32,
    /// The handler that runs: `SIG_DFL` (0), `SIG_IGN` (1), or a function's address.
    pub handler: u64,
    /// The handler's `sa_flags` (`SA_RESTART` 0x10000000).
    pub flags: u64,
}
const _: () = assert!(core::mem::size_of::<DeliverEvent>() == 40);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is `repr(C)`, `Copy`, made of integers only with explicit padding
    // (sizes asserted above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for ThreadState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Window {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::tracepoints::Offsets {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_round_trips_and_no_other_number_decodes() {
        for kind in 0..=20u32 {
            match EventKind::try_from(kind) {
                Ok(decoded) => assert_eq!(decoded as u32, kind),
                Err(unknown) => assert!(!(1..=9).contains(&unknown), "{unknown}"),
            }
        }
        assert_eq!(EventKind::try_from(EVENT_RELEASE), Ok(EventKind::Release));
    }

    #[test]
    fn every_source_round_trips_and_no_other_number_decodes() {
        for source in 0..=20u32 {
            match Source::try_from(source) {
                Ok(decoded) => assert_eq!(decoded as u32, source),
                Err(unknown) => assert!(!(1..=3).contains(&unknown), "{unknown}"),
            }
        }
        assert_eq!(Source::try_from(SOURCE_POINT), Ok(Source::Point));
    }
}
