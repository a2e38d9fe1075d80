//! The kernel features qbench-trace uses, probed at start: BTF, the BPF ring buffer, uprobes
//! (and whether they are optimized on a 5-byte NOP), tracefs and the tracepoints attached.
//! The probing is here; what follows from it is in `check` (pure).

use std::io;
use std::path::{Path, PathBuf};

use crate::host::capabilities::{CapSet, TracefsAccess};
use crate::kernel::attach::{
    DELIVER_TRACEPOINT, SIGNAL_TRACEPOINT, SYSCALL_RAW_TRACEPOINTS, TRACEPOINTS,
};
use crate::kernel::selfprobe::{self, SelfProbe};

pub const BTF: &str = "/sys/kernel/btf/vmlinux";
pub const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";

/// A feature tried by creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Found,
    Missing,
    /// Could not be tried (the reason, e.g. a capability it needs).
    Unknown(String),
}

/// tracefs: where it is mounted, and whether this process may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracefs {
    pub mount: Option<PathBuf>,
    pub access: TracefsAccess,
}

/// Everything probed, for `check::assess`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub release: String,
    pub machine: String,
    pub btf: bool,
    pub ringbuf: Probe,
    /// The uprobe PMU's type number, if the kernel has one.
    pub uprobe_pmu: Option<u32>,
    pub selfprobe: SelfProbe,
    pub tracefs: Tracefs,
    /// Each attached tracepoint ("signal/signal_generate"): found under tracefs or not; empty
    /// when tracefs cannot be read.
    pub tracepoints: Vec<(String, bool)>,
    pub caps: CapSet,
}

impl Facts {
    /// Probes this kernel as this process finds it.
    pub fn probe() -> Self {
        let release = read_trimmed("/proc/sys/kernel/osrelease");
        let uprobe_pmu = read_trimmed(&format!("{UPROBE_PMU}/type")).parse().ok();
        let tracefs = tracefs();
        let tracepoints = match (&tracefs.mount, tracefs.access) {
            (Some(mount), TracefsAccess::Readable) => tracepoints(mount),
            _ => Vec::new(),
        };
        Self {
            machine: std::env::consts::ARCH.to_string(),
            btf: Path::new(BTF).exists(),
            ringbuf: ringbuf(),
            selfprobe: uprobe_pmu.map_or(
                SelfProbe::Unavailable("no uprobe PMU".into()),
                selfprobe::probe,
            ),
            uprobe_pmu,
            tracefs,
            tracepoints,
            caps: CapSet::current(),
            release,
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Creates (and closes) the smallest BPF ring buffer map.
pub fn ringbuf() -> Probe {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries (one
    // page), the rest zero (the kernel accepts a larger, zero-padded attr).
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_RINGBUF;
    attr[3] = 4096;
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size given, alive during the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: fd is the map just created, closed once.
        unsafe { libc::close(fd as i32) };
        return Probe::Found;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            Probe::Unknown("creating one needs CAP_BPF or CAP_SYS_ADMIN".into())
        }
        Some(libc::EINVAL) => Probe::Missing,
        _ => Probe::Unknown(io::Error::last_os_error().to_string()),
    }
}

/// Where tracefs is mounted (from /proc/self/mountinfo) and whether its events can be listed.
pub fn tracefs() -> Tracefs {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = tracefs_mount(&mountinfo) else {
        return Tracefs {
            mount: None,
            access: TracefsAccess::NotMounted,
        };
    };
    let access = match std::fs::read_dir(mount.join("events")) {
        Ok(_) => TracefsAccess::Readable,
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => TracefsAccess::Unreadable,
        // Listed in mountinfo but not there (a stale entry): as good as not mounted.
        Err(_) => TracefsAccess::NotMounted,
    };
    Tracefs {
        mount: Some(mount),
        access,
    }
}

/// The mount point of tracefs in a /proc/PID/mountinfo text: /sys/kernel/tracing if it is
/// mounted there, else the first other (e.g. /sys/kernel/debug/tracing).
pub fn tracefs_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut points = mountinfo.lines().filter_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        let fstype = rest.split_whitespace().next()?;
        let point = fields.split_whitespace().nth(4)?;
        (fstype == "tracefs").then(|| PathBuf::from(unescape_octal(point)))
    });
    let first = points.next()?;
    if first == Path::new("/sys/kernel/tracing") {
        return Some(first);
    }
    Some(
        points
            .find(|p| p == Path::new("/sys/kernel/tracing"))
            .unwrap_or(first),
    )
}

/// mountinfo writes space, tab, newline and backslash as `\040` and so on.
fn unescape_octal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether each tracepoint qbench-trace attaches has its event directory under `mount`; the
/// raw tracepoints are the ones of the same events (`signal/signal_generate`, raw where the
/// kernel has BTF, and the syscalls' under `raw_syscalls`).
pub fn tracepoints(mount: &Path) -> Vec<(String, bool)> {
    let records = [&SIGNAL_TRACEPOINT]
        .into_iter()
        .chain(&TRACEPOINTS)
        .chain([&DELIVER_TRACEPOINT])
        .map(|(_, category, event)| format!("{category}/{event}"));
    let raw = SYSCALL_RAW_TRACEPOINTS
        .iter()
        .map(|(_, event)| format!("raw_syscalls/{event}"));
    records
        .chain(raw)
        .map(|name| {
            let found = mount.join("events").join(&name).join("id").exists();
            (name, found)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracefs_is_found_in_mountinfo() {
        let both = "\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:12 / /sys/kernel/debug rw - debugfs debugfs rw
31 30 0:13 / /sys/kernel/debug/tracing rw - tracefs tracefs rw
32 22 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
";
        assert_eq!(
            tracefs_mount(both),
            Some(PathBuf::from("/sys/kernel/tracing"))
        );
        let debug_only = "31 30 0:13 / /sys/kernel/debug/tracing rw - tracefs tracefs rw\n";
        assert_eq!(
            tracefs_mount(debug_only),
            Some(PathBuf::from("/sys/kernel/debug/tracing"))
        );
        let odd = "40 1 0:13 / /mnt/my\\040trace rw - tracefs nodev rw\n";
        assert_eq!(tracefs_mount(odd), Some(PathBuf::from("/mnt/my trace")));
        assert_eq!(
            tracefs_mount("22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"),
            None
        );
        assert_eq!(unescape_octal("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn every_attached_tracepoint_is_looked_for() {
        let dir = std::env::temp_dir().join(format!("qbench-features-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = dir.join("events/signal/signal_generate");
        std::fs::create_dir_all(&id).expect("mkdir");
        std::fs::write(id.join("id"), "261\n").expect("write");
        let found = tracepoints(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            found.len(),
            1 + TRACEPOINTS.len() + 1 + SYSCALL_RAW_TRACEPOINTS.len()
        );
        assert_eq!(found[0], ("signal/signal_generate".to_string(), true));
        assert!(found[1..].iter().all(|(_, found)| !found), "{found:?}");
    }
}
