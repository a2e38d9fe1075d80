use std::path::PathBuf;

use super::*;
use crate::host::capabilities::{CAP_BPF, CAP_DAC_READ_SEARCH, CAP_PERFMON};
use crate::kernel::features::Tracefs;

fn host() -> Facts {
    Facts {
        release: "6.18.44-fc".into(),
        machine: "x86_64".into(),
        btf: true,
        ringbuf: Probe::Found,
        uprobe_pmu: Some(9),
        selfprobe: SelfProbe::Attached { optimized: true },
        tracefs: Tracefs {
            mount: Some(PathBuf::from("/sys/kernel/tracing")),
            access: TracefsAccess::Readable,
        },
        tracepoints: vec![
            ("signal/signal_generate".into(), true),
            ("sched/sched_process_exit".into(), true),
        ],
        caps: CapSet(0x1ff_ffff_ffff),
    }
}

fn unprivileged(mut facts: Facts, caps: CapSet) -> Facts {
    facts.caps = caps;
    facts.selfprobe = SelfProbe::Refused;
    facts.ringbuf = Probe::Unknown("creating one needs CAP_BPF or CAP_SYS_ADMIN".into());
    facts.tracefs.access = TracefsAccess::Unreadable;
    facts.tracepoints.clear();
    facts
}

#[test]
fn root_on_this_kernel_would_work() {
    let a = assess(&host());
    assert!(a.works(), "{:#?}", a.lines);
    let labels: Vec<&str> = a
        .lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    for want in [
        "kernel",
        "BTF",
        "ring",
        "uprobes",
        "uprobe",
        "tracefs",
        "tracepoint",
    ] {
        assert!(labels.contains(&want), "{want}: {:#?}", a.lines);
    }
    assert_eq!(a.lines[0], "kernel       6.18.44-fc (x86_64)");
    assert!(
        a.lines
            .contains(&"capabilities all (effective)".to_string())
    );
    assert!(
        a.lines
            .contains(&"  attach uprobes: allowed by CAP_SYS_ADMIN".to_string())
    );
    assert_eq!(
        a.lines.last().map(String::as_str),
        Some("verdict      observation would work")
    );
}

#[test]
fn each_missing_feature_says_what_it_costs() {
    type Change = fn(&mut Facts);
    let table: [(Change, &str, Option<&str>); 8] = [
        (
            |f| f.btf = false,
            "BTF          missing (/sys/kernel/btf/vmlinux)",
            Some("no BTF"),
        ),
        (
            |f| f.ringbuf = Probe::Missing,
            "ring buffer  missing: no event could reach",
            Some("no BPF ring buffer"),
        ),
        (
            |f| {
                f.ringbuf = Probe::Unknown("needs CAP_BPF".into());
                f.release = "5.4.0-150-generic".into();
            },
            "ring buffer  missing",
            Some("no BPF ring buffer"),
        ),
        (
            |f| f.ringbuf = Probe::Unknown("needs CAP_BPF".into()),
            "ring buffer  not tried (needs CAP_BPF); Linux 6.18.44-fc has it",
            None,
        ),
        (
            |f| f.uprobe_pmu = None,
            "uprobes      missing",
            Some("no uprobes"),
        ),
        (
            |f| f.selfprobe = SelfProbe::Attached { optimized: false },
            "uprobe NOP5  not optimized: results are the same",
            None,
        ),
        (
            |f| {
                f.selfprobe = SelfProbe::Unavailable("no test".into());
                f.release = "6.12.0".into();
            },
            "uprobe NOP5  not tried (no test); likely not optimized",
            None,
        ),
        (
            |f| f.tracepoints[1].1 = false,
            "tracepoint   sched/sched_process_exit missing: threads created or ended",
            Some("tracepoint sched/sched_process_exit missing"),
        ),
    ];
    for (change, line, blocker) in table {
        let mut facts = host();
        change(&mut facts);
        let a = assess(&facts);
        assert!(
            a.lines.iter().any(|l| l.starts_with(line)),
            "{line}: {:#?}",
            a.lines
        );
        match blocker {
            Some(b) => assert!(a.blockers.iter().any(|x| x.starts_with(b)), "{b}: {a:#?}"),
            None => assert!(a.works(), "{a:#?}"),
        }
        assert_eq!(
            a.lines.last().map(|l| l.contains("would work")),
            Some(blocker.is_none())
        );
    }
}

#[test]
fn missing_capabilities_are_named() {
    let table: [(&[crate::host::capabilities::Cap], Option<&str>); 4] = [
        (
            &[],
            Some(
                "qbench-trace needs CAP_SYS_ADMIN (to attach uprobes, load eBPF programs and \
                 maps, attach tracepoints) and CAP_DAC_READ_SEARCH (to read tracefs)",
            ),
        ),
        (
            &[CAP_BPF, CAP_PERFMON],
            Some(
                "qbench-trace needs CAP_SYS_ADMIN (to attach uprobes) and CAP_DAC_READ_SEARCH \
                 (to read tracefs)",
            ),
        ),
        (
            &[CAP_SYS_ADMIN],
            Some("qbench-trace needs CAP_DAC_READ_SEARCH (to read tracefs)"),
        ),
        (&[CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH], None),
    ];
    for (held, want) in table {
        let mut facts = unprivileged(host(), CapSet::of(held));
        if held.contains(&CAP_DAC_READ_SEARCH) {
            facts.tracefs.access = TracefsAccess::Readable;
        }
        let a = assess(&facts);
        assert_eq!(a.blockers.first().map(String::as_str), want, "{held:?}");
        assert!(a.lines.iter().any(|l| l.starts_with("capabilities ")));
        assert_eq!(a.works(), want.is_none());
    }
    let none = assess(&unprivileged(host(), CapSet(0)));
    assert!(
        none.lines
            .contains(&"capabilities none (effective)".to_string())
    );
    assert!(
        none.lines
            .contains(&"  attach uprobes: needs CAP_SYS_ADMIN (missing)".to_string()),
        "{:#?}",
        none.lines
    );
}

#[test]
fn a_kernel_that_lets_perfmon_attach_uprobes_is_believed() {
    let mut facts = unprivileged(
        host(),
        CapSet::of(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]),
    );
    facts.tracefs.access = TracefsAccess::Readable;
    facts.selfprobe = SelfProbe::Attached { optimized: false };
    assert!(!situation(&facts).uprobes_need_sys_admin);
    assert!(assess(&facts).works());
    facts.selfprobe = SelfProbe::Refused;
    assert!(situation(&facts).uprobes_need_sys_admin);
    assert!(!assess(&facts).works());
}

#[test]
fn an_unmounted_tracefs_needs_sys_admin_to_mount() {
    let mut facts = unprivileged(host(), CapSet::of(&[CAP_BPF, CAP_PERFMON]));
    facts.selfprobe = SelfProbe::Attached { optimized: true };
    facts.tracefs = Tracefs {
        mount: None,
        access: TracefsAccess::NotMounted,
    };
    let a = assess(&facts);
    assert!(
        a.lines
            .iter()
            .any(|l| l.starts_with("tracefs      not mounted"))
    );
    assert_eq!(
        a.blockers,
        vec!["qbench-trace needs CAP_SYS_ADMIN (to mount tracefs)".to_string()]
    );
}

#[test]
fn versions() {
    assert_eq!(kernel_version("6.18.44-fc"), Some((6, 18)));
    assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
    assert_eq!(kernel_version(""), None);
}
