//! Every map and global of the object, in one place, and the few helpers every program shares
//! (event output, miss counting, the update window). Symbol names are the names in
//! `qbench_common::{maps, globals}`; the loader looks them up with `must_exist`, so a mismatch
//! fails at load time rather than silently.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use qbench_common::{
    EVENT_LATE, EVENTS_BYTES, EventHeader, LATE_NS, LateEvent, MAX_SYSCALLS, MAX_THREADS,
    MISS_COUNTERS, MISS_RINGBUF_FULL, MISS_THREADS_FULL, ThreadState, WAKE_AT_REQUEST, WAKE_NEVER,
    WAKE_WHEN_LATE, Window,
};

/// `qbench_common::globals::TARGET_TGID`, set by the loader before the object is loaded.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// `qbench_common::globals::UPDATE_SIGNAL`, set by the loader before the object is loaded.
#[unsafe(no_mangle)]
static UPDATE_SIGNAL: u32 = 0;

/// `qbench_common::globals::TASK_PID_OFFSET`, set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
static TASK_PID_OFFSET: u32 = 0;

/// `qbench_common::globals::TASK_TGID_OFFSET`, set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
static TASK_TGID_OFFSET: u32 = 0;

/// The target's tgid. A volatile read, or the compiler would fold the initial 0 into the code
/// and the loader's value would never be seen.
#[inline(always)]
pub fn target_tgid() -> u32 {
    // SAFETY: a read of a plain `u32` static through a valid reference.
    unsafe { core::ptr::read_volatile(&raw const TARGET_TGID) }
}

/// The update request signal (volatile for the same reason as [`target_tgid`]).
#[inline(always)]
pub fn update_signal() -> u32 {
    // SAFETY: a read of a plain `u32` static through a valid reference.
    unsafe { core::ptr::read_volatile(&raw const UPDATE_SIGNAL) }
}

/// Where `pid` and `tgid` lie in this kernel's `struct task_struct` (volatile for the same reason
/// as [`target_tgid`]).
#[inline(always)]
pub fn task_offsets() -> (usize, usize) {
    // SAFETY: reads of plain `u32` statics through valid references.
    unsafe {
        (
            core::ptr::read_volatile(&raw const TASK_PID_OFFSET) as usize,
            core::ptr::read_volatile(&raw const TASK_TGID_OFFSET) as usize,
        )
    }
}

/// `qbench_common::maps::MISSES`.
#[map]
pub static QBENCH_MISSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(MISS_COUNTERS, 0);

/// `qbench_common::maps::EVENTS`; the loader may resize it.
#[map]
pub static QBENCH_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// `qbench_common::maps::THREADS`.
#[map]
pub static QBENCH_THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(MAX_THREADS, 0);

/// `qbench_common::maps::WINDOW`.
#[map]
pub static QBENCH_WINDOW: Array<Window> = Array::with_max_entries(1, 0);

/// `qbench_common::maps::BLOCKING`, filled by the loader.
#[map]
pub static QBENCH_BLOCKING: Array<u32> = Array::with_max_entries(MAX_SYSCALLS, 0);

/// `qbench_common::maps::WAKE_ON_REQUEST`: when an update must wake the reader
/// (`qbench_common::WAKE_*`).
#[map]
pub static QBENCH_WAKE_ON_REQUEST: Array<u32> = Array::with_max_entries(1, 0);

/// Counts an event that could not be recorded. Per-CPU, so a plain increment is race-free.
#[inline(always)]
pub fn count_miss(index: u32) {
    if let Some(counter) = QBENCH_MISSES.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of the array, which only this program run
        // touches until it returns (eBPF programs are not preempted on their CPU).
        unsafe { *counter = (*counter).wrapping_add(1) };
    }
}

/// CLOCK_MONOTONIC nanoseconds, the clock of every timestamp on the wire.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The header of an event of `kind` about thread `tid`.
#[inline(always)]
pub fn header(kind: u32, tid: u32, ts_ns: u64) -> EventHeader {
    EventHeader { kind, tid, ts_ns }
}

/// Sends `event` to userspace and wakes the reader at once, or counts it as lost when the ring
/// buffer is full: for the runtime's release, which ends an update once every thread is parked,
/// and the rare thread creations and exits (between updates nothing else drains the buffer
/// often).
#[inline(always)]
pub fn emit<T: 'static>(event: T) {
    submit(event, u64::from(BPF_RB_FORCE_WAKEUP));
}

/// Sends `event` to userspace without waking the reader, which drains the ring buffer on its
/// own ticks: the request and the many events of an update (calls, arrivals) then cost no
/// wake-up each, and the observer does not compete for a core with the threads it measures
/// while they race to park. Their timestamps are taken here, so a later read changes no figure.
#[inline(always)]
pub fn emit_quietly<T: 'static>(event: T) {
    submit(event, u64::from(BPF_RB_NO_WAKEUP));
}

/// Sends a request that opened the window: quietly, as every event of an update, unless the
/// reader must attach the syscall programs at once (`WAKE_AT_REQUEST`): then with a wake-up,
/// since the threads' calls are not seen until it has.
#[inline(always)]
pub fn emit_request<T: 'static>(event: T) {
    if wake_mode() == WAKE_AT_REQUEST {
        emit(event);
    } else {
        emit_quietly(event);
    }
}

/// The runtime interrupted a thread of its own again (the calling thread sent the signal): when
/// the reader is to be woken for a late update (`WAKE_WHEN_LATE`) and the open one's request is
/// `LATE_NS` old, wakes it, once. The runtime's own interruptions are the timer: an update over
/// sooner wakes nobody, and no wake-up falls in the threads' race to park.
#[inline(always)]
pub fn on_self_interrupt(tid: u32) {
    if wake_mode() != WAKE_WHEN_LATE {
        return;
    }
    let Some((window_seq, t0)) = open_window_and_start() else {
        return;
    };
    let now = now_ns();
    if now.wrapping_sub(t0) < LATE_NS {
        return;
    }
    if let Some(mode) = QBENCH_WAKE_ON_REQUEST.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer; userspace sets it again once tracking is detached.
        unsafe { core::ptr::write_volatile(mode, WAKE_NEVER) };
    }
    emit(LateEvent {
        header: header(EVENT_LATE, tid, now),
        window_seq,
    });
}

/// When userspace asked to be woken (`QBENCH_WAKE_ON_REQUEST`).
#[inline(always)]
fn wake_mode() -> u32 {
    match QBENCH_WAKE_ON_REQUEST.get_ptr(0) {
        // SAFETY: a valid map value pointer; volatile, because userspace writes it.
        Some(mode) => unsafe { core::ptr::read_volatile(mode) },
        None => WAKE_NEVER,
    }
}

#[inline(always)]
fn submit<T: 'static>(event: T, flags: u64) {
    match QBENCH_EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(flags);
        }
        None => count_miss(MISS_RINGBUF_FULL),
    }
}

/// A new `THREADS` entry for `tid`, or the loss counted when the map is full.
#[inline(always)]
pub fn insert_thread(tid: u32, state: ThreadState) {
    if QBENCH_THREADS
        .insert(tid, state, u64::from(BPF_NOEXIST))
        .is_err()
    {
        count_miss(MISS_THREADS_FULL);
    }
}

/// Records that thread `tid` arrived at an update point in window `seq`, so that its later calls
/// (the runtime's own park) are not reported as why it is late; says whether this is its first
/// arrival in that window.
#[inline(always)]
pub fn mark_arrived(tid: u32, seq: u64) -> bool {
    match QBENCH_THREADS.get_ptr_mut(tid) {
        // SAFETY: the entry is this thread's, written only from its own context (uprobes and
        // syscall tracepoints of one thread never run at once), and by userspace seeding, which
        // only inserts missing entries.
        Some(state) => unsafe {
            if (*state).arrived_seq == seq {
                return false;
            }
            (*state).arrived_seq = seq;
            true
        },
        None => {
            // Without an entry a second arrival cannot be told from the first; the arrival
            // counts anyway, and so does the loss of state.
            insert_thread(tid, ThreadState::in_no_call(seq));
            true
        }
    }
}

/// The window entry. The array has one preallocated slot, so the lookup only fails if the map
/// is misdeclared; callers treat that as "closed".
#[inline(always)]
pub fn window() -> Option<*mut Window> {
    QBENCH_WINDOW.get_ptr_mut(0)
}

/// The sequence number of the open window, or `None` while it is closed.
#[inline(always)]
pub fn open_window_seq() -> Option<u64> {
    open_window_and_start().map(|(seq, _)| seq)
}

/// The open window's sequence number and when it opened (the request), or `None` while it is
/// closed.
#[inline(always)]
pub fn open_window_and_start() -> Option<(u64, u64)> {
    let window = window()?;
    // SAFETY: a valid map value pointer; volatile, because userspace and other CPUs write it.
    unsafe {
        if core::ptr::read_volatile(&raw const (*window).open) == 0 {
            return None;
        }
        Some((
            core::ptr::read_volatile(&raw const (*window).seq),
            core::ptr::read_volatile(&raw const (*window).t0_ns),
        ))
    }
}

/// Opens the window at `now` if it is closed and returns its new sequence number; `None` when it
/// is already open (the request belongs to the update being observed).
///
/// `open` is written last, so a reader that sees it open sees the new `seq` (x86-64 keeps stores
/// in order, and volatile keeps the compiler from reordering them). There is no compare-and-swap:
/// the BPF target's `core` has none, and `BPF_CMPXCHG` needs a newer BPF CPU than aya-build's
/// `generic`. Two requests on two CPUs in the same few nanoseconds could therefore both open the
/// window (two request events, `seq` advanced twice); userspace treats a request that arrives
/// while it is observing an update as part of that update.
#[inline(always)]
pub fn open_window(now: u64) -> Option<u64> {
    let window = window()?;
    // SAFETY: a valid map value pointer, as in `open_window_seq`.
    unsafe {
        if core::ptr::read_volatile(&raw const (*window).open) != 0 {
            return None;
        }
        let seq = core::ptr::read_volatile(&raw const (*window).seq).wrapping_add(1);
        core::ptr::write_volatile(&raw mut (*window).seq, seq);
        core::ptr::write_volatile(&raw mut (*window).t0_ns, now);
        core::ptr::write_volatile(&raw mut (*window).open, 1);
        Some(seq)
    }
}
