//! qbench-trace from parsed arguments to the end of the observation: the checks, the load and
//! attach, then the observing loop.

use std::num::NonZeroU32;

use crate::cli::Args;
use crate::host::preflight;
use crate::host::request::Requester;
use crate::kernel::loader::{AttachMode, LoadOptions, Probes};
use crate::kernel::symbols::TargetObjects;
use crate::observe::{self, Kernel, Summary};
use crate::syscalls;

impl Kernel for Probes {
    fn snapshot_threads(&self) -> anyhow::Result<Vec<(u32, qbench_common::ThreadState)>> {
        Ok(Probes::snapshot_threads(self)?)
    }

    fn close_window(&mut self) -> anyhow::Result<()> {
        Ok(Probes::close_window(self)?)
    }

    fn lost_events(&self) -> anyhow::Result<u64> {
        let misses = self.misses()?;
        Ok(misses[qbench_common::MISS_RINGBUF_FULL as usize]
            + misses[qbench_common::MISS_THREADS_FULL as usize])
    }
}

/// Observes the process `args.pid()` as the arguments say. An error is one line for the user.
pub fn run(args: &Args) -> anyhow::Result<Summary> {
    if args.watch {
        crate::watch::run(args)?;
        // Stopped by a signal: every update was logged and counted, none is an exit status.
        return Ok(Summary {
            updates: 0,
            dnq: 0,
            target_exited: false,
        });
    }
    let target = preflight::target(args.pid())?;
    preflight::privileges()?;
    preflight::kernel()?;
    let pid =
        NonZeroU32::new(args.pid()).ok_or_else(|| anyhow::anyhow!("pid 0 is not a process"))?;
    // Held by a pidfd from here on, and checked to catch the signal before anything is loaded.
    let requester = if args.request {
        Some(Requester::open(args.pid(), args.signal, args.force_signal)?)
    } else {
        None
    };
    let objects = TargetObjects::of(pid)?;
    let mode = AttachMode::detect(&objects, &args.points)?;
    let options = LoadOptions {
        events_bytes: args.ring_bytes,
        blocking: syscalls::tracked_numbers(),
        ..LoadOptions::default()
    };
    let mut probes = Probes::load(pid, args.signal as u32, &options)?;
    probes.attach(&mode)?;
    let events = probes.take_events()?;
    if !args.json || args.verbose > 0 {
        eprintln!(
            "qbench-trace: attached to pid {} ({}): {}; {} blocking syscalls tracked; {}",
            args.pid(),
            crate::report::output::escape(&target.comm),
            describe(&mode),
            syscalls::TRACKED.len(),
            if args.request {
                "requesting updates"
            } else {
                "waiting for update requests (Ctrl-C to stop)"
            },
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(observe::run(args, probes, events, requester))
}

fn describe(mode: &AttachMode) -> String {
    match mode {
        AttachMode::Runtime(_) => "the runtime's probe anchors".to_string(),
        AttachMode::Points(points) => format!("{} update point(s)", points.len()),
    }
}
