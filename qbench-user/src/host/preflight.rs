//! Checks made before loading anything, so that each common failure gets one line that names
//! the problem and what to do: the target (and whether it may be traced), the privileges, the
//! kernel's features.

use std::io;
use std::path::{Path, PathBuf};

use crate::host::capabilities::{
    self, CAP_PERFMON, CAP_SYS_ADMIN, CapSet, Situation, TracefsAccess,
};
use crate::host::check;
use crate::kernel::features::{self, Probe};
use crate::kernel::selfprobe::{self, SelfProbe};

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
    #[error(
        "qbench-trace may not trace pid {pid} (uid {uid}): like a debugger it observes only \
         processes it could ptrace; run it as uid {uid} or with CAP_SYS_PTRACE (have: {have})"
    )]
    NotTraceable { pid: u32, uid: String, have: String },
    #[error(
        "qbench-trace needs {missing} (have: {have}); run it as root or grant them \
         (`qbench-trace --check` tells more)"
    )]
    Privileges { missing: String, have: String },
    #[error(
        "the kernel has no BTF ({0} is missing); qbench-trace needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf(String),
    #[error("the kernel has no uprobes ({0} is missing); qbench-trace needs CONFIG_UPROBE_EVENTS")]
    NoUprobes(String),
    #[error("the kernel {0} has no BPF ring buffer (needs Linux 5.8 or later)")]
    NoRingBuffer(String),
    #[error("the kernel has no tracepoint {name} (under {tracefs}/events), needed for {what}")]
    NoTracepoint {
        name: String,
        tracefs: String,
        what: &'static str,
    },
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
    traceable(pid, &status)?;
    Ok(Target {
        pid,
        comm,
        exe: dir.join("exe"),
    })
}

/// Whether this process passes the kernel's ptrace access check on `pid`, as a debugger
/// would: same user (and the target dumpable), or CAP_SYS_PTRACE. With CAP_SYS_ADMIN the perf
/// events would attach to any process, so the rule is enforced here, by reading what the kernel
/// guards with that very check (`PTRACE_MODE_ATTACH`): the target's /proc/PID/syscall, or
/// /proc/PID/mem where the former does not exist.
fn traceable(pid: u32, status: &str) -> Result<(), PreflightError> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let read = match std::fs::read(dir.join("syscall")) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            std::fs::File::open(dir.join("mem")).map(drop)
        }
        other => other.map(drop),
    };
    match read {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            Err(PreflightError::NotTraceable {
                pid,
                uid: status_field(status, "Uid:")
                    .and_then(|uids| uids.split_whitespace().next())
                    .unwrap_or("?")
                    .to_string(),
                have: CapSet::current().describe(),
            })
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            Err(PreflightError::NoSuchProcess(pid))
        }
        _ => Ok(()),
    }
}

/// The capabilities every step of observing needs, for this kernel and tracefs (see
/// `capabilities`): root passes, and so does a user with exactly the ones the README lists.
pub fn privileges() -> Result<(), PreflightError> {
    let caps = CapSet::current();
    // Only with CAP_PERFMON and without CAP_SYS_ADMIN does the kernel's uprobe rule (which of
    // the two it wants) decide anything: then try it on this process.
    let uprobes_need_sys_admin = if caps.has(CAP_PERFMON) && !caps.has(CAP_SYS_ADMIN) {
        let pmu = std::fs::read_to_string(format!("{}/type", features::UPROBE_PMU));
        !pmu.ok()
            .and_then(|t| t.trim().parse().ok())
            .map(selfprobe::probe)
            .is_some_and(|p| matches!(p, SelfProbe::Attached { .. } | SelfProbe::NotHit))
    } else {
        true
    };
    let situation = Situation {
        uprobes_need_sys_admin,
        tracefs: features::tracefs().access,
    };
    let missing = capabilities::missing(&capabilities::needs(situation), caps);
    if missing.is_empty() {
        return Ok(());
    }
    Err(PreflightError::Privileges {
        missing: capabilities::describe_missing(&missing),
        have: caps.describe(),
    })
}

/// BTF, uprobes, the ring buffer and the tracepoints attached are there. A feature whose lack
/// costs only speed (uprobes on a 5-byte NOP not optimized) is a note on stderr.
pub fn kernel() -> Result<(), PreflightError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    kernel_at(Path::new("/"), release)?;
    if features::ringbuf() == Probe::Missing {
        return Err(PreflightError::NoRingBuffer(release.to_string()));
    }
    let tracefs = features::tracefs();
    if let (Some(mount), TracefsAccess::Readable) = (&tracefs.mount, tracefs.access)
        && let Some((name, _)) = features::tracepoints(mount)
            .into_iter()
            .find(|(_, found)| !found)
    {
        return Err(PreflightError::NoTracepoint {
            what: check::tracepoint_use(&name),
            name,
            tracefs: mount.display().to_string(),
        });
    }
    let optimized = std::env::consts::ARCH == "x86_64"
        && check::kernel_version(release).is_some_and(|v| v >= (6, 18));
    if !optimized {
        // Decided by the version: trying it costs a uprobe on this process (`--check` does).
        eprintln!(
            "qbench-trace: note: uprobes on a 5-byte NOP are optimized into calls from Linux 6.18 \
             on x86-64 only; on {release} results are the same, each probe hit traps"
        );
    }
    Ok(())
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
    if check::kernel_version(release).is_some_and(|v| v < (5, 8)) {
        return Err(PreflightError::NoRingBuffer(release.to_string()));
    }
    Ok(())
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// The `flags` field (the 9th) of /proc/PID/stat.
fn stat_flags(stat: &str) -> Option<u64> {
    crate::procfs::stat_field(stat, 9)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
