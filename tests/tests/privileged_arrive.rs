//! The toolchain path end to end: the real eBPF object is loaded, its uprobe attached to the
//! arrival anchor of a real process, and the per-thread counts it records are exactly the calls
//! that process made. Needs root (loading BPF programs); skipped, with the reason, otherwise.

use std::collections::BTreeMap;

use qbench_common::symbols;
use qbench_tests::ebpf::{Target, c_source, chain, compile_c, root_or_skip};
use qbench_user::kernel::loader::{LoadOptions, Probes};

/// Starts a copy of the C target, stopped before its threads start.
fn spawn(exe: &std::path::Path) -> Target {
    let mut target = Target::spawn(exe, &[]);
    assert_eq!(target.line(), "ready");
    target
}

/// Lets the threads run; returns `tid -> (calls, last generation)` as the target saw them.
fn go(mut target: Target) -> BTreeMap<u32, (u64, u64)> {
    target.send(b"g");
    let mut calls = BTreeMap::new();
    loop {
        let line = target.line();
        if line == "done" {
            break;
        }
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|field| field.parse().expect("number"))
            .collect();
        let [tid, count, generation] = fields[..] else {
            panic!("unexpected target line {line:?}");
        };
        calls.insert(u32::try_from(tid).expect("tid"), (count, generation));
    }
    assert!(target.child.wait().expect("wait").success());
    calls
}

#[test]
fn uprobe_counts_every_arrival_of_each_target_thread() {
    if !root_or_skip("uprobe_counts_every_arrival_of_each_target_thread") {
        return;
    }
    let exe = compile_c(
        &c_source("arrive_target.c"),
        "arrive_target",
        &["-rdynamic"],
    );
    let target = spawn(&exe);
    // Another process running the same code: its calls must not be counted.
    let bystander = spawn(&exe);

    let mut probes = Probes::load(target.pid(), 12, &LoadOptions::default())
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    probes
        .attach_arrive(&exe, symbols::PROBE_ARRIVE)
        .unwrap_or_else(|err| panic!("{}", chain(&err)));

    let bystander_calls = go(bystander);
    let calls = go(target);

    let arrivals = probes.arrivals().expect("read the arrivals map");
    let seen: BTreeMap<u32, (u64, u64)> = arrivals
        .iter()
        .map(|(&tid, arrival)| (tid, (arrival.count, arrival.last_generation)))
        .collect();
    assert_eq!(seen, calls, "per-thread arrivals (count, last generation)");
    assert_eq!(seen.len(), 2, "two distinct threads");
    assert_eq!(seen.values().map(|(count, _)| count).sum::<u64>(), 8);
    assert!(bystander_calls.keys().all(|tid| !seen.contains_key(tid)));
    assert!(arrivals.values().all(|arrival| arrival.last_ns > 0));
    assert_eq!(probes.arrivals_missed().expect("read the misses map"), 0);
}
