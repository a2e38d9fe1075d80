//! The eBPF side as userspace sees it: what loads the programs ([`loader`]), finds where to
//! attach them in the target ([`symbols`]; whether a file has the runtime at all:
//! [`elf_symtab`]) and attaches them ([`attach`], with the tracepoint field offsets of the
//! running kernel from [`tracepoint_layout`] and the task's from its BTF, [`btf`]), drains and
//! decodes the ring buffer ([`reader`], [`decode`]), probes the kernel's features ([`features`], [`selfprobe`]), sizes the maps from
//! the target ([`sizing`]), and words the kernel's refusals ([`refusal`]); `memlock` raises the
//! locked-memory limit older kernels charge maps to.

pub mod attach;
pub mod btf;
pub mod decode;
pub mod elf_symtab;
pub mod features;
pub mod loader;
mod memlock;
pub mod reader;
pub mod refusal;
pub mod selfprobe;
pub mod sizing;
pub mod symbols;
pub mod tracepoint_layout;
mod tracking;
