//! `qbench-trace --watch`, the production mode, against real targets: exact counts scraped from
//! its metrics endpoint over real HTTP (curl), targets restarting under `--all`, readiness, and
//! no syscall tracepoint loaded. Skipped, with the reason printed, when not root (all but the
//! check of which files have the runtime, which reads files only).

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qbench_common::symbols::PROBE_REQUEST;
use qbench_tests::observer::privileged;
use qbench_tests::{Linkage, Target, artifact, build_c, poll};
use qbench_user::kernel::elf_symtab;

fn situations(args: &[&str], env: &[(&str, &str)]) -> Target {
    let target = Target::start(&build_c("situations", Linkage::Dynamic), args, env);
    target.wait_blocked();
    target
}

/// A running `qbench-trace --watch`, its stderr collected line by line as it comes.
struct Watcher {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(args: &[&str]) -> Watcher {
        let mut child = Command::new(artifact("qbench-trace"))
            .arg("--watch")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qbench-trace");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr");
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(line);
            }
        });
        Watcher { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    /// Waits (at most 10 s) for a stderr line containing every one of `needles`.
    fn wait_line(&self, needles: &[&str]) -> String {
        poll(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || {
                (self.stderr.lock().expect("lines").iter())
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .cloned()
                    .ok_or(())
            },
            |()| format!("no line with {needles:?}; stderr:\n{}", self.stderr()),
        )
    }

    /// The metrics address it printed.
    fn metrics_url(&self) -> String {
        let line = self.wait_line(&["serving metrics at "]);
        line.split("serving metrics at ")
            .nth(1)
            .expect("url")
            .to_string()
    }

    fn watching(&self, pid: i32) {
        self.wait_line(&[&format!("watching pid {pid} ")]);
    }

    /// Its exit status once it stops (at most 10 s).
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || self.child.try_wait().expect("wait").ok_or(()),
            |()| "qbench-trace did not stop".to_string(),
        )
    }

    /// SIGTERM, then its exit code (at most 10 s).
    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit().code()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` with curl: the body.
fn scrape(url: &str) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "5", url])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {url}: {out:?}");
    String::from_utf8(out.stdout).expect("utf8")
}

/// The value of the sample `name{...}` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        let all = labels
            .iter()
            .all(|(k, v)| set.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok())?
    })
}

/// Scrapes until `name{labels}` equals `want` (at most 10 s); returns the last exposition.
fn wait_sample(url: &str, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let text = scrape(url);
            if sample(&text, name, labels) == Some(want) {
                Ok(text)
            } else {
                Err(text)
            }
        },
        |text| format!("{name}{labels:?} never {want}:\n{text}"),
    )
}

#[test]
fn watch_counts_every_update_and_every_dnq_in_its_metrics() {
    let Some(_serial) = privileged() else { return };
    let good = situations(&["read:2", "condwait:1"], &[]);
    let stuck = situations(&["read:1", "stuckread:1"], &[("QBENCH_TIMEOUT_MS", "400")]);
    let (gp, sp) = (good.pid.to_string(), stuck.pid.to_string());
    // The good pid given twice is watched once: each update is counted once.
    let mut watcher = Watcher::start(&[
        "--pid",
        &gp,
        "--pid",
        &sp,
        "--pid",
        &gp,
        "--timeout",
        "200ms",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let url = watcher.metrics_url();
    watcher.watching(good.pid);
    watcher.watching(stuck.pid);
    for _ in 0..5 {
        good.request(libc::SIGUSR2);
        std::thread::sleep(Duration::from_millis(100));
    }
    good.wait_reports(5, Duration::from_secs(10));
    let g = [("pid", gp.as_str())];
    let text = wait_sample(&url, "qbench_quiescence_seconds_count", &g, 5.0);
    let outcome = |pid: &str, o: &str| [("pid", pid.to_string()), ("outcome", o.to_string())];
    let count = |text: &str, pid: &str, o: &str| {
        let labels = outcome(pid, o);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(text, "qbench_updates_total", &labels)
    };
    assert_eq!(count(&text, &gp, "quiesced"), Some(5.0), "{text}");
    assert_eq!(count(&text, &gp, "dnq"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "qbench_request_latency_seconds_count", &g),
        Some(5.0)
    );
    assert_eq!(sample(&text, "qbench_lost_events_total", &g), Some(0.0));
    // Two requests to the stuck target, each after the runtime gave up on the one before.
    for _ in 0..2 {
        stuck.request(libc::SIGUSR2);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let s = [("pid", sp.as_str()), ("outcome", "dnq")];
    let text = wait_sample(&url, "qbench_updates_total", &s, 2.0);
    assert_eq!(count(&text, &sp, "quiesced"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "qbench_quiescence_seconds_count", &[("pid", &sp)]),
        Some(0.0)
    );
    // Each DNQ is logged with its straggler.
    let block = watcher.wait_line(&[&format!("pid {sp} did not quiesce")]);
    assert!(!block.is_empty());
    assert!(
        watcher.stderr().contains("stuckread"),
        "{}",
        watcher.stderr()
    );
    assert_eq!(watcher.terminate(), Some(0), "{}", watcher.stderr());
}

/// The check `--all` makes of each file mapped as code finds the runtime however a program has
/// it (exported by libqbench.so; linked in statically, or as the Rust crate, in `.symtab` only),
/// and not in a program that only maps libqbench.so, nor in qbench-trace itself (which does not
/// link the runtime: `--all` never takes another qbench-trace for a target), nor in /bin/true.
#[test]
fn watch_all_finds_the_runtime_however_linked_and_only_there() {
    let has_runtime = |path: &Path| elf_symtab::defines(path, PROBE_REQUEST);
    assert!(has_runtime(&artifact("libqbench.so")));
    assert!(has_runtime(&build_c("situations", Linkage::Static)));
    assert!(has_runtime(&artifact("qbench-demo")));
    assert!(!has_runtime(&build_c("situations", Linkage::Dynamic)));
    assert!(!has_runtime(&artifact("qbench-trace")));
    assert!(!has_runtime(Path::new("/bin/true")));
}

#[test]
fn watch_all_follows_a_target_that_restarts_with_a_new_pid() {
    let Some(_serial) = privileged() else { return };
    let mut watcher = Watcher::start(&["--all", "--metrics", "127.0.0.1:0"]);
    let url = watcher.metrics_url();
    let mut pids = Vec::new();
    for _ in 0..2 {
        let target = situations(&["read:2"], &[]);
        watcher.watching(target.pid);
        target.request(libc::SIGUSR2);
        target.wait_reports(1, Duration::from_secs(10));
        let pid = target.pid.to_string();
        wait_sample(
            &url,
            "qbench_updates_total",
            &[("pid", &pid), ("outcome", "quiesced")],
            1.0,
        );
        pids.push(pid);
        drop(target); // killed; the next one is a new process
        watcher.wait_line(&[&format!("pid {} exited", pids.last().expect("pid"))]);
    }
    let text = scrape(&url);
    for pid in &pids {
        let labels = [("pid", pid.as_str())];
        assert_eq!(
            sample(&text, "qbench_quiescence_seconds_count", &labels),
            Some(1.0),
            "{text}"
        );
    }
    assert!(watcher.child.try_wait().expect("wait").is_none());
    assert_eq!(watcher.terminate(), Some(0), "{}", watcher.stderr());
    assert!(
        watcher.stderr().contains("detached"),
        "{}",
        watcher.stderr()
    );
}

#[test]
fn readiness_names_plain_condition_waits_and_sleeps() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["plaincond:1", "stucksleep:1"], &[]);
    let pid = target.pid.to_string();
    let mut watcher = Watcher::start(&[
        "--pid",
        &pid,
        "--readiness-interval",
        "200ms",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let url = watcher.metrics_url();
    let line = watcher.wait_line(&[&format!("pid {pid} ("), "an update now would wait for"]);
    assert!(
        line.ends_with(
            "an update now would wait for 1 thread in plain condition wait, \
             1 sleeping (up to 100 s)"
        ),
        "{line}"
    );
    let text = scrape(&url);
    for (cause, want) in [
        ("plain_condition_wait", 1.0),
        ("sleeping", 1.0),
        ("uninterruptible", 0.0),
    ] {
        let labels = [("pid", pid.as_str()), ("cause", cause)];
        assert_eq!(
            sample(&text, "qbench_ready_blockers", &labels),
            Some(want),
            "{cause}: {text}"
        );
    }
    // main, plaincond, stucksleep and the runtime's helper, all asleep.
    let labels = [("pid", pid.as_str()), ("state", "sleeping")];
    assert_eq!(
        sample(&text, "qbench_threads", &labels),
        Some(4.0),
        "{text}"
    );
    assert_eq!(watcher.terminate(), Some(0));
}

/// Ids and names of the programs whose names start with "qbench_" loaded in the kernel.
fn qbench_programs() -> BTreeSet<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| Some((p.id(), p.name_as_str()?.to_string())))
        .filter(|(_, name)| name.starts_with("qbench_"))
        .collect()
}

#[test]
fn watch_loads_no_syscall_tracepoint() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1"], &[]);
    let before = qbench_programs();
    let mut watcher = Watcher::start(&["--pid", &target.pid.to_string()]);
    watcher.watching(target.pid);
    let ours: Vec<String> = qbench_programs()
        .difference(&before)
        .map(|(_, name)| name.clone())
        .collect();
    // Kernel program names are cut at 15 characters: qbench_sys_ente, qbench_sys_exit.
    assert!(ours.iter().any(|n| n == "qbench_arrive"), "{ours:?}");
    assert!(
        !ours.iter().any(|n| n.starts_with("qbench_sys_")),
        "{ours:?}"
    );
    assert_eq!(watcher.terminate(), Some(0));
}

/// A watched process that executes another program: the update points probed are gone with the
/// old program, so it is watched no more, and qbench-trace says why (and, its only process gone,
/// stops by itself).
#[test]
fn a_watched_target_that_executes_another_program_is_watched_no_more() {
    let Some(_serial) = privileged() else { return };
    let mut target = situations(&["read:1"], &[]);
    let pid = target.pid;
    let mut watcher = Watcher::start(&["--pid", &pid.to_string()]);
    watcher.watching(pid);
    target.send("x");
    watcher.wait_line(&[&format!(
        "qbench-trace: pid {pid} executed a new program; its update points are gone"
    )]);
    watcher.wait_line(&["every watched process has exited"]);
    let status = watcher.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", watcher.stderr());
    target.assert_runs("sleep");
}

/// A watched process that exits is let go at once: its pidfd wakes qbench-trace, well before
/// the periodic check (every 500 ms between updates) would have looked.
#[test]
fn a_watched_target_that_exits_is_let_go_at_once() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1"], &[]);
    let pid = target.pid;
    let mut watcher = Watcher::start(&["--pid", &pid.to_string()]);
    watcher.watching(pid);
    // The first periodic check comes 500 ms after the line saying it watches: kill well before.
    std::thread::sleep(Duration::from_millis(100));
    let killed = Instant::now();
    drop(target); // SIGKILL, then reaped
    watcher.wait_line(&[&format!("qbench-trace: pid {pid} exited")]);
    let took = killed.elapsed();
    watcher.wait_line(&["every watched process has exited"]);
    let status = watcher.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", watcher.stderr());
    assert!(
        took < Duration::from_millis(300),
        "the exit was noticed after {took:?}:\n{}",
        watcher.stderr()
    );
}
