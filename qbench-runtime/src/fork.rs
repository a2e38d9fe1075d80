//! A forked child starts clean: no update pending, no sequence, only the forking thread (if it
//! participated in the parent), its own eventfd and its own helper thread.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::state::{
    self, PENDING, REQUEST_NS, Runtime, SEQ, ThreadEntry, WaitTarget, install, runtime,
};
use crate::sys;

pub fn install_handler() {
    // SAFETY: registers a plain function with no preconditions for the child.
    unsafe { libc::pthread_atfork(Some(before_fork), None, Some(in_child)) };
}

/// The forking thread's id in the parent: the key of its entry in the copied registry.
static FORKING_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn before_fork() {
    FORKING_TID.store(sys::gettid(), Ordering::Relaxed);
}

extern "C" fn in_child() {
    let _ = std::panic::catch_unwind(start_clean);
}

fn start_clean() {
    sys::forget_tid();
    let Some(parent) = runtime() else { return };
    PENDING.store(0, Ordering::SeqCst);
    REQUEST_NS.store(0, Ordering::Relaxed);
    SEQ.store(0, Ordering::Relaxed);
    // The parent's locks may have been held by threads that do not exist here: only try them.
    let hook = parent.hook.try_lock().ok().and_then(|h| h.clone());
    let callback = parent.registry.try_lock().ok().and_then(|reg| {
        reg.threads
            .get(&FORKING_TID.load(Ordering::Relaxed))
            .and_then(|e| e.callback.clone())
    });
    let rt = match Runtime::new(parent.config.clone(), parent.sink.duplicate()) {
        Ok(rt) => rt,
        Err(e) => {
            crate::warn(&format!("cannot set up the runtime in a forked child: {e}"));
            return;
        }
    };
    *state::lock(&rt.hook) = hook;
    crate::slots::clear();
    crate::published::forked();
    if crate::threads::current_is_registered() {
        let tid = sys::gettid();
        let slot = crate::slots::claim(tid);
        rt.lock().threads.insert(
            tid,
            ThreadEntry {
                parked: false,
                slot,
                waiting_on: WaitTarget::None,
                callback,
            },
        );
        crate::published::registered(slot, tid, 1);
        crate::threads::remember(slot);
    }
    // The parent's eventfd must never be written from here: it would wake the parent's helper.
    // SAFETY: closes the child's copy of a descriptor only the runtime uses.
    unsafe { libc::close(parent.wake_fd) };
    let rt = install(rt);
    if let Err(e) = crate::helper::spawn(rt) {
        crate::warn(&format!(
            "cannot start the helper thread in a forked child: {e}"
        ));
    }
}
