//! Running the packaging tools: a failure names the command and shows what it printed.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::run::display;

/// Runs `cmd` and returns its stdout; fails on a non-zero exit, with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, discarding its stdout; fails as `output` does.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    output(cmd).map(drop)
}

/// Whether `program` is on PATH.
pub fn available(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
