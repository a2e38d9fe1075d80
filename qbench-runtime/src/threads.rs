//! Participating threads: registration, removal at exit, and the thread-creation wrapper.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::Ordering;

use crate::park::park_here;
use crate::slots;
use crate::state::{Callback, PENDING, ThreadEntry, WaitTarget, lock, runtime};
use crate::sys::gettid;

/// Why a registration call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationError {
    /// The runtime did not initialise (its constructor failed; the reason was printed).
    NotInitialized,
    /// The calling thread is registered already.
    AlreadyRegistered,
    /// The calling thread is not registered.
    NotRegistered,
}

impl std::fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegistrationError::NotInitialized => "the qbench runtime is not initialised",
            RegistrationError::AlreadyRegistered => "this thread is registered already",
            RegistrationError::NotRegistered => "this thread is not registered",
        })
    }
}

impl std::error::Error for RegistrationError {}

/// Unregisters the thread when it exits, however it exits (return, pthread_exit, or the end of
/// a Rust closure), through the thread-local destructor.
struct Registration {
    registered: Cell<bool>,
    /// The thread's slot in the signal handler's table.
    slot: Cell<Option<usize>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registered.get() {
            let _ = remove(gettid());
        }
    }
}

thread_local! {
    static REGISTRATION: Registration =
        const { Registration { registered: Cell::new(false), slot: Cell::new(None) } };
}

/// True when the calling thread participates (for the fork handler).
pub fn current_is_registered() -> bool {
    REGISTRATION
        .try_with(|r| r.registered.get())
        .unwrap_or(false)
}

/// Makes the calling thread a participating thread.
pub fn register_current() -> Result<(), RegistrationError> {
    let rt = runtime().ok_or(RegistrationError::NotInitialized)?;
    let tid = gettid();
    let mut reg = rt.lock();
    if reg.threads.contains_key(&tid) {
        return Err(RegistrationError::AlreadyRegistered);
    }
    let slot = slots::claim(tid);
    reg.threads.insert(
        tid,
        ThreadEntry {
            parked: false,
            slot,
            waiting_on: WaitTarget::None,
            callback: None,
        },
    );
    crate::published::registered(slot, tid, reg.threads.len());
    drop(reg);
    remember(slot);
    Ok(())
}

/// Records in the thread's own storage that it is registered, and where its slot is.
pub fn remember(slot: Option<usize>) {
    let _ = REGISTRATION.try_with(|r| {
        r.registered.set(true);
        r.slot.set(slot);
    });
}

/// Marks the calling thread as waiting (or no longer) inside a runtime wrapper that a request
/// ends without a signal, so the request handler does not interrupt it needlessly.
pub fn set_in_runtime_wait(waiting: bool) {
    if let Ok(Some(slot)) = REGISTRATION.try_with(|r| r.slot.get()) {
        slots::set_in_runtime_wait(slot, waiting);
    }
}

/// Removes the calling thread from the participating threads.
pub fn unregister_current() -> Result<(), RegistrationError> {
    // As in set_callback: an unregistered caller (the helper, inside a callback) must not wait
    // for the callbacks lock it holds.
    if !current_is_registered() {
        return Err(RegistrationError::NotRegistered);
    }
    remove(gettid())?;
    let _ = REGISTRATION.try_with(|r| {
        r.registered.set(false);
        r.slot.set(None);
    });
    Ok(())
}

fn remove(tid: libc::pid_t) -> Result<(), RegistrationError> {
    let rt = runtime().ok_or(RegistrationError::NotInitialized)?;
    // Wait for update callbacks in progress: this thread's callback argument may be freed as
    // soon as we return.
    let _callbacks = lock(&rt.callbacks);
    let mut reg = rt.lock();
    let entry = reg
        .threads
        .remove(&tid)
        .ok_or(RegistrationError::NotRegistered)?;
    if let Some(slot) = entry.slot {
        slots::release(slot);
    }
    crate::published::unregistered(entry.slot, reg.threads.len());
    // The leaving thread may have been the last one the pending update waited for.
    if PENDING.load(Ordering::Acquire) != 0 && reg.all_parked() {
        rt.wake_helper();
    }
    Ok(())
}

/// Sets (or with None clears) the code the helper runs for the calling thread when an update
/// is requested.
pub fn set_callback(callback: Option<Callback>) -> Result<(), RegistrationError> {
    let rt = runtime().ok_or(RegistrationError::NotInitialized)?;
    // Checked before taking the callbacks lock: the helper thread (never registered) holds that
    // lock while it runs callbacks, and a callback calling this must not wait for itself.
    if !current_is_registered() {
        return Err(RegistrationError::NotRegistered);
    }
    let _callbacks = lock(&rt.callbacks);
    let mut reg = rt.lock();
    let entry = reg
        .threads
        .get_mut(&gettid())
        .ok_or(RegistrationError::NotRegistered)?;
    entry.callback = callback;
    Ok(())
}

/// Records what the calling thread waits on; returns false when it does not participate.
pub fn set_waiting_on(target: WaitTarget) -> bool {
    let Some(rt) = runtime() else { return false };
    let mut reg = rt.lock();
    match reg.threads.get_mut(&gettid()) {
        Some(entry) => {
            entry.waiting_on = target;
            drop(reg);
            set_in_runtime_wait(target != WaitTarget::None);
            true
        }
        None => false,
    }
}

/// A C thread start routine. Declared C-unwind so that pthread_exit's forced unwind may pass
/// through the trampoline below.
pub type StartRoutine = unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void;

struct Start {
    routine: StartRoutine,
    arg: *mut c_void,
}

/// Runs in the new thread: register, pass an update point if an update is pending (a thread
/// born during an update must not hold it up), then run the program's routine.
extern "C-unwind" fn trampoline(start: *mut c_void) -> *mut c_void {
    // SAFETY: `start` is the Box leaked by `create` for exactly this thread.
    let start = unsafe { Box::from_raw(start.cast::<Start>()) };
    let Start { routine, arg } = *start;
    let _ = std::panic::catch_unwind(|| {
        let _ = register_current();
        if PENDING.load(Ordering::Relaxed) != 0 {
            park_here();
        }
    });
    // SAFETY: the program promised `routine` accepts `arg`, as with pthread_create.
    unsafe { routine(arg) }
}

/// pthread_create, plus registration of the new thread. Returns pthread_create's error code.
///
/// # Safety
/// As pthread_create: `thread` writable, `attr` null or initialised, `routine` callable with `arg`.
pub unsafe fn create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: StartRoutine,
    arg: *mut c_void,
) -> libc::c_int {
    let start = Box::into_raw(Box::new(Start { routine, arg }));
    // SAFETY: the trampoline's ABI is the C one pthread_create expects; only its unwind
    // behaviour differs. The caller vouches for `thread` and `attr`.
    let rc = unsafe {
        let entry: extern "C" fn(*mut c_void) -> *mut c_void =
            std::mem::transmute(trampoline as extern "C-unwind" fn(*mut c_void) -> *mut c_void);
        libc::pthread_create(thread, attr, entry, start.cast())
    };
    if rc != 0 {
        // SAFETY: the thread was not created, so the Box is still ours.
        drop(unsafe { Box::from_raw(start) });
    }
    rc
}
