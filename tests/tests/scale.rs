//! Large targets: an update of 10,000 threads observed whole, with every arrival seen and none
//! invented (root).

use std::process::{Command, Stdio};
use std::time::Duration;

use qbench_tests::observer::{finish, privileged};
use qbench_tests::{ReportChecks, TempDir, artifact};
use serde_json::Value;

const THREADS: usize = 10_000;

#[test]
fn ten_thousand_threads_are_observed_with_no_event_lost() {
    let Some(_serial) = privileged() else { return };
    let kind = format!("sleep:{THREADS}");
    let target = qbench_tests::observer::situations(&[kind.as_str()], &[]);
    target.wait_blocked();
    // Megabytes of JSON: written to a file, since a pipe nobody reads until the end would block
    // qbench-trace once full.
    let dir = TempDir::new();
    let json = dir.0.join("reports.jsonl");
    let pid = target.pid.to_string();
    let child = Command::new(artifact("qbench-trace"))
        .args([
            "--pid",
            &pid,
            "--request",
            "--count",
            "3",
            "--timeout",
            "10s",
            "--json",
        ])
        .stdout(std::fs::File::create(&json).expect("create the reports file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbench-trace");
    let out = finish(
        child,
        Duration::from_secs(120),
        "qbench-trace did not finish",
    );
    let reports: Vec<Value> = std::fs::read_to_string(&json)
        .expect("read the reports")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON report"))
        .collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        summary(&reports),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reports.len(), 3, "{reports:?}");
    // The runtime's own account of the same updates.
    let runtime = target.wait_reports(3, Duration::from_secs(10));
    for (observed, own) in reports.iter().zip(&runtime) {
        // The main thread and the sleepers; the runtime's helper does not participate.
        own.assert_quiesced(THREADS + 1);
        assert_eq!(observed["outcome"], "quiesced");
        assert_eq!(observed["lost_events"], 0);
        assert_eq!(observed["runtime_seq"], own.seq);
        let threads = observed["threads"].as_array().expect("threads");
        assert_eq!(threads.len(), THREADS + 1);
        assert!(
            threads.iter().all(|t| t["arrival_ns"].is_u64()),
            "every thread was seen arriving"
        );
    }
}

/// Each report's outcome, lost events and first few threads not seen arriving, with their causes.
fn summary(reports: &[Value]) -> String {
    let mut out = String::new();
    for r in reports {
        let missing: Vec<String> = r["threads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["arrival_ns"].is_null())
            .map(|t| format!("{} {} {}", t["tid"], t["comm"], t["diagnosis"]["cause"]))
            .collect();
        out.push_str(&format!(
            "update {}: {} ({} events lost), {} not seen arriving: {:?}\n",
            r["update"],
            r["outcome"],
            r["lost_events"],
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    out
}
