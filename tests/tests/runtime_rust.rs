//! The runtime's Rust API, checked on the demo program (workloads/src/bin/qbench-demo.rs):
//! qbench::spawn, cond_wait, sleep, update callbacks and the quiescence hook.

use std::time::Duration;

use qbench_tests::{ReportChecks, Target, artifact};

#[test]
fn the_rust_demo_quiesces_and_runs_its_hook_once_per_update() {
    let mut target = Target::start(&artifact("qbench-demo"), &[], &[]);
    target.wait_blocked();
    let names: Vec<String> = target.threads().into_iter().map(|(_, n)| n).collect();
    for role in [
        "worker",
        "listener",
        "reader",
        "ticker",
        "custom",
        "qbench-helper",
    ] {
        assert!(
            names.iter().any(|n| n == role),
            "no {role} thread in {names:?}"
        );
    }
    for seq in 1..=3usize {
        target.request(libc::SIGUSR2);
        // The hook prints before the threads are released, so before the report is written.
        assert_eq!(target.read_line(), format!("applied {seq}"));
        let report = target.wait_reports(seq, Duration::from_secs(10))[seq - 1].clone();
        assert_eq!(report.seq, seq as u64);
        // main, 2 workers, listener, reader, ticker, custom; not the helper.
        report.assert_quiesced(7);
        target.wait_blocked();
    }
    target.send("q");
}
