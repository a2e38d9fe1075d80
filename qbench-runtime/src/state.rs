//! The runtime's shared state: the update flag the fast path reads, and the registry of
//! participating threads that the slow path, the helper and the wrappers share under one lock.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::config::Config;
use crate::report::{Report, ReportSink};

/// Non-zero while an update is pending: one of the values below. The fast path of
/// `qbench_update` is one relaxed load of this word; sleepers wait on it as a futex, so a
/// request wakes them directly.
pub static PENDING: AtomicU32 = AtomicU32::new(IDLE);
/// No update pending.
pub const IDLE: u32 = 0;
/// An update is pending and undecided: a request now is served by it.
pub const OPEN: u32 = 1;
/// The helper has decided how the update ends (full quiescence or the timeout) and is ending it:
/// its hook, its report and the release. A request now comes too late for it.
pub const CLOSING: u32 = 2;
/// Closing, and a request came meanwhile: the helper opens the next update as it releases.
pub const CLOSING_REQUESTED: u32 = 3;
/// CLOCK_MONOTONIC time of the pending request (of the next one, once one came while closing).
pub static REQUEST_NS: AtomicU64 = AtomicU64::new(0);
/// Sequence number of the latest request (1 for the first); passed to the probe anchors.
pub static SEQ: AtomicU64 = AtomicU64::new(0);
/// The helper's eventfd, readable from the signal handler without touching the runtime.
pub static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The update signal, readable from the signal handler.
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);

static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime, or None before the library's constructor ran (or if it failed).
pub fn runtime() -> Option<&'static Runtime> {
    // SAFETY: the pointer is null or comes from Box::leak in `install`, and is never freed.
    unsafe { RUNTIME.load(Ordering::Acquire).as_ref() }
}

/// Makes `rt` the process's runtime. The previous one (a forked child's copy of its parent's) is
/// leaked on purpose: its locks may have been held by threads that do not exist in the child.
pub fn install(rt: Runtime) -> &'static Runtime {
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    WAKE_FD.store(rt.wake_fd, Ordering::Release);
    SIGNAL.store(rt.config.signal, Ordering::Release);
    RUNTIME.store(rt as *const Runtime as *mut Runtime, Ordering::Release);
    rt
}

/// A C function and its argument, as handed to the C API.
#[derive(Clone, Copy, Debug)]
pub struct CFn {
    pub func: unsafe extern "C" fn(*mut c_void),
    pub arg: *mut c_void,
}

/// Code that the runtime runs on a thread's behalf.
#[derive(Clone)]
pub enum Callback {
    C(CFn),
    Rust(Arc<dyn Fn() + Send + Sync>),
}

impl Callback {
    pub fn call(&self) {
        match self {
            // SAFETY: the program handed us this function and argument for exactly this call.
            Callback::C(c) => unsafe { (c.func)(c.arg) },
            Callback::Rust(f) => f(),
        }
    }
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Callback::C(c) => write!(f, "C({:p})", c.func),
            Callback::Rust(_) => f.write_str("Rust"),
        }
    }
}

// SAFETY: the C callers promise their function and argument may be used from the helper thread;
// that is the documented contract of qbench_thread_update_callback and qbench_set_quiescence_hook.
unsafe impl Send for Callback {}

/// What a registered thread is waiting on inside a runtime wrapper, so the helper can wake it
/// without a signal (a futex wait under pthread_cond_wait is never ended by one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitTarget {
    None,
    /// The condition variable and the mutex the thread waits with.
    PthreadCond(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t),
    StdCondvar(*const Condvar),
}

/// One participating thread.
#[derive(Debug)]
pub struct ThreadEntry {
    pub parked: bool,
    /// Its place in the signal handler's table, if the table had room.
    pub slot: Option<usize>,
    pub waiting_on: WaitTarget,
    pub callback: Option<Callback>,
}

/// How long past its deadline the helper waits for arrivals still being announced.
pub const ANNOUNCE_GRACE_NS: u64 = 10_000_000;

/// The participating threads and the state of the update in progress.
#[derive(Debug, Default)]
pub struct Registry {
    pub threads: HashMap<libc::pid_t, ThreadEntry>,
    /// Incremented at every release; parked threads wait for it to change.
    pub generation: u64,
    pub parked: usize,
    /// Threads counted in `parked` whose arrival probe anchor has not returned yet; the helper
    /// decides only once it is zero.
    pub announcing: usize,
    pub first_arrival_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
    /// Whether the threads in runtime condition waits were woken for the pending update.
    pub waiters_woken: bool,
}

// SAFETY: the raw pointers in WaitTarget are only dereferenced under the registry lock while the
// waiting thread is inside the wrapper that stored them (it clears them under the same lock).
unsafe impl Send for Registry {}

impl Registry {
    pub fn all_parked(&self) -> bool {
        self.parked == self.threads.len()
    }

    /// Whether the helper may end the update now: every thread parked, or the deadline passed,
    /// with no arrival still being announced to an observer, or that long past the deadline (a
    /// thread stopped inside the anchor must not keep the others parked).
    pub fn may_decide(&self, now_ns: u64, deadline_ns: u64) -> bool {
        let due = self.all_parked() || now_ns >= deadline_ns;
        due && (self.announcing == 0 || now_ns >= deadline_ns.saturating_add(ANNOUNCE_GRACE_NS))
    }
}

pub struct Runtime {
    pub config: Config,
    pub registry: Mutex<Registry>,
    /// Parked threads wait here for the generation to change.
    pub released: Condvar,
    pub wake_fd: libc::c_int,
    /// Held while update callbacks run, so a thread cannot unregister (and free the callback's
    /// argument) in the middle of one.
    pub callbacks: Mutex<()>,
    pub hook: Mutex<Option<Callback>>,
    pub sink: ReportSink,
    pub last_report: Mutex<Option<Report>>,
    pub report_ready: Condvar,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(config: Config, sink: ReportSink) -> std::io::Result<Runtime> {
        Ok(Runtime {
            wake_fd: crate::sys::eventfd()?,
            config,
            registry: Mutex::new(Registry::default()),
            released: Condvar::new(),
            callbacks: Mutex::new(()),
            hook: Mutex::new(None),
            sink,
            last_report: Mutex::new(None),
            report_ready: Condvar::new(),
        })
    }

    /// Locks the registry. A panic while it was held (a bug, or a panicking callback) must not
    /// stop every later update, so poisoning is ignored: the registry stays consistent because
    /// no code path panics between its paired updates.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the helper: from the signal handler, or when the last thread arrives or leaves.
    pub fn wake_helper(&self) {
        crate::sys::eventfd_signal(self.wake_fd);
    }
}

/// Locks any runtime mutex, ignoring poisoning (see [`Runtime::lock`]).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(threads: usize, parked: usize, announcing: usize) -> Registry {
        let mut reg = Registry::default();
        for tid in 0..threads {
            let entry = ThreadEntry {
                parked: tid < parked,
                slot: None,
                waiting_on: WaitTarget::None,
                callback: None,
            };
            reg.threads.insert(tid as libc::pid_t, entry);
        }
        reg.parked = parked;
        reg.announcing = announcing;
        reg
    }

    #[test]
    fn the_helper_decides_once_every_arrival_is_announced() {
        let deadline = 1_000;
        assert!(registry(3, 3, 0).may_decide(10, deadline));
        assert!(
            !registry(3, 3, 1).may_decide(10, deadline),
            "one announcing"
        );
        assert!(!registry(3, 2, 0).may_decide(10, deadline), "one missing");
    }

    #[test]
    fn past_the_deadline_an_announcement_holds_the_decision_only_so_long() {
        let deadline = 1_000;
        assert!(registry(3, 1, 0).may_decide(deadline, deadline), "a DNQ");
        assert!(!registry(3, 1, 1).may_decide(deadline, deadline));
        let grace_over = deadline + ANNOUNCE_GRACE_NS;
        assert!(registry(3, 1, 1).may_decide(grace_over, deadline));
    }
}
