//! The diagnosis mode's syscall tracking is attached only while an update is pending: read from
//! the kernel's own account of qbench-trace's BPF links (`/proc/PID/fdinfo` of each
//! `anon_inode:bpf_link` descriptor, whose `tp_name` names a raw tracepoint), with no tracking
//! link while idle (only the update signal's, `signal_generate`, where the kernel has BTF), `sys_enter` and `sys_exit` while another process's request is pending, none
//! again once it is reported; and the update so observed is diagnosed as before. An update that
//! was over by the time its request was read is not tracked at all. Skipped, with the reason
//! printed, when not root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use qbench_tests::observer::{privileged, situations, spawn_attached, thread};
use qbench_tests::poll;
use serde_json::Value;

/// The runtime's timeout: the update stays pending until qbench-trace's 2 s deadline.
const RUNTIME_WAITS_60_S: [(&str, &str); 1] = [("QBENCH_TIMEOUT_MS", "60000")];

/// The raw tracepoint links qbench-trace has at all times: the update signal's, where the
/// kernel has BTF (else it attaches the formatted tracepoint, which is no raw tracepoint link).
fn idle_links() -> Vec<&'static str> {
    if std::path::Path::new(qbench_user::kernel::btf::VMLINUX).exists() {
        vec!["signal_generate"]
    } else {
        Vec::new()
    }
}

/// [`idle_links`] and the syscall tracking's, while an update is pending.
fn tracking_links() -> Vec<&'static str> {
    let mut links = idle_links();
    links.extend(["sys_enter", "sys_exit"]);
    links
}

/// The raw tracepoints qbench-trace (`pid`) has BPF links on, by name.
fn raw_tracepoint_links(pid: u32) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return names;
    };
    for fd in fds.flatten() {
        let is_link = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf_link");
        if !is_link {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let Ok(text) = std::fs::read_to_string(info) else {
            continue; // closed meanwhile
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        if field("link_type").as_deref() == Some("raw_tracepoint")
            && let Some(name) = field("tp_name")
        {
            names.insert(name);
        }
    }
    names
}

/// Waits (at most `timeout`) until qbench-trace's raw tracepoint links are `want`; how long it took.
fn wait_links(pid: u32, want: &[&str], timeout: Duration) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    poll(
        timeout,
        Duration::from_micros(500),
        || {
            let now = raw_tracepoint_links(pid);
            if now == want { Ok(()) } else { Err(now) }
        },
        |now| format!("raw tracepoint links {now:?}, wanted {want:?} within {timeout:?}"),
    );
    start.elapsed()
}

#[test]
fn syscall_tracking_is_attached_only_while_an_update_is_pending() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1", "plaincond:1"], &RUNTIME_WAITS_60_S);
    target.wait_blocked();
    let pid = target.pid.to_string();
    let mut observer = spawn_attached(&["--pid", &pid, "--timeout", "2s", "--json", "-v"]);
    let trace_pid = observer.child.id();
    let stdout = observer.child.stdout.take().expect("qbench-trace's stdout");

    // Idle: the uprobes and tracepoints are attached, the syscall raw tracepoints are not.
    std::thread::sleep(Duration::from_millis(200));
    let idle: BTreeSet<String> = idle_links().into_iter().map(String::from).collect();
    assert_eq!(raw_tracepoint_links(trace_pid), idle, "idle");

    // Another process's request: the kernel opens the window, and wakes qbench-trace once the
    // update is late, at the runtime's next interruption of the stuck thread.
    target.request(libc::SIGUSR2);
    let took = wait_links(trace_pid, &tracking_links(), Duration::from_secs(1));
    eprintln!("syscall tracking attached {took:?} after the request was sent");

    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a report").expect("read the report");
    let report: Value = serde_json::from_str(&line).expect("a JSON report");
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_eq!(report["request_source"], "signal", "{report}");
    assert_eq!(thread(&report, "read")["state"], "arrived", "{report}");
    let stuck = thread(&report, "plaincond");
    assert_eq!(stuck["arrival_ns"], Value::Null, "{stuck}");
    assert_eq!(
        stuck["diagnosis"]["cause"], "cond_wait_unwrapped",
        "{stuck}"
    );
    assert_eq!(stuck["blocked_in"]["syscall"], "futex", "{stuck}");

    // Reported: detached again.
    wait_links(trace_pid, &idle_links(), Duration::from_secs(2));

    // SAFETY: kill(2) of the observer this test started.
    assert_eq!(unsafe { libc::kill(trace_pid as i32, libc::SIGINT) }, 0);
    let out = observer.finish(Duration::from_secs(10), "qbench-trace did not stop");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_update_over_by_the_time_its_request_is_read_is_not_tracked() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:2"], &[]);
    target.wait_blocked();
    let pid = target.pid.to_string();
    let mut observer = spawn_attached(&["--pid", &pid, "--count", "5", "--json", "-v"]);
    let trace_pid = observer.child.id();
    let stdout = observer.child.stdout.take().expect("qbench-trace's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut quick = 0;
    for n in 1..=5 {
        // Another process's request, as in the test above; this time every thread parks at once.
        target.request(libc::SIGUSR2);
        let line = lines.next().expect("a report").expect("read the report");
        let report: Value = serde_json::from_str(&line).expect("a JSON report");
        assert_eq!(report["outcome"], "quiesced", "{report}");
        assert_eq!(report["request_source"], "signal", "{report}");
        let quiescence = report["quiescence_ns"].as_u64().expect("quiesced");
        // Well inside the 5 ms after which a pending update wakes qbench-trace: the release,
        // which wakes it, is read with the request.
        quick += usize::from(quiescence < 1_000_000);
        if n < 5 {
            // After the fifth report qbench-trace exits (`--count 5`), its links with it.
            wait_links(trace_pid, &idle_links(), Duration::from_secs(2));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out = observer.finish(Duration::from_secs(10), "qbench-trace did not stop");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let untracked = stderr
        .matches("syscall tracking not attached: the update was over")
        .count();
    let attached = stderr.matches("syscall tracking attached in").count();
    assert_eq!(untracked + attached, 5, "{stderr}");
    // An update that quiesced within a millisecond was over when it was read, every time.
    assert!(untracked >= quick, "{quick} quick updates: {stderr}");
    assert!(quick > 0, "no update quiesced within 1 ms: {stderr}");
}
