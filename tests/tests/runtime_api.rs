//! Every C entry point's documented return codes, and an in-process update
//! (workloads/c/api_checks.c).

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
