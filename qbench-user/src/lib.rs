//! qbench-trace library: the eBPF quiescence observer.

pub mod cli;
pub mod decode;
pub mod loader;
pub mod output;
pub mod procfs;
pub mod syscalls;
pub mod tracker;
