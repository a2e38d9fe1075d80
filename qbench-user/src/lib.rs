//! qbench-trace library: the eBPF quiescence observer.

pub mod app;
pub mod capabilities;
pub mod check;
pub mod cli;
pub mod clock;
pub mod decode;
pub mod diagnose;
pub mod evidence;
pub mod features;
pub mod loader;
pub mod maps;
pub mod memory;
pub mod observe;
pub mod output;
pub mod pictures;
pub mod preflight;
pub mod procfs;
pub mod reader;
pub mod readiness;
pub mod refusal;
pub mod selfprobe;
pub mod stack;
pub mod syscalls;
pub mod tracepoint_layout;
pub mod tracker;
pub mod watch;
