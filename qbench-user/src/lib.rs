//! qbench-trace library: the eBPF quiescence observer.

pub mod cli;
pub mod loader;
