//! Arrival at an update point: a uprobe on the runtime's slow-path anchor.
//!
//! Kernel contract (DESIGN §3): `void qbench_probe_arrive(uint64_t generation)`, entered by a
//! thread that parks at an update point while an update is pending; on x86-64 `generation` is
//! the first argument register (rdi), read with `ctx.arg(0)`.

use aya_ebpf::{
    EbpfContext as _, bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, macros::uprobe,
    programs::ProbeContext,
};
use qbench_common::{Arrivals, MISS_ARRIVALS_FULL};

use crate::maps::{QBENCH_ARRIVALS, count_miss, target_tgid};

/// `qbench_common::programs::ARRIVE`.
#[uprobe]
pub fn qbench_arrive(ctx: ProbeContext) -> u32 {
    if let Err(miss) = try_arrive(&ctx) {
        count_miss(miss);
    }
    // A uprobe's return value is ignored by the kernel.
    0
}

/// Records the arrival of the current thread; `Err` is the `MISS_*` index to count.
#[inline(always)]
fn try_arrive(ctx: &ProbeContext) -> Result<(), u32> {
    // Filter first: the uprobe may be attached for every process mapping the library.
    if ctx.tgid() != target_tgid() {
        return Ok(());
    }
    let tid = ctx.pid();
    let generation: u64 = ctx.arg(0).unwrap_or(0);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match QBENCH_ARRIVALS.get_ptr_mut(tid) {
        Some(entry) => {
            // SAFETY: the entry is keyed by this thread's tid, so only this thread writes it, and
            // a uprobe handler never nests within one thread: the read-modify-write is race-free.
            unsafe {
                (*entry).count = (*entry).count.wrapping_add(1);
                (*entry).last_generation = generation;
                (*entry).last_ns = now;
            }
            Ok(())
        }
        None => {
            let first = Arrivals {
                count: 1,
                last_generation: generation,
                last_ns: now,
            };
            QBENCH_ARRIVALS
                .insert(tid, first, u64::from(BPF_NOEXIST))
                .map_err(|_| MISS_ARRIVALS_FULL)
        }
    }
}
