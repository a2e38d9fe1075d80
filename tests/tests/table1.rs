//! The Table I workloads (workloads/table1/): each program, in its `all` variant and idle,
//! quiesces for real update requests with every one of its threads; and the iperf-like program
//! in its `update-only` variant does not, naming its condition-waiting main thread.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use qbench_tests::{
    Outcome, Report, ReportChecks, TempDir, artifact, poll, profile_dir, read_reports, thread_state,
};

const WAIT: Duration = Duration::from_secs(10);

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Compiles `workloads/table1/<name>.c` with the shared sources against the debug runtime
/// (`build_c` compiles only workloads/c/).
fn build(name: &str) -> PathBuf {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = qbench_tests::workspace_root().join("workloads/table1");
    let lib = artifact("libqbench.so");
    let lib_dir = lib.parent().expect("library directory");
    let out_dir = profile_dir().join("qbench-c/table1");
    std::fs::create_dir_all(&out_dir).expect("create output directory");
    let out = out_dir.join(format!("{name}-like"));
    let tmp = out_dir.join(format!("{name}-like.{}.tmp", std::process::id()));
    let output = Command::new("cc")
        .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(qbench_tests::workspace_root().join("qbench-runtime/include"))
        .arg(src.join(format!("{name}.c")))
        .arg(src.join("variant.c"))
        .arg(src.join("net.c"))
        .arg("-o")
        .arg(&tmp)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lqbench")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename built program");
    out
}

/// A running workload: killed when dropped.
struct Workload {
    child: Child,
    pid: i32,
    report: PathBuf,
    _dir: TempDir,
}

impl Workload {
    fn start(program: &Path, variant: &str, env: &[(&str, &str)]) -> Workload {
        let dir = TempDir::new();
        let report = dir.0.join("report.jsonl");
        let mut child = Command::new(program)
            .args(["--variant", variant])
            .env("QBENCH_REPORT", &report)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.starts_with("ready "), "unexpected first line {line:?}");
        let pid = child.id() as i32;
        Workload {
            child,
            pid,
            report,
            _dir: dir,
        }
    }

    fn tasks(&self) -> Vec<(i32, String)> {
        let mut tasks = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid)).expect("task dir") {
            let entry = entry.expect("task entry");
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            tasks.push((tid, comm.trim_end().to_string()));
        }
        tasks
    }

    /// Waits until every thread sleeps in its blocking call: the idle situation under test.
    fn wait_blocked(&self) {
        poll(
            WAIT,
            Duration::from_millis(2),
            || {
                let states: Vec<Option<char>> = self
                    .tasks()
                    .iter()
                    .map(|(tid, _)| thread_state(self.pid, *tid))
                    .collect();
                if states.iter().all(|s| *s == Some('S')) {
                    Ok(())
                } else {
                    Err(states)
                }
            },
            |states| format!("never all blocked: {states:?}"),
        );
    }

    fn request(&self) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGUSR2) }, 0);
    }

    fn wait_reports(&self, n: usize) -> Vec<Report> {
        poll(
            WAIT,
            Duration::from_millis(1),
            || {
                let reports = read_reports(&self.report);
                if reports.len() >= n {
                    Ok(reports)
                } else {
                    Err(reports.len())
                }
            },
            |got| format!("{got} of {n} reports"),
        )
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two updates of the idle `all` variant: both quiesce with `threads` participating threads,
/// every thread of the process but the runtime's helper.
fn quiesces_idle(name: &str, threads: usize) {
    let w = Workload::start(&build(name), "all", &[]);
    w.wait_blocked();
    assert_eq!(w.tasks().len(), threads + 1, "{:?}", w.tasks());
    for seq in 1..=2 {
        w.request();
        let report = w.wait_reports(seq)[seq - 1].clone();
        assert_eq!((report.pid, report.seq), (w.pid, seq as u64));
        report.assert_quiesced(threads);
        w.wait_blocked();
    }
}

#[test]
fn httpd_like_quiesces_with_listener_and_three_workers() {
    quiesces_idle("httpd", 4);
}

#[test]
fn icecast_like_quiesces_with_six_threads_in_spite_of_its_sleeps() {
    quiesces_idle("icecast", 6);
}

#[test]
fn iperf_like_quiesces_with_main_listener_and_reporter() {
    quiesces_idle("iperf", 3);
}

#[test]
fn memcached_like_quiesces_with_dispatcher_and_four_workers() {
    quiesces_idle("memcached", 5);
}

#[test]
fn spacetyrant_like_quiesces_with_main_clock_and_listener() {
    quiesces_idle("spacetyrant", 3);
}

#[test]
fn suricata_like_quiesces_with_eight_threads_and_three_workers() {
    quiesces_idle("suricata", 11);
}

#[test]
fn iperf_like_update_only_does_not_quiesce_and_names_its_condition_waiting_main_thread() {
    let w = Workload::start(
        &build("iperf"),
        "update-only",
        &[("QBENCH_TIMEOUT_MS", "150")],
    );
    w.wait_blocked();
    w.request();
    let report = w.wait_reports(1)[0].clone();
    assert_eq!(report.outcome, Outcome::Dnq, "{report:?}");
    assert_eq!(report.threads, 3, "{report:?}");
    assert_eq!(report.missing.len(), 1, "{report:?}");
    assert_eq!(report.missing[0].tid, w.pid, "{report:?}");
    assert_eq!(report.missing[0].name, "iperf-like", "{report:?}");
}
