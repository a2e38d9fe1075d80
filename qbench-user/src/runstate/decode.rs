//! The bytes of the runtime's `qbench_state` (layout: `qbench_common::state`) turned into what
//! the observer uses. Pure: the caller copies the memory.

use qbench_common::state::{
    CAPACITY, ENTRY_BYTES, HEADER_BYTES, MAGIC, OFF_CAPACITY, OFF_MAGIC, OFF_PENDING,
    OFF_REQUEST_NS, OFF_SEQ, OFF_SEQUENCE, OFF_TABLE_LEN, OFF_THREADS, OFF_VERSION, VERSION,
};

/// Why a copy of the state cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("qbench_state is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("qbench_state has magic {0:#x}, not the runtime's")]
    Magic(u32),
    #[error("qbench_state is version {0}; this qbench-trace reads version {VERSION}")]
    Version(u32),
    #[error("qbench_state says its table holds {len} of {capacity} entries")]
    Table { len: u32, capacity: u32 },
    /// The runtime was writing it (or wrote it during the copy): copy again.
    #[error("qbench_state changed while it was read")]
    Torn,
}

/// One participating thread as the runtime lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    pub tid: u32,
    /// When it parked for the pending update; None when it is not parked.
    pub arrival_ns: Option<u64>,
}

/// The runtime's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// The latest update the helper took up, and its request time.
    pub seq: u64,
    pub request_ns: u64,
    pub pending: bool,
    /// Participating threads, which may be more than the table lists.
    pub threads: u32,
    pub participants: Vec<Participant>,
}

impl RuntimeState {
    /// Whether the table names every participating thread.
    pub fn complete(&self) -> bool {
        self.participants.len() >= self.threads as usize
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(word)
}

/// The sequence word of a copy of (at least) the state's header.
pub fn sequence(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= OFF_SEQUENCE + 8).then(|| u64_at(bytes, OFF_SEQUENCE))
}

/// How many bytes to copy for the whole table, from a copy of the header.
pub fn full_len(header: &[u8]) -> Result<usize, DecodeError> {
    Ok(HEADER_BYTES + table_len(header)? * ENTRY_BYTES)
}

/// The entries in use, checked against the capacity and the layout's.
fn table_len(b: &[u8]) -> Result<usize, DecodeError> {
    if b.len() < HEADER_BYTES {
        return Err(DecodeError::Short(b.len()));
    }
    let magic = u32_at(b, OFF_MAGIC);
    if magic != MAGIC {
        return Err(DecodeError::Magic(magic));
    }
    let version = u32_at(b, OFF_VERSION);
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let (len, capacity) = (u32_at(b, OFF_TABLE_LEN), u32_at(b, OFF_CAPACITY));
    if len > capacity || capacity as usize > CAPACITY {
        return Err(DecodeError::Table { len, capacity });
    }
    Ok(len as usize)
}

/// The table entry at byte `at` of `b` (`ENTRY_BYTES` long): its thread and, when it is parked,
/// its arrival time; None for a free entry (tid 0).
pub fn entry(b: &[u8], at: usize) -> Option<(u32, Option<u64>)> {
    let tid = u32_at(b, at) as i32;
    let parked = u32_at(b, at + 4) != 0;
    (tid > 0).then(|| (tid as u32, parked.then(|| u64_at(b, at + 8))))
}

/// Decodes one copy whose sequence word, read again after the copy, was `sequence_after`.
pub fn decode(b: &[u8], sequence_after: u64) -> Result<RuntimeState, DecodeError> {
    let len = table_len(b)?;
    let before = u64_at(b, OFF_SEQUENCE);
    if before % 2 == 1 || before != sequence_after {
        return Err(DecodeError::Torn);
    }
    if b.len() < HEADER_BYTES + len * ENTRY_BYTES {
        return Err(DecodeError::Short(b.len()));
    }
    let pending = u32_at(b, OFF_PENDING) != 0;
    let participants = (0..len)
        .filter_map(|i| entry(b, HEADER_BYTES + i * ENTRY_BYTES))
        .map(|(tid, arrival_ns)| Participant {
            tid,
            arrival_ns: arrival_ns.filter(|_| pending),
        })
        .collect();
    Ok(RuntimeState {
        seq: u64_at(b, OFF_SEQ),
        request_ns: u64_at(b, OFF_REQUEST_NS),
        pending,
        threads: u32_at(b, OFF_THREADS),
        participants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the state with `entries` as (tid, parked, arrival_ns).
    fn image(sequence: u64, pending: bool, threads: u32, entries: &[(i32, u32, u64)]) -> Vec<u8> {
        let mut b = vec![0; HEADER_BYTES + entries.len() * ENTRY_BYTES];
        b[OFF_MAGIC..][..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[OFF_VERSION..][..4].copy_from_slice(&VERSION.to_le_bytes());
        b[OFF_SEQUENCE..][..8].copy_from_slice(&sequence.to_le_bytes());
        b[OFF_SEQ..][..8].copy_from_slice(&3u64.to_le_bytes());
        b[OFF_REQUEST_NS..][..8].copy_from_slice(&1_000u64.to_le_bytes());
        b[OFF_PENDING..][..4].copy_from_slice(&u32::from(pending).to_le_bytes());
        b[OFF_THREADS..][..4].copy_from_slice(&threads.to_le_bytes());
        b[OFF_TABLE_LEN..][..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        b[OFF_CAPACITY..][..4].copy_from_slice(&(CAPACITY as u32).to_le_bytes());
        for (i, (tid, parked, at)) in entries.iter().enumerate() {
            let e = HEADER_BYTES + i * ENTRY_BYTES;
            b[e..][..4].copy_from_slice(&tid.to_le_bytes());
            b[e + 4..][..4].copy_from_slice(&parked.to_le_bytes());
            b[e + 8..][..8].copy_from_slice(&at.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_pending_update_lists_parked_and_missing_participants() {
        let b = image(4, true, 2, &[(10, 1, 1_500), (0, 0, 0), (12, 0, 0)]);
        assert_eq!(full_len(&b), Ok(b.len()));
        let state = decode(&b, 4).expect("decodes");
        assert_eq!(
            state,
            RuntimeState {
                seq: 3,
                request_ns: 1_000,
                pending: true,
                threads: 2,
                participants: vec![
                    Participant {
                        tid: 10,
                        arrival_ns: Some(1_500)
                    },
                    Participant {
                        tid: 12,
                        arrival_ns: None
                    },
                ],
            }
        );
        assert!(state.complete());
    }

    #[test]
    fn no_arrival_is_read_when_no_update_is_pending() {
        let state = decode(&image(2, false, 1, &[(10, 1, 1_500)]), 2).expect("decodes");
        assert_eq!(state.participants[0].arrival_ns, None);
    }

    #[test]
    fn a_copy_made_while_the_runtime_wrote_is_refused() {
        assert_eq!(decode(&image(5, true, 0, &[]), 5), Err(DecodeError::Torn));
        assert_eq!(decode(&image(4, true, 0, &[]), 6), Err(DecodeError::Torn));
    }

    #[test]
    fn a_table_shorter_than_the_participants_is_incomplete() {
        let state = decode(&image(0, false, 3, &[(10, 0, 0)]), 0).expect("decodes");
        assert!(!state.complete());
    }

    #[test]
    fn another_layout_is_refused_by_name() {
        let mut b = image(0, false, 0, &[]);
        b[OFF_VERSION] = 9;
        assert_eq!(decode(&b, 0), Err(DecodeError::Version(9)));
        b[OFF_MAGIC] = 0;
        assert!(matches!(decode(&b, 0), Err(DecodeError::Magic(_))));
        assert_eq!(decode(&b[..10], 0), Err(DecodeError::Short(10)));
        let mut b = image(0, false, 0, &[]);
        b[OFF_TABLE_LEN] = 200;
        b[OFF_CAPACITY] = 100;
        assert!(matches!(full_len(&b), Err(DecodeError::Table { .. })));
    }
}
