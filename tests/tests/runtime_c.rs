//! The runtime's semantics, checked on real multithreaded C programs (workloads/c/situations.c)
//! linked with libqbench, with updates requested by real signals from outside the process.

use std::time::Duration;

use qbench_tests::{Linkage, Outcome, Report, ReportChecks, Target, build_c};

const WAIT: Duration = Duration::from_secs(10);

fn situations(args: &[&str], env: &[(&str, &str)]) -> Target {
    Target::start(&build_c("situations", Linkage::Dynamic), args, env)
}

/// Starts `kind:3`, requests two updates, and checks both quiesce with main + 3 threads.
fn quiesces_when_blocked_in(kind: &str) {
    let target = situations(&[&format!("{kind}:3")], &[]);
    target.wait_blocked();
    for seq in 1..=2 {
        target.request(libc::SIGUSR2);
        let reports = target.wait_reports(seq, WAIT);
        let report = &reports[seq - 1];
        assert_eq!((report.pid, report.seq), (target.pid, seq as u64));
        report.assert_quiesced(4);
        target.wait_blocked();
    }
}

#[test]
fn quiesces_with_threads_blocked_in_accept() {
    quiesces_when_blocked_in("accept");
}

#[test]
fn quiesces_with_threads_blocked_in_pipe_read() {
    quiesces_when_blocked_in("read");
}

#[test]
fn quiesces_with_threads_blocked_in_epoll_wait() {
    quiesces_when_blocked_in("epoll");
}

#[test]
fn quiesces_with_threads_in_wrapped_condition_waits() {
    quiesces_when_blocked_in("condwait");
}

#[test]
fn quiesces_with_threads_in_interruptible_ten_second_sleeps() {
    // The default timeout (1 s) is far below the 10 s sleeps: only an interrupted sleep quiesces.
    quiesces_when_blocked_in("sleep");
}

#[test]
fn quiesces_with_threads_in_waits_broken_by_update_callbacks() {
    quiesces_when_blocked_in("callback");
}

#[test]
fn unwrapped_condition_wait_ends_as_dnq_naming_the_thread_and_the_program_goes_on() {
    let mut target = situations(&["read:2", "plaincond:1"], &[("QBENCH_TIMEOUT_MS", "150")]);
    target.wait_blocked();
    let stuck: Vec<i32> = target
        .threads()
        .into_iter()
        .filter(|(_, n)| n == "plaincond")
        .map(|(t, _)| t)
        .collect();
    assert_eq!(stuck.len(), 1);
    for seq in 1..=2 {
        target.request(libc::SIGUSR2);
        let report = target.wait_reports(seq, WAIT)[seq - 1].clone();
        assert_eq!(report.outcome, Outcome::Dnq, "{report:?}");
        assert_eq!(report.threads, 4);
        assert_eq!(report.missing.len(), 1, "{report:?}");
        assert_eq!(
            (report.missing[0].tid, report.missing[0].name.as_str()),
            (stuck[0], "plaincond")
        );
        assert_eq!(
            (report.quiescence_ns, report.request_latency_ns),
            (None, None)
        );
        // The three threads that did arrive were parked, and were released at the timeout.
        assert!(report.first_arrival_ns.is_some() && report.last_arrival_ns.is_some());
        target.wait_blocked();
    }
    // Released and responsive: the main thread serves a command that forks a child.
    target.send("f");
    assert!(target.read_line().starts_with("child "));
    assert!(target.is_running());
}

#[test]
fn a_thread_that_exits_instead_of_arriving_does_not_hold_up_the_update() {
    let target = situations(&["read:2", "exiter:2"], &[]);
    target.wait_blocked();
    target.request(libc::SIGUSR2);
    let report = target.wait_reports(1, WAIT)[0].clone();
    // main + 2 readers: the two exiters left on EINTR without reaching an update point.
    report.assert_quiesced(3);
    assert!(target.threads().iter().all(|(_, name)| name != "exiter"));
}

#[test]
fn threads_created_and_exiting_during_updates_do_not_prevent_quiescence() {
    let target = situations(&["read:1", "churn:2"], &[]);
    std::thread::sleep(Duration::from_millis(50));
    for seq in 1..=40usize {
        target.request(libc::SIGUSR2);
        let report = target.wait_reports(seq, WAIT)[seq - 1].clone();
        assert_eq!(report.seq, seq as u64);
        assert_eq!(report.outcome, Outcome::Quiesced, "{report:?}");
        // main, the reader, the two spawners, and the short-lived threads registered at the time:
        // each spawner has at most a few alive (200 us life, one per 100 us).
        assert!((4..=4 + 2 * 8).contains(&report.threads), "{report:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_forked_child_starts_clean_and_updates_on_its_own() {
    let mut target = situations(&["read:2"], &[]);
    target.wait_blocked();
    target.send("f");
    let line = target.read_line();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[0], "child");
    let child: i32 = fields[1].parse().expect("child pid");
    // The child's update completed: nothing pending when it exited.
    assert_eq!(fields[2], "0", "child exit status: {line}");
    let reports = target.wait_reports(1, WAIT);
    let child_reports: Vec<&Report> = reports.iter().filter(|r| r.pid == child).collect();
    assert_eq!(child_reports.len(), 1, "{reports:?}");
    assert_eq!(child_reports[0].seq, 1);
    child_reports[0].assert_quiesced(1);
    // The parent still works, and its own first update is its seq 1.
    target.request(libc::SIGUSR2);
    let parent = qbench_tests::poll(
        WAIT,
        Duration::from_millis(1),
        || {
            (target.reports().into_iter())
                .find(|r| r.pid == target.pid)
                .ok_or(())
        },
        |()| "no parent report".to_string(),
    );
    assert_eq!(parent.seq, 1);
    parent.assert_quiesced(3);
}

#[test]
fn a_thousand_requests_in_a_row_on_eight_threads_are_all_reported() {
    // main + 7 workers, one of every interruptible kind.
    let target = situations(
        &[
            "accept:1",
            "read:2",
            "epoll:1",
            "condwait:1",
            "sleep:1",
            "callback:1",
        ],
        &[],
    );
    target.wait_blocked();
    for seq in 1..=1000usize {
        target.request(libc::SIGUSR2);
        let reports = target.wait_reports(seq, WAIT);
        assert_eq!(reports.len(), seq, "one report per request");
    }
    let reports = target.reports();
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.seq, i as u64 + 1);
        report.assert_quiesced(8);
    }
}

/// A request sent the moment an update's report line appears is a new update, never merged into
/// the update that just ended: each of these requests is sent as soon as the previous report is in
/// the file, and every one of them is reported, numbered in order.
#[test]
fn a_request_sent_as_soon_as_the_report_appears_starts_a_new_update() {
    const REQUESTS: usize = 500;
    let target = situations(&["read:1"], &[]);
    target.wait_blocked();
    for seq in 1..=REQUESTS {
        target.request(libc::SIGUSR2);
        wait_for_lines(&target, seq);
    }
    let reports = target.reports();
    assert_eq!(reports.len(), REQUESTS);
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.seq, i as u64 + 1);
        report.assert_quiesced(2);
    }
}

/// Spins until the report file has `lines` whole lines, so that the next request goes out at once.
/// The file is read again only when it grew (a line may grow it twice, across a page boundary).
fn wait_for_lines(target: &Target, lines: usize) {
    // Any update ends within the runtime's 1 s timeout, quiesced or not.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut len = None;
    loop {
        let now = std::fs::metadata(&target.report_path).map_or(0, |m| m.len());
        if len != Some(now) {
            len = Some(now);
            let text = std::fs::read(&target.report_path).unwrap_or_default();
            if text.iter().filter(|&&b| b == b'\n').count() >= lines {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {lines} reports after 3 s, the last request sent as soon as the report before \
             it appeared; stderr: {}",
            target.reports().len(),
            target.stderr()
        );
        std::hint::spin_loop();
    }
}

#[test]
fn statically_linked_programs_get_the_runtime_too() {
    let target = Target::start(
        &build_c("situations", Linkage::Static),
        &["condwait:2", "read:1"],
        &[],
    );
    target.wait_blocked();
    target.request(libc::SIGUSR2);
    target.wait_reports(1, WAIT)[0].assert_quiesced(4);
}

#[test]
fn the_update_signal_can_be_changed() {
    let target = situations(&["read:2"], &[("QBENCH_SIGNAL", "SIGUSR1")]);
    target.wait_blocked();
    target.request(libc::SIGUSR1);
    target.wait_reports(1, WAIT)[0].assert_quiesced(3);
    assert_eq!(target.stderr(), "");
}

#[test]
fn bad_settings_are_reported_once_and_the_defaults_used() {
    let target = situations(
        &["read:2"],
        &[("QBENCH_SIGNAL", "SIGBOGUS"), ("QBENCH_TIMEOUT_MS", "soon")],
    );
    target.wait_blocked();
    target.request(libc::SIGUSR2);
    target.wait_reports(1, WAIT)[0].assert_quiesced(3);
    let stderr = target.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("qbench: QBENCH_SIGNAL=\"SIGBOGUS\" ignored ("),
        "{stderr}"
    );
    assert!(lines[0].ends_with("); using SIGUSR2"), "{stderr}");
    assert!(
        lines[1].starts_with("qbench: QBENCH_TIMEOUT_MS=\"soon\" ignored ("),
        "{stderr}"
    );
    assert!(lines[1].ends_with("); using 1000 ms"), "{stderr}");
}

#[test]
fn an_unwritable_report_file_is_reported_and_the_program_goes_on() {
    let program = build_c("situations", Linkage::Dynamic);
    let mut target = Target::start(
        &program,
        &["condwait:2"],
        &[("QBENCH_REPORT", "/nonexistent-dir/r.jsonl")],
    );
    target.wait_blocked();
    target.request(libc::SIGUSR2);
    std::thread::sleep(Duration::from_millis(100));
    target.wait_blocked(); // released again: every thread back in its wait
    target.send("f");
    assert!(target.read_line().starts_with("child "));
    let stderr = target.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("qbench: cannot open QBENCH_REPORT file /nonexistent-dir/r.jsonl: "),
        "{stderr}"
    );
}
