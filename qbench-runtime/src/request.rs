//! Update requests: the signal handler, and the in-process request it shares with
//! `qbench_request_update`. Everything here is async-signal-safe: atomics, clock_gettime, a futex
//! wake and an eventfd write.

use std::io;
use std::sync::atomic::Ordering;

use crate::anchors::qbench_probe_request;
use crate::state::{
    CLOSING, CLOSING_REQUESTED, IDLE, OPEN, PENDING, REQUEST_NS, SEQ, SIGNAL, WAKE_FD,
};
use crate::{slots, sys};

/// Requests an update. Returns false when an update that is still to come serves it: the pending
/// one before the helper has decided how it ends, or the next one, already requested while the
/// last was closing. A request that comes once an update is decided (from its quiescence hook
/// on, its report included) is never merged into it: the helper opens the next update as it
/// releases the threads.
pub fn request_update() -> bool {
    let mut state = PENDING.load(Ordering::Relaxed);
    loop {
        let next = match state {
            IDLE => OPEN,
            CLOSING => CLOSING_REQUESTED,
            _ => return false,
        };
        // Read the clock before raising the flag, so no arrival can be stamped before the request.
        REQUEST_NS.store(sys::monotonic_ns(), Ordering::Relaxed);
        match PENDING.compare_exchange(state, next, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) if next == OPEN => {
                announce(SEQ.fetch_add(1, Ordering::SeqCst) + 1);
                return true;
            }
            Ok(_) => return true, // announced by the helper when it opens it
            Err(now) => state = now,
        }
    }
}

/// Makes update `seq`, just opened, known: the probe anchor, and the wake-ups. Interruptible
/// sleeps wait on the flag itself: wake them now rather than via the helper; likewise interrupt
/// the threads blocked in system calls from here.
pub fn announce(seq: u64) {
    qbench_probe_request(seq);
    sys::futex_wake_all(&PENDING);
    slots::interrupt_all(SIGNAL.load(Ordering::Relaxed));
    sys::eventfd_signal(WAKE_FD.load(Ordering::Acquire));
}

extern "C" fn on_signal(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: __errno_location is async-signal-safe and returns this thread's errno.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: errno is a valid thread-local int.
    let saved = unsafe { *errno };
    // SAFETY: `info` is the kernel's siginfo for this SA_SIGINFO handler.
    // The helper's own interrupting signals only exist to make a blocking call return EINTR.
    if !unsafe { sys::is_kick(info) } {
        request_update();
    }
    // SAFETY: as above; the interrupted code must see its errno unchanged.
    unsafe { *errno = saved };
}

/// Installs the update signal's handler, deliberately without SA_RESTART so that blocking calls
/// such as read, accept and recv return EINTR and their loops can reach an update point.
pub fn install_handler(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: `sa` is fully initialised (zeroed, then the handler, flags and an empty mask).
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(signal, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
