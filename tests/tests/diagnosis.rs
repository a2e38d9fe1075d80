//! qbench-trace's diagnosis on real targets: for every cause, a program that produces it
//! (workloads/c/situations.c), and the cause code, the thread and the evidence asserted.
//! Skipped, with the reason printed, when not root.

use std::sync::MutexGuard;
use std::time::Duration;

use qbench_tests::Target;
use qbench_tests::observer::{
    assert_exit, first_report, privileged, request, situations, thread, threads_where,
};
use serde_json::Value;

/// The situations program running `kinds`, its own update timeout well beyond the observer's.
fn start(kinds: &[&str]) -> Target {
    situations(kinds, &[("QBENCH_TIMEOUT_MS", "3000")])
}

/// One update of the situations program, observed: the target and qbench-trace's JSON report,
/// held with the privileged tests' lock (dropped last: after the target is gone).
struct Observed {
    target: Target,
    report: Value,
    _serial: MutexGuard<'static, ()>,
}

/// Runs the kinds, requests one update (DNQ after 300 ms unless it quiesces), and returns the
/// target and the observer's JSON report; None (the reason printed) when not root.
fn observe(kinds: &[&str], wait_blocked: bool) -> Option<Observed> {
    let serial = privileged()?;
    let target = start(kinds);
    if wait_blocked {
        target.wait_blocked();
    } else {
        std::thread::sleep(Duration::from_millis(300));
    }
    let report = first_report(&request(&target, &["--timeout", "300ms", "--json"]));
    Some(Observed {
        target,
        report,
        _serial: serial,
    })
}

/// `comm`'s diagnosis in `report`, checked to name `cause`.
fn diagnosed<'a>(report: &'a Value, comm: &str, cause: &str) -> &'a Value {
    let d = diagnosis(report, comm);
    assert_eq!(d["cause"], cause, "{d}");
    d
}

fn diagnosis<'a>(report: &'a Value, comm: &str) -> &'a Value {
    let d = &thread(report, comm)["diagnosis"];
    assert!(d.is_object(), "no diagnosis for {comm}: {report}");
    assert!(!d["hint"].as_str().unwrap_or("").is_empty());
    d
}

/// The advice a diagnosis gives.
fn hint(d: &Value) -> &str {
    d["hint"].as_str().expect("a hint")
}

fn tid_of(target: &Target, comm: &str) -> u64 {
    target
        .threads()
        .into_iter()
        .find(|(_, n)| n == comm)
        .map(|(t, _)| t as u64)
        .expect("thread")
}

fn stack_has(d: &Value, function: &str) -> bool {
    d["stack"].as_array().is_some_and(|s| {
        s.iter().any(|f| {
            f["function"]
                .as_str()
                .is_some_and(|n| n.trim_start_matches('_').starts_with(function))
        })
    })
}

#[test]
fn cond_wait_unwrapped() {
    let Some(o) = observe(&["read:1", "plaincond:1"], true) else {
        return;
    };
    assert_eq!(o.report["outcome"], "dnq");
    let d = diagnosed(&o.report, "plaincond", "cond_wait_unwrapped");
    assert_eq!(d["details"]["syscall"], "futex");
    // The condition variable lives in the program's `stuck` array of private waits.
    assert!(
        d["details"]["futex_symbol"]
            .as_str()
            .is_some_and(|s| s.starts_with("stuck")),
        "{d}"
    );
    assert!(stack_has(d, "pthread_cond_wait"), "{d}");
    assert!(stack_has(d, "plaincond_loop"), "{d}");
    assert!(hint(d).contains("qbench_pthread_cond_wait"));
}

#[test]
fn mutex_wait_names_the_owner() {
    let Some(o) = observe(&["lockholder:1", "lockwaiter:1"], true) else {
        return;
    };
    let d = diagnosed(&o.report, "lockwaiter", "mutex_wait");
    assert_eq!(
        d["details"]["owner_tid"],
        tid_of(&o.target, "lockholder"),
        "{d}"
    );
    assert_eq!(d["details"]["owner_parked"], false);
    assert_eq!(d["details"]["futex_symbol"], "big_lock", "{d}");
    // The owner is late for its own reason: a read the runtime interrupts and it calls again.
    assert_eq!(diagnosis(&o.report, "lockholder")["cause"], "eintr_retried");
}

#[test]
fn lock_held_at_update_point_names_both_threads_and_the_lock() {
    let Some(o) = observe(&["parkholder:1", "heldwaiter:1"], false) else {
        return;
    };
    let d = diagnosed(&o.report, "heldwaiter", "lock_held_at_update_point");
    let holder = tid_of(&o.target, "parkholder");
    assert_eq!(d["details"]["owner_tid"], holder);
    assert_eq!(d["details"]["owner_parked"], true);
    assert_eq!(d["details"]["futex_symbol"], "held_lock");
    let hint = hint(d);
    assert!(
        hint.contains("held_lock")
            && hint.contains(&holder.to_string())
            && hint.contains("parkholder"),
        "{hint}"
    );
    assert_eq!(thread(&o.report, "parkholder")["state"], "arrived");
}

#[test]
fn io_restarted_when_the_handler_has_sa_restart() {
    let Some(o) = observe(&["restartread:1", "condwait:1"], true) else {
        return;
    };
    let d = diagnosed(&o.report, "restartread", "io_restarted");
    assert!(
        d["details"]["restarts"].as_u64().is_some_and(|n| n >= 1),
        "{d}"
    );
    assert!(hint(d).contains("without SA_RESTART"));
}

#[test]
fn eintr_retried_names_the_socket_and_the_loop() {
    // The runtime interrupts the straggler's accept every few milliseconds; the loop calls it
    // again each time.
    let Some(o) = observe(&["read:1", "stuckaccept:1"], true) else {
        return;
    };
    let d = diagnosed(&o.report, "stuckaccept", "eintr_retried");
    assert_eq!(d["details"]["retry_loop"], "stuck_accept_loop", "{d}");
    assert!(d["details"]["retries"].as_u64() >= Some(1), "{d}");
    assert_eq!(d["details"]["syscall"], "accept");
    let fd = d["details"]["fd"].as_str().unwrap_or("");
    assert!(
        fd.starts_with("TCP 127.0.0.1:") && fd.ends_with(" LISTEN"),
        "{d}"
    );
    assert!(stack_has(d, "stuck_accept_loop"), "{d}");
}

#[test]
fn eintr_retried_names_the_pipe() {
    let Some(o) = observe(&["read:1", "stuckread:1"], true) else {
        return;
    };
    let d = diagnosis(&o.report, "stuckread");
    assert_eq!(
        (
            d["cause"].as_str(),
            d["details"]["fd"].as_str(),
            d["details"]["retry_loop"].as_str()
        ),
        (Some("eintr_retried"), Some("pipe"), Some("stuck_read_loop")),
        "{d}"
    );
    let blocked = &thread(&o.report, "stuckread")["blocked_in"];
    let reentries = blocked["reentries"].as_u64().expect("reentries");
    assert!(
        reentries >= d["details"]["retries"].as_u64().expect("retries"),
        "{d}"
    );
    assert!(
        blocked["first_blocked_ns"].as_u64() < blocked["since_ns"].as_u64(),
        "{blocked}"
    );
}

#[test]
fn sleeping_shows_the_requested_duration() {
    let Some(o) = observe(&["read:1", "stucksleep:1"], true) else {
        return;
    };
    let d = diagnosed(&o.report, "stucksleep", "sleeping");
    assert_eq!(d["details"]["syscall"], "clock_nanosleep");
    // sleep(100), resumed with what is left after each interruption: whole seconds, at most 100.
    let ns = d["details"]["sleep_requested_ns"]
        .as_u64()
        .expect("requested");
    assert!(
        ns.is_multiple_of(1_000_000_000) && (1..=100).contains(&(ns / 1_000_000_000)),
        "{d}"
    );
}

#[test]
fn running_without_update_points() {
    let Some(o) = observe(&["read:1", "spinner:1"], false) else {
        return;
    };
    diagnosed(&o.report, "spinner", "running");
    assert_eq!(thread(&o.report, "spinner")["state"], "running");
}

#[test]
fn uninterruptible_names_the_wait_channel() {
    let Some(o) = observe(&["read:1", "vforker:1"], false) else {
        return;
    };
    let d = diagnosed(&o.report, "vforker", "uninterruptible");
    assert!(
        d["details"]["wchan"]
            .as_str()
            .is_some_and(|w| !w.is_empty()),
        "{d}"
    );
    assert_eq!(thread(&o.report, "vforker")["state"], "uninterruptible");
}

/// A process stopped by SIGSTOP (as by Ctrl-Z): no thread runs, so none arrives, and each is
/// said to be stopped rather than blocked in the call it was in.
#[test]
fn stopped_threads_are_said_to_be_stopped() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1"], &[]);
    target.wait_blocked();
    // SAFETY: plain kill(2) of the target this test started.
    assert_eq!(unsafe { libc::kill(target.pid, libc::SIGSTOP) }, 0);
    while qbench_tests::thread_state(target.pid, target.pid) != Some('T') {
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = request(&target, &["--timeout", "300ms", "--json"]);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(target.pid, libc::SIGCONT) }, 0);
    let report = first_report(&out);
    assert_eq!(report["outcome"], "dnq", "{report}");
    for comm in ["read", "situations-dyn"] {
        let d = diagnosis(&report, comm);
        assert_eq!(d["cause"], "stopped", "{comm}: {d}");
        assert!(
            d["evidence"]
                .as_str()
                .unwrap()
                .starts_with("state T: stopped by a signal"),
            "{d}"
        );
        assert_eq!(thread(&report, comm)["state"], "stopped");
    }
}

#[test]
fn not_participating_when_the_runtime_does_not_know_the_thread() {
    let Some(o) = observe(&["read:1", "outsider:1"], true) else {
        return;
    };
    assert_eq!(o.report["outcome"], "quiesced");
    let d = diagnosed(&o.report, "outsider", "not_participating");
    assert!(hint(d).contains("qbench_thread_register"));
}

#[test]
fn the_last_thread_to_arrive_is_explained_too() {
    let Some(o) = observe(&["sleep:2"], true) else {
        return;
    };
    assert_eq!(o.report["outcome"], "quiesced");
    let explained: Vec<&Value> = threads_where(&o.report, |t| t["diagnosis"].is_object());
    assert_eq!(explained.len(), 1, "only the last arrival: {}", o.report);
    let last = o.report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|t| t["arrival_ns"].as_u64())
        .unwrap();
    assert_eq!(explained[0]["tid"], last["tid"]);
}

#[test]
fn the_human_report_says_why() {
    let Some(_serial) = privileged() else { return };
    let target = start(&["read:1", "stuckread:1"]);
    target.wait_blocked();
    let out = request(&target, &["--timeout", "300ms"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let why = text
        .lines()
        .position(|l| l.starts_with("WHY "))
        .expect("a WHY block");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[why].ends_with("(stuckread), missing: eintr_retried"),
        "{text}"
    );
    assert!(
        lines[why + 1].starts_with("    evidence: interrupted ")
            && lines[why + 1].contains(" and called again by stuck_read_loop; read(fd="),
        "{text}"
    );
    assert!(lines[why + 1].ends_with("; fd is pipe"), "{text}");
    assert!(
        lines[why + 2].starts_with("    fix:      break stuck_read_loop from an update callback"),
        "{text}"
    );
    assert!(lines[why + 3].starts_with("    stack:"), "{text}");
    assert!(text.contains("stuck_read_loop (situations.c:"), "{text}");
}

#[test]
fn a_deleted_executable_still_gets_a_report_with_what_could_be_had() {
    let Some(_serial) = privileged() else { return };
    let dir = qbench_tests::TempDir::new();
    let exe = dir.0.join("situations-deleted");
    std::fs::copy(
        qbench_tests::build_c("situations", qbench_tests::Linkage::Dynamic),
        &exe,
    )
    .expect("copy");
    let target = Target::start(
        &exe,
        &["read:1", "stuckread:1"],
        &[("QBENCH_TIMEOUT_MS", "3000")],
    );
    target.wait_blocked();
    std::fs::remove_file(&exe).expect("delete the executable");
    let out = request(&target, &["--timeout", "300ms", "--json"]);
    assert_exit(&out, 3);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    let d = diagnosis(&report, "stuckread");
    assert_eq!(d["cause"], "eintr_retried", "{d}");
    // The frames in the deleted executable are still there, as addresses at least.
    assert!(d["stack"].as_array().is_some_and(|s| s.len() >= 2), "{d}");
}

#[test]
fn a_hostile_thread_name_cannot_reach_the_terminal_raw() {
    let Some(_serial) = privileged() else { return };
    // The thread names itself "\x1b[2Jevil": an escape sequence that would clear the screen.
    let target = start(&["read:1", "hostile:1"]);
    target.wait_blocked();
    let out = request(&target, &["--timeout", "300ms"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}'), "raw escape in {text:?}");
    assert!(text.contains("\\x1b[2Jevil"), "{text}");
    let json = request(&target, &["--timeout", "300ms", "--json"]);
    let report: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert!(
        report["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["comm"] == "\u{1b}[2Jevil")
    );
    assert!(!String::from_utf8_lossy(&json.stdout).contains('\u{1b}'));
}
