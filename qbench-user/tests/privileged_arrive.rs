//! The toolchain path end to end: the real eBPF object is loaded, its uprobe attached to the
//! arrival anchor of a real process, and the per-thread counts it records are exactly the calls
//! that process made. Needs root (loading BPF programs); skipped, with the reason, otherwise.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Lines, Write as _},
    num::NonZeroU32,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
};

use qbench_common::symbols;
use qbench_user::kernel::loader::{LoadOptions, Probes};

/// A running copy of the C target, stopped before its threads start.
struct Target {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Target {
    fn spawn(exe: &Path) -> Self {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the target");
        let stdout = child.stdout.take().expect("stdout");
        let mut target = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        assert_eq!(target.line(), "ready");
        target
    }

    fn pid(&self) -> NonZeroU32 {
        NonZeroU32::new(self.child.id()).expect("nonzero pid")
    }

    fn line(&mut self) -> String {
        self.lines
            .next()
            .expect("target closed its output early")
            .expect("read target output")
    }

    /// Lets the threads run; returns `tid -> (calls, last generation)` as the target saw them.
    fn go(mut self) -> BTreeMap<u32, (u64, u64)> {
        let mut stdin = self.child.stdin.take().expect("stdin");
        stdin.write_all(b"g").expect("release the target");
        let mut calls = BTreeMap::new();
        loop {
            let line = self.line();
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
        assert!(self.child.wait().expect("wait").success());
        calls
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Compiles the C target into this test's scratch directory.
fn build_target() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/arrive_target.c");
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("arrive_target");
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-rdynamic", "-fcf-protection=none", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build {}", source.display());
    exe
}

#[test]
fn uprobe_counts_every_arrival_of_each_target_thread() {
    if !is_root() {
        eprintln!("skipped: loading eBPF programs needs root (run the tests as root)");
        return;
    }
    let exe = build_target();
    let target = Target::spawn(&exe);
    // Another process running the same code: its calls must not be counted.
    let bystander = Target::spawn(&exe);

    // `{:#}` shows the whole cause chain of a failure.
    let mut probes = Probes::load(target.pid(), 12, &LoadOptions::default())
        .unwrap_or_else(|err| panic!("{:#}", anyhow::Error::from(err)));
    probes
        .attach_arrive(&exe, symbols::PROBE_ARRIVE)
        .unwrap_or_else(|err| panic!("{:#}", anyhow::Error::from(err)));

    let bystander_calls = bystander.go();
    let calls = target.go();

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
