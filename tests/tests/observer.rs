//! qbench-trace against real target programs: real eBPF programs loaded into the kernel, real
//! update requests by signal, exact outcomes. Skipped, with the reason printed, when not root.

use std::process::Command;
use std::time::Duration;

use qbench_tests::ebpf::{c_source, compile_c};
use qbench_tests::observer::{
    assert_exit, json_lines, privileged, request, requested_updates, spawn_attached, thread,
    threads_where, trace,
};
use qbench_tests::{Report, ReportChecks, Target};
use serde_json::Value;

/// The situations program running `args`, once all its threads are blocked.
fn situations(args: &[&str], env: &[(&str, &str)]) -> Target {
    let target = qbench_tests::observer::situations(args, env);
    target.wait_blocked();
    target
}

/// What descriptor `fd` of `pid` is: "socket:[...]", "pipe:[...]", a path.
fn fd_kind(pid: i32, fd: &Value) -> String {
    let path = format!("/proc/{pid}/fd/{}", fd.as_u64().expect("fd number"));
    std::fs::read_link(path)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn measures_the_same_updates_as_the_runtime_and_orders_both() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:2", "accept:1", "condwait:1", "sleep:1"], &[]);
    let observed = requested_updates(&target, &["--count", "3"]);
    let reported: Vec<Report> = target.wait_reports(3, Duration::from_secs(10));
    assert_eq!(observed.len(), 3);
    for (o, r) in observed.iter().zip(&reported) {
        assert_eq!(o["pid"], target.pid);
        assert_eq!(o["outcome"], "quiesced", "{o}");
        assert_eq!(o["request_source"], "signal");
        assert_eq!(o["lost_events"], 0);
        // main + 5 workers; the runtime's helper thread is not a participant.
        let threads = o["threads"].as_array().expect("threads");
        assert_eq!(threads.len(), 6, "{o}");
        assert!(
            threads
                .iter()
                .all(|t| t["state"] == "arrived" && t["blocked_in"].is_null()),
            "{o}"
        );
        r.assert_quiesced(6);
        let (req, first, last) = (
            o["request_ns"].as_u64().unwrap(),
            o["first_arrival_ns"].as_u64().unwrap(),
            o["last_arrival_ns"].as_u64().unwrap(),
        );
        assert!(req <= first && first <= last, "{o}");
        assert_eq!(o["quiescence_ns"].as_u64(), Some(last - first));
        assert_eq!(o["request_latency_ns"].as_u64(), Some(last - req));
        // The arrivals are read from the runtime's own table at its release: the instants of
        // its report, to the nanosecond.
        assert_eq!(
            (Some(first), Some(last)),
            (r.first_arrival_ns, r.last_arrival_ns),
            "{o}"
        );
        // The signal is generated before the target's handler runs and stamps the request;
        // the runtime's request anchor, just after that stamp, ends the signal's delivery.
        let delivered = req
            + o["signal_delivery_ns"]
                .as_u64()
                .expect("signal_delivery_ns");
        assert!(
            req <= r.request_ns && r.request_ns <= delivered,
            "observer {req} runtime {} handler seen at {delivered}",
            r.request_ns
        );
        assert_eq!(o["runtime_seq"].as_u64(), Some(r.seq));
    }
}

/// Starts `situations read:1 KIND:1`, requests one update with a short timeout, and returns the
/// observer's DNQ report and the stuck thread's entry, checked to be blocked in `syscall`.
fn stuck(kind: &str, syscall: &str) -> (Target, Value) {
    let target = situations(
        &["read:1", &format!("{kind}:1")],
        &[("QBENCH_TIMEOUT_MS", "2000")],
    );
    let out = request(&target, &["--timeout", "300ms", "--json"]);
    assert_exit(&out, 3);
    let updates = json_lines(&out);
    assert_eq!(updates.len(), 1);
    let update = updates[0].clone();
    assert_eq!(update["outcome"], "dnq");
    assert_eq!(update["quiescence_ns"], Value::Null);
    // The missing thread comes first; main and the reader arrived.
    assert_eq!(update["threads"][0]["comm"], kind, "{update}");
    assert_eq!(thread(&update, "read")["state"], "arrived");
    let missing: Vec<&Value> = threads_where(&update, |t| t["arrival_ns"].is_null());
    assert_eq!(missing.len(), 1, "{update}");
    let t = missing[0].clone();
    assert_eq!(t["blocked_in"]["syscall"], syscall, "{t}");
    (target, t)
}

/// Checks that the stuck thread `t` is blocked on a descriptor of the `kind` (`socket:`, ...).
fn assert_fd(target: &Target, t: &Value, kind: &str) {
    assert!(
        fd_kind(target.pid, &t["blocked_in"]["args"][0]).starts_with(kind),
        "{t}"
    );
}

#[test]
fn names_a_thread_stuck_in_a_plain_condition_wait() {
    let Some(_serial) = privileged() else { return };
    let (_target, t) = stuck("plaincond", "futex");
    // The runtime keeps interrupting it (its handler runs, then the wait resumes), so it may be
    // caught on a CPU.
    assert!(t["state"] == "sleeping" || t["state"] == "running", "{t}");
}

#[test]
fn names_a_thread_stuck_in_accept_and_its_socket() {
    let Some(_serial) = privileged() else { return };
    let (target, t) = stuck("stuckaccept", "accept");
    assert_fd(&target, &t, "socket:");
    // It re-entered accept after the request's interruption: the call began after the request.
    assert!(t["blocked_in"]["since_ns"].as_u64().is_some(), "{t}");
}

#[test]
fn names_a_thread_stuck_in_read_and_its_pipe() {
    let Some(_serial) = privileged() else { return };
    let (target, t) = stuck("stuckread", "read");
    assert_fd(&target, &t, "pipe:");
    assert_eq!(t["blocked_in"]["args"][2], 1, "count");
}

#[test]
fn names_a_thread_stuck_in_sleep() {
    let Some(_serial) = privileged() else { return };
    let _ = stuck("stucksleep", "clock_nanosleep");
}

#[test]
fn the_human_report_has_a_summary_and_a_header_row() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1", "stuckread:1"], &[("QBENCH_TIMEOUT_MS", "2000")]);
    let out = request(&target, &["--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("UPDATE 1 pid {} (signal 12 from pid ", target.pid)),
        "{text}"
    );
    assert!(
        lines[0].contains("DID NOT QUIESCE after 200.0 ms, 1 of 3 threads missing"),
        "{text}"
    );
    assert!(lines[1].split_whitespace().eq([
        "TID",
        "COMM",
        "STATE",
        "ARRIVAL_US",
        "BLOCKED_IN",
        "FIRST_MS",
        "REENTRIES",
        "SINCE_MS"
    ]));
    assert!(
        lines[2].contains("stuckread") && lines[2].contains("read(fd="),
        "{text}"
    );
}

#[test]
fn a_full_ring_buffer_makes_the_update_incomplete_never_a_dnq() {
    let Some(_serial) = privileged() else { return };
    // The spinning thread makes system calls as fast as it can while the window stays open
    // (it never arrives); a one-page ring buffer that nobody drains fast enough overflows. The
    // stuck reader never arrives either, but with events lost nobody can say so for sure.
    let target = qbench_tests::observer::situations(
        &["read:1", "spin:1", "stuckread:1"],
        &[("QBENCH_TIMEOUT_MS", "2000")],
    );
    let out = request(
        &target,
        &["--timeout", "300ms", "--json", "--ring-bytes", "4096"],
    );
    assert_eq!(out.status.code(), Some(4));
    let update = &json_lines(&out)[0];
    assert_eq!(update["outcome"], "incomplete", "{update}");
    let lost = update["lost_events"].as_u64().expect("lost_events");
    assert!(lost > 0, "{update}");
    let threads = update["threads"].as_array().expect("threads");
    assert!(
        threads.iter().all(|t| t["diagnosis"].is_null()),
        "an incomplete update diagnoses nobody: {update}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("qbench-trace: {lost} events lost during update 1")),
        "{stderr}"
    );
}

#[test]
fn bad_input_gets_one_line_and_the_documented_exit_code() {
    let Some(_serial) = privileged() else { return };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["--pid".into(), "0".into()], 2, "is not a process id"),
        (
            vec!["--pid".into(), "4194000".into()],
            1,
            "no process with pid 4194000",
        ),
        (vec!["--pid".into(), "2".into()], 1, "is a kernel thread"),
        (
            vec![
                "--pid".into(),
                "1".into(),
                "--timeout".into(),
                "forever".into(),
            ],
            2,
            "is not a duration",
        ),
    ];
    for (args, code, needle) in cases {
        let out = trace(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

#[test]
fn a_program_without_update_points_is_refused_with_a_hint() {
    let Some(_serial) = privileged() else { return };
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    std::thread::sleep(Duration::from_millis(50));
    let pid = sleeper.id().to_string();
    let out = trace(&["--pid", &pid]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no qbench_update in ") && stderr.contains("--point"),
        "{stderr}"
    );
    let out = trace(&["--pid", &pid, "--point", "no_such_function"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no_such_function"), "{stderr}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn the_target_exiting_ends_the_observation_cleanly() {
    let Some(_serial) = privileged() else { return };
    let mut target = situations(&["read:1"], &[]);
    let observer = spawn_attached(&["--pid", &target.pid.to_string()]);
    target.send("q");
    let out = observer.finish(
        Duration::from_secs(10),
        "qbench-trace did not notice the exit",
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("process {} exited with status 0", target.pid))
    );
}

#[test]
fn killing_the_observer_leaves_the_target_running_and_no_programs_behind() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1", "condwait:1"], &[]);
    let before = qbench_programs();
    let mut child = spawn_attached(&["--pid", &target.pid.to_string()]).child;
    // This observer's programs: loaded since it started (other observers may run beside it).
    let ours: std::collections::BTreeSet<u32> =
        qbench_programs().difference(&before).copied().collect();
    assert!(!ours.is_empty(), "programs should be loaded while attached");
    target.request(libc::SIGUSR2);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The runtime completes its update on its own; the target is neither parked nor slowed.
    target.wait_reports(1, Duration::from_secs(5))[0].assert_quiesced(3);
    wait_unloaded(&ours);
}

/// Ids of the programs whose names start with "qbench_" loaded in the kernel (bpftool's view).
fn qbench_programs() -> std::collections::BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("qbench_")))
        .map(|p| p.id())
        .collect()
}

/// Waits (at most 5 s) until none of `ours` is loaded any more.
fn wait_unloaded(ours: &std::collections::BTreeSet<u32>) {
    qbench_tests::poll(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || match qbench_programs().intersection(ours).next() {
            None => Ok(()),
            Some(_) => Err(()),
        },
        |()| format!("programs left loaded: {ours:?}"),
    );
}

#[test]
fn a_child_process_forked_during_observation_is_not_a_thread() {
    let Some(_serial) = privileged() else { return };
    let mut target = situations(&["read:2"], &[]);
    // -v: with --json the "attached" line is printed only when asked for.
    let pid = target.pid.to_string();
    let observer = spawn_attached(&["--pid", &pid, "--count", "1", "--json", "-v"]);
    // The target forks a child (which runs its own update and exits), then gets a request.
    target.send("f");
    assert!(target.read_line().starts_with("child "));
    target.request(libc::SIGUSR2);
    let out = observer.finish(Duration::from_secs(10), "no report");
    assert_exit(&out, 0);
    let update = &json_lines(&out)[0];
    assert_eq!(update["outcome"], "quiesced", "{update}");
    assert_eq!(
        update["threads"].as_array().map(Vec::len),
        Some(3),
        "{update}"
    );
}

#[test]
fn observes_a_program_without_the_runtime_at_a_named_update_point() {
    let Some(_serial) = privileged() else { return };
    let exe = compile_c(&c_source("plain_target.c"), "plain_target", &["-rdynamic"]);
    let mut target = qbench_tests::ebpf::Target::spawn(&exe, &["points"]);
    assert_eq!(target.line(), "ready");
    std::thread::sleep(Duration::from_millis(100));
    let pid = target.pid().to_string();
    let out = trace(&[
        "--pid",
        &pid,
        "--point",
        "update_point",
        "--request",
        "--count",
        "2",
        "--json",
    ]);
    drop(target);
    assert_exit(&out, 0);
    let updates = json_lines(&out);
    assert_eq!(updates.len(), 2);
    for (n, u) in updates.iter().enumerate() {
        assert_eq!(u["update"], n as u64 + 1);
        assert_eq!(u["outcome"], "quiesced", "{u}");
        assert_eq!(u["runtime_seq"], Value::Null, "no runtime in this program");
        // main and three workers, each reported once although each passes the point twice.
        assert_eq!(u["threads"].as_array().map(Vec::len), Some(4), "{u}");
    }
}

#[test]
fn ctrl_c_detaches_cleanly() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1"], &[]);
    let before = qbench_programs();
    let observer = spawn_attached(&["--pid", &target.pid.to_string()]);
    let ours: std::collections::BTreeSet<u32> =
        qbench_programs().difference(&before).copied().collect();
    assert!(!ours.is_empty());
    let observer_pid = observer.child.id() as i32;
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(observer_pid, libc::SIGINT) }, 0);
    let out = observer.finish(Duration::from_secs(10), "qbench-trace did not stop");
    assert_exit(&out, 0);
    wait_unloaded(&ours);
}

#[test]
fn without_privileges_it_names_the_missing_capabilities() {
    let Some(_serial) = privileged() else { return };
    let trace = qbench_tests::artifact("qbench-trace");
    // Run as nobody, with no capabilities; the binary must be reachable by that user.
    let as_nobody = || {
        let mut setpriv = Command::new("setpriv");
        setpriv
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&trace);
        setpriv
    };
    let probe = as_nobody().arg("--version").output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => {
            eprintln!(
                "skipped: cannot run {} as nobody with setpriv here",
                trace.display()
            );
            return;
        }
    }
    let target = situations(&["read:1"], &[]);
    let out = as_nobody()
        .args(["--pid", &target.pid.to_string()])
        .output()
        .expect("run as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The target is root's: the first thing missing is the right to trace it at all.
    assert_eq!(
        stderr.trim_end(),
        format!(
            "qbench-trace: error: qbench-trace may not trace pid {} (uid 0): like a debugger it \
             observes only processes it could ptrace; run it as uid 0 or with CAP_SYS_PTRACE \
             (have: none)",
            target.pid
        )
    );
}

#[test]
fn a_thread_the_runtime_does_not_know_is_reported_as_not_participating() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:2", "outsider:1"], &[]);
    let update = &requested_updates(&target, &[])[0];
    // The runtime quiesced without the outsider, and said so at its release anchor.
    assert_eq!(update["outcome"], "quiesced", "{update}");
    target.wait_reports(1, Duration::from_secs(5))[0].assert_quiesced(3);
    let outsider = thread(update, "outsider");
    assert_eq!(outsider["participating"], false, "{update}");
    assert_eq!(outsider["arrival_ns"], Value::Null);
    assert_eq!(outsider["blocked_in"]["syscall"], "read");
    assert_eq!(thread(update, "read")["participating"], true);
}
