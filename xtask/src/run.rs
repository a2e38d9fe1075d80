//! Running external commands: quietly into a log file by default, so that each setup step stays
//! one line on the terminal, and the log is there to read when a step fails.

use std::{
    fmt::Write as _,
    fs::{File, OpenOptions},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Where install commands write their output.
#[derive(Debug)]
pub struct Runner {
    /// Stream output to the terminal instead of a log file.
    pub verbose: bool,
    /// The log file of the current step (appended to by each command of the step).
    pub log: PathBuf,
}

impl Runner {
    pub fn new(verbose: bool, step: &str) -> anyhow::Result<Self> {
        // Per user: a log left by root must not stop a later run as someone else.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let log = std::env::temp_dir().join(format!("qbench-xtask-setup-{uid}-{step}.log"));
        // Start each step's log afresh; commands append to it.
        File::create(&log).with_context(|| format!("cannot create log {}", log.display()))?;
        Ok(Self { verbose, log })
    }

    /// Runs `cmd` to completion; a non-zero exit is an error naming the command and the log.
    pub fn run(&self, cmd: &mut Command) -> anyhow::Result<()> {
        let shown = display(cmd);
        if !self.verbose {
            let log = OpenOptions::new().append(true).open(&self.log)?;
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
        }
        let status = cmd
            .status()
            .with_context(|| format!("cannot start `{shown}`"))?;
        if !status.success() {
            if self.verbose {
                bail!("`{shown}` failed ({status})");
            }
            bail!("`{shown}` failed ({status}; see {})", self.log.display());
        }
        Ok(())
    }
}

/// Runs `program args` and returns its trimmed stdout when it succeeds (a presence probe).
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A command as a user would type it, with the environment it sets.
pub fn display(cmd: &Command) -> String {
    let mut shown = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(shown, "{}={} ", key.display(), value.display());
        }
    }
    shown.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_and_args() {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22");
        assert_eq!(
            display(&cmd),
            "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker"
        );
    }

    #[test]
    fn output_is_none_for_a_missing_program() {
        assert_eq!(output("/nonexistent/qbench-probe", &[]), None);
        assert_eq!(output("true", &[]).as_deref(), Some(""));
    }
}
