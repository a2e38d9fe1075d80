//! Checks made before loading anything, so that each common failure gets one line that names
//! the problem and what to do: the target, the privileges, the kernel's features.

use std::path::{Path, PathBuf};

/// A failed check. Each message is one line meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("no process with pid {0} (check the number with `pgrep` or `ps`)")]
    NoSuchProcess(u32),
    #[error("pid {pid} is a kernel thread ({comm}); it has no update points to observe")]
    KernelThread { pid: u32, comm: String },
    #[error("pid {0} is qbench-trace itself; give the pid of the program to observe")]
    Itself(u32),
    #[error("pid {0} is a thread, not a process; its process is pid {1}")]
    NotAProcess(u32, u32),
    #[error("qbench-trace needs root, or the capabilities {0} (run it with sudo)")]
    Privileges(String),
    #[error(
        "the kernel has no BTF ({0} is missing); qbench-trace needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf(String),
    #[error("the kernel has no uprobes ({0} is missing); qbench-trace needs CONFIG_UPROBE_EVENTS")]
    NoUprobes(String),
    #[error("the kernel {0} has no BPF ring buffer (needs Linux 5.8 or later)")]
    NoRingBuffer(String),
}

/// What the checks learnt about the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    /// The executable, as a path that works from this mount namespace.
    pub exe: PathBuf,
}

const PF_KTHREAD: u64 = 0x0020_0000;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The target exists, is a process (not one of its threads, not a kernel thread), and is not us.
pub fn target(pid: u32) -> Result<Target, PreflightError> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    // Read as bytes: a name that is not UTF-8 is still a process.
    let status =
        crate::procfs::read(dir.join("status")).ok_or(PreflightError::NoSuchProcess(pid))?;
    let stat = crate::procfs::read(dir.join("stat")).ok_or(PreflightError::NoSuchProcess(pid))?;
    let comm = crate::procfs::parse_stat(&stat)
        .map(|(c, _)| c)
        .unwrap_or_default();
    if stat_flags(&stat).is_some_and(|f| f & PF_KTHREAD != 0) {
        return Err(PreflightError::KernelThread { pid, comm });
    }
    if pid == std::process::id() {
        return Err(PreflightError::Itself(pid));
    }
    if let Some(tgid) = status_field(&status, "Tgid:").and_then(|v| v.parse::<u32>().ok())
        && tgid != pid
    {
        return Err(PreflightError::NotAProcess(pid, tgid));
    }
    Ok(Target {
        pid,
        comm,
        exe: dir.join("exe"),
    })
}

/// Root, or CAP_BPF with CAP_PERFMON (CAP_SYS_ADMIN covers both on older kernels).
pub fn privileges() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status_field(&status, "CapEff:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    missing_capabilities(caps).map_or(Ok(()), |missing| Err(PreflightError::Privileges(missing)))
}

/// The capabilities the effective set `caps` lacks, as "CAP_BPF and CAP_PERFMON".
pub fn missing_capabilities(caps: u64) -> Option<String> {
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    Some(missing.join(" and "))
}

/// BTF, uprobes and ring buffers are there.
pub fn kernel() -> Result<(), PreflightError> {
    kernel_at(
        Path::new("/"),
        &std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
    )
}

fn kernel_at(root: &Path, release: &str) -> Result<(), PreflightError> {
    let btf = root.join("sys/kernel/btf/vmlinux");
    if !btf.exists() {
        return Err(PreflightError::NoBtf(btf.display().to_string()));
    }
    let uprobe = root.join("sys/bus/event_source/devices/uprobe");
    if !uprobe.exists() {
        return Err(PreflightError::NoUprobes(uprobe.display().to_string()));
    }
    let release = release.trim();
    if kernel_version(release).is_some_and(|v| v < (5, 8)) {
        return Err(PreflightError::NoRingBuffer(release.to_string()));
    }
    Ok(())
}

/// (major, minor) of a release such as "6.18.44-fc".
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// The `flags` field (the 9th) of /proc/PID/stat.
fn stat_flags(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the name: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    after_comm.split_whitespace().nth(6)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        assert_eq!(missing_capabilities(u64::MAX), None);
        assert_eq!(missing_capabilities(1 << CAP_SYS_ADMIN), None);
        assert_eq!(
            missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)),
            None
        );
        assert_eq!(
            missing_capabilities(0),
            Some("CAP_BPF and CAP_PERFMON".into())
        );
        assert_eq!(
            missing_capabilities(1 << CAP_BPF),
            Some("CAP_PERFMON".into())
        );
    }

    #[test]
    fn kernel_threads_are_recognised_by_their_flags() {
        let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert_eq!(stat_flags(kthreadd), Some(2_129_984));
        assert!(stat_flags(kthreadd).is_some_and(|f| f & PF_KTHREAD != 0));
        let user = "42 (my (odd) prog) S 1 42 42 0 -1 4194560 0";
        assert_eq!(stat_flags(user).map(|f| f & PF_KTHREAD), Some(0));
    }

    #[test]
    fn targets() {
        assert_eq!(
            target(u32::MAX >> 1),
            Err(PreflightError::NoSuchProcess(u32::MAX >> 1))
        );
        assert_eq!(
            target(std::process::id()),
            Err(PreflightError::Itself(std::process::id()))
        );
        if let Err(e) = target(2) {
            assert!(
                matches!(e, PreflightError::KernelThread { pid: 2, .. }),
                "{e}"
            );
        }
        let me = std::process::id();
        let thread = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() as u32 }
        });
        let tid = thread.join().expect("thread");
        // The thread has exited; its id is no process either way.
        assert!(target(tid).is_err());
        assert_ne!(tid, me);
    }

    #[test]
    fn kernel_features() {
        let dir = std::env::temp_dir().join(format!("qbench-preflight-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(
            kernel_at(&dir, "6.18.0"),
            Err(PreflightError::NoBtf(_))
        ));
        std::fs::create_dir_all(dir.join("sys/kernel/btf")).expect("mkdir");
        std::fs::write(dir.join("sys/kernel/btf/vmlinux"), b"").expect("write");
        assert!(matches!(
            kernel_at(&dir, "6.18.0"),
            Err(PreflightError::NoUprobes(_))
        ));
        std::fs::create_dir_all(dir.join("sys/bus/event_source/devices/uprobe")).expect("mkdir");
        assert_eq!(
            kernel_at(&dir, "5.4.0-150-generic"),
            Err(PreflightError::NoRingBuffer("5.4.0-150-generic".into()))
        );
        assert_eq!(kernel_at(&dir, "6.18.44-fc-v657"), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(kernel_version("6.18.44-fc"), Some((6, 18)));
    }
}
