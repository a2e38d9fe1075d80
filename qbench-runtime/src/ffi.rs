//! The C ABI (`include/qbench.h`). Every entry point null-checks its pointers, never lets a
//! panic unwind into C, and returns the error codes documented in the header: errno values,
//! as the pthread functions they stand beside do.

use std::ffi::{c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::state::{CFn, Callback, PENDING, lock, runtime};
use crate::threads::{self, RegistrationError, StartRoutine};
use crate::waits;

/// Returned by int-valued entry points when an internal error was caught; the program goes on.
const INTERNAL_ERROR: c_int = libc::ENOTRECOVERABLE;

fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(INTERNAL_ERROR)
}

fn registration_code(result: Result<(), RegistrationError>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(RegistrationError::NotInitialized) => libc::ENOSYS,
        Err(RegistrationError::AlreadyRegistered) => libc::EEXIST,
        Err(RegistrationError::NotRegistered) => libc::ESRCH,
    }
}

fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = code };
}

#[unsafe(no_mangle)]
pub extern "C" fn qbench_update_requested() -> c_int {
    c_int::from(PENDING.load(std::sync::atomic::Ordering::Relaxed) != 0)
}

#[unsafe(no_mangle)]
pub extern "C" fn qbench_request_update() -> c_int {
    guarded(|| {
        if runtime().is_none() {
            libc::ENOSYS
        } else if crate::request::request_update() {
            0
        } else {
            libc::EALREADY
        }
    })
}

/// # Safety
/// As pthread_create.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_thread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: Option<StartRoutine>,
    arg: *mut c_void,
) -> c_int {
    let Some(start) = start else {
        return libc::EINVAL;
    };
    if thread.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: checked above; the caller vouches for the rest as with pthread_create.
    guarded(|| unsafe { threads::create(thread, attr, start, arg) })
}

#[unsafe(no_mangle)]
pub extern "C" fn qbench_thread_register() -> c_int {
    guarded(|| registration_code(threads::register_current()))
}

#[unsafe(no_mangle)]
pub extern "C" fn qbench_thread_unregister() -> c_int {
    guarded(|| registration_code(threads::unregister_current()))
}

/// # Safety
/// As pthread_cond_wait.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_pthread_cond_wait(
    cond: *mut libc::pthread_cond_t,
    mutex: *mut libc::pthread_mutex_t,
) -> c_int {
    if cond.is_null() || mutex.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null, and valid by the caller's contract.
    guarded(|| unsafe { waits::pthread_cond_wait(cond, mutex, std::ptr::null()) })
}

/// # Safety
/// As pthread_cond_timedwait.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_pthread_cond_timedwait(
    cond: *mut libc::pthread_cond_t,
    mutex: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> c_int {
    if cond.is_null() || mutex.is_null() || abstime.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null, and valid by the caller's contract.
    guarded(|| unsafe { waits::pthread_cond_wait(cond, mutex, abstime) })
}

/// Like sleep(3): returns the whole seconds left (rounded up) when an update cut it short.
#[unsafe(no_mangle)]
pub extern "C" fn qbench_sleep(seconds: c_uint) -> c_uint {
    catch_unwind(|| match waits::sleep(Duration::from_secs(seconds.into())) {
        None => 0,
        Some(left) => left.as_secs() as c_uint + c_uint::from(left.subsec_nanos() > 0),
    })
    .unwrap_or(0)
}

/// Like usleep(3): 0, or -1 with errno EINTR when an update cut it short.
#[unsafe(no_mangle)]
pub extern "C" fn qbench_usleep(usec: libc::useconds_t) -> c_int {
    catch_unwind(|| match waits::sleep(Duration::from_micros(usec.into())) {
        None => 0,
        Some(_) => {
            set_errno(libc::EINTR);
            -1
        }
    })
    .unwrap_or(0)
}

/// Like nanosleep(2): 0; or -1 with errno EINTR (and the time left in `rem`, when not null)
/// when an update cut it short, EFAULT for a null `req`, EINVAL for an out-of-range `req`.
///
/// # Safety
/// `req` readable, `rem` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_nanosleep(
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    if req.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: non-null and readable by the caller's contract.
    let req = unsafe { *req };
    if req.tv_sec < 0 || !(0..1_000_000_000).contains(&req.tv_nsec) {
        set_errno(libc::EINVAL);
        return -1;
    }
    let duration = Duration::new(req.tv_sec as u64, req.tv_nsec as u32);
    match catch_unwind(|| waits::sleep(duration)).unwrap_or(None) {
        None => 0,
        Some(left) => {
            if !rem.is_null() {
                // SAFETY: non-null and writable by the caller's contract.
                unsafe {
                    *rem = libc::timespec {
                        tv_sec: left.as_secs() as libc::time_t,
                        tv_nsec: left.subsec_nanos() as libc::c_long,
                    }
                };
            }
            set_errno(libc::EINTR);
            -1
        }
    }
}

/// # Safety
/// `callback` must be callable with `arg` from another thread until the calling thread
/// unregisters, exits, or replaces the callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_thread_update_callback(
    callback: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    let callback = callback.map(|func| Callback::C(CFn { func, arg }));
    guarded(|| registration_code(threads::set_callback(callback)))
}

/// # Safety
/// `hook` must be callable with `arg` from another thread until it is replaced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qbench_set_quiescence_hook(
    hook: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    guarded(|| {
        let Some(rt) = runtime() else {
            return libc::ENOSYS;
        };
        *lock(&rt.hook) = hook.map(|func| Callback::C(CFn { func, arg }));
        0
    })
}
