//! `qbench_state`: the runtime's state, exported for an observer that attaches while an update
//! is pending (the probe contract, docs/ARCHITECTURE.md). It is written only on slow paths, all
//! under the registry lock (registration, arrival, the helper's start and release of an update,
//! a fork), so the update point's fast path stays one relaxed load. A reader in another process
//! copies it whole and keeps a copy only when `sequence` was even and unchanged around it.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering, fence};

use qbench_common::state::{CAPACITY, ENTRY_BYTES, HEADER_BYTES, MAGIC, VERSION};

/// One participating thread, at the index of its signal-handler slot.
#[repr(C)]
pub struct Participant {
    tid: AtomicI32,
    parked: AtomicU32,
    arrival_ns: AtomicU64,
}

/// The exported layout; `qbench_common::state` gives its offsets to the observer.
#[repr(C)]
pub struct State {
    magic: AtomicU32,
    version: AtomicU32,
    sequence: AtomicU64,
    seq: AtomicU64,
    request_ns: AtomicU64,
    pending: AtomicU32,
    threads: AtomicU32,
    table_len: AtomicU32,
    capacity: AtomicU32,
    table: [Participant; CAPACITY],
}

const _: () = assert!(std::mem::size_of::<Participant>() == ENTRY_BYTES);
const _: () = assert!(std::mem::size_of::<State>() == HEADER_BYTES + CAPACITY * ENTRY_BYTES);

/// The exported state. Its name is part of the probe contract.
#[unsafe(no_mangle)]
#[used]
pub static qbench_state: State = State {
    magic: AtomicU32::new(MAGIC),
    version: AtomicU32::new(VERSION),
    sequence: AtomicU64::new(0),
    seq: AtomicU64::new(0),
    request_ns: AtomicU64::new(0),
    pending: AtomicU32::new(0),
    threads: AtomicU32::new(0),
    table_len: AtomicU32::new(0),
    capacity: AtomicU32::new(CAPACITY as u32),
    table: [const {
        Participant {
            tid: AtomicI32::new(0),
            parked: AtomicU32::new(0),
            arrival_ns: AtomicU64::new(0),
        }
    }; CAPACITY],
};

/// Makes one change, bracketed by the sequence counter (odd while it is made). Callers hold the
/// registry lock, so there is one writer at a time.
fn write(change: impl FnOnce(&State)) {
    let s = &qbench_state;
    let start = s.sequence.load(Ordering::Relaxed);
    s.sequence.store(start.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    change(s);
    s.sequence.store(start.wrapping_add(2), Ordering::Release);
}

fn entry(slot: usize) -> Option<&'static Participant> {
    qbench_state.table.get(slot)
}

/// A thread registered, at `slot` (None: the table was full), `threads` now participating.
pub fn registered(slot: Option<usize>, tid: libc::pid_t, threads: usize) {
    write(|s| {
        if let Some(e) = slot.and_then(entry) {
            e.parked.store(0, Ordering::Relaxed);
            e.arrival_ns.store(0, Ordering::Relaxed);
            e.tid.store(tid, Ordering::Relaxed);
            let len = u32::try_from(slot.unwrap_or(0) + 1).unwrap_or(u32::MAX);
            s.table_len.fetch_max(len, Ordering::Relaxed);
        }
        s.threads.store(count(threads), Ordering::Relaxed);
    });
}

/// A thread left its `slot`, `threads` now participating.
pub fn unregistered(slot: Option<usize>, threads: usize) {
    write(|s| {
        if let Some(e) = slot.and_then(entry) {
            e.tid.store(0, Ordering::Relaxed);
            e.parked.store(0, Ordering::Relaxed);
        }
        s.threads.store(count(threads), Ordering::Relaxed);
    });
}

/// The thread at `slot` parked at `now_ns`.
pub fn arrived(slot: Option<usize>, now_ns: u64) {
    let Some(e) = slot.and_then(entry) else {
        return;
    };
    write(|_| {
        e.arrival_ns.store(now_ns, Ordering::Relaxed);
        e.parked.store(1, Ordering::Relaxed);
    });
}

/// The helper took up update `seq`, requested at `request_ns`.
pub fn pending(seq: u64, request_ns: u64) {
    write(|s| {
        s.seq.store(seq, Ordering::Relaxed);
        s.request_ns.store(request_ns, Ordering::Relaxed);
        s.pending.store(1, Ordering::Relaxed);
    });
}

/// The update ended: nobody is parked any more.
pub fn released() {
    write(|s| {
        s.pending.store(0, Ordering::Relaxed);
        for e in &s.table[..table_len(s)] {
            e.parked.store(0, Ordering::Relaxed);
            e.arrival_ns.store(0, Ordering::Relaxed);
        }
    });
}

/// A forked child starts with no update and only its forking thread (registered again after).
pub fn forked() {
    write(|s| {
        s.seq.store(0, Ordering::Relaxed);
        s.request_ns.store(0, Ordering::Relaxed);
        s.pending.store(0, Ordering::Relaxed);
        s.threads.store(0, Ordering::Relaxed);
        for e in &s.table[..table_len(s)] {
            e.tid.store(0, Ordering::Relaxed);
            e.parked.store(0, Ordering::Relaxed);
            e.arrival_ns.store(0, Ordering::Relaxed);
        }
        s.table_len.store(0, Ordering::Relaxed);
    });
}

fn table_len(s: &State) -> usize {
    (s.table_len.load(Ordering::Relaxed) as usize).min(CAPACITY)
}

fn count(threads: usize) -> u32 {
    u32::try_from(threads).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state's bytes as another process would copy them.
    fn bytes() -> Vec<u8> {
        let p = (&raw const qbench_state).cast::<u8>();
        // SAFETY: reads the static's own bytes; the tests write it from one thread at a time.
        unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<State>()) }.to_vec()
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn the_exported_bytes_follow_the_documented_layout() {
        use qbench_common::state::*;
        // The registry lock, as every writer holds it; the last slot, which no other test uses.
        let _registry = crate::state::runtime().map(|rt| rt.lock());
        let slot = CAPACITY - 1;
        registered(Some(slot), 4242, 1);
        pending(7, 123_456);
        arrived(Some(slot), 123_999);
        let b = bytes();
        assert_eq!(u32_at(&b, OFF_MAGIC), MAGIC);
        assert_eq!(u32_at(&b, OFF_VERSION), VERSION);
        assert_eq!(u64_at(&b, OFF_SEQUENCE) % 2, 0);
        assert_eq!(u64_at(&b, OFF_SEQ), 7);
        assert_eq!(u64_at(&b, OFF_REQUEST_NS), 123_456);
        assert_eq!(u32_at(&b, OFF_PENDING), 1);
        assert_eq!(u32_at(&b, OFF_THREADS), 1);
        assert_eq!(u32_at(&b, OFF_TABLE_LEN) as usize, CAPACITY);
        assert_eq!(u32_at(&b, OFF_CAPACITY) as usize, CAPACITY);
        let e = HEADER_BYTES + slot * ENTRY_BYTES;
        assert_eq!(u32_at(&b, e) as i32, 4242);
        assert_eq!(u32_at(&b, e + 4), 1);
        assert_eq!(u64_at(&b, e + 8), 123_999);
        released();
        let b = bytes();
        assert_eq!(u32_at(&b, OFF_PENDING), 0);
        assert_eq!(u32_at(&b, e + 4), 0);
        unregistered(Some(slot), 0);
        assert_eq!(u32_at(&bytes(), e), 0);
    }
}
