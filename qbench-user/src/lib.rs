//! qbench-trace library: the eBPF quiescence observer.
//!
//! The layers, from the kernel up: [`kernel`] loads, attaches and reads the eBPF programs;
//! [`tracker`] turns their events into one report per update; [`diagnosis`] says why a thread
//! did not quiesce; [`report`] writes what was seen. [`procfs`] parses /proc, [`host`] checks
//! the machine and the target. [`pipeline`] observes one process, from load to reports; the
//! diagnosis mode ([`observe`]) and the production mode ([`watch`]) drive it, each with its
//! settings and where its reports go. [`cli`] parses the command line, [`mode`] turns it into
//! one [`mode::Mode`], and [`app`] runs it.

pub mod app;
pub mod cli;
pub mod clock;
pub mod diagnosis;
pub mod host;
pub mod kernel;
pub mod mode;
pub mod observe;
pub mod pipeline;
pub mod procfs;
pub mod report;
pub mod runstate;
pub mod syscalls;
pub mod tracker;
pub mod watch;
