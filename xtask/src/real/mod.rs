//! `cargo xtask real PROGRAM`: a real program of Debian's, unpatched and with each stage of the
//! patch in `workloads/real/PROGRAM/patches/`, built against the release runtime, run, and
//! observed by qbench-trace; one line per stage says what it reported.
//!
//! The source is fetched once (`apt-get source`) into `/var/cache/qbench-real`
//! (`QBENCH_REAL_CACHE`); the builds are in `target/real/PROGRAM/`, rebuilt only when a patch
//! changes. `--build-only` stops after building, for the integration tests
//! (`tests/tests/real_memcached.rs`), which find the builds there.

mod build;
pub mod observe;
mod source;

use anyhow::Context as _;

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
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Memcached => "memcached",
        }
    }
}

/// The arguments of qbench-trace for the unpatched program, which has no update points: a
/// function its worker loop calls (the connection event handler) and the signal memcached
/// handles itself (SIGHUP: it only sets a flag).
const UNPATCHED_TRACE: [&str; 5] = ["--point", "event_handler", "--signal", "HUP", "--request"];
/// The arguments for a stage: three update requests by the runtime's signal.
const STAGE_TRACE: [&str; 3] = ["--request", "--count", "3"];

/// The fully patched memcached (the last stage), built (with every stage) if needed.
pub fn patched_memcached() -> anyhow::Result<std::path::PathBuf> {
    run(&Args {
        program: Program::Memcached,
        refresh: false,
        build_only: true,
        verbose: false,
    })?;
    let patch_dir = workspace::root().join("workloads/real/memcached/patches");
    let last = build::variants(&patch_dir)?
        .pop()
        .context("no stage of the memcached patch")?;
    Ok(build::build_root("memcached")
        .join(&last.name)
        .join("memcached"))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let program = args.program.name();
    let source = source::fetch(program, args.refresh, args.verbose)?;
    build::release_runtime()?;
    let patch_dir = workspace::root()
        .join("workloads/real")
        .join(program)
        .join("patches");
    let variants = build::variants(&patch_dir)?;
    let mut built = Vec::new();
    for variant in &variants {
        built.push(build::build(program, &source.dir, variant, args.verbose)?);
    }
    if args.build_only {
        return Ok(());
    }
    workspace::cargo(&["build", "-p", "qbench-user"])?;
    let qbench_trace = workspace::profile_dir(Profile::Debug).join("qbench-trace");
    println!(
        "real: {program} {}, -t 4, observed by qbench-trace:",
        source.version
    );
    for (variant, exe) in variants.iter().zip(&built) {
        let (runtime_threads, trace_args): (usize, &[&str]) = if variant.patches.is_empty() {
            (0, &UNPATCHED_TRACE)
        } else {
            // the runtime's helper thread
            (1, &STAGE_TRACE)
        };
        let memcached = observe::Memcached::start(exe, runtime_threads)
            .with_context(|| format!("{}: {}", variant.title, exe.display()))?;
        let reports = observe::trace(&qbench_trace, memcached.pid(), trace_args)
            .with_context(|| format!("{}: qbench-trace {}", variant.title, trace_args.join(" ")))?;
        drop(memcached);
        println!(
            "  {:<26} qbench-trace {:<42} {}",
            variant.title,
            trace_args.join(" "),
            observe::summary(&reports)
        );
    }
    Ok(())
}
