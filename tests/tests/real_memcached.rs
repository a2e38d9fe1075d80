//! qbench-trace on Debian's real memcached 1.6 (`-t 4`), unpatched and at each stage of
//! `workloads/real/memcached/patches/`. The builds come from `cargo xtask real memcached
//! --build-only` (in target/real/memcached/); without them, or without root, each test prints
//! why it is skipped.
//!
//! Each test asserts the truth as /proc and the runtime's own report know it: which threads
//! arrived, and why each of the others did not.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use qbench_tests::observer::{
    assert_exit, privileged, reports, spawn_attached, thread, threads_where, trace,
};
use qbench_tests::real::{
    Server, arrived, assert_every_thread_arrived, built, cause, quiesced_updates, unpatched_dnq,
};
use qbench_user::clock::monotonic_ns;
use serde_json::Value;

const WORKERS: usize = 4;
/// main, 4 workers, mc-log, mc-assocmaint, mc-itemcrawler, mc-lrumaint, mc-slabmaint.
const THREADS: usize = 10;
/// The helper threads waiting in a condition variable, and the variable's symbol.
const COND_WAITERS: [(&str, &str); 4] = [
    ("mc-log", "logger_stack_cond+40"),
    ("mc-assocmaint", "maintenance_cond+40"),
    ("mc-itemcrawler", "lru_crawler_cond+40"),
    ("mc-slabmaint", "slab_rebalance_cond+40"),
];
const HELPERS: [&str; 5] = [
    "mc-log",
    "mc-assocmaint",
    "mc-itemcrawler",
    "mc-lrumaint",
    "mc-slabmaint",
];
/// A 4294967295 (-1, no timeout) as qbench-trace prints the unsigned argument.
const NO_TIMEOUT: u64 = u32::MAX as u64;

/// A stage of the patch built and running with the runtime, or None (said) when not built.
fn started(stage: &str) -> Option<Server> {
    built("memcached", stage, "memcached").map(|exe| start(&exe, true))
}

/// Starts memcached `exe` with 4 workers (`runtime` when it links libqbench: one more thread, its
/// helper) and waits until it listens with all its threads.
fn start(exe: &std::path::Path, runtime: bool) -> Server {
    start_with(exe, runtime, &[])
}

/// [`start`] with `env` added to memcached's environment.
fn start_with(exe: &std::path::Path, runtime: bool, env: &[(&str, &str)]) -> Server {
    let args = |port: u16| {
        [
            "-t",
            "4",
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-u",
            "nobody",
            "-p",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([port.to_string()])
        .collect()
    };
    Server::start_with(exe, args, THREADS + usize::from(runtime), env)
}

/// Sends one text-protocol command to memcached and returns the reply's lines up to `last`.
fn command(memcached: &Server, command: &str, last: &str) -> Vec<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, memcached.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(command.as_bytes()).expect("send");
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("reply");
        let done = line == last;
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

/// The four condition waiters are diagnosed `cond_wait_unwrapped` on their own condition
/// variable, and the LRU maintainer `sleeping` in its usleep. With `interrupted`, the runtime
/// interrupted each wait during the update and the thread waited again: each says how often.
fn assert_helpers_diagnosed(report: &Value, interrupted: bool) {
    for (comm, cond) in COND_WAITERS {
        let t = thread(report, comm);
        assert!(t["arrival_ns"].is_null(), "{t}");
        assert_eq!(t["participating"], true, "{t}");
        assert_eq!(cause(t), "cond_wait_unwrapped", "{t}");
        let details = &t["diagnosis"]["details"];
        assert_eq!(details["syscall"], "futex", "{t}");
        assert_eq!(details["futex_symbol"], cond, "{t}");
        assert_eq!(details["owner_tid"], Value::Null, "{t}");
        assert_reentered(t, interrupted);
    }
    let lru = thread(report, "mc-lrumaint");
    assert!(lru["arrival_ns"].is_null(), "{lru}");
    assert_eq!(cause(lru), "sleeping", "{lru}");
    let details = &lru["diagnosis"]["details"];
    assert_eq!(details["syscall"], "clock_nanosleep", "{lru}");
    // The request is read from the thread's memory when the report is made; a thread the runtime
    // keeps interrupting may be between two sleeps then, and the figure is left out.
    let asked = details["sleep_requested_ns"].as_u64();
    assert!(interrupted || asked.is_some(), "{lru}");
    // items.c: MIN_LRU_MAINTAINER_SLEEP (1 ms) to MAX_LRU_MAINTAINER_SLEEP (1 s)
    if let Some(asked) = asked {
        assert!((1_000_000..=1_000_000_000).contains(&asked), "{lru}");
    }
    assert!(
        lru["diagnosis"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("qbench_usleep") && h.contains("update point")),
        "{lru}"
    );
    if interrupted {
        assert_reentered(lru, true);
    }
}

/// A waiter the runtime kept interrupting: it re-entered its call, each time after an interrupted
/// one (`retries`), and its wait began no later than its latest entry. Without interruptions:
/// one call since before attach, none interrupted.
fn assert_reentered(t: &Value, interrupted: bool) {
    let blocked = &t["blocked_in"];
    let reentries = blocked["reentries"].as_u64().expect("reentries");
    let retries = t["diagnosis"]["details"]["retries"].as_u64().unwrap_or(0);
    if !interrupted {
        assert_eq!((reentries, retries), (0, 0), "{t}");
        return;
    }
    assert!(
        reentries >= 1 && retries >= 1 && retries <= reentries,
        "{t}"
    );
    let since = blocked["since_ns"].as_u64().expect("since_ns");
    if let Some(first) = blocked["first_blocked_ns"].as_u64() {
        assert!(first < since, "{t}");
    }
}

/// The last arrival of an update that quiesced: no cause unless what it was in at the request
/// ran to its end on its own (the main thread's epoll_wait may time out for libevent's clock
/// event), and a stack note saying why its stack was not read.
fn assert_last_arrival_diagnosed(report: &Value) {
    let diagnosed = threads_where(report, |t| !t["diagnosis"].is_null());
    assert_eq!(diagnosed.len(), 1, "{report}");
    let last = diagnosed[0];
    assert_eq!(last["arrival_ns"], report["last_arrival_ns"], "{report}");
    let d = &last["diagnosis"];
    let evidence = d["evidence"].as_str().expect("evidence");
    assert!(evidence.starts_with("arrived "), "{last}");
    match cause(last) {
        "none" => assert_eq!(
            d["hint"], "nothing to change: it arrived once the request reached it",
            "{last}"
        ),
        "io_blocked" => assert!(
            last["comm"] == "memcached" && evidence.contains("which returned 0 after"),
            "{last}"
        ),
        _ => panic!("no cause supported: {last}"),
    }
    assert_eq!(d["stack"], Value::Array(Vec::new()), "{last}");
    assert_eq!(
        d["stack_note"], "not read: the thread had arrived (it is at an update point now)",
        "{last}"
    );
}

#[test]
fn unpatched_memcached_observed_at_event_handler_is_diagnosed_thread_by_thread() {
    let Some(_serial) = privileged() else { return };
    let Some(exe) = built("memcached", "unpatched", "memcached") else {
        return;
    };
    let memcached = start(&exe, false);
    let pid = memcached.pid();
    let report = &unpatched_dnq(&pid, "event_handler", "HUP", THREADS);
    // Workers: nothing interrupted their epoll_wait (SIGHUP went to the main thread).
    let workers = threads_where(report, |t| t["comm"] == "mc-worker");
    assert_eq!(workers.len(), WORKERS, "{report}");
    for w in workers {
        assert_eq!(cause(w), "io_blocked", "{w}");
        assert_reentered(w, false);
        let details = &w["diagnosis"]["details"];
        assert_eq!(details["syscall"], "epoll_wait", "{w}");
        assert_eq!(details["fd"], "epoll instance", "{w}");
        assert_eq!(details["args"][2], 32, "{w}");
        assert_eq!(details["args"][3], NO_TIMEOUT, "{w}");
    }
    // The main thread: in epoll_wait, with the clock event's timeout of at most 1 s. SIGHUP
    // ended the call with EINTR once, and libevent's loop called it again.
    let main = thread(report, "memcached");
    assert_eq!(main["blocked_in"]["syscall"], "epoll_wait", "{main}");
    let timeout = main["blocked_in"]["args"][3].as_u64().expect("timeout");
    assert!(timeout <= 1000, "{main}");
    assert_eq!(cause(main), "eintr_retried", "{main}");
    let details = &main["diagnosis"]["details"];
    assert_eq!(details["retries"], 1, "{main}");
    assert_eq!(details["retry_loop"], "event_base_loop", "{main}");
    assert_eq!(details["fd"], "epoll instance", "{main}");
    assert!(
        main["blocked_in"]["reentries"].as_u64() >= Some(1),
        "{main}"
    );
    assert!(
        main["diagnosis"]["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("break event_base_loop from an update callback")),
        "{main}"
    );
    assert_helpers_diagnosed(report, false);
}

/// The same update requested by someone else (the test sends SIGHUP itself; qbench-trace
/// attached without `--request`). The syscall tracepoints are attached only once the kernel
/// reports the window open, after SIGHUP has ended the main thread's epoll_wait with EINTR and
/// libevent has called it again: the delivery (`signal:signal_deliver`) is what tells the call
/// it is found in is a retry, as `--request` sees it.
#[test]
fn unpatched_memcached_requested_by_another_sender_is_diagnosed_the_same() {
    let Some(_serial) = privileged() else { return };
    let Some(exe) = built("memcached", "unpatched", "memcached") else {
        return;
    };
    let memcached = start(&exe, false);
    let pid = memcached.pid();
    let args = [
        "--pid",
        &pid,
        "--point",
        "event_handler",
        "--signal",
        "HUP",
        "--count",
        "1",
        "--json",
        "-v",
    ];
    let observer = spawn_attached(&args);
    let target: libc::pid_t = pid.parse().expect("pid");
    // SAFETY: kill(2) with a live child's pid and a signal memcached handles.
    assert_eq!(unsafe { libc::kill(target, libc::SIGHUP) }, 0);
    let out = observer.finish(Duration::from_secs(20), "no report");
    let report = reports(&out, 3, 1).remove(0);
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_eq!(report["request_source"], "signal", "{report}");
    let main = thread(&report, "memcached");
    assert_eq!(main["blocked_in"]["syscall"], "epoll_wait", "{main}");
    assert_eq!(cause(main), "eintr_retried", "{main}");
    let details = &main["diagnosis"]["details"];
    assert_eq!(details["retries"], 1, "{main}");
    assert_eq!(details["retry_loop"], "event_base_loop", "{main}");
    // Nothing interrupted the workers: SIGHUP went to the main thread.
    for w in threads_where(&report, |t| t["comm"] == "mc-worker") {
        assert_eq!(cause(w), "io_blocked", "{w}");
    }
}

#[test]
fn stage1_main_and_workers_quiesce_without_the_helpers() {
    let Some(_serial) = privileged() else { return };
    let Some(memcached) = started("stage1") else {
        return;
    };
    let pid = memcached.pid();
    let reports = quiesced_updates(&pid, 3, 0);
    for report in &reports {
        assert_eq!(report["threads"].as_array().map(Vec::len), Some(THREADS));
        assert_eq!(arrived(report, "memcached"), 1, "{report}");
        assert_eq!(arrived(report, "mc-worker"), WORKERS, "{report}");
        for comm in HELPERS {
            let t = thread(report, comm);
            assert!(t["arrival_ns"].is_null(), "{t}");
            assert_eq!(t["participating"], false, "{t}");
            assert_eq!(cause(t), "not_participating", "{t}");
        }
        for (comm, cond) in COND_WAITERS {
            let t = thread(report, comm);
            assert_eq!(t["blocked_in"]["syscall"], "futex", "{t}");
            let evidence = t["diagnosis"]["evidence"].as_str().unwrap_or("");
            assert!(evidence.ends_with(&format!("futex in {cond}")), "{t}");
        }
        let last = threads_where(report, |t| {
            !t["arrival_ns"].is_null() && !t["diagnosis"].is_null()
        });
        assert_eq!(last.len(), 1, "{report}");
    }
    // For people: the summary counts the threads the update waited for, not the helpers.
    let out = trace(&["--pid", &pid, "--request"]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().next().unwrap_or("");
    assert!(
        summary.contains(": quiesced, ")
            && summary.ends_with(&format!(", {} threads, 0 events lost", 1 + WORKERS)),
        "{text}"
    );
}

#[test]
fn stage2_registered_helpers_hold_the_update_in_their_waits() {
    let Some(_serial) = privileged() else { return };
    let Some(memcached) = started("stage2") else {
        return;
    };
    let pid = memcached.pid();
    // Two updates: the helpers the runtime registered stay participants in the second too.
    let out = trace(&["--pid", &pid, "--request", "--count", "2", "--json"]);
    for (n, report) in reports(&out, 3, 2).iter().enumerate() {
        assert_eq!(report["outcome"], "dnq", "{report}");
        assert_eq!(report["runtime_seq"], n + 1, "{report}");
        assert_eq!(report["lost_events"], 0, "{report}");
        assert_eq!(report["threads"].as_array().map(Vec::len), Some(THREADS));
        assert_eq!(arrived(report, "memcached"), 1, "{report}");
        assert_eq!(arrived(report, "mc-worker"), WORKERS, "{report}");
        assert_helpers_diagnosed(report, true);
        for helper in HELPERS {
            assert_eq!(thread(report, helper)["participating"], true, "{report}");
        }
    }
}

/// The usual way to meet qbench-trace: a process stuck in an update right now. Stage 2's
/// helpers hold an update the runtime waits a minute for; qbench-trace attached then, without
/// `--request`, reports it as it stands: requested before attach at the runtime's own request
/// time, main and the workers parked, the helpers diagnosed, a DNQ 2 s after the request.
#[test]
fn stage2_stuck_in_an_update_at_attach_is_reported_as_it_stands() {
    let Some(_serial) = privileged() else { return };
    let Some(exe) = built("memcached", "stage2", "memcached") else {
        return;
    };
    let memcached = start_with(&exe, true, &[("QBENCH_TIMEOUT_MS", "60000")]);
    let pid = memcached.pid();
    let before = monotonic_ns();
    let target: libc::pid_t = pid.parse().expect("pid");
    // SAFETY: kill has no memory preconditions; the pid is the memcached this test started.
    assert_eq!(unsafe { libc::kill(target, libc::SIGUSR2) }, 0);
    // Main and the workers park within a few ms; the runtime's request time is before `after`.
    std::thread::sleep(Duration::from_millis(300));
    let after = monotonic_ns();
    let out = trace(&["--pid", &pid, "--timeout", "2s", "--count", "1", "--json"]);
    let report = &reports(&out, 3, 1)[0];
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_eq!(report["request_source"], "before_attach", "{report}");
    assert_eq!(report["runtime_seq"], 1, "{report}");
    let request_ns = report["request_ns"].as_u64().expect("request_ns");
    assert!((before..after).contains(&request_ns), "{report}");
    assert_eq!(report["end_ns"], request_ns + 2_000_000_000, "{report}");
    assert_eq!(report["threads"].as_array().map(Vec::len), Some(THREADS));
    assert_eq!(arrived(report, "memcached"), 1, "{report}");
    assert_eq!(arrived(report, "mc-worker"), WORKERS, "{report}");
    assert_helpers_diagnosed(report, true);
}

#[test]
fn stage3_fully_patched_memcached_quiesces_and_keeps_serving() {
    let Some(_serial) = privileged() else { return };
    let Some(memcached) = started("stage3") else {
        return;
    };
    assert_eq!(
        command(&memcached, "set k 0 0 5\r\nvalue\r\n", "STORED"),
        ["STORED"]
    );
    let pid = memcached.pid();
    let reports = quiesced_updates(&pid, 3, 0);
    for report in &reports {
        assert_every_thread_arrived(report, THREADS);
        assert_last_arrival_diagnosed(report);
    }
    assert_eq!(
        command(&memcached, "get k\r\n", "END"),
        ["VALUE k 0 5", "value", "END"]
    );
    // The hash table maintainer's wait ends at each update; it must not grow the table then.
    let stats = command(&memcached, "stats\r\n", "END");
    assert!(
        stats.iter().any(|l| l == "STAT hash_power_level 16"),
        "{stats:?}"
    );
}
