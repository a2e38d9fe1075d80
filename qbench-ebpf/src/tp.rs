//! Reading tracepoint records. A tracepoint program may load from its context directly at a
//! constant, naturally aligned offset (the verifier checks it), which is cheaper than the
//! `bpf_probe_read_kernel` call behind `TracePointContext::read_at`; the syscall tracepoints run
//! for every syscall on the machine, so that matters.

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};

/// The field of type `T` at `OFFSET` in the record (an offset from the event's `format` file).
#[inline(always)]
pub fn field<T: Copy, const OFFSET: usize>(ctx: &TracePointContext) -> T {
    // SAFETY: the context is the tracepoint's record; the callers' offsets and types are the
    // ones its format file gives, so the load is in bounds and aligned.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(OFFSET).cast::<T>()) }
}
