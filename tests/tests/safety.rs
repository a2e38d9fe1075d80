//! qbench-trace sends the update signal only where it requests an update: never to a target that
//! does not catch it (its default action would kill it), never to the program a target executed
//! after attach, never to another process. Skipped, with the reason printed, when not root.

use std::process::Command;
use std::time::Duration;

use qbench_tests::observer::{
    assert_exit, finish, json_lines, privileged, request, requested_updates, situations,
    spawn_trace, thread, trace,
};

/// A process without the runtime, and a libqbench process whose update signal is SIGUSR1: a
/// SIGUSR2 would kill either. Both are refused before anything is loaded and both live on.
#[test]
fn a_target_that_does_not_catch_the_signal_is_not_sent_it() {
    let Some(_serial) = privileged() else { return };
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("start sleep");
    let pid = sleeper.id().to_string();
    let out = trace(&["--pid", &pid, "--request"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "qbench-trace: error: pid {pid} (sleep) does not catch SIGUSR2, and its default \
             action would terminate it; give the signal its update handler catches with --signal \
             (it catches none that could be), or --force-signal to send it anyway"
        )
    );
    assert!(matches!(sleeper.try_wait(), Ok(None)), "sleep was killed");
    sleeper.kill().expect("kill sleep");
    let _ = sleeper.wait();

    let mut target = situations(&["read:1"], &[("QBENCH_SIGNAL", "SIGUSR1")]);
    let pid = target.pid.to_string();
    let out = trace(&["--pid", &pid, "--request"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pid {pid} (situations-dyn) does not catch SIGUSR2"
        )) && stderr.contains("(it catches SIGUSR1)"),
        "{stderr}"
    );
    assert!(target.is_running(), "the target was killed");
    // Its own signal is caught: the update is requested and quiesces.
    let out = request(&target, &["--signal", "USR1", "--json"]);
    assert_exit(&out, 0);
    assert!(target.is_running());
}

/// A signal the target ignores is dropped by the kernel: no update could come of it, so it is
/// refused with `--force-signal` too (sent, it would leave qbench-trace waiting for ever).
#[test]
fn a_signal_the_target_ignores_is_refused_even_when_forced() {
    let Some(_serial) = privileged() else { return };
    let mut target = situations(&["read:1"], &[]);
    let pid = target.pid.to_string();
    for forced in [false, true] {
        let mut args = vec!["--pid", pid.as_str(), "--request", "--signal", "URG"];
        if forced {
            args.push("--force-signal");
        }
        let out = trace(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "qbench-trace: error: pid {pid} (situations-dyn) ignores SIGURG, so the kernel \
                 drops it and no update can be requested with it (--force-signal or not); give \
                 the signal its update handler catches with --signal (it catches SIGUSR2)"
            )
        );
    }
    assert!(target.is_running(), "the target was killed");
}

/// A target that executes another program while qbench-trace requests update after update: the
/// new program (which does not catch SIGUSR2) is never signalled, and qbench-trace stops saying
/// why.
#[test]
fn a_target_that_executes_another_program_is_not_signalled_again() {
    let Some(_serial) = privileged() else { return };
    let mut target = situations(&["read:1"], &[]);
    let pid = target.pid.to_string();
    let observer = spawn_trace(&["--pid", &pid, "--request", "--count", "1000", "--json"]);
    // Let a few updates through, then exec.
    let reports = target.report_path.clone();
    qbench_tests::poll(
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            (qbench_tests::read_reports(&reports).len() >= 3)
                .then_some(())
                .ok_or(())
        },
        |()| "no updates were requested".to_string(),
    );
    target.send("x");
    let out = finish(
        observer,
        Duration::from_secs(30),
        "qbench-trace did not stop",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "qbench-trace: process {pid} executed a new program; its update points are gone"
        )),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    target.assert_runs("sleep");
}

/// Thread names that are not UTF-8, the main thread's among them: the process can be attached,
/// every thread is there, and each name is shown byte for byte, escaped.
#[test]
fn names_that_are_not_utf8_are_threads_like_any_other() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["badname:1", "read:1"], &[]);
    let reports = requested_updates(&target, &[]);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["outcome"], "quiesced", "{}", reports[0]);
    let mut names: Vec<&str> = reports[0]["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["comm"].as_str().expect("comm"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["\\xff\\xfe bad\\\\", "\\xffmain", "read"]);
    for comm in ["\\xff\\xfe bad\\\\", "\\xffmain"] {
        assert_eq!(thread(&reports[0], comm)["state"], "arrived");
    }
    // The human report names them the same way, with nothing raw reaching the terminal.
    let out = request(&target, &[]);
    let stdout = String::from_utf8(out.stdout).expect("the report is UTF-8");
    assert!(
        stdout.contains("\\xff\\xfe bad\\\\") && stdout.contains("\\xffmain"),
        "{stdout}"
    );
}

/// The runtime loaded from a directory whose name has spaces and a newline (the kernel writes
/// it as `\012` in /proc/PID/maps): its anchors are found and the update is observed.
#[test]
fn a_runtime_mapped_from_a_path_with_a_newline_is_found() {
    let Some(_serial) = privileged() else { return };
    let dir = qbench_tests::TempDir::new();
    let odd = dir.0.join("lib dir\nwith newline");
    std::fs::create_dir(&odd).expect("mkdir");
    std::fs::copy(
        qbench_tests::artifact("libqbench.so"),
        odd.join("libqbench.so.0"),
    )
    .expect("copy");
    let library_path = odd.to_str().expect("utf-8").to_owned();
    let target = situations(&["read:2"], &[("LD_LIBRARY_PATH", &library_path)]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).expect("maps");
    assert!(
        maps.contains("lib dir\\012with newline/libqbench.so.0"),
        "{maps}"
    );
    let reports = requested_updates(&target, &[]);
    assert_eq!(reports[0]["outcome"], "quiesced", "{}", reports[0]);
    assert_eq!(reports[0]["threads"].as_array().expect("threads").len(), 3);
}

/// A target killed while an update is pending: the update is reported as ended by its exit, with
/// the signal that killed it, not as a DNQ with causes for threads that are gone.
#[test]
fn a_target_that_dies_during_an_update_is_reported_as_exited() {
    let Some(_serial) = privileged() else { return };
    let target = situations(
        &["read:1", "stuckread:1"],
        &[("QBENCH_TIMEOUT_MS", "60000")],
    );
    target.wait_blocked();
    let pid = target.pid;
    let pid_text = pid.to_string();
    let observer = spawn_trace(&[
        "--pid",
        &pid_text,
        "--request",
        "--timeout",
        "30s",
        "--json",
    ]);
    // The update is pending once the reader has parked and stuckread has not.
    qbench_tests::poll(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/syscall"))
                .is_ok_and(|s| s.starts_with("202 "))
                .then_some(())
                .ok_or(())
        },
        |()| "the main thread never parked".to_string(),
    );
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) of the target this test started; it stays a zombie until `target` drops.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = observer.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "qbench-trace: process {pid} was killed by SIGKILL"
        )),
        "{stderr}"
    );
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report["outcome"], "exited", "{report}");
    assert_eq!(
        report["exit"],
        serde_json::json!({"signal": 9, "core_dumped": false})
    );
    assert!(
        report["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .all(|t| t["diagnosis"].is_null()),
        "{report}"
    );
    drop(target);
}

/// A participating thread created every 100 µs, many of them parking after their update was
/// reported: every report is an update that was requested, none one opened by a late arrival.
#[test]
fn thread_churn_never_invents_an_update() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1", "churn:1"], &[]);
    let out = request(&target, &["--count", "20", "--timeout", "2s", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 20, "{stderr}");
    let sources: Vec<&str> = reports
        .iter()
        .map(|r| r["request_source"].as_str().expect("source"))
        .collect();
    assert!(sources.iter().all(|&s| s == "signal"), "{sources:?}");
}
