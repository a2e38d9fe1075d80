//! qbench-trace attached to a process whose update is pending already (threads parked, one
//! stuck): it reads the runtime's exported `qbench_state` and reports the update in progress,
//! with the runtime's request time and the parked threads arrived. And a thread the runtime
//! lists participates, whatever earlier updates showed. Skipped, with the reason printed, when
//! not root.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use qbench_tests::Target;
use qbench_tests::observer::{
    finished_reports, privileged, reports, request, situations, spawn_trace, thread, threads_where,
};
use qbench_user::clock::monotonic_ns;
use serde_json::Value;

/// The main thread's name.
const MAIN: &str = "situations-dyn";

/// A target with main, a reader and a plaincond thread, whose update is pending (the runtime
/// waits 60 s) with the reader (and main, unless `env` keeps it out) parked; returns it and the
/// bounds of the request time.
fn stuck_target(env: &[(&str, &str)]) -> (Target, u64, u64) {
    let mut env = env.to_vec();
    env.push(("QBENCH_TIMEOUT_MS", "60000"));
    let target = situations(&["read:1", "plaincond:1"], &env);
    target.wait_blocked();
    let before = monotonic_ns();
    target.request(libc::SIGUSR2);
    // Parked and asleep again: everyone but the plaincond thread is in the runtime's wait.
    // The signal is handled some time after kill returns: the request is before this.
    std::thread::sleep(Duration::from_millis(200));
    target.wait_blocked();
    (target, before, monotonic_ns())
}

fn assert_pending_update_opened(report: &Value, parked: &[&str], before: u64, after: u64) {
    assert_eq!(report["request_source"], "before_attach", "{report}");
    let request_ns = report["request_ns"].as_u64().expect("request_ns");
    assert!(
        (before..=after).contains(&request_ns),
        "{before} <= {request_ns} <= {after}"
    );
    for &comm in parked {
        let t = thread(report, comm);
        assert_eq!(t["state"], "arrived", "{t}");
        let at = t["arrival_ns"].as_u64().expect("arrival_ns");
        assert!(at >= request_ns && at < request_ns + 1_000_000_000, "{t}");
        assert_eq!(t["participating"], true);
    }
}

#[test]
fn an_update_pending_at_attach_is_reported_and_ends_at_the_timeout_from_its_request() {
    let Some(_serial) = privileged() else { return };
    let (target, before, after) = stuck_target(&[]);
    let pid = target.pid.to_string();
    let child = spawn_trace(&["--pid", &pid, "--timeout", "2s", "--count", "1", "--json"]);
    let reports = finished_reports(child, 3, 1);
    let report = &reports[0];
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_pending_update_opened(report, &[MAIN, "read"], before, after);
    let request_ns = report["request_ns"].as_u64().expect("request_ns");
    assert_eq!(report["end_ns"], request_ns + 2_000_000_000, "{report}");
    let stuck = thread(report, "plaincond");
    assert_eq!(stuck["arrival_ns"], Value::Null);
    assert_eq!(stuck["participating"], true);
    assert_eq!(
        stuck["diagnosis"]["cause"], "cond_wait_unwrapped",
        "{stuck}"
    );
    let missing = threads_where(report, |t| {
        t["participating"] == true && t["arrival_ns"].is_null()
    });
    assert_eq!(missing.len(), 1, "{report}");
}

#[test]
fn an_update_pending_at_attach_then_completed_is_reported_quiesced() {
    let Some(_serial) = privileged() else { return };
    // Main stays out of the update, to read the "u" that unsticks the plaincond thread.
    let (mut target, before, after) = stuck_target(&[("SITUATIONS_MAIN_OUTSIDE", "1")]);
    let pid = target.pid.to_string();
    let mut child = spawn_trace(&[
        "--pid",
        &pid,
        "--timeout",
        "30s",
        "--count",
        "1",
        "--json",
        "-v",
    ]);
    // Attached (its programs are in place) once it says so.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("attached to") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "qbench-trace ended"
        );
    }
    target.send("u");
    let reports = finished_reports(child, 0, 1);
    let report = &reports[0];
    assert_eq!(report["outcome"], "quiesced", "{report}");
    assert_pending_update_opened(report, &["read", "plaincond"], before, after);
    // Unknown to the runtime, main is no participant, and nothing waited for it.
    assert_eq!(thread(report, MAIN)["participating"], false, "{report}");
}

#[test]
fn a_registered_thread_that_never_arrived_still_participates() {
    let Some(_serial) = privileged() else { return };
    // The runtime gives up after 200 ms, so each of the two requests is an update of its own.
    let target = situations(&["read:1", "plaincond:1"], &[("QBENCH_TIMEOUT_MS", "200")]);
    target.wait_blocked();
    let out = request(&target, &["--timeout", "2s", "--count", "2", "--json"]);
    let reports = reports(&out, 3, 2);
    for report in &reports {
        assert_eq!(report["outcome"], "dnq", "{report}");
        let stuck = thread(report, "plaincond");
        assert_eq!(stuck["participating"], true, "{report}");
        // Never arrived in the earlier update, yet the runtime lists it: not "not_participating".
        assert_eq!(
            stuck["diagnosis"]["cause"], "cond_wait_unwrapped",
            "{stuck}"
        );
    }
}
