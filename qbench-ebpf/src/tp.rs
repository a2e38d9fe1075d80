//! Reading tracepoint records. Where each field lies is the kernel's business: the loader reads
//! every offset from the running kernel's `format` files and sets them in the read-only global
//! `TRACEPOINT_OFFSETS` before loading. The verifier treats a load from a frozen read-only map as
//! a known constant, but allows a context load only at an offset fixed in the instruction. So a
//! field whose offset is the usual one (`qbench_common::tracepoints::Field::usual`) is loaded
//! directly, and the verifier removes the other branch as dead code; on a kernel that puts it
//! elsewhere it is copied with `bpf_probe_read_kernel`, which costs a helper call.

use aya_ebpf::{EbpfContext as _, helpers::bpf_probe_read_kernel, programs::TracePointContext};
use qbench_common::tracepoints::{FieldId, Offsets};

/// `qbench_common::globals::TRACEPOINT_OFFSETS`, set by the loader before the object is loaded.
#[unsafe(no_mangle)]
static TRACEPOINT_OFFSETS: Offsets = Offsets::UNSET;

/// The offset of field `id` on this kernel. A volatile read, or the compiler would fold the
/// placeholder into the code.
#[inline(always)]
fn offset(id: FieldId) -> usize {
    // SAFETY: a read of a plain `u32` inside a static, through a valid reference.
    unsafe { core::ptr::read_volatile(&raw const TRACEPOINT_OFFSETS.at[id as usize]) as usize }
}

/// The `T` at `EXTRA` bytes into field `id` of the record (`EXTRA` > 0 for an element of an array
/// field), where `USUAL` is `qbench_common::tracepoints::usual(id)`.
#[inline(always)]
pub fn field_at<T: Copy + Default, const USUAL: usize, const EXTRA: usize>(
    ctx: &TracePointContext,
    id: FieldId,
) -> T {
    let base = ctx.as_ptr().cast::<u8>();
    if offset(id) == USUAL {
        // SAFETY: the loader checked that this kernel's record has the field at `USUAL`, of the
        // size `T` is read with and aligned for it; the verifier checks the load is in bounds.
        unsafe { core::ptr::read_volatile(base.add(USUAL + EXTRA).cast::<T>()) }
    } else {
        // SAFETY: the pointer is inside the record (the loader read the offset from the
        // kernel's format file); a failed copy yields the default rather than garbage.
        unsafe { bpf_probe_read_kernel(base.add(offset(id) + EXTRA).cast::<T>()) }
            .unwrap_or_default()
    }
}

/// The field `$id` (a `FieldId` variant) of the record `$ctx`, of type `$ty`; with a fourth
/// argument, the element that many bytes into it.
macro_rules! field {
    ($ctx:expr, $id:ident, $ty:ty) => {
        $crate::tp::field!($ctx, $id, $ty, 0)
    };
    ($ctx:expr, $id:ident, $ty:ty, $extra:expr) => {
        $crate::tp::field_at::<
            $ty,
            { qbench_common::tracepoints::usual(qbench_common::tracepoints::FieldId::$id) },
            { $extra },
        >($ctx, qbench_common::tracepoints::FieldId::$id)
    };
}
pub(crate) use field;
