//! Every C entry point's documented return codes, and an in-process update
//! (workloads/c/api_checks.c); requests made back to back, each once the update before it was
//! decided (workloads/c/back_to_back.c).

use std::process::Command;

use qbench_tests::{Linkage, ReportChecks, TempDir, build_c, read_reports};

#[test]
fn every_c_entry_point_returns_its_documented_codes() {
    let program = build_c("api_checks", Linkage::Dynamic);
    let dir = TempDir::new();
    let report = dir.0.join("report.jsonl");
    let out = Command::new(&program)
        .env("QBENCH_REPORT", &report)
        .output()
        .expect("run api_checks");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim_end(), "39 checks, 0 failures");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // The one update: requested in-process, the main thread alone participating (the threads that
    // registered, unregistered or left through pthread_exit are gone).
    let reports = read_reports(&report);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].seq, 1);
    reports[0].assert_quiesced(1);
}

/// Requests made the instant the report of the update before appears: each opens an update of
/// its own (`qbench_request_update` returns 0, never EALREADY), and none is lost.
#[test]
fn a_request_made_as_soon_as_the_report_appears_opens_a_new_update() {
    back_to_back("report", 500);
}

/// Requests made by the quiescence hook, before the update that runs it releases its threads
/// and writes its report: each is served by an update of its own, opened at the release.
#[test]
fn a_request_made_by_the_quiescence_hook_opens_the_next_update() {
    back_to_back("hook", 500);
}

/// Runs back_to_back in `mode` for `count` requests, and checks its verdict and the reports:
/// numbered 1 to `count`, each quiesced with the two participating threads.
fn back_to_back(mode: &str, count: usize) {
    let program = build_c("back_to_back", Linkage::Dynamic);
    let dir = TempDir::new();
    let report = dir.0.join("report.jsonl");
    let out = Command::new(&program)
        .args([mode, &count.to_string()])
        .env("QBENCH_REPORT", &report)
        .env_remove("QBENCH_SIGNAL")
        .env_remove("QBENCH_TIMEOUT_MS")
        .output()
        .expect("run back_to_back");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim_end(),
        format!("{count} requests, {count} reports")
    );
    assert_eq!(stderr, "");
    let reports = read_reports(&report);
    assert_eq!(reports.len(), count);
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.seq, i as u64 + 1, "{report:?}");
        report.assert_quiesced(2);
    }
}
