//! The capabilities qbench-trace holds and the ones each step of observing needs, decided by the
//! checks the kernel makes (pure, apart from reading `/proc/self/status`).
//!
//! What the kernel checks, step by step (Linux 6.18):
//! - loading programs, maps and BTF: `bpf_capable()`, CAP_BPF or CAP_SYS_ADMIN;
//! - tracepoint perf events on every CPU, and the tracing helpers the programs call:
//!   `perfmon_capable()`, CAP_PERFMON or CAP_SYS_ADMIN;
//! - the uprobe PMU: `capable(CAP_SYS_ADMIN)` (since "perf: Require CAP_SYS_ADMIN for uprobes",
//!   2025, also in the stable kernels; CAP_PERFMON sufficed before);
//! - tracefs (the tracepoints' ids and record formats): its root is mode 0700, owned by root, so
//!   another user needs CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE); mounting it, CAP_SYS_ADMIN;
//! - the target's /proc files (`maps`, `mem`, `syscall`): the ptrace access check, passed by the
//!   target's owner, or with CAP_SYS_PTRACE (see `preflight::traceable`).

use std::fmt;

/// A capability, by its number in `linux/capability.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cap(pub u32);

pub const CAP_DAC_OVERRIDE: Cap = Cap(1);
pub const CAP_DAC_READ_SEARCH: Cap = Cap(2);
pub const CAP_KILL: Cap = Cap(5);
pub const CAP_SYS_PTRACE: Cap = Cap(19);
pub const CAP_SYS_ADMIN: Cap = Cap(21);
pub const CAP_PERFMON: Cap = Cap(38);
pub const CAP_BPF: Cap = Cap(39);

/// Every capability's name, by number (`capability.h`, Linux 5.9 and later).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMES.get(self.0 as usize) {
            Some(name) => f.write_str(name),
            None => write!(f, "capability {}", self.0),
        }
    }
}

/// A set of capabilities, as the kernel shows it (`CapEff:` in /proc/PID/status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The effective set of this process.
    pub fn current() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self::from_status(&status).unwrap_or_default()
    }

    /// The `CapEff:` line of a /proc/PID/status text.
    pub fn from_status(status: &str) -> Option<Self> {
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
        u64::from_str_radix(hex.trim(), 16).ok().map(Self)
    }

    pub fn of(caps: &[Cap]) -> Self {
        Self(caps.iter().fold(0, |set, cap| set | 1 << cap.0))
    }

    pub fn has(self, cap: Cap) -> bool {
        cap.0 < 64 && self.0 & (1 << cap.0) != 0
    }

    /// The capabilities held, lowest number first.
    pub fn caps(self) -> impl Iterator<Item = Cap> {
        (0..64).map(Cap).filter(move |&cap| self.has(cap))
    }

    /// "CAP_BPF, CAP_PERFMON"; "all" when every known capability is held, "all but
    /// CAP_SYS_RESOURCE" when nearly all are; or "none".
    pub fn describe(self) -> String {
        if self.0 == 0 {
            return "none".into();
        }
        let lacking: Vec<String> = (0..NAMES.len() as u32)
            .map(Cap)
            .filter(|&cap| !self.has(cap))
            .map(|cap| cap.to_string())
            .collect();
        match lacking.len() {
            0 => "all".into(),
            1..=3 => format!("all but {}", lacking.join(", ")),
            _ => {
                let names: Vec<String> = self.caps().map(|cap| cap.to_string()).collect();
                names.join(", ")
            }
        }
    }
}

/// A step of observing that the kernel gates by a capability: held if any of `any_of` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// What the step does, as "attach uprobes".
    pub what: &'static str,
    /// The capabilities that pass the kernel's check, the narrowest first.
    pub any_of: &'static [Cap],
}

/// How the kernel and tracefs were found, as far as they decide what is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The uprobe PMU refuses CAP_PERFMON alone (every kernel with the 2025 fix).
    pub uprobes_need_sys_admin: bool,
    pub tracefs: TracefsAccess,
}

/// tracefs as this process finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracefsAccess {
    /// Mounted, and this process can read it.
    Readable,
    /// Mounted, but this process may not read it (EACCES: the 0700 root directory).
    Unreadable,
    /// Not mounted anywhere (attaching mounts it at /sys/kernel/tracing).
    NotMounted,
}

/// A [`Need`] in one line, so that the steps below read as a table.
const fn need(what: &'static str, any_of: &'static [Cap]) -> Need {
    Need { what, any_of }
}

const UPROBES_SYS_ADMIN: Need = need("attach uprobes", &[CAP_SYS_ADMIN]);
const UPROBES_PERFMON: Need = need("attach uprobes", &[CAP_PERFMON, CAP_SYS_ADMIN]);
const BPF: Need = need("load eBPF programs and maps", &[CAP_BPF, CAP_SYS_ADMIN]);
const TRACEPOINTS: Need = need("attach tracepoints", &[CAP_PERFMON, CAP_SYS_ADMIN]);
const READ_TRACEFS: Need = need("read tracefs", &[CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE]);
const MOUNT_TRACEFS: Need = need("mount tracefs", &[CAP_SYS_ADMIN]);

/// Every gated step of observing one's own process, in the order the missing capabilities are
/// named (CAP_SYS_ADMIN, when uprobes need it, first: it passes the BPF and perfmon checks too).
pub fn needs(situation: Situation) -> Vec<Need> {
    let mut needs = vec![
        if situation.uprobes_need_sys_admin {
            UPROBES_SYS_ADMIN
        } else {
            UPROBES_PERFMON
        },
        BPF,
        TRACEPOINTS,
    ];
    match situation.tracefs {
        TracefsAccess::Readable => {}
        TracefsAccess::Unreadable => needs.push(READ_TRACEFS),
        TracefsAccess::NotMounted => needs.push(MOUNT_TRACEFS),
    }
    needs
}

/// The capabilities to add to `held` so that every one of `needs` passes, each with the steps
/// it is for: the fewest, naming for each unmet step the first capability of its list unless an
/// already named one covers it.
pub fn missing(needs: &[Need], held: CapSet) -> Vec<(Cap, Vec<&'static str>)> {
    let mut missing: Vec<(Cap, Vec<&'static str>)> = Vec::new();
    for need in needs {
        if need.any_of.iter().any(|&cap| held.has(cap)) {
            continue;
        }
        match missing
            .iter_mut()
            .find(|(cap, _)| need.any_of.contains(cap))
        {
            Some((_, whats)) => whats.push(need.what),
            None => missing.push((need.any_of[0], vec![need.what])),
        }
    }
    missing
}

/// "CAP_SYS_ADMIN (to attach uprobes, load eBPF programs and maps) and CAP_DAC_READ_SEARCH (to
/// read tracefs)".
pub fn describe_missing(missing: &[(Cap, Vec<&'static str>)]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(cap, whats)| format!("{cap} (to {})", whats.join(", ")))
        .collect();
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_set_is_read_from_status() {
        let status = "Name:\tqbench-trace\nCapInh:\t0000000000000000\n\
                      CapPrm:\t000000c000200004\nCapEff:\t000000c000200004\n";
        let set = CapSet::from_status(status).expect("CapEff");
        assert_eq!(
            set,
            CapSet::of(&[CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF])
        );
        assert_eq!(
            set.describe(),
            "CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF"
        );
        assert_eq!(CapSet::from_status("Name:\tx\n"), None);
        assert_eq!(CapSet::from_status("CapEff:\tzz\n"), None);
        assert_eq!(CapSet(0).describe(), "none");
        assert_eq!(CapSet(0x1ff_ffff_ffff).describe(), "all");
        assert_eq!(
            CapSet(0x1ff_feff_ffff).describe(),
            "all but CAP_SYS_RESOURCE"
        );
        assert_eq!(Cap(63).to_string(), "capability 63");
    }

    const NOW: Situation = Situation {
        uprobes_need_sys_admin: true,
        tracefs: TracefsAccess::Unreadable,
    };

    #[test]
    fn what_is_missing_for_each_set_held() {
        let table: [(Situation, &[Cap], &str); 9] = [
            (
                NOW,
                &[],
                "CAP_SYS_ADMIN (to attach uprobes, load eBPF programs and maps, attach \
                 tracepoints) and CAP_DAC_READ_SEARCH (to read tracefs)",
            ),
            (
                NOW,
                &[CAP_BPF, CAP_PERFMON],
                "CAP_SYS_ADMIN (to attach uprobes) and CAP_DAC_READ_SEARCH (to read tracefs)",
            ),
            (
                NOW,
                &[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH],
                "CAP_SYS_ADMIN (to attach uprobes)",
            ),
            (
                NOW,
                &[CAP_SYS_ADMIN],
                "CAP_DAC_READ_SEARCH (to read tracefs)",
            ),
            (NOW, &[CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH], ""),
            (NOW, &[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE], ""),
            (
                Situation {
                    uprobes_need_sys_admin: false,
                    tracefs: TracefsAccess::Readable,
                },
                &[CAP_PERFMON],
                "CAP_BPF (to load eBPF programs and maps)",
            ),
            (
                Situation {
                    uprobes_need_sys_admin: false,
                    tracefs: TracefsAccess::NotMounted,
                },
                &[CAP_BPF, CAP_PERFMON],
                "CAP_SYS_ADMIN (to mount tracefs)",
            ),
            (
                Situation {
                    uprobes_need_sys_admin: true,
                    tracefs: TracefsAccess::Readable,
                },
                &[CAP_SYS_ADMIN],
                "",
            ),
        ];
        for (situation, held, want) in table {
            let missing = missing(&needs(situation), CapSet::of(held));
            assert_eq!(describe_missing(&missing), want, "{situation:?} {held:?}");
        }
    }
}
