//! The I/O half of readiness: from /proc and the target's memory to the views that
//! `readiness::classify` decides on. Stacks are read only for condition-variable futex waits
//! (to tell the runtime's wrapper from a plain wait), so a check costs the target nothing.
//!
//! What a check learns about a process's code (its unwind info, the names of the addresses its
//! threads wait at, from debug info that may take tens of milliseconds to decompress) is kept
//! for the next check of the same process, as long as it maps the same files: a check then
//! costs a read of its memory map and of each waiting thread's stack.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use crate::diagnosis::memory::Memory;
use crate::diagnosis::readiness::{self, ThreadView};
use crate::diagnosis::stack::StackReader;
use crate::procfs::ProcThread;

thread_local! {
    /// The stack readers of the processes checked, by pid (`--watch` checks every process from
    /// one thread).
    static READERS: RefCell<Readers> = RefCell::default();
}

/// One view per thread of `pid`.
pub fn views(pid: u32, threads: &[ProcThread]) -> Vec<ThreadView> {
    READERS.with_borrow_mut(|readers| {
        let mut reader = readers.take(pid);
        let views = views_with(pid, threads, &mut reader);
        readers.keep(pid, reader);
        views
    })
}

/// [`views`], reading stacks with `kept` (a reader of an earlier check, refreshed before use)
/// or a new reader, left in `kept` for the next check.
fn views_with(pid: u32, threads: &[ProcThread], kept: &mut Option<StackReader>) -> Vec<ThreadView> {
    let memory = Memory::open(pid);
    let mut refreshed = false;
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
                let reader = match kept.take() {
                    Some(mut reader) if !refreshed => {
                        reader.refresh();
                        reader
                    }
                    Some(reader) => reader,
                    None => StackReader::new(pid),
                };
                refreshed = true;
                let reader = kept.insert(reader);
                // The registers read with the call: the stack of that very wait.
                let stack = match t.registers {
                    Some(registers) => reader.stack_at(Ok(registers)),
                    None => reader.stack(t.tid),
                };
                view.stack_functions = stack
                    .frames
                    .into_iter()
                    .filter_map(|f| f.function)
                    .collect();
            }
            view
        })
        .collect()
}

/// The readers kept between checks. A process that is gone leaves its reader behind: each check
/// looks whether one other process is still there, so that every reader of a process gone is
/// dropped within a round of checks.
#[derive(Default)]
struct Readers {
    by_pid: HashMap<u32, StackReader>,
    /// Where the next look for a process gone starts.
    sweep: usize,
}

impl Readers {
    fn take(&mut self, pid: u32) -> Option<StackReader> {
        self.by_pid.remove(&pid)
    }

    fn keep(&mut self, pid: u32, reader: Option<StackReader>) {
        let others = self.by_pid.len().max(1);
        if let Some(other) = self.by_pid.keys().copied().nth(self.sweep % others)
            && !std::path::Path::new(&format!("/proc/{other}")).exists()
        {
            self.by_pid.remove(&other);
        }
        self.sweep = self.sweep.wrapping_add(1);
        if let Some(reader) = reader {
            self.by_pid.insert(pid, reader);
        }
    }
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
