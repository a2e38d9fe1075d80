//! Wire types and names shared by qbench's eBPF programs (`qbench-ebpf`) and its userspace
//! observer (`qbench-user`).
//!
//! Every kernel→user type is defined once, here: `#[repr(C)]`, `Copy`, fixed-width fields only,
//! explicit padding, and a size assertion, so both sides agree on the layout byte for byte.
//! Names of programs, maps and globals are constants so that a rename cannot split the sides.

#![no_std]

/// Symbols of the probe contract (DESIGN §3) that the programs attach to.
pub mod symbols {
    /// The runtime's slow-path arrival anchor: `void qbench_probe_arrive(uint64_t generation)`.
    /// Entered only while an update is pending, when a thread parks at an update point.
    pub const PROBE_ARRIVE: &str = "qbench_probe_arrive";
}

/// Names of the eBPF programs, as the loader looks them up in the object.
pub mod programs {
    /// uprobe on [`crate::symbols::PROBE_ARRIVE`]: counts arrivals per thread.
    pub const ARRIVE: &str = "qbench_arrive";
}

/// Names of the maps in the object.
pub mod maps {
    /// `HashMap<u32 tid, Arrivals>`: arrivals of each thread of the target.
    pub const ARRIVALS: &str = "QBENCH_ARRIVALS";
    /// `PerCpuArray<u64>` of [`crate::MISS_COUNTERS`] entries: events that could not be recorded,
    /// indexed by the `MISS_*` constants. The observer reports them; nothing is lost silently.
    pub const MISSES: &str = "QBENCH_MISSES";
}

/// Names of the globals the loader sets before loading.
pub mod globals {
    /// `u32`: the tgid (process id) of the target; every program filters on it first.
    pub const TARGET_TGID: &str = "TARGET_TGID";
}

/// Capacity of per-thread maps: threads of the target that can be tracked at once.
pub const MAX_THREADS: u32 = 16_384;

/// [`maps::MISSES`] index: an arrival whose thread did not fit in [`maps::ARRIVALS`].
pub const MISS_ARRIVALS_FULL: u32 = 0;
/// Entries of [`maps::MISSES`].
pub const MISS_COUNTERS: u32 = 1;

/// Value of [`maps::ARRIVALS`]: what one thread did at the arrival anchor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// How many times the thread entered the anchor.
    pub count: u64,
    /// The `generation` argument of its latest entry (which update request it parked for).
    pub last_generation: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of its latest entry.
    pub last_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Arrivals>() == 24);
const _: () = assert!(core::mem::align_of::<Arrivals>() == 8);

// SAFETY: `Arrivals` is `repr(C)`, `Copy`, made of `u64`s only, with no padding (asserted above),
// so every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Arrivals {}
