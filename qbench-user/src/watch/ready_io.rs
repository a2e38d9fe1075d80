//! The I/O half of readiness: from /proc and the target's memory to the views that
//! `readiness::classify` decides on. Stacks are read only for condition-variable futex waits
//! (to tell the runtime's wrapper from a plain wait), so a check costs the target nothing.
//!
//! What a check learns about a process's code (its unwind info, the names of the addresses its
//! threads wait at, from debug info that may take tens of milliseconds to decompress) is kept
//! for the next check of the same process, as long as it maps the same files; and so is the
//! stack of each thread in a condition wait, for as long as the thread stays in that same wait.
//! A check of threads that have not moved then costs only their `stat` and `syscall` files.

use std::{cell::RefCell, collections::HashMap, sync::Arc, time::Duration};

use crate::diagnosis::memory::Memory;
use crate::diagnosis::readiness::{self, ThreadView};
use crate::diagnosis::stack::StackReader;
use crate::procfs::ProcThread;
use crate::procfs::tasks::Tasks;

thread_local! {
    /// What was learnt of each process checked, by pid (`--watch` checks every process from
    /// one thread).
    static KEPT: RefCell<Readers> = RefCell::default();
}

/// The threads of `pid` and one view per thread; None when the process is gone.
pub fn views(pid: u32) -> Option<(Vec<ProcThread>, Vec<ThreadView>)> {
    KEPT.with_borrow_mut(|readers| {
        let mut kept = readers.take(pid);
        let threads = kept.tasks.get_or_insert_with(|| Tasks::new(pid)).threads();
        let views = threads.map(|threads| {
            let views = views_with(pid, &threads, &mut kept);
            (threads, views)
        });
        readers.keep(pid, kept);
        views
    })
}

/// What is kept of one process between checks.
#[derive(Default)]
struct Kept {
    /// Its threads' files, held open.
    tasks: Option<Tasks>,
    /// Its stack reader (refreshed before use), once a stack was needed.
    reader: Option<StackReader>,
    /// The stacks of the threads in condition waits, by the wait.
    waits: Waits,
}

/// [`views`], with what earlier checks of the process learnt (`kept`), left there for the next.
fn views_with(pid: u32, threads: &[ProcThread], kept: &mut Kept) -> Vec<ThreadView> {
    let mut memory: Option<Option<Memory>> = None;
    let mut refreshed = false;
    let views = threads
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
                let memory = memory.get_or_insert_with(|| Memory::open(pid));
                view.requested = memory.as_ref().and_then(|m| m.read_timespec(address));
                view.clock_now = clock.and_then(clock_now);
            } else if readiness::wants_stack(syscall) {
                let wait = Wait {
                    syscall,
                    registers: t.registers,
                };
                let reader = &mut kept.reader;
                view.stack_functions = kept.waits.stack(t.tid, wait, || {
                    stack_functions(pid, t, reader, &mut refreshed)
                });
            }
            view
        })
        .collect();
    kept.waits.check_done();
    views
}

/// The function names of the stack of thread `t`, read with the reader in `kept` (refreshed
/// once per check, made if there is none).
fn stack_functions(
    pid: u32,
    t: &ProcThread,
    kept: &mut Option<StackReader>,
    refreshed: &mut bool,
) -> Arc<[String]> {
    let reader = match kept.take() {
        Some(mut reader) if !*refreshed => {
            reader.refresh();
            reader
        }
        Some(reader) => reader,
        None => StackReader::new(pid),
    };
    *refreshed = true;
    let reader = kept.insert(reader);
    // The registers read with the call: the stack of that very wait.
    let stack = match t.registers {
        Some(registers) => reader.stack_at(Ok(registers)),
        None => reader.stack(t.tid),
    };
    stack
        .frames
        .into_iter()
        .filter_map(|f| f.function)
        .collect()
}

/// A thread's wait as /proc shows it: the call, its arguments, and where it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    syscall: (i64, [u64; 6]),
    registers: Option<(u64, u64)>,
}

/// The stacks of the threads in condition waits, kept from one check to the next: a thread
/// found in the same wait (the same futex, the same value waited for, the same stack pointer
/// and program counter) has not returned from it, so its stack is the one read before; reading
/// it again would cost a read of its memory and an unwinding. A wait whose registers are not
/// known is read each time.
#[derive(Debug, Default)]
struct Waits {
    /// What the previous check found, by thread.
    before: HashMap<u32, (Wait, Arc<[String]>)>,
    /// What this check found so far.
    now: HashMap<u32, (Wait, Arc<[String]>)>,
}

impl Waits {
    /// The stack of thread `tid` in `wait`: the one kept if it was in that very wait at the
    /// previous check, else `read()`.
    fn stack(
        &mut self,
        tid: u32,
        wait: Wait,
        read: impl FnOnce() -> Arc<[String]>,
    ) -> Arc<[String]> {
        let functions = match self.before.remove(&tid) {
            Some((before, functions)) if before == wait && wait.registers.is_some() => functions,
            _ => read(),
        };
        self.now.insert(tid, (wait, Arc::clone(&functions)));
        functions
    }

    /// Ends a check: what it found is what the next one starts from; threads it did not find
    /// in a condition wait are forgotten.
    fn check_done(&mut self) {
        self.before = std::mem::take(&mut self.now);
    }
}

/// What is kept of the processes checked. A process that is gone leaves its entry behind: each
/// check looks whether one other process is still there, so that every entry of a process gone
/// is dropped within a round of checks.
#[derive(Default)]
struct Readers {
    by_pid: HashMap<u32, Kept>,
    /// Where the next look for a process gone starts.
    sweep: usize,
}

impl Readers {
    fn take(&mut self, pid: u32) -> Kept {
        self.by_pid.remove(&pid).unwrap_or_default()
    }

    fn keep(&mut self, pid: u32, kept: Kept) {
        let others = self.by_pid.len().max(1);
        if let Some(other) = self.by_pid.keys().copied().nth(self.sweep % others)
            && !std::path::Path::new(&format!("/proc/{other}")).exists()
        {
            self.by_pid.remove(&other);
        }
        self.sweep = self.sweep.wrapping_add(1);
        self.by_pid.insert(pid, kept);
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

#[cfg(test)]
mod tests {
    use super::*;

    const COND: (i64, [u64; 6]) = (202, [0x1000, 0x89, 7, 0, 0, 0xffff_ffff]);

    fn wait(value: u64, sp: u64) -> Wait {
        let (nr, mut args) = COND;
        args[2] = value;
        Wait {
            syscall: (nr, args),
            registers: Some((sp, 0x7f00)),
        }
    }

    /// `waits.stack(tid, wait)`, and whether it read the stack.
    fn look(waits: &mut Waits, tid: u32, wait: Wait, name: &str) -> (Arc<[String]>, bool) {
        let mut read = false;
        let functions = waits.stack(tid, wait, || {
            read = true;
            [name.to_string()].into()
        });
        (functions, read)
    }

    #[test]
    fn a_thread_still_in_the_same_wait_is_not_read_again() {
        // One check per row: the thread's wait, what a read would find, what the check has.
        let checks = [
            (wait(7, 0x10), "a", "a", true),
            // Same wait: kept, even if a new read would now say otherwise.
            (wait(7, 0x10), "b", "a", false),
            // Another value waited for, another stack pointer: another wait, read again.
            (wait(8, 0x10), "c", "c", true),
            (wait(8, 0x20), "d", "d", true),
        ];
        let mut waits = Waits::default();
        for (i, (wait, found, want, read)) in checks.into_iter().enumerate() {
            let (functions, was_read) = look(&mut waits, 1, wait, found);
            assert_eq!(
                (&functions[..], was_read),
                (&[want.to_string()][..], read),
                "check {i}"
            );
            waits.check_done();
        }
    }

    #[test]
    fn a_thread_seen_out_of_its_wait_or_without_registers_is_read_again() {
        let mut waits = Waits::default();
        look(&mut waits, 1, wait(7, 0x10), "a");
        look(&mut waits, 2, wait(7, 0x10), "a");
        waits.check_done();
        // Thread 1 is not in a condition wait at this check: forgotten.
        look(&mut waits, 2, wait(7, 0x10), "b");
        waits.check_done();
        assert!(look(&mut waits, 1, wait(7, 0x10), "c").1);
        assert!(!look(&mut waits, 2, wait(7, 0x10), "c").1);
        waits.check_done();
        let unknown = Wait {
            registers: None,
            ..wait(7, 0x10)
        };
        look(&mut waits, 3, unknown, "a");
        waits.check_done();
        assert!(look(&mut waits, 3, unknown, "b").1);
    }
}
