//! Writes qbench-trace's man page, `qbench-trace.8`, generated from its command-line definition,
//! into the directory given as the only argument (`cargo xtask dist` packages it).
//!
//! Exit codes: 0 written, 1 cannot write, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory as _;
use qbench_user::cli::Args;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: qbench-trace-man DIR (the directory to write qbench-trace.8 into)");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(dir).join("qbench-trace.8");
    // Section 8: qbench-trace needs root (or CAP_BPF and CAP_PERFMON).
    let man = clap_mangen::Man::new(Args::command()).section("8");
    let mut page = Vec::new();
    if let Err(err) = man
        .render(&mut page)
        .and_then(|()| std::fs::write(&path, page))
    {
        eprintln!("qbench-trace-man: cannot write {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
