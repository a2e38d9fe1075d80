//! Where the workspace and its build outputs are, and running cargo inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

/// The build output directory, honouring CARGO_TARGET_DIR.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// target/debug or target/release, honouring CARGO_TARGET_DIR.
pub fn profile_dir(profile: Profile) -> PathBuf {
    target_dir().join(match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    })
}

/// The cargo that runs this xtask.
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cargo ARGS` in the workspace, its output on the terminal; fails on a non-zero exit.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = cargo_command()
        .args(args)
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    ensure!(
        status.success(),
        "`cargo {}` failed ({status})",
        args.join(" ")
    );
    Ok(())
}

/// `cargo xtask` is a `cargo run`, and cargo puts the workspace's own output directories
/// (target/debug, target/debug/deps) at the head of LD_LIBRARY_PATH, which the dynamic loader
/// searches before a program's RUNPATH. A C program built against the release libqbench.so would
/// then load the debug one: benchmarks would time an unoptimised runtime, and probes placed on the
/// release library would never fire. This removes the entries under the target directory and
/// keeps whatever the user had set.
///
/// Called first in `main`, while xtask has a single thread (changing the environment is not
/// thread-safe).
pub fn drop_cargo_library_path() {
    let Some(value) = std::env::var_os("LD_LIBRARY_PATH") else {
        return;
    };
    let target = target_dir();
    let kept: Vec<PathBuf> = std::env::split_paths(&value)
        .filter(|dir| !dir.starts_with(&target))
        .collect();
    if kept.is_empty() {
        // SAFETY: called before xtask starts any thread, so nothing reads the environment
        // concurrently.
        unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    } else if let Ok(joined) = std::env::join_paths(kept) {
        // SAFETY: as above, xtask is still single-threaded.
        unsafe { std::env::set_var("LD_LIBRARY_PATH", joined) };
    }
}
