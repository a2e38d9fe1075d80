//! The threads of a process read again and again (the readiness checks of `--watch`): each
//! thread's `stat` and `syscall` files are held open and read again in place, one `pread` each,
//! where [`super::threads`] opens and closes both every time (opening a /proc file walks its
//! path and allocates its buffer: more than a third of a check's cost).
//!
//! Held files cost descriptors and kernel memory (about 4.5 KiB each, mostly the buffer the
//! kernel keeps for the file), so at most [`MAX_HELD`] are held by the whole program, and never
//! more than a quarter of its limit of open files; the files of threads beyond that are opened
//! each time, as before.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{ProcDir, ProcThread};

/// Descriptors held at most, by every [`Tasks`] together: 2,048 threads.
const MAX_HELD: usize = 4096;

/// Descriptors that may still be held; set from the limit of open files at first use.
static BUDGET: std::sync::OnceLock<AtomicUsize> = std::sync::OnceLock::new();

fn budget() -> &'static AtomicUsize {
    BUDGET.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid rlimit struct.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let soft = if read { limit.rlim_cur } else { 0 };
        AtomicUsize::new(held_at_most(soft))
    })
}

/// Descriptors to hold at most under a soft limit of `soft` open files.
fn held_at_most(soft: u64) -> usize {
    usize::try_from(soft / 4)
        .unwrap_or(usize::MAX)
        .min(MAX_HELD)
}

/// Takes two descriptors from the budget, if there are two left.
fn take_two() -> bool {
    budget()
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(2)
        })
        .is_ok()
}

fn give_back(descriptors: usize) {
    budget().fetch_add(descriptors, Ordering::Relaxed);
}

/// One thread's files, held open.
#[derive(Debug)]
struct Held {
    stat: File,
    syscall: File,
}

/// The threads of one process, with the files of those seen before held open.
#[derive(Debug)]
pub struct Tasks {
    pid: u32,
    held: HashMap<u32, Held>,
    /// One buffer for each file, reused for every thread.
    stat: Vec<u8>,
    syscall: Vec<u8>,
}

impl Tasks {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            held: HashMap::new(),
            stat: Vec::with_capacity(1024),
            syscall: Vec::with_capacity(1024),
        }
    }

    /// Every thread of the process, as [`super::threads`] reads them; None when the process
    /// does not exist.
    pub fn threads(&mut self) -> Option<Vec<ProcThread>> {
        let task = super::proc_root().join(self.pid.to_string()).join("task");
        let entries = std::fs::read_dir(&task).ok()?;
        let dir = ProcDir::open(&task)?;
        let mut held = std::mem::take(&mut self.held);
        let mut threads = Vec::new();
        for tid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
        {
            // A held file of a thread gone (its tid given to a new one) fails to read: the new
            // thread's files are opened.
            let files = held
                .remove(&tid)
                .filter(|files| self.read_held(files))
                .or_else(|| self.open(&dir, tid));
            let blocked = match files {
                Some(files) => {
                    self.held.insert(tid, files);
                    true
                }
                None => {
                    if !dir.read_task_record(tid, "stat", &mut self.stat) {
                        continue;
                    }
                    dir.read_task_record(tid, "syscall", &mut self.syscall)
                }
            };
            let syscall = blocked.then_some(&self.syscall[..]);
            threads.extend(super::proc_thread(tid, &self.stat, syscall));
        }
        // The files of threads gone are closed with `held`.
        give_back(2 * held.len());
        threads.sort_by_key(|t| t.tid);
        Some(threads)
    }

    /// Reads `files` into the buffers; false when the thread is gone.
    fn read_held(&mut self, files: &Held) -> bool {
        if !pread_record(&files.stat, &mut self.stat) {
            give_back(2);
            return false;
        }
        // A thread that can be read but not its call (a kernel refusal): no call, as by path.
        if !pread_record(&files.syscall, &mut self.syscall) {
            self.syscall.clear();
        }
        true
    }

    /// Opens and reads thread `tid`'s files, to be held if the budget allows; None otherwise
    /// (or when the thread is gone).
    fn open(&mut self, dir: &ProcDir, tid: u32) -> Option<Held> {
        if !take_two() {
            return None;
        }
        let files = dir
            .open_task_file(tid, "stat")
            .zip(dir.open_task_file(tid, "syscall"));
        let files = files.map(|(stat, syscall)| Held { stat, syscall });
        match files {
            Some(files) if self.read_held(&files) => Some(files),
            // read_held gave the two back when it failed.
            Some(_) => None,
            None => {
                give_back(2);
                None
            }
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        give_back(2 * self.held.len());
    }
}

/// Reads the one-record file `file` from its start into `bytes`; false when it cannot be read.
fn pread_record(file: &File, bytes: &mut Vec<u8>) -> bool {
    bytes.clear();
    bytes.resize(bytes.capacity().max(1024), 0);
    loop {
        match file.read_at(bytes, 0) {
            Ok(n) if n < bytes.len() => {
                bytes.truncate(n);
                return true;
            }
            // Longer than the buffer: read it whole into a larger one.
            Ok(n) => bytes.resize(n * 2, 0),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                bytes.clear();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_limit_of_open_files_at_most_4096() {
        assert_eq!(held_at_most(1024), 256);
        assert_eq!(held_at_most(20_000), 4096);
        assert_eq!(held_at_most(0), 0);
        assert_eq!(held_at_most(u64::MAX), 4096);
    }

    #[test]
    fn held_files_read_what_opening_them_reads() {
        let pid = std::process::id();
        let (started, stop) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() } as u32;
                started.wait();
                stop.wait();
                tid
            });
            started.wait();
            let mut tasks = Tasks::new(pid);
            let first = tasks.threads().expect("own threads");
            let second = tasks.threads().expect("own threads");
            let by_path = super::super::threads(pid).expect("own threads");
            stop.wait();
            let tid = worker.join().expect("worker");
            // Other tests' threads come and go meanwhile: this one and the main thread stay.
            for want in [pid, tid] {
                let find = |ts: &[ProcThread]| ts.iter().find(|t| t.tid == want).cloned();
                let path = find(&by_path).expect("by path");
                for held in [find(&first), find(&second)] {
                    let held = held.expect("held");
                    assert_eq!((&held.comm, held.tid), (&path.comm, path.tid));
                }
            }
            assert!(tasks.held.contains_key(&tid) || budget().load(Ordering::Relaxed) < 2);
        });
        assert!(Tasks::new(u32::MAX).threads().is_none());
    }
}
