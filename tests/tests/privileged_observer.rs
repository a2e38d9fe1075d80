//! The observer's kernel side end to end: the real eBPF object loaded for a real target, a real
//! update requested with a real signal, and the exact events, thread states, window and loss
//! counts checked. Needs root; each test says it is skipped, and why, otherwise.

use std::{collections::BTreeSet, thread, time::Duration};

use qbench_common::{
    MISS_RINGBUF_FULL, SOURCE_POINT, SOURCE_RUNTIME, SOURCE_SIGNAL, SysEnterEvent, SysExitEvent,
};
use qbench_tests::ebpf::{
    Event, Target, blocking_syscalls, c_source, chain, compile_c, read_events, root_or_skip,
};
use qbench_user::kernel::attach::SignalProbe;
use qbench_user::kernel::loader::{AttachMode, LoadOptions, Probes};
use qbench_user::kernel::symbols::TargetObjects;

const SIGUSR2: u32 = 12;
const SYS_READ: i64 = 0;

/// Loads and attaches the observer to `target` in the mode its symbols call for (`points` as
/// with `--point`).
fn observe(target: &Target, points: &[&str], events_bytes: Option<u32>) -> (Probes, AttachMode) {
    let pid = target.pid();
    let options = LoadOptions {
        events_bytes,
        blocking: blocking_syscalls(),
        ..LoadOptions::default()
    };
    let mut probes =
        Probes::load(pid, SIGUSR2, &options).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let objects = TargetObjects::of(pid).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let points: Vec<String> = points.iter().map(|&p| p.to_owned()).collect();
    let mode = AttachMode::detect(&objects, &points).unwrap_or_else(|e| panic!("{}", chain(&e)));
    probes
        .attach(&mode)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    (probes, mode)
}

/// `workloads/c/situations.c` linked to the runtime's libqbench.so of this build.
fn build_situations() -> std::path::PathBuf {
    let lib_dir = qbench_tests::profile_dir();
    assert!(
        lib_dir.join("libqbench.so").exists(),
        "{} has no libqbench.so: build the workspace first (`cargo xtask test` does)",
        lib_dir.display()
    );
    let root = qbench_tests::workspace_root();
    let include = root.join("qbench-runtime/include");
    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    compile_c(
        &root.join("workloads/c/situations.c"),
        "situations",
        &[
            "-I",
            include.to_str().expect("utf-8 path"),
            "-L",
            lib_dir.to_str().expect("utf-8 path"),
            "-lqbench",
            &rpath,
        ],
    )
}

/// `tests/c/plain_target.c` running with `args`, once it is ready.
fn plain_target(args: &[&str]) -> Target {
    let exe = compile_c(&c_source("plain_target.c"), "plain_target", &["-rdynamic"]);
    let mut target = Target::spawn(&exe, args);
    assert_eq!(target.line(), "ready");
    target
}

#[test]
fn runtime_target_streams_one_request_and_every_arrival_and_departure() {
    if !root_or_skip("runtime_target_streams_one_request_and_every_arrival_and_departure") {
        return;
    }
    let exe = build_situations();
    let mut target = Target::spawn(&exe, &["read:2", "condwait:1"]);
    let pid = target.pid();
    assert_eq!(target.line(), format!("ready {pid}"));
    let (mut probes, mode) = observe(&target, &[], None);
    assert!(matches!(mode, AttachMode::Runtime(_)), "{mode:?}");
    let mut ring = probes.take_events().expect("take the ring buffer");
    thread::sleep(Duration::from_millis(200));

    // Before any request: the state is in the map (seeded from /proc, the threads blocked before
    // attach) and no event is sent.
    let before = probes.snapshot_threads().expect("snapshot");
    let in_read: Vec<_> = before.iter().filter(|(_, s)| s.nr == SYS_READ).collect();
    let main = in_read.iter().find(|(tid, _)| *tid == pid.get());
    assert_eq!(
        main.map(|(_, s)| s.args[0]),
        Some(0),
        "main reads stdin: {before:?}"
    );
    let workers: Vec<_> = in_read
        .iter()
        .filter(|(tid, _)| target.comm(*tid) == "read")
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "two `read` threads in read(2): {before:?}"
    );
    for (tid, state) in &workers {
        let fd = target.fd(state.args[0]);
        assert!(
            fd.starts_with("pipe:"),
            "thread {tid} reads fd {} = {fd}",
            state.args[0]
        );
    }
    assert_eq!(
        read_events(&mut ring, Duration::ZERO),
        vec![],
        "steady state sends nothing"
    );

    target.kill(12);
    let events = read_events(&mut ring, Duration::from_millis(500));

    // The signal opens the window; the runtime's handler, taking it up, says so in the same
    // window (its sequence number, and when: the signal's delivery).
    let requests: Vec<_> = events.iter().filter_map(Event::request).collect();
    assert_eq!(
        requests.len(),
        2,
        "the signal and the handler: {requests:?}"
    );
    let (request, handled) = (requests[0], requests[1]);
    assert_eq!(
        (handled.source, handled.window_seq, handled.runtime_seq),
        (SOURCE_RUNTIME, 1, 1),
        "{handled:?}"
    );
    assert!(handled.header.ts_ns >= request.header.ts_ns, "{requests:?}");
    assert_eq!(
        (
            request.source,
            request.signal,
            request.header.tid,
            request.window_seq
        ),
        (SOURCE_SIGNAL, SIGUSR2, pid.get(), 1),
        "{request:?}"
    );
    assert_eq!(request.sender_tgid, std::process::id(), "sent by this test");

    let threads: BTreeSet<u32> = target.tids().into_iter().collect();
    let arrivals: Vec<_> = events.iter().filter_map(Event::arrive).collect();
    assert_eq!(arrivals.len(), 4, "main and 3 workers arrive: {arrivals:?}");
    let arrived: BTreeSet<u32> = arrivals.iter().map(|a| a.header.tid).collect();
    assert_eq!(arrived.len(), 4, "4 distinct threads: {arrivals:?}");
    assert!(arrived.is_subset(&threads) && arrived.contains(&pid.get()));
    assert!(
        arrivals
            .iter()
            .all(|a| a.source == SOURCE_RUNTIME && a.seq == 1)
    );
    assert!(
        arrivals
            .iter()
            .all(|a| a.header.ts_ns >= request.header.ts_ns)
    );

    let departed: BTreeSet<u32> = events
        .iter()
        .filter_map(|e| e.depart().map(|d| d.header.tid))
        .collect();
    assert_eq!(departed, arrived, "every parked thread is released once");
    let departures = events
        .iter()
        .filter(|e| matches!(e, Event::Depart(_)))
        .count();
    assert_eq!(departures, 4);

    // Blocking calls are events only inside the window, which the request opened.
    let syscalls: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::SysEnter(_) | Event::SysExit(_)))
        .collect();
    assert!(
        !syscalls.is_empty(),
        "the interrupted reads exit and restart"
    );
    // Every record is of the window; an entry stamped before the request is that of a call the
    // request found in progress, sent just before its exit: the thread's next record. (Another
    // CPU's records may come between the two.)
    for (n, e) in syscalls.iter().enumerate() {
        if e.header().ts_ns >= request.header.ts_ns {
            continue;
        }
        let Event::SysEnter(entry) = e else {
            panic!("an exit before the request: {e:?}");
        };
        let next = syscalls[n + 1..]
            .iter()
            .find(|x| x.header().tid == entry.header.tid);
        assert!(
            matches!(next, Some(Event::SysExit(x))
                if x.nr == entry.nr && x.header.ts_ns >= request.header.ts_ns),
            "the entry of a call in progress comes with its exit: {e:?}, then {next:?}"
        );
    }
    assert!(
        syscalls.iter().all(|e| threads.contains(&e.header().tid)),
        "only the target's threads"
    );

    // The runtime's own interrupting signals (SI_QUEUE from the target) requested nothing.
    let window = probes.window().expect("window");
    assert_eq!((window.open, window.seq), (1, 1), "{window:?}");
    assert_eq!(window.t0_ns, request.header.ts_ns);
    assert_eq!(probes.misses().expect("misses"), [0, 0, 0]);
}

#[test]
fn plain_target_reports_each_threads_first_arrival_per_window() {
    if !root_or_skip("plain_target_reports_each_threads_first_arrival_per_window") {
        return;
    }
    let mut target = plain_target(&["points"]);
    let (mut probes, mode) = observe(&target, &["update_point"], None);
    match &mode {
        AttachMode::Points(points) => {
            assert_eq!(points.len(), 1);
            assert_eq!(points[0].object, format!("/proc/{}/exe", target.pid()));
        }
        AttachMode::Runtime(_) => panic!("no runtime in this target: {mode:?}"),
    }
    let mut ring = probes.take_events().expect("take the ring buffer");
    let threads: BTreeSet<u32> = target.tids().into_iter().collect();
    assert_eq!(threads.len(), 4);

    for window_seq in 1..=2 {
        target.kill(12);
        let events = read_events(&mut ring, Duration::from_millis(300));
        let requests = events
            .iter()
            .filter(|e| matches!(e, Event::Request(_)))
            .count();
        assert_eq!(requests, 1, "window {window_seq}: {events:?}");
        let arrivals: Vec<_> = events.iter().filter_map(Event::arrive).collect();
        let arrived: BTreeSet<u32> = arrivals.iter().map(|a| a.header.tid).collect();
        assert_eq!(
            arrived, threads,
            "window {window_seq}: every thread, {arrivals:?}"
        );
        assert_eq!(arrivals.len(), 4, "one arrival per thread: {arrivals:?}");
        assert!(
            arrivals
                .iter()
                .all(|a| a.source == SOURCE_POINT && a.seq == window_seq),
            "{arrivals:?}"
        );
        let window = probes.window().expect("window");
        assert_eq!((window.open, window.seq), (1, window_seq));
        probes.close_window().expect("close the window");
        assert_eq!(probes.window().expect("window").open, 0);
    }
    // With the window closed, update points and blocking calls send nothing.
    target.send(b"x");
    assert_eq!(read_events(&mut ring, Duration::from_millis(50)), vec![]);
    assert_eq!(probes.misses().expect("misses"), [0, 0, 0]);
}

#[test]
fn a_signal_the_target_queues_itself_is_no_request_and_anothers_kill_is() {
    if !root_or_skip("a_signal_the_target_queues_itself_is_no_request_and_anothers_kill_is") {
        return;
    }
    let mut target = plain_target(&["points"]);
    let pid = target.pid();
    let (mut probes, _) = observe(&target, &["update_point"], None);
    // Where the kernel has BTF, the raw tracepoint is what sees the signal.
    if std::path::Path::new(qbench_user::kernel::btf::VMLINUX).exists() {
        assert!(
            matches!(probes.signal_probe(), SignalProbe::Raw(_)),
            "{:?}",
            probes.signal_probe()
        );
    }
    let mut ring = probes.take_events().expect("take the ring buffer");

    // The update signal queued by the process to each of its 4 threads (SI_QUEUE, as the
    // runtime's helper interrupts them): no request, the window stays closed.
    target.send(b"q");
    assert_eq!(target.line(), "queued");
    let events = read_events(&mut ring, Duration::from_millis(200));
    assert_eq!(
        events,
        vec![],
        "the target's own interruptions request nothing"
    );
    let window = probes.window().expect("window");
    assert_eq!((window.open, window.seq), (0, 0), "{window:?}");

    // The same signal sent by another process (kill(2), SI_USER): one request.
    target.kill(12);
    let events = read_events(&mut ring, Duration::from_millis(300));
    let requests: Vec<_> = events.iter().filter_map(Event::request).collect();
    assert_eq!(requests.len(), 1, "{events:?}");
    let request = requests[0];
    assert_eq!(
        (
            request.source,
            request.signal,
            request.code,
            request.header.tid,
            request.sender_tgid,
            request.window_seq
        ),
        (SOURCE_SIGNAL, SIGUSR2, 0, pid.get(), std::process::id(), 1),
        "{request:?}"
    );
    let window = probes.window().expect("window");
    assert_eq!((window.open, window.seq), (1, 1), "{window:?}");
    assert_eq!(probes.misses().expect("misses"), [0, 0, 0]);
}

#[test]
fn a_full_ring_buffer_counts_every_lost_event() {
    if !root_or_skip("a_full_ring_buffer_counts_every_lost_event") {
        return;
    }
    let target = plain_target(&["spin", "2"]);
    // One page: about 35 pairs of nanosleep events.
    const RING: u32 = 4096;
    let (mut probes, _) = observe(&target, &["update_point"], Some(RING));
    let mut ring = probes.take_events().expect("take the ring buffer");
    let mut missed = 0;
    for window_seq in 1..=2 {
        target.kill(12);
        thread::sleep(Duration::from_millis(100)); // not reading: the buffer fills
        // Closing the window stops the events, so what is in the buffer can be checked exactly.
        probes.close_window().expect("close the window");
        thread::sleep(Duration::from_millis(10)); // events already being written land
        let missed_now = probes.misses().expect("misses")[MISS_RINGBUF_FULL as usize];
        assert!(
            missed_now > missed,
            "window {window_seq}: {missed_now} > {missed}"
        );
        let events = read_events(&mut ring, Duration::ZERO);
        assert!(
            matches!(events.first(), Some(Event::Request(r)) if r.window_seq == window_seq),
            "the request came first: {:?}",
            events.first()
        );
        assert_page_full(&events, RING);
        eprintln!(
            "window {window_seq}: {} events read, {} lost",
            events.len(),
            missed_now - missed
        );
        missed = missed_now;
    }
}

/// The events read from a buffer of `ring` bytes left unread until it was full: all fit, and no
/// further event would have.
fn assert_page_full(events: &[Event], ring: u32) {
    let used: usize = events.iter().map(record_bytes).sum();
    let largest = record_bytes(&Event::SysEnter(SysEnterEvent::default()));
    assert!(
        used <= ring as usize && used > ring as usize - largest,
        "{} events in {used} bytes of {ring}",
        events.len()
    );
}

/// The ring-buffer space an event takes: an 8-byte record header, then the event, 8-aligned.
fn record_bytes(event: &Event) -> usize {
    let size = match event {
        Event::SysEnter(_) => size_of::<SysEnterEvent>(),
        Event::SysExit(_) => size_of::<SysExitEvent>(),
        Event::Request(_) => size_of::<qbench_common::RequestEvent>(),
        Event::Arrive(_) => size_of::<qbench_common::ArriveEvent>(),
        Event::Depart(_) => size_of::<qbench_common::DepartEvent>(),
        Event::ThreadNew(_) | Event::ThreadExit(_) => size_of::<qbench_common::ThreadEvent>(),
        Event::Release(_) => size_of::<qbench_common::ReleaseEvent>(),
    };
    (8 + size).next_multiple_of(8)
}

#[test]
fn every_tracepoint_field_the_programs_read_is_found_on_this_kernel() {
    if !root_or_skip("every_tracepoint_field_the_programs_read_is_found_on_this_kernel") {
        return;
    }
    // With the delivery tracepoint, attached for a target without the runtime.
    let offsets = qbench_user::kernel::attach::tracepoint_offsets(true)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    // Every field belongs to an attached event, and each offset is the one its format file gives.
    for field in qbench_common::tracepoints::ALL {
        let (category, event) = field.event.split_once('/').unwrap();
        assert!(
            qbench_user::kernel::attach::TRACEPOINTS
                .iter()
                .chain([
                    &qbench_user::kernel::attach::SIGNAL_TRACEPOINT,
                    &qbench_user::kernel::attach::DELIVER_TRACEPOINT
                ])
                .any(|&(_, c, e)| (c, e) == (category, event)),
            "{field:?} belongs to no attached tracepoint"
        );
        let format =
            std::fs::read_to_string(format!("/sys/kernel/tracing/events/{}/format", field.event))
                .unwrap();
        let (offset, size) =
            qbench_user::kernel::tracepoint_layout::find(&format, field.name).unwrap();
        assert_eq!(
            (offsets.get(field.id) as usize, size),
            (offset, field.size),
            "{field:?}"
        );
    }
}
