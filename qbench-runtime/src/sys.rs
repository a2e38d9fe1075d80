//! Thin wrappers over the few system calls the runtime makes. Everything called from the signal
//! handler here is async-signal-safe: plain system calls, no allocation, no locks.

use std::cell::Cell;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns()` reads too, so the runtime's and
/// the observer's timestamps of one update compare directly.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

thread_local! {
    static TID: Cell<libc::pid_t> = const { Cell::new(0) };
}

/// The calling thread's kernel id, cached per thread (the cache is cleared in a forked child).
pub fn gettid() -> libc::pid_t {
    TID.with(|tid| {
        if tid.get() == 0 {
            // SAFETY: gettid has no preconditions.
            tid.set(unsafe { libc::gettid() });
        }
        tid.get()
    })
}

/// Forgets the cached thread id: after fork the calling thread has a new one.
pub fn forget_tid() {
    TID.with(|tid| tid.set(0));
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    unsafe { libc::getpid() }
}

/// Sleeps while `word` holds `expected`, at most `timeout`; returns on a wake-up, a signal or the
/// timeout alike: the caller re-checks its condition.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; `ts` is a valid relative
    // timeout. A private futex suffices: only this process's threads wait on it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts,
        )
    };
}

/// Wakes every thread sleeping on `word`. Async-signal-safe.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; waking has no other preconditions.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

/// A new close-on-exec eventfd: how the signal handler and arriving threads wake the helper.
pub fn eventfd() -> io::Result<libc::c_int> {
    // SAFETY: plain system call with constant flags.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// Adds one to an eventfd. Async-signal-safe; a full counter (never reached in practice) only
/// means the helper is already due to wake.
pub fn eventfd_signal(fd: libc::c_int) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor the runtime owns.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Waits until the eventfd is readable or `timeout` passes (None: forever), then drains it.
pub fn eventfd_wait(fd: libc::c_int, timeout: Option<Duration>) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfd` and `ts` outlive the call; a null sigmask keeps the current one.
    let ready = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
    if ready > 0 {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; the descriptor is non-blocking.
        unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    }
}

/// The value that marks the runtime's own interrupting signals, so the handler can tell them
/// from update requests ("QBENCHKI").
pub const KICK_COOKIE: usize = 0x5142_454e_4348_4b49;

/// The layout of `siginfo_t` for a queued signal on Linux (x86-64 and aarch64): the fields the
/// runtime writes and reads, padded to the kernel's 128 bytes.
#[repr(C)]
pub struct QueuedSigInfo {
    pub signo: libc::c_int,
    pub errno: libc::c_int,
    pub code: libc::c_int,
    _pad0: libc::c_int,
    pub pid: libc::pid_t,
    pub uid: libc::uid_t,
    pub value: usize,
    _rest: [u8; 128 - 32],
}
const _: () = assert!(size_of::<QueuedSigInfo>() == size_of::<libc::siginfo_t>());

/// The process and user a kick is sent as, read once per round of kicks.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pid: libc::pid_t,
    uid: libc::uid_t,
}

impl Sender {
    /// Async-signal-safe: two system calls.
    pub fn current() -> Sender {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        Sender { pid: getpid(), uid }
    }

    /// Interrupts thread `tid` of this process with `signal`, marked as the runtime's own, so
    /// a blocking call without SA_RESTART returns EINTR. Returns false when the thread is gone.
    /// Async-signal-safe.
    pub fn kick(&self, tid: libc::pid_t, signal: libc::c_int) -> bool {
        let info = QueuedSigInfo {
            signo: signal,
            errno: 0,
            code: qbench_common::runtime::SELF_INTERRUPT_CODE,
            _pad0: 0,
            pid: self.pid,
            uid: self.uid,
            value: KICK_COOKIE,
            _rest: [0; 96],
        };
        // SAFETY: `info` is a fully initialised siginfo of the kernel's size. A negative si_code
        // is what rt_tgsigqueueinfo allows for a signal a process sends to itself.
        let rc =
            unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, self.pid, tid, signal, &info) };
        rc == 0
    }
}

/// The calling thread's id straight from the kernel: safe in a signal handler, where the
/// thread-local cache of [`gettid`] may not be (a dlopen'ed library's TLS can allocate).
pub fn raw_gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and is async-signal-safe.
    unsafe { libc::gettid() }
}

/// True when `info` describes a signal sent by [`Sender::kick`].
///
/// # Safety
/// `info` must be the siginfo pointer the kernel passed to an SA_SIGINFO handler.
pub unsafe fn is_kick(info: *const libc::siginfo_t) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: the caller passes the kernel's siginfo, which has QueuedSigInfo's layout.
    let info = unsafe { &*info.cast::<QueuedSigInfo>() };
    info.code == qbench_common::runtime::SELF_INTERRUPT_CODE
        && info.value == KICK_COOKIE
        && info.pid == getpid()
}

/// The thread's name as the kernel knows it, or "?" when the thread is gone.
pub fn thread_name(tid: libc::pid_t) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Blocks every signal in the calling thread, so that process-directed update requests are
/// delivered to application threads, never to the runtime's helper.
pub fn block_all_signals() {
    // SAFETY: `set` is initialised by sigfillset before use; a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
