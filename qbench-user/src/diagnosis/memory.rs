//! Reads of the target's memory through `/proc/PID/mem`: the diagnosis looks at a mutex's owner,
//! a sleep's requested duration and a blocked thread's stack without stopping the target
//! (ptrace would stop it, and only one tracer may attach).
//!
//! Reading another process's memory needs the ptrace access mode check to pass (root, or the
//! same user with a permissive `ptrace_scope`); every failure is `None`, never an error, because
//! the target may exit or unmap the memory between two reads.

use std::{fs::File, os::unix::fs::FileExt as _, time::Duration};

/// An open `/proc/PID/mem`, for several reads of one process (each free function opens it anew).
#[derive(Debug)]
pub struct Memory(File);

impl Memory {
    /// Opens the memory of process `pid`; `None` when it is gone or not readable.
    pub fn open(pid: u32) -> Option<Self> {
        File::open(format!("/proc/{pid}/mem")).ok().map(Self)
    }

    /// Exactly `len` bytes at `address`, or `None`.
    pub fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let bytes = self.read_prefix(address, len);
        (bytes.len() == len).then_some(bytes)
    }

    /// Up to `max` bytes at `address`: fewer when the mapping ends (the kernel stops a read at
    /// the first unmapped page), empty when nothing there is readable.
    pub fn read_prefix(&self, address: u64, max: usize) -> Vec<u8> {
        let mut bytes = vec![0; max];
        let mut done = 0;
        while done < max {
            let Some(at) = address.checked_add(done as u64) else {
                break;
            };
            match self.0.read_at(&mut bytes[done..], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        bytes.truncate(done);
        bytes
    }

    /// The native-endian `u32` at `address`.
    pub fn read_u32(&self, address: u64) -> Option<u32> {
        let bytes = self.read(address, 4)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    }

    /// The native-endian `u64` at `address`.
    pub fn read_u64(&self, address: u64) -> Option<u64> {
        let bytes = self.read(address, 8)?;
        Some(u64::from_ne_bytes(bytes.try_into().ok()?))
    }

    /// A `struct timespec` at `address` as a duration; `None` for a negative or malformed one
    /// (a duration the kernel would refuse with EINVAL).
    pub fn read_timespec(&self, address: u64) -> Option<Duration> {
        timespec(&self.read(address, 16)?)
    }
}

/// Exactly `len` bytes of process `pid`'s memory at `address`.
pub fn read(pid: u32, address: u64, len: usize) -> Option<Vec<u8>> {
    Memory::open(pid)?.read(address, len)
}

/// The `u32` at `address` in process `pid` (a futex word, a mutex's `__owner`).
pub fn read_u32(pid: u32, address: u64) -> Option<u32> {
    Memory::open(pid)?.read_u32(address)
}

/// The `u64` at `address` in process `pid`.
pub fn read_u64(pid: u32, address: u64) -> Option<u64> {
    Memory::open(pid)?.read_u64(address)
}

/// The `struct timespec` at `address` in process `pid` (a sleep's requested duration).
pub fn read_timespec(pid: u32, address: u64) -> Option<Duration> {
    Memory::open(pid)?.read_timespec(address)
}

/// x86-64's `struct timespec { time_t tv_sec; long tv_nsec; }`.
fn timespec(bytes: &[u8]) -> Option<Duration> {
    let secs = i64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?);
    let nanos = i64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?);
    let secs = u64::try_from(secs).ok()?;
    let nanos = u32::try_from(nanos).ok().filter(|&n| n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timespec_bytes(secs: i64, nanos: i64) -> Vec<u8> {
        [secs.to_ne_bytes(), nanos.to_ne_bytes()].concat()
    }

    #[test]
    fn timespecs_valid_and_not() {
        assert_eq!(
            timespec(&timespec_bytes(2, 500)),
            Some(Duration::new(2, 500))
        );
        assert_eq!(timespec(&timespec_bytes(-1, 0)), None);
        assert_eq!(timespec(&timespec_bytes(0, 1_000_000_000)), None);
        assert_eq!(timespec(&timespec_bytes(0, -1)), None);
        assert_eq!(timespec(&[0; 8]), None);
    }

    #[test]
    fn reads_this_process() {
        // Reading one's own /proc/self/mem passes the access check without privileges.
        let pid = std::process::id();
        let word: u64 = 0x1122_3344_5566_7788;
        let half: u32 = 0xdead_beef;
        let ts = libc::timespec {
            tv_sec: 3,
            tv_nsec: 250,
        };
        let at = |p: *const u8| p as u64;
        assert_eq!(read_u64(pid, at((&raw const word).cast())), Some(word));
        assert_eq!(read_u32(pid, at((&raw const half).cast())), Some(half));
        assert_eq!(
            read_timespec(pid, at((&raw const ts).cast())),
            Some(Duration::new(3, 250))
        );
        let bytes = b"stack bytes";
        assert_eq!(
            read(pid, at(bytes.as_ptr()), bytes.len()).as_deref(),
            Some(&bytes[..])
        );
        // Page zero is never mapped: nothing is read, nothing fails.
        assert_eq!(read(pid, 0, 8), None);
        assert!(Memory::open(pid).unwrap().read_prefix(0, 8).is_empty());
        assert_eq!(read_u32(u32::MAX, 0x1000), None);
    }
}
