//! qbench-trace on Debian's real iperf 2.1.8 as a TCP server (`-s` on 127.0.0.1), unpatched and
//! at each stage of `workloads/real/iperf/patches/`, idle and with a loopback client of the same
//! build sending. The builds come from `cargo xtask real iperf --build-only` (in
//! target/real/iperf/); without them, or without root, each test prints why it is skipped.
//!
//! Every iperf thread is named `iperf`, so the tests tell them apart by id and by what /proc
//! says each is in before the update: main (the process id) waits for the others in
//! `thread_joinall`, the listener is in accept(2), the reporter is the other one started with
//! them; a server thread per client comes later.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use qbench_tests::observer::{privileged, reports, trace};
use qbench_tests::real::{
    Server, assert_every_thread_arrived, built, by_tid, cause, quiesced_updates, unpatched_dnq,
};
use serde_json::Value;

/// main, the reporter and the listener.
const THREADS: usize = 3;

/// iperf's threads by role, from /proc.
struct Roles {
    main: u64,
    reporter: u64,
    listener: u64,
}

/// An iperf server of one variant running for a test, which holds the observer to itself.
struct Started {
    _serial: MutexGuard<'static, ()>,
    exe: PathBuf,
    server: Server,
    roles: Roles,
}

/// An iperf server of `variant`, with the runtime's helper for a stage; None (said) without
/// root or when not built.
fn started(variant: &str) -> Option<Started> {
    let serial = privileged()?;
    let exe = built("iperf", variant, "src/iperf")?;
    let runtime = usize::from(variant != "unpatched");
    let args = |port: u16| {
        ["-s", "-B", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|a| (*a).to_string())
            .collect()
    };
    let server = Server::start(&exe, args, THREADS + runtime);
    let roles = roles(&server);
    Some(Started {
        _serial: serial,
        exe,
        server,
        roles,
    })
}

fn roles(server: &Server) -> Roles {
    let main: u64 = server.pid().parse().expect("pid");
    let comm = |tid: u64| {
        std::fs::read_to_string(format!("/proc/{main}/task/{tid}/comm")).unwrap_or_default()
    };
    // The runtime's helper is not iperf's.
    let others: Vec<u64> = server
        .threads()
        .into_iter()
        .filter(|&t| t != main && comm(t).trim() != "qbench-helper")
        .collect();
    let in_accept = |t: u64| matches!(server.syscall(t), Some(n) if n == libc::SYS_accept || n == libc::SYS_accept4);
    let (listener, reporter): (Vec<u64>, Vec<u64>) =
        others.into_iter().partition(|&t| in_accept(t));
    assert_eq!((listener.len(), reporter.len()), (1, 1), "threads of iperf");
    Roles {
        main,
        reporter: reporter[0],
        listener: listener[0],
    }
}

/// `iperf -c 127.0.0.1 -p PORT -t SECONDS` of `exe`, and once the server has its thread for the
/// connection (`threads` in all), that thread's id.
fn client(exe: &Path, server: &Server, seconds: u32, threads: usize) -> (Child, u64) {
    let before = server.threads();
    let mut child = Command::new(exe)
        .args(["-c", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-t", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iperf -c");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut thread = None;
    while thread.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = server.threads();
        if now.len() == threads {
            thread = now.into_iter().find(|t| !before.contains(t));
        }
    }
    let Some(thread) = thread else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no server thread after 5 s");
    };
    // Let it send for a while.
    std::thread::sleep(Duration::from_millis(300));
    (child, thread)
}

/// The client ran to its end: exit 0 and a bandwidth line.
fn assert_client_finished(child: Child) {
    let out = child.wait_with_output().expect("iperf -c");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("bits/sec"), "{text}");
}

/// Main's wait for the other threads to end: a pthread_cond_wait without timeout on
/// `thread_sNum_cond`.
fn assert_main_cond_wait(t: &Value) {
    assert_cond_wait(t, "thread_sNum_cond", false);
}

/// The reporter between passes: a pthread_cond_timedwait of 1 s on `ReportCond`.
fn assert_reporter_cond_wait(t: &Value) {
    assert_cond_wait(t, "ReportCond", true);
}

/// A participating thread that did not arrive, diagnosed in a condition wait on `cond` (the
/// futex word is at +40 or +44, by the waiter's group), `timed` or not.
fn assert_cond_wait(t: &Value, cond: &str, timed: bool) {
    assert!(t["arrival_ns"].is_null(), "{t}");
    assert_eq!(t["participating"], true, "{t}");
    assert_eq!(cause(t), "cond_wait_unwrapped", "{t}");
    let details = &t["diagnosis"]["details"];
    assert_eq!(details["syscall"], "futex", "{t}");
    let symbol = details["futex_symbol"].as_str().unwrap_or("");
    assert!(symbol.starts_with(&format!("{cond}+")), "{t}");
    assert_eq!(details["args"][3] != 0, timed, "timeout: {t}");
}

#[test]
fn unpatched_iperf_observed_at_report_packet_is_diagnosed_thread_by_thread() {
    let Some(run) = started("unpatched") else {
        return;
    };
    let pid = run.server.pid();
    // SIGALRM: iperf's handler only sets sInterupted, which the idle reporter clears again.
    let report = &unpatched_dnq(&pid, "ReportPacket", "ALRM", THREADS);
    assert_main_cond_wait(by_tid(report, run.roles.main));
    assert_reporter_cond_wait(by_tid(report, run.roles.reporter));
    let listener = by_tid(report, run.roles.listener);
    assert_eq!(cause(listener), "io_blocked", "{listener}");
    let details = &listener["diagnosis"]["details"];
    assert_eq!(details["syscall"], "accept", "{listener}");
    assert_eq!(
        details["fd"],
        format!("TCP 127.0.0.1:{} LISTEN", run.server.port),
        "{listener}"
    );
    // The signal did not stop the server: a client still gets its test.
    let (child, _) = client(&run.exe, &run.server, 1, THREADS + 1);
    assert_client_finished(child);
}

#[test]
fn stage1_listener_arrives_main_and_reporter_hold_the_update() {
    let Some(run) = started("stage1") else {
        return;
    };
    let out = trace(&[
        "--pid",
        &run.server.pid(),
        "--request",
        "--count",
        "2",
        "--json",
    ]);
    for (n, report) in reports(&out, 3, 2).iter().enumerate() {
        assert_eq!(report["outcome"], "dnq", "{report}");
        assert_eq!(report["runtime_seq"], n + 1, "{report}");
        assert_eq!(report["lost_events"], 0, "{report}");
        assert_eq!(report["threads"].as_array().map(Vec::len), Some(THREADS));
        // The runtime's signal ended its accept(2) with EINTR; the loop came to its update point.
        assert!(
            !by_tid(report, run.roles.listener)["arrival_ns"].is_null(),
            "{report}"
        );
        assert_main_cond_wait(by_tid(report, run.roles.main));
        assert_reporter_cond_wait(by_tid(report, run.roles.reporter));
    }
}

#[test]
fn stage1_with_a_client_sending_its_server_thread_arrives() {
    let Some(run) = started("stage1") else {
        return;
    };
    // Sending for longer than qbench-trace takes to attach and end the update.
    let (child, server_thread) = client(&run.exe, &run.server, 5, THREADS + 2);
    let out = trace(&["--pid", &run.server.pid(), "--request", "--json"]);
    let reports = reports(&out, 3, 1);
    let report = &reports[0];
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_eq!(
        report["threads"].as_array().map(Vec::len),
        Some(THREADS + 1)
    );
    assert!(
        !by_tid(report, server_thread)["arrival_ns"].is_null(),
        "{report}"
    );
    assert!(
        !by_tid(report, run.roles.listener)["arrival_ns"].is_null(),
        "{report}"
    );
    assert_main_cond_wait(by_tid(report, run.roles.main));
    // The reporter is in its 16 ms pause between passes over the packet rings, or waiting for
    // reports (then as idle).
    let reporter = by_tid(report, run.roles.reporter);
    match cause(reporter) {
        "sleeping" => {
            let details = &reporter["diagnosis"]["details"];
            assert_eq!(details["syscall"], "clock_nanosleep", "{reporter}");
            // delay_loop's CLOCK_MONOTONIC sleep, entered again after each interruption
            let evidence = reporter["diagnosis"]["evidence"].as_str().unwrap_or("");
            assert!(
                evidence.contains("clock_nanosleep(clockid=1, flags=0"),
                "{reporter}"
            );
        }
        _ => assert_reporter_cond_wait(reporter),
    }
    assert_client_finished(child);
}

#[test]
fn stage2_fully_patched_iperf_quiesces_idle_and_with_a_client_sending() {
    let Some(run) = started("stage2") else {
        return;
    };
    let pid = run.server.pid();
    for report in quiesced_updates(&pid, 3, 0) {
        assert_every_thread_arrived(&report, THREADS);
    }
    let (child, server_thread) = client(&run.exe, &run.server, 6, THREADS + 2);
    for report in quiesced_updates(&pid, 3, 3) {
        assert_every_thread_arrived(&report, THREADS + 1);
        assert!(!by_tid(&report, server_thread)["arrival_ns"].is_null());
    }
    assert_client_finished(child);
}
