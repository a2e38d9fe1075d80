//! `cargo xtask`: developer tasks of the qbench workspace.
//!
//! Exit codes: 0 success, 1 a task failed (or `setup --check` found something missing),
//! 2 bad usage.

mod bench;
mod debian;
mod demo;
mod dist;
mod install;
mod real;
mod run;
mod setup;
mod target;
mod test;
mod vm;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer tasks of the qbench workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and running the eBPF observer needs (idempotent; run as root).
    Setup(setup::Args),
    /// Set up, build, and run the demo: a target program, real update requests, both reports.
    Demo(demo::Args),
    /// Set up, then check formatting and lints, build, and run every test.
    Test(test::Args),
    /// Install the runtime's library, header and pkg-config file under a prefix.
    Install(install::Args),
    /// Run a benchmark.
    Bench(bench::Args),
    /// Build the .deb and tarballs of qbench-trace and libqbench in target/dist/ (`--test`:
    /// install the .deb on a clean Debian system and check it works, as root).
    Dist(dist::Args),
    /// Boot Debian's 5.10, 6.1 and 6.12 kernels under QEMU and check qbench-trace on each.
    VmTest(vm::Args),
    /// Fetch a real program's Debian source, build it unpatched and with each stage of its
    /// qbench patch, run each and observe it with qbench-trace (as root).
    Real(real::Args),
}

fn main() -> ExitCode {
    workspace::drop_cargo_library_path();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Install(args) => install::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Dist(args) => dist::run(&args),
        Command::VmTest(args) => vm::run(&args),
        Command::Real(args) => real::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` keeps the whole context chain on one line.
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
