//! Waits that an update request ends: condition waits the helper can broadcast to, and sleeps
//! on the update flag itself.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, MutexGuard};
use std::time::Duration;

use crate::park::park_here;
use crate::state::{PENDING, WaitTarget};
use crate::sys;
use crate::threads::set_waiting_on;

/// pthread_cond_wait (or timedwait when `abstime` is not null) that an update request ends.
/// When an update is pending it is an update point itself: it releases `mutex`, parks, takes
/// `mutex` back and returns 0 (a spurious wake-up to the caller's predicate loop), so a thread
/// never parks holding the lock its peers need to reach their own update points.
///
/// # Safety
/// As pthread_cond_wait: valid `cond` and `mutex`, the mutex held by the caller.
pub unsafe fn pthread_cond_wait(
    cond: *mut libc::pthread_cond_t,
    mutex: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> libc::c_int {
    let plain = || {
        // SAFETY: the caller's pointers, as pthread_cond_(timed)wait requires.
        unsafe {
            if abstime.is_null() {
                libc::pthread_cond_wait(cond, mutex)
            } else {
                libc::pthread_cond_timedwait(cond, mutex, abstime)
            }
        }
    };
    if !set_waiting_on(WaitTarget::PthreadCond(cond, mutex)) {
        return plain(); // not a participating thread
    }
    // Registered first, checked second: either the helper sees our condition variable, or we
    // see its request here.
    let rc = if PENDING.load(Ordering::SeqCst) != 0 {
        0
    } else {
        plain()
    };
    set_waiting_on(WaitTarget::None);
    if PENDING.load(Ordering::Acquire) != 0 {
        // SAFETY: the caller holds `mutex` (pthread_cond_wait took it back before returning).
        unsafe { libc::pthread_mutex_unlock(mutex) };
        park_here();
        // SAFETY: as above; the caller expects to hold it on return.
        unsafe { libc::pthread_mutex_lock(mutex) };
    }
    rc
}

/// The Rust counterpart of [`pthread_cond_wait`] for std's Mutex and Condvar.
pub fn std_cond_wait<'a, T>(
    cv: &Condvar,
    mutex: &'a std::sync::Mutex<T>,
    guard: MutexGuard<'a, T>,
) -> MutexGuard<'a, T> {
    if !set_waiting_on(WaitTarget::StdCondvar(cv)) {
        return cv.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    let guard = if PENDING.load(Ordering::SeqCst) != 0 {
        guard
    } else {
        cv.wait(guard).unwrap_or_else(|e| e.into_inner())
    };
    set_waiting_on(WaitTarget::None);
    if PENDING.load(Ordering::Acquire) != 0 {
        drop(guard);
        park_here();
        return mutex.lock().unwrap_or_else(|e| e.into_inner());
    }
    guard
}

/// Sleeps for `duration`, or less if an update is requested (or pending already). Returns the
/// time left when cut short, None when the whole duration passed.
pub fn sleep(duration: Duration) -> Option<Duration> {
    let deadline =
        sys::monotonic_ns().saturating_add(duration.as_nanos().min(u64::MAX as u128) as u64);
    loop {
        let now = sys::monotonic_ns();
        if PENDING.load(Ordering::Acquire) != 0 {
            return Some(Duration::from_nanos(deadline.saturating_sub(now)));
        }
        if now >= deadline {
            return None;
        }
        // The request handler wakes every waiter on the flag.
        sys::futex_wait(&PENDING, 0, Duration::from_nanos(deadline - now));
    }
}
