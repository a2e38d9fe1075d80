//! The tarballs: the package's tree under a `usr/` prefix, and its debug files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cmd;

/// `members` of `root` as `out`, every one under usr/, owned by root, in a stable order. A member
/// under lib/ (the systemd unit) goes to usr/lib/, the same place on a merged-/usr system;
/// members are files there, never the directory `lib` itself, whose entry would replace the
/// /lib symlink of such a system when extracted at /.
pub fn build(root: &Path, members: &[&str], out: &Path) -> anyhow::Result<PathBuf> {
    let mut tar = Command::new("tar");
    tar.args([
        "--create",
        "--use-compress-program=gzip -9n",
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--transform=s,^lib/,usr/lib/,",
    ])
    .arg("--file")
    .arg(out)
    .arg("-C")
    .arg(root)
    .args(members);
    cmd::run(&mut tar)?;
    Ok(out.to_path_buf())
}
