//! How big the maps of one load are: the ring buffer and the thread table grow with the target's
//! thread count, so that an update of every thread at once fits.

use std::fs;

/// Ring-buffer bytes budgeted per thread of the target: what one update costs a thread that is
/// interrupted, returns from its handler, arrives and departs (four records of 40 bytes or so),
/// with room for a straggler's calls until userspace drains the buffer on its next tick.
const EVENT_BYTES_PER_THREAD: u64 = 512;
/// The largest ring buffer sized automatically (`--ring-bytes` may ask for more).
const MAX_AUTO_EVENTS_BYTES: u64 = 64 << 20;

/// The ring buffer for a target of `threads` threads: [`qbench_common::EVENTS_BYTES`] at
/// least, else [`EVENT_BYTES_PER_THREAD`] a thread, rounded up to a power of two, so that an
/// update of every thread at once fits between two drains.
pub fn events_bytes_for(threads: usize) -> u32 {
    let wanted = (threads as u64)
        .saturating_mul(EVENT_BYTES_PER_THREAD)
        .next_power_of_two()
        .min(MAX_AUTO_EVENTS_BYTES);
    wanted.max(u64::from(qbench_common::EVENTS_BYTES)) as u32
}

/// How many threads process `tgid` has now (0 when it cannot be read: the defaults then apply).
pub fn thread_count(tgid: u32) -> usize {
    fs::read_dir(format!("/proc/{tgid}/task")).map_or(0, |dir| dir.count())
}

/// Entries of the thread table for a target of `threads` threads: twice as many (threads come
/// and go during an update), and [`qbench_common::MAX_THREADS`] at least.
pub fn thread_entries_for(threads: usize) -> u32 {
    let wanted = u32::try_from(threads.saturating_mul(2)).unwrap_or(u32::MAX);
    wanted.max(qbench_common::MAX_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_buffer_and_thread_table_grow_with_the_target() {
        assert_eq!(events_bytes_for(0), 256 << 10);
        assert_eq!(events_bytes_for(8), 256 << 10);
        assert_eq!(events_bytes_for(512), 256 << 10);
        assert_eq!(events_bytes_for(513), 512 << 10);
        assert_eq!(events_bytes_for(10_000), 8 << 20);
        assert_eq!(events_bytes_for(1 << 30), 64 << 20);
        assert_eq!(thread_entries_for(7), 16_384);
        assert_eq!(thread_entries_for(10_000), 20_000);
    }
}
