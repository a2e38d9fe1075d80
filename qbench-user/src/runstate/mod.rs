//! The runtime's exported state (`qbench_state`, the probe contract in docs/ARCHITECTURE.md),
//! read from the target's memory: whether an update is pending at attach (no request event will
//! come for it), and which threads the runtime counts as participants.
//!
//! `decode` is the pure half; here: finding the symbol's address in the process and copying it
//! with `process_vm_readv`, again when the runtime was writing it.

pub mod decode;

use std::fs::File;
use std::io;
use std::time::Duration;

use object::{Object as _, ObjectSymbol as _, ReadCache};
use qbench_common::state::{HEADER_BYTES, OFF_SEQUENCE, SYMBOL};

pub use self::decode::{DecodeError, Participant, RuntimeState, entry};
use crate::procfs::maps;

/// Copies tried before giving up on a state the runtime keeps rewriting (threads registering
/// by the thousand); each one is short.
const ATTEMPTS: u32 = 200;

/// Why the state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read qbench_state in process {pid}: {source}")]
    Memory {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot use qbench_state of process {pid}: {source}")]
    Decode {
        pid: u32,
        #[source]
        source: DecodeError,
    },
}

/// Where `qbench_state` is in process `pid`, looked for in the object whose mapped path is
/// `runtime_object` (the one with the anchors; `/proc/PID/exe` for the executable): None for a
/// runtime that does not export it.
pub fn locate(pid: u32, runtime_object: &str) -> Option<u64> {
    let mappings = maps::mappings(pid)?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let is_runtime = |object: &maps::MappedObject| {
        object.path == runtime_object
            || (runtime_object.ends_with("/exe")
                && exe
                    .as_ref()
                    .is_some_and(|e| e.to_string_lossy() == object.path))
    };
    maps::objects(&mappings)
        .iter()
        .filter(|object| is_runtime(object))
        .find_map(|object| {
            let file = ReadCache::new(object.open(pid)?);
            address_in(object, &file)
        })
}

fn address_in(object: &maps::MappedObject, file: &ReadCache<File>) -> Option<u64> {
    let elf = object::File::parse(file).ok()?;
    let symbol = elf
        .dynamic_symbols()
        .chain(elf.symbols())
        .find(|s| s.is_definition() && s.name() == Ok(SYMBOL))?;
    symbol.address().checked_add(object.bias(&elf)?)
}

/// Copies the state at `address` of process `pid` until a copy is consistent.
pub fn read(pid: u32, address: u64) -> Result<RuntimeState, ReadError> {
    let memory = |source| ReadError::Memory { pid, source };
    let decode = |source| ReadError::Decode { pid, source };
    let mut last = DecodeError::Torn;
    for _ in 0..ATTEMPTS {
        let header = copy(pid, address, HEADER_BYTES).map_err(memory)?;
        let bytes =
            copy(pid, address, decode::full_len(&header).map_err(decode)?).map_err(memory)?;
        // The header's start again, up to and with the sequence word.
        let after = copy(pid, address, OFF_SEQUENCE + 8).map_err(memory)?;
        match decode::decode(&bytes, decode::sequence(&after).unwrap_or(u64::MAX)) {
            Err(DecodeError::Torn) => std::thread::sleep(Duration::from_micros(50)),
            Err(e) => last = e,
            Ok(state) => return Ok(state),
        }
        if last != DecodeError::Torn {
            break;
        }
    }
    Err(decode(last))
}

/// `len` bytes at `address` of process `pid`.
fn copy(pid: u32, address: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, which lives across the call; the remote range is only
    // read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    match usize::try_from(n) {
        Ok(n) if n == len => Ok(buf),
        Ok(n) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {n} of {len} bytes"),
        )),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_without_the_runtime_has_no_state() {
        // This test executable does not link the runtime.
        let exe = format!("/proc/{}/exe", std::process::id());
        assert_eq!(locate(std::process::id(), &exe), None);
    }

    #[test]
    fn a_copy_of_memory_is_decoded_whole() {
        // This process's own memory, laid out as the runtime's state.
        use qbench_common::state::{MAGIC, OFF_MAGIC, OFF_VERSION, VERSION};
        let mut image = [0u8; HEADER_BYTES];
        image[OFF_MAGIC..][..4].copy_from_slice(&MAGIC.to_le_bytes());
        image[OFF_VERSION..][..4].copy_from_slice(&VERSION.to_le_bytes());
        let state = read(std::process::id(), image.as_ptr() as u64).expect("reads");
        assert!(!state.pending && state.participants.is_empty());
    }

    #[test]
    fn unreadable_memory_is_an_error_naming_the_process() {
        let err = read(std::process::id(), 8).expect_err("page 0 is not mapped");
        assert!(
            err.to_string()
                .starts_with("cannot read qbench_state in process"),
            "{err}"
        );
    }
}
