//! A clean Debian system to install the packages into: a minbase bookworm tree, bootstrapped once
//! and cached, under a throwaway overlay (or a copy) with the kernel's file systems bound in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;

use super::cmd;

/// Where the bootstrapped tree is kept between runs.
pub const CACHE_DIR: &str = "/var/cache/qbench-dist";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Host directories bound into the chroot, in mount order (tracefs after the /sys it is under).
const BINDS: [&str; 4] = ["/proc", "/sys", "/sys/kernel/tracing", "/dev"];

/// The cached minbase tree, bootstrapped first if there is none (needs network to the mirror).
pub fn base_tree() -> anyhow::Result<PathBuf> {
    let tree = Path::new(CACHE_DIR).join(format!("{SUITE}-minbase"));
    if tree.join("usr/bin/dpkg").is_file() {
        println!("dist: clean {SUITE} system: cached in {}", tree.display());
        return Ok(tree);
    }
    if !cmd::available("debootstrap") {
        println!("dist: installing debootstrap (apt-get)");
        cmd::run(Command::new("apt-get").args(["install", "-y", "-q", "debootstrap"]))
            .context("cannot install debootstrap: run `apt-get update`, then try again")?;
    }
    // Bootstrapped beside its final place and renamed, so an interrupted run leaves no tree that
    // looks complete.
    let partial = tree.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(CACHE_DIR)?;
    println!(
        "dist: bootstrapping a minbase {SUITE} system into {} (once)",
        tree.display()
    );
    let started = Instant::now();
    cmd::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&partial)
            .arg(MIRROR),
    )?;
    std::fs::rename(&partial, &tree)?;
    println!(
        "dist: bootstrapped in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tree)
}

/// A writable copy of the base tree with /proc, /sys, tracefs and /dev bound in; dropping it
/// unmounts everything and deletes the copy.
#[derive(Debug)]
pub struct Chroot {
    pub root: PathBuf,
    work: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Chroot {
    /// Sets one up in `work` (emptied first) over `base`.
    pub fn new(base: &Path, work: &Path) -> anyhow::Result<Self> {
        // Canonical, as /proc/self/mounts writes mount points: the guard against deleting
        // through a mount compares with those.
        std::fs::create_dir_all(work)?;
        let work = work.canonicalize()?;
        cleanup_leftovers(&work)?;
        let root = work.join("root");
        let mut chroot = Self {
            root: root.clone(),
            work: work.clone(),
            mounts: Vec::new(),
        };
        for dir in ["root", "upper", "overlay-work"] {
            std::fs::create_dir_all(work.join(dir))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.display(),
            work.join("upper").display(),
            work.join("overlay-work").display()
        );
        let overlay = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&root)
            .status();
        if overlay.is_ok_and(|status| status.success()) {
            chroot.mounts.push(root.clone());
        } else {
            // No overlayfs here: a plain copy does the same, slower.
            std::fs::remove_dir(&root)?;
            cmd::run(Command::new("cp").arg("-a").arg(base).arg(&root))?;
        }
        for host in BINDS {
            let inside = root.join(host.trim_start_matches('/'));
            std::fs::create_dir_all(&inside)?;
            cmd::run(Command::new("mount").arg("--bind").arg(host).arg(&inside))?;
            chroot.mounts.push(inside);
        }
        Ok(chroot)
    }

    /// `program args` run inside, with a plain environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("chroot");
        command
            .arg(&self.root)
            .arg(program)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8");
        command
    }

    /// A path inside, as the host sees it.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for mount in self.mounts.iter().rev() {
            if let Err(err) = unmount(mount) {
                eprintln!("dist: {err:#}");
            }
        }
        if let Err(err) = remove_unmounted(&self.work) {
            eprintln!("dist: {err:#}");
        }
    }
}

/// Unmounts what an interrupted run left under `work`, deepest first, then removes it.
fn cleanup_leftovers(work: &Path) -> anyhow::Result<()> {
    let mut under = mounts_under(work)?;
    under.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in under {
        unmount(&point)?;
    }
    remove_unmounted(work)
}

/// Removes `work` only once nothing is mounted under it: deleting through a bound /dev or /sys
/// would delete the host's.
fn remove_unmounted(work: &Path) -> anyhow::Result<()> {
    let left = mounts_under(work)?;
    anyhow::ensure!(
        left.is_empty(),
        "not removing {}: {} still mounted there (unmount, then remove it)",
        work.display(),
        left.first()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    std::fs::remove_dir_all(work).with_context(|| format!("cannot remove {}", work.display()))
}

/// The mount points at or under `dir` (octal escapes, as in a path with a space, are rare enough
/// here to compare as written).
fn mounts_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// `umount`, lazily if something still holds the mount (a process that outlived the test).
fn unmount(point: &Path) -> anyhow::Result<()> {
    if cmd::run(Command::new("umount").arg(point)).is_ok() {
        return Ok(());
    }
    cmd::run(Command::new("umount").arg("--lazy").arg(point))
        .with_context(|| format!("cannot unmount {}", point.display()))
}
