//! `qbench-trace --check`: what this host offers and lacks for observing, one line each, and
//! whether observation would work. [`assess`] is the pure decision over the probed [`Facts`].

use crate::host::capabilities::{
    self, CAP_KILL, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CapSet, Situation, TracefsAccess,
};
use crate::kernel::features::{self, Facts, Probe};
use crate::kernel::selfprobe::SelfProbe;

/// The lines to print, and whether observation would work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub lines: Vec<String>,
    /// Why observation cannot work (empty when it would).
    pub blockers: Vec<String>,
}

impl Assessment {
    pub fn works(&self) -> bool {
        self.blockers.is_empty()
    }
}

/// Probes this host and prints the assessment; true when observation would work.
pub fn run() -> bool {
    let assessment = assess(&Facts::probe());
    for line in &assessment.lines {
        println!("{line}");
    }
    assessment.works()
}

/// What the probed kernel and privileges decide, as the capability steps see it.
pub fn situation(facts: &Facts) -> Situation {
    // A uprobe attached without CAP_SYS_ADMIN shows the kernel still accepts CAP_PERFMON;
    // otherwise assume the rule of current kernels.
    let attached = matches!(
        facts.selfprobe,
        SelfProbe::Attached { .. } | SelfProbe::NotHit
    );
    Situation {
        uprobes_need_sys_admin: !attached || facts.caps.has(CAP_SYS_ADMIN),
        tracefs: facts.tracefs.access,
    }
}

fn line(label: &str, text: impl AsRef<str>) -> String {
    format!("{label:<13}{}", text.as_ref())
}

/// The assessment of `facts`: kernel, features, tracefs, capabilities, verdict.
pub fn assess(facts: &Facts) -> Assessment {
    let mut lines = vec![line(
        "kernel",
        format!("{} ({})", facts.release, facts.machine),
    )];
    let mut blockers = Vec::new();
    let mut add = |label: &str, text: String, blocker: Option<String>| {
        lines.push(line(label, text));
        blockers.extend(blocker);
    };
    for (label, text, blocker) in kernel_features(facts) {
        add(label, text, blocker);
    }
    let (text, blocker) = tracefs_line(&facts.tracefs);
    add("tracefs", text, blocker);
    for (name, found) in &facts.tracepoints {
        if *found {
            add("tracepoint", format!("{name} found"), None);
        } else {
            let lost = format!("{name} missing: {}", tracepoint_use(name));
            add(
                "tracepoint",
                lost.clone(),
                Some(format!("tracepoint {lost}")),
            );
        }
    }
    let (cap_lines, blocker) = capability_lines(facts);
    lines.extend(cap_lines);
    blockers.extend(blocker);
    lines.push(line(
        "verdict",
        if blockers.is_empty() {
            "observation would work".to_string()
        } else {
            format!("observation would not work: {}", blockers.join("; "))
        },
    ));
    Assessment { lines, blockers }
}

type Feature = (&'static str, String, Option<String>);

/// BTF, the ring buffer, uprobes and their optimization.
fn kernel_features(facts: &Facts) -> Vec<Feature> {
    let version = kernel_version(&facts.release);
    let mut out = Vec::new();
    out.push(if facts.btf {
        ("BTF", format!("found ({})", features::BTF), None)
    } else {
        let text = format!(
            "missing ({}): the eBPF programs cannot be loaded (needs CONFIG_DEBUG_INFO_BTF)",
            features::BTF
        );
        ("BTF", text, Some("no BTF".to_string()))
    });
    let ring_missing = "missing: no event could reach qbench-trace (needs Linux 5.8 or later)";
    out.push(match &facts.ringbuf {
        Probe::Found => ("ring buffer", "found (created one)".to_string(), None),
        Probe::Missing => (
            "ring buffer",
            ring_missing.to_string(),
            Some("no BPF ring buffer".into()),
        ),
        Probe::Unknown(why) if version.is_some_and(|v| v < (5, 8)) => (
            "ring buffer",
            format!("{ring_missing} (not tried: {why})"),
            Some("no BPF ring buffer".into()),
        ),
        Probe::Unknown(why) => (
            "ring buffer",
            format!("not tried ({why}); Linux {} has it", facts.release),
            None,
        ),
    });
    out.push(match facts.uprobe_pmu {
        Some(pmu) => ("uprobes", format!("found (PMU type {pmu})"), None),
        None => (
            "uprobes",
            format!(
                "missing ({}): no update point can be observed (needs CONFIG_UPROBE_EVENTS)",
                features::UPROBE_PMU
            ),
            Some("no uprobes".into()),
        ),
    });
    if facts.uprobe_pmu.is_some() {
        out.push(("uprobe NOP5", nop5_text(facts, version), None));
    }
    out
}

/// Whether uprobes on a 5-byte NOP (the runtime's anchors) become calls.
fn nop5_text(facts: &Facts, version: Option<(u32, u32)>) -> String {
    const SLOWER: &str = "results are the same; each probe hit traps instead of calling";
    match &facts.selfprobe {
        SelfProbe::Attached { optimized: true } => {
            "optimized (a uprobe on a 5-byte NOP became a call; [uprobes-trampoline] mapped)".into()
        }
        SelfProbe::Attached { optimized: false } => format!("not optimized: {SLOWER}"),
        other => {
            let why = match other {
                SelfProbe::Refused => "attaching a uprobe was refused".to_string(),
                SelfProbe::NotHit => "the test uprobe did not fire".to_string(),
                SelfProbe::Unavailable(why) => why.clone(),
                SelfProbe::Attached { .. } => String::new(),
            };
            let by_version = facts.machine == "x86_64" && version.is_some_and(|v| v >= (6, 18));
            if by_version {
                format!("not tried ({why}); likely optimized (Linux 6.18+ on x86-64)")
            } else {
                format!(
                    "not tried ({why}); likely not optimized (needs Linux 6.18+ on x86-64): {SLOWER}"
                )
            }
        }
    }
}

fn tracefs_line(tracefs: &features::Tracefs) -> (String, Option<String>) {
    let at = tracefs
        .mount
        .as_ref()
        .map_or_else(String::new, |m| m.display().to_string());
    match tracefs.access {
        TracefsAccess::Readable => (format!("mounted at {at}, readable"), None),
        TracefsAccess::Unreadable => (
            format!(
                "mounted at {at}, not readable by this process (permission denied): \
                 tracepoints cannot be found"
            ),
            None, // the capability line names what is missing
        ),
        TracefsAccess::NotMounted => (
            "not mounted; qbench-trace mounts it at /sys/kernel/tracing (with CAP_SYS_ADMIN), \
             or `mount -t tracefs nodev /sys/kernel/tracing`"
                .to_string(),
            None,
        ),
    }
}

/// What each attached tracepoint is for.
pub fn tracepoint_use(name: &str) -> &'static str {
    match name {
        "signal/signal_generate" => "the instant an update is requested",
        "raw_syscalls/sys_enter" | "raw_syscalls/sys_exit" => "what a late thread is blocked in",
        "sched/sched_process_fork" | "sched/sched_process_exit" => {
            "threads created or ended during an update"
        }
        _ => "a tracepoint the programs attach to",
    }
}

/// The effective set, each gated step allowed or not, and other users' processes.
fn capability_lines(facts: &Facts) -> (Vec<String>, Option<String>) {
    let caps = facts.caps;
    let mut lines = vec![line(
        "capabilities",
        format!("{} (effective)", caps.describe()),
    )];
    for need in capabilities::needs(situation(facts)) {
        let holder = need.any_of.iter().find(|&&cap| caps.has(cap));
        let names: Vec<String> = need.any_of.iter().map(ToString::to_string).collect();
        lines.push(match holder {
            Some(cap) => format!("  {}: allowed by {cap}", need.what),
            None => format!("  {}: needs {} (missing)", need.what, names.join(" or ")),
        });
    }
    lines.push(others_line(caps));
    let missing = capabilities::missing(&capabilities::needs(situation(facts)), caps);
    let blocker = (!missing.is_empty()).then(|| {
        format!(
            "qbench-trace needs {}",
            capabilities::describe_missing(&missing)
        )
    });
    (lines, blocker)
}

fn others_line(caps: CapSet) -> String {
    match (caps.has(CAP_SYS_PTRACE), caps.has(CAP_KILL)) {
        (true, true) => "  other users' processes: allowed by CAP_SYS_PTRACE and CAP_KILL".into(),
        (true, false) => "  other users' processes: observed (CAP_SYS_PTRACE); --request needs \
                          CAP_KILL"
            .into(),
        (false, _) => "  other users' processes: not allowed (needs CAP_SYS_PTRACE, and \
                       CAP_KILL for --request); this user's own are"
            .into(),
    }
}

/// (major, minor) of a release such as "6.18.44-fc".
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests;
