//! The toolchain path end to end: the real eBPF object is loaded, its uprobe attached to the
//! arrival anchor of a real process, and the arrival events it sends are exactly the calls that
//! process made. Needs root (loading BPF programs); skipped, with the reason, otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use qbench_common::{SOURCE_RUNTIME, symbols};
use qbench_tests::ebpf::{Event, Target, c_source, chain, compile_c, read_events, root_or_skip};
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
    let mut ring = probes.take_events().expect("take the ring buffer");

    let bystander_calls = go(bystander);
    let calls = go(target);

    let events = read_events(&mut ring, Duration::ZERO);
    let arrivals: Vec<_> = events.iter().filter_map(Event::arrive).collect();
    assert_eq!(arrivals.len(), events.len(), "arrivals only: {events:?}");
    // tid -> (count, last generation), from the events in the order the kernel sent them.
    let mut seen: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for arrival in &arrivals {
        let entry = seen.entry(arrival.header.tid).or_default();
        *entry = (entry.0 + 1, arrival.seq);
    }
    assert_eq!(seen, calls, "per-thread arrivals (count, last generation)");
    assert_eq!(seen.len(), 2, "two distinct threads");
    assert_eq!(arrivals.len(), 8);
    assert!(bystander_calls.keys().all(|tid| !seen.contains_key(tid)));
    assert!(
        arrivals
            .iter()
            .all(|a| a.header.ts_ns > 0 && a.source == SOURCE_RUNTIME),
        "{arrivals:?}"
    );
    assert_eq!(probes.lost_events().expect("read the misses map"), 0);
}
