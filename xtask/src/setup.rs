//! `cargo xtask setup`: checks each thing the eBPF build and the observer need, installs what is
//! missing, and prints one line per step. A second run finds everything present and does nothing.

mod steps;

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::run::Runner;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Only report what is present and what is missing; change nothing (exit 1 if anything is
    /// missing).
    #[arg(long)]
    check: bool,
    /// Show the output of install commands instead of writing it to a log file.
    #[arg(short, long)]
    verbose: bool,
}

/// One thing the project needs, how to tell whether it is there, and how to install it.
#[derive(Debug)]
pub struct Step {
    /// Short name, used in messages and in the log file's name.
    pub name: &'static str,
    /// What the presence probe looks at, for the report line.
    pub probe_what: &'static str,
    /// `Some(detail)` when present.
    pub probe: fn() -> Option<String>,
    /// What the install does, as a user would type it.
    pub install_what: &'static str,
    pub install: fn(&Runner) -> anyhow::Result<()>,
    /// Installing needs root (apt, mount).
    pub needs_root: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let steps = steps::all();
    let total = steps.len();
    let mut missing = Vec::new();
    let mut installed = 0;
    for (index, step) in steps.iter().enumerate() {
        let prefix = format!("[{}/{total}] {}:", index + 1, step.name);
        if let Some(detail) = (step.probe)() {
            println!("{prefix} {} -> present ({detail})", step.probe_what);
            continue;
        }
        if args.check {
            println!(
                "{prefix} {} -> MISSING (setup would run `{}`)",
                step.probe_what, step.install_what
            );
            missing.push(step.name);
            continue;
        }
        if step.needs_root && !is_root() {
            bail!(
                "step {}: installing it needs root: run `sudo -E cargo xtask setup` (it would run `{}`)",
                step.name,
                step.install_what
            );
        }
        print!(
            "{prefix} {} -> missing; running `{}` ... ",
            step.probe_what, step.install_what
        );
        let _ = std::io::stdout().flush();
        let started = Instant::now();
        let result = install(step, args.verbose);
        match &result {
            Ok(detail) => println!("done in {} ({detail})", seconds(started.elapsed())),
            Err(_) => println!("FAILED after {}", seconds(started.elapsed())),
        }
        result.with_context(|| format!("step {}", step.name))?;
        installed += 1;
    }
    if !missing.is_empty() {
        bail!(
            "missing: {}; run `cargo xtask setup` as root to install",
            missing.join(", ")
        );
    }
    if installed == 0 {
        println!("setup: everything is present; nothing to do");
    } else {
        println!("setup: installed {installed} of {total}; everything is present now");
    }
    Ok(())
}

/// Installs, then probes again: an install that "worked" but left the thing unfindable (for
/// example `~/.cargo/bin` not on `PATH`) is still a failure.
fn install(step: &Step, verbose: bool) -> anyhow::Result<String> {
    let runner = Runner::new(verbose, step.name)?;
    (step.install)(&runner)?;
    (step.probe)().with_context(|| {
        format!(
            "installed, but {} still finds nothing (log: {})",
            step.probe_what,
            runner.log.display()
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1} s", elapsed.as_secs_f64())
}
