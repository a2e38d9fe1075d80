//! Syscall tracking on demand: the syscall raw tracepoints attached to [`Probes`] and detached
//! again, with the thread map cleared of what an earlier attachment left and seeded from /proc
//! (calls entered while they were detached were not seen). The diagnosis mode attaches them only
//! while an update is pending: they tax every syscall of every process on the machine.

use std::{fs, path::Path};

use aya::maps::{Array, HashMap, MapData};
use qbench_common::{ThreadState, maps};

use super::attach;
use super::loader::{LoaderError, Probes, SyscallTracking, map_mut, os_error_in_chain};
use crate::procfs;

impl Probes {
    /// Attaches the syscall raw tracepoints, unless they are attached or not loaded: clears the
    /// thread map of what an earlier attachment left (keeping the arrivals in the window open
    /// now), attaches both, tells the request programs to wake nobody again, and seeds the
    /// map from /proc ([`Self::seed_threads`]): calls entered before now were not seen. Returns
    /// whether it attached them.
    pub fn start_tracking(&mut self) -> Result<bool, LoaderError> {
        if self.syscalls == SyscallTracking::Off || self.tracking() {
            return Ok(false);
        }
        self.clear_threads()?;
        let mut links = Vec::with_capacity(attach::SYSCALL_RAW_TRACEPOINTS.len());
        if let Err(err) = attach::syscall_tracepoints(&mut self.ebpf, &mut links) {
            attach::detach_concurrently(&mut self.ebpf, links);
            return Err(err);
        }
        self.tracking = links;
        self.tracking_since_ns = crate::clock::monotonic_ns();
        self.wake_on_request(false)?;
        // Without the syscall exit tracepoint nothing would ever clear a seeded entry.
        let seeded = self.seed_threads()?;
        log::debug!("seeded {seeded} blocked threads from /proc");
        Ok(true)
    }

    /// Detaches the syscall raw tracepoints, if attached; returns whether they were. Closing
    /// the links waits for the kernel's RCU grace periods ([`attach::detach_concurrently`]), so
    /// callers do it once an update is reported, off any measured path.
    pub fn stop_tracking(&mut self) -> Result<bool, LoaderError> {
        // Said first: a request from now on wakes the reader, which attaches them again. Also
        // when they were not attached: a late update's wake-up, read with its release, was
        // spent.
        if self.syscalls == SyscallTracking::OnDemand {
            self.wake_on_request(true)?;
        }
        if !self.tracking() {
            return Ok(false);
        }
        let links = std::mem::take(&mut self.tracking);
        attach::detach_concurrently(&mut self.ebpf, links);
        Ok(true)
    }

    /// Whether the syscall raw tracepoints are attached.
    pub fn tracking(&self) -> bool {
        !self.tracking.is_empty()
    }

    /// When the syscall raw tracepoints were last attached (CLOCK_MONOTONIC ns; 0 never): a
    /// call that ended before was not seen.
    pub fn tracking_since_ns(&self) -> u64 {
        self.tracking_since_ns
    }

    /// Whether an update wakes the reader (`QBENCH_WAKE_ON_REQUEST`): at its request, or, for a
    /// target with the runtime, once it is late ([`super::loader::LoadOptions::wake_when_late`]);
    /// only while syscall tracking is wanted on demand and detached.
    pub(super) fn wake_on_request(&mut self, on: bool) -> Result<(), LoaderError> {
        let mode = match (on, self.wake_when_late) {
            (false, _) => qbench_common::WAKE_NEVER,
            (true, false) => qbench_common::WAKE_AT_REQUEST,
            (true, true) => qbench_common::WAKE_WHEN_LATE,
        };
        let name = maps::WAKE_ON_REQUEST;
        let mut map: Array<&mut MapData, u32> = map_mut(&mut self.ebpf, name)?;
        map.set(0, mode, 0).map_err(LoaderError::map(name))
    }

    /// Clears the thread map of what the syscall programs left when they were last attached
    /// (stale since): removes every entry but those of threads that arrived in the window open
    /// now, whose arrival is kept and whose call is cleared (the programs, detached, write
    /// nothing meanwhile; the arrival program only marks arrivals).
    fn clear_threads(&mut self) -> Result<(), LoaderError> {
        let window = self.window()?;
        let keep = (window.open != 0).then_some(window.seq);
        let entries = self.snapshot_threads()?;
        let name = maps::THREADS;
        let mut map: HashMap<&mut MapData, u32, ThreadState> = map_mut(&mut self.ebpf, name)?;
        for (tid, state) in entries {
            let done = if Some(state.arrived_seq) == keep {
                map.insert(tid, ThreadState::in_no_call(state.arrived_seq), BPF_EXIST)
            } else {
                map.remove(&tid)
            };
            match done {
                Ok(()) => {}
                // Its thread exited meanwhile (the exit program removes its entry).
                Err(err) if os_error_in_chain(&err, &[libc::ENOENT]) => {}
                Err(err) => return Err(LoaderError::map(name)(err)),
            }
        }
        Ok(())
    }

    /// Adds to the thread map the target's threads that /proc shows blocked in a tracked call
    /// (they entered it before attach, so no event told the kernel). Entries the kernel already
    /// has win: a thread that left or entered a call since attach has a fresher one. Seeded
    /// entries have `since_ns == 0`: blocked since before attach, for an unknown time.
    /// Returns how many threads were added.
    pub fn seed_threads(&mut self) -> Result<usize, LoaderError> {
        let tasks = Path::new("/proc")
            .join(self.tgid().get().to_string())
            .join("task");
        // A target that exits meanwhile has nothing to seed; the caller notices soon enough.
        let Ok(dir) = fs::read_dir(&tasks) else {
            return Ok(0);
        };
        let name = maps::THREADS;
        let mut map: HashMap<&mut MapData, u32, ThreadState> = map_mut(&mut self.ebpf, name)?;
        let mut seeded = 0;
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(text) = fs::read_to_string(entry.path().join("syscall")) else {
                continue; // the thread exited
            };
            let Some(state) = parse_proc_syscall(&text) else {
                continue; // running, or blocked outside a syscall
            };
            if !u32::try_from(state.nr).is_ok_and(|nr| self.blocking.contains(&nr)) {
                continue;
            }
            match map.insert(tid, state, BPF_NOEXIST) {
                Ok(()) => seeded += 1,
                Err(err) if os_error_in_chain(&err, &[libc::EEXIST]) => {}
                Err(err) => return Err(LoaderError::map(name)(err)),
            }
        }
        Ok(seeded)
    }
}

/// `bpf_map_update_elem` flag: only insert a key that is not there yet (uapi `BPF_NOEXIST`).
const BPF_NOEXIST: u64 = 1;
/// `bpf_map_update_elem` flag: only update a key that is there (uapi `BPF_EXIST`).
const BPF_EXIST: u64 = 2;

/// `/proc/PID/task/TID/syscall` of a thread blocked in a syscall ([`procfs::parse_syscall`]), as
/// the thread map's entry. `running` or `-1 SP PC` (blocked outside a syscall) give `None`.
fn parse_proc_syscall(text: &str) -> Option<ThreadState> {
    let (nr, args) = procfs::parse_syscall(text)?;
    Some(ThreadState {
        nr,
        since_ns: 0,
        args,
        arrived_seq: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_syscall_lines() {
        let read = "0 0x3 0x7ffc1234 0x1 0x0 0x0 0x0 0x7ffc0000 0x7f0012345678\n";
        let state = parse_proc_syscall(read).expect("blocked in read");
        assert_eq!(state.nr, 0);
        assert_eq!(state.args, [3, 0x7ffc_1234, 1, 0, 0, 0]);
        assert_eq!(state.since_ns, 0);
        assert_eq!(parse_proc_syscall("running\n"), None);
        assert_eq!(parse_proc_syscall("-1 0x7ffc0000 0x7f0012345678\n"), None);
        assert_eq!(parse_proc_syscall("0 0x3\n"), None);
    }
}
