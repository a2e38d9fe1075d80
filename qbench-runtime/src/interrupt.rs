//! Ending the waits of the participating threads that have not arrived yet: a signal (EINTR)
//! for threads in system calls, a broadcast for threads in the runtime's condition-wait wrappers
//! (a futex wait under pthread_cond_wait is never ended by a signal).

use crate::state::{Registry, WaitTarget};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The helper's first round: the request handler has signalled the threads of its table.
    First,
    /// A later round: a thread may have checked the flag just before the request and then
    /// entered a blocking call, or missed a broadcast the same way.
    Again,
}

/// Wakes the threads in runtime condition waits, once per update: called by the first thread to
/// arrive, which is usually running well before the helper has woken up.
pub fn waiters(reg: &mut Registry) {
    if reg.waiters_woken {
        return;
    }
    reg.waiters_woken = true;
    let mut done: Vec<WaitTarget> = Vec::new();
    for entry in reg.threads.values().filter(|e| !e.parked) {
        if entry.waiting_on != WaitTarget::None && !done.contains(&entry.waiting_on) {
            wake(entry.waiting_on);
            done.push(entry.waiting_on);
        }
    }
}

/// Wakes every participating thread that has not arrived.
pub fn stragglers(reg: &mut Registry, signal: libc::c_int, round: Round) {
    if round == Round::Again {
        reg.waiters_woken = false;
    }
    waiters(reg);
    let sender = sys::Sender::current();
    for (&tid, entry) in &reg.threads {
        let signalled_by_handler = round == Round::First && entry.slot.is_some();
        if !entry.parked && entry.waiting_on == WaitTarget::None && !signalled_by_handler {
            sender.kick(tid, signal);
        }
    }
}

fn wake(target: WaitTarget) {
    match target {
        WaitTarget::None => {}
        WaitTarget::PthreadCond(cond, mutex) => {
            // SAFETY: the waiting thread stored these pointers under the registry lock, which the
            // caller holds, and clears them under it before leaving its wrapper, so they are
            // live. Holding the program's mutex (when free) while broadcasting means a waiter
            // between its check of the update flag and its wait cannot miss the wake-up;
            // trylock never blocks.
            unsafe {
                let locked = libc::pthread_mutex_trylock(mutex) == 0;
                libc::pthread_cond_broadcast(cond);
                if locked {
                    libc::pthread_mutex_unlock(mutex);
                }
            }
        }
        // SAFETY: as above: the Condvar outlives the wait that registered it.
        WaitTarget::StdCondvar(cv) => unsafe { (*cv).notify_all() },
    }
}
