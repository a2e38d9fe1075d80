//! The I/O half of readiness: from /proc and the target's memory to the views that
//! `readiness::classify` decides on. Stacks are read only for condition-variable futex waits
//! (to tell the runtime's wrapper from a plain wait), so a check costs the target nothing.

use std::time::Duration;

use crate::diagnosis::memory::Memory;
use crate::diagnosis::readiness::{self, ThreadView};
use crate::diagnosis::stack::StackReader;
use crate::procfs::ProcThread;

/// One view per thread of `pid`.
pub fn views(pid: u32, threads: &[ProcThread]) -> Vec<ThreadView> {
    let memory = Memory::open(pid);
    let mut stacks: Option<StackReader> = None;
    threads
        .iter()
        .map(|t| {
            let mut view = ThreadView {
                comm: t.comm.clone(),
                state: t.state,
                syscall: t.syscall,
                ..ThreadView::default()
            };
            let Some(syscall) = t.syscall else {
                return view;
            };
            if let Some((address, clock)) = readiness::sleep_request(syscall) {
                view.requested = memory.as_ref().and_then(|m| m.read_timespec(address));
                view.clock_now = clock.and_then(clock_now);
            } else if readiness::wants_stack(syscall) {
                let reader = stacks.get_or_insert_with(|| StackReader::new(pid));
                view.stack_functions = reader
                    .stack(t.tid)
                    .frames
                    .into_iter()
                    .filter_map(|f| f.function)
                    .collect();
            }
            view
        })
        .collect()
}

/// The time now on clock `id` (the one an absolute `clock_nanosleep` sleeps on).
fn clock_now(id: i32) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid one given.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}
