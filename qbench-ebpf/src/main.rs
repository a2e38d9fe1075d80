//! qbench's eBPF programs: one module per probe family, maps and globals in `maps`.
//!
//! Built for `bpfel-unknown-none` by qbench-user's build script (aya-build, nightly,
//! bpf-linker). On the host the same code compiles as an ordinary binary that does nothing, so
//! that `cargo check/clippy/test --workspace` cover it without the eBPF toolchain.

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod anchors;
mod arrivals;
mod maps;
mod point;
mod signal;
mod syscalls;
mod threads;
mod tp;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Never reached: the programs are total, and the verifier rejects unbounded loops anyway.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

/// GPL-compatible, which the kernel requires for the tracing helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
