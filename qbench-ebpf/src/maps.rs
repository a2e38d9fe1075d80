//! Every map and global of the object, in one place. Their symbol names are the names in
//! `qbench_common::{maps, globals}`; the loader looks them up with `must_exist`, so a mismatch
//! fails at load time rather than silently.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use qbench_common::{Arrivals, MAX_THREADS, MISS_COUNTERS};

/// `qbench_common::globals::TARGET_TGID`, set by the loader before the object is loaded.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// The target's tgid. A volatile read, or the compiler would fold the initial 0 into the code
/// and the loader's value would never be seen.
#[inline(always)]
pub fn target_tgid() -> u32 {
    // SAFETY: a read of a plain `u32` static through a valid reference.
    unsafe { core::ptr::read_volatile(&raw const TARGET_TGID) }
}

/// `qbench_common::maps::ARRIVALS`.
#[map]
pub static QBENCH_ARRIVALS: HashMap<u32, Arrivals> = HashMap::with_max_entries(MAX_THREADS, 0);

/// `qbench_common::maps::MISSES`.
#[map]
pub static QBENCH_MISSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(MISS_COUNTERS, 0);

/// Counts an event that could not be recorded. Per-CPU, so a plain increment is race-free.
#[inline(always)]
pub fn count_miss(index: u32) {
    if let Some(counter) = QBENCH_MISSES.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of the array, which only this program run
        // touches until it returns (eBPF programs are not preempted on their CPU).
        unsafe { *counter = (*counter).wrapping_add(1) };
    }
}
