//! `cargo xtask real PROGRAM`: a real program of Debian's, unpatched and with each stage of the
//! patch in `workloads/real/PROGRAM/patches/`, built against the release runtime, run, and
//! observed by qbench-trace; one line per stage says what it reported.
//!
//! The source is fetched once (`apt-get source`) into `/var/cache/qbench-real`
//! (`QBENCH_REAL_CACHE`); the builds are in `target/real/PROGRAM/`, rebuilt only when a patch
//! changes. `--build-only` stops after building, for the integration tests
//! (`tests/tests/real_memcached.rs`, `tests/tests/real_iperf.rs`), which find the builds there.
//! What differs between the programs is in [`program`].

mod build;
pub mod observe;
pub mod program;
mod source;

use anyhow::Context as _;

use self::program::Spec;
use crate::workspace::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The program.
    #[arg(value_enum)]
    pub program: Program,
    /// Fetch the source again even when it is cached.
    #[arg(long)]
    pub refresh: bool,
    /// Build the unpatched program and every stage, and stop there.
    #[arg(long)]
    pub build_only: bool,
    /// Show the output of apt-get, configure and make instead of logging it.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Program {
    /// Debian's memcached 1.6 (bookworm: 1.6.18).
    Memcached,
    /// Debian's iperf 2 (bookworm: 2.1.8).
    Iperf,
}

impl Program {
    pub fn spec(self) -> &'static Spec {
        match self {
            Program::Memcached => &program::MEMCACHED,
            Program::Iperf => &program::IPERF,
        }
    }
}

/// The fully patched program (the last stage), built (with every stage) if needed.
pub fn patched(program: Program) -> anyhow::Result<std::path::PathBuf> {
    let spec = program.spec();
    run(&Args {
        program,
        refresh: false,
        build_only: true,
        verbose: false,
    })?;
    let last = build::variants(&patch_dir(spec))?
        .pop()
        .with_context(|| format!("no stage of the {} patch", spec.name))?;
    Ok(build::build_root(spec.name).join(&last.name).join(spec.exe))
}

fn patch_dir(spec: &Spec) -> std::path::PathBuf {
    workspace::root()
        .join("workloads/real")
        .join(spec.name)
        .join("patches")
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let spec = args.program.spec();
    let program = spec.name;
    let source = source::fetch(program, spec.tools, args.refresh, args.verbose)?;
    build::release_runtime()?;
    let variants = build::variants(&patch_dir(spec))?;
    let mut built = Vec::new();
    for variant in &variants {
        built.push(build::build(spec, &source.dir, variant, args.verbose)?);
    }
    if args.build_only {
        return Ok(());
    }
    workspace::cargo(&["build", "-p", "qbench-user"])?;
    let qbench_trace = workspace::profile_dir(Profile::Debug).join("qbench-trace");
    println!(
        "real: {program} {}, {}, observed by qbench-trace:",
        source.version, spec.shown
    );
    for (variant, exe) in variants.iter().zip(&built) {
        let (runtime_threads, trace_args): (usize, &[&str]) = if variant.patches.is_empty() {
            (0, spec.unpatched_trace)
        } else {
            // the runtime's helper thread
            (1, &program::STAGE_TRACE)
        };
        let server = observe::Server::start(spec, exe, runtime_threads)
            .with_context(|| format!("{}: {}", variant.title, exe.display()))?;
        let reports = observe::trace(&qbench_trace, server.pid(), trace_args)
            .with_context(|| format!("{}: qbench-trace {}", variant.title, trace_args.join(" ")))?;
        drop(server);
        println!(
            "  {:<28} qbench-trace {:<42} {}",
            variant.title,
            trace_args.join(" "),
            observe::summary(&reports)
        );
    }
    Ok(())
}
