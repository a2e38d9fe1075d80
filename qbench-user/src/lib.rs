//! qbench-trace library: the eBPF quiescence observer.
//!
//! The layers, from the kernel up: [`kernel`] loads, attaches and reads the eBPF programs;
//! [`tracker`] turns their events into one report per update; [`diagnosis`] says why a thread
//! did not quiesce; [`report`] writes what was seen. [`procfs`] parses /proc, [`host`] checks
//! the machine and the target, [`observe`] and [`watch`] drive one target or many, and [`app`]
//! ties them to the command line ([`cli`]).

pub mod app;
pub mod cli;
pub mod clock;
pub mod diagnosis;
pub mod host;
pub mod kernel;
pub mod observe;
pub mod procfs;
pub mod report;
pub mod syscalls;
pub mod tracker;
pub mod watch;
