//! qbench-trace run as an unprivileged user (uid 65534, `nobody`) with exactly the capabilities
//! the README lists, as ambient capabilities given by `setpriv`: it observes that user's own
//! process, names a capability taken away, refuses another user's process; and `--check`, as
//! root and without capabilities. Skipped, with the reason printed, when not root or without
//! setpriv.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use qbench_tests::observer::{finish, json_lines, privileged, trace};
use qbench_tests::{Linkage, ReportChecks, Target, TempDir, artifact, build_c, read_reports};

/// The README's list, as setpriv spells it.
const README_CAPS: [&str; 2] = ["sys_admin", "dac_read_search"];
const USER: &str = "65534";
const SETPRIV: &str = "/usr/bin/setpriv";

fn setpriv_available() -> bool {
    let there = std::path::Path::new(SETPRIV).exists();
    if !there {
        eprintln!("skipped: {SETPRIV} (util-linux) is needed to run as another user");
    }
    there
}

/// `setpriv` arguments that run the rest as uid/gid 65534 with exactly `caps` (effective,
/// permitted, inheritable and ambient).
fn as_nobody(caps: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--reuid={USER}"),
        format!("--regid={USER}"),
        "--clear-groups".to_string(),
    ];
    if !caps.is_empty() {
        let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        let list = list.join(",");
        args.push(format!("--inh-caps=-all,{list}"));
        args.push(format!("--ambient-caps={list}"));
    }
    args
}

/// Runs qbench-trace as uid 65534 with `caps`, to completion (at most 60 s).
fn trace_as_nobody(caps: &[&str], args: &[&str]) -> Output {
    let child = Command::new(SETPRIV)
        .args(as_nobody(caps))
        .arg(artifact("qbench-trace"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start setpriv");
    finish(
        child,
        Duration::from_secs(60),
        "qbench-trace did not finish",
    )
}

/// `situations read:2` running as uid 65534, reporting to a file that user may write.
fn nobodys_target(reports: &TempDir) -> (Target, PathBuf) {
    std::fs::set_permissions(&reports.0, std::fs::Permissions::from_mode(0o777))
        .expect("chmod report dir");
    let report = reports.0.join("report.jsonl");
    let program = build_c("situations", Linkage::Dynamic);
    let mut args = as_nobody(&[]);
    args.push(program.display().to_string());
    args.push("read:2".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("QBENCH_REPORT", report.to_str().expect("utf-8 path"))];
    let target = Target::start(std::path::Path::new(SETPRIV), &args, &env);
    target.wait_blocked();
    let uid = std::fs::read_to_string(format!("/proc/{}/status", target.pid))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|u| u.split_whitespace().next().map(String::from))
        })
        .flatten();
    assert_eq!(uid.as_deref(), Some(USER));
    (target, report)
}

/// The serial lock of a test that runs qbench-trace as nobody; None, with the reason printed,
/// when not root or without setpriv.
fn nobody_test() -> Option<MutexGuard<'static, ()>> {
    let serial = privileged()?;
    setpriv_available().then_some(serial)
}

/// A test of qbench-trace as nobody on nobody's own target: the target ends, then the directory
/// it reports into goes, then the serial lock is released.
struct NobodyTargetTest {
    /// The target's pid, as `--pid` takes it.
    pid: String,
    /// The runtime's report file.
    report: PathBuf,
    _target: Target,
    _dir: TempDir,
    _serial: MutexGuard<'static, ()>,
}

/// [`nobody_test`] with nobody's target running.
fn nobody_target_test() -> Option<NobodyTargetTest> {
    let serial = nobody_test()?;
    let dir = TempDir::new();
    let (target, report) = nobodys_target(&dir);
    Some(NobodyTargetTest {
        pid: target.pid.to_string(),
        report,
        _target: target,
        _dir: dir,
        _serial: serial,
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_readme_capabilities_observe_the_users_own_process() {
    let Some(test) = nobody_target_test() else {
        return;
    };
    let pid = test.pid.as_str();
    let out = trace_as_nobody(&README_CAPS, &["--pid", pid, "--request", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let observed = json_lines(&out);
    assert_eq!(observed.len(), 1);
    let update = &observed[0];
    assert_eq!(update["outcome"], "quiesced", "{update}");
    assert_eq!(update["lost_events"], 0, "{update}");
    // main + 2 readers, each arrived.
    let threads = update["threads"].as_array().expect("threads");
    assert_eq!(threads.len(), 3, "{update}");
    assert!(threads.iter().all(|t| t["state"] == "arrived"), "{update}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let reports = loop {
        let reports = read_reports(&test.report);
        if !reports.is_empty() || Instant::now() > deadline {
            break reports;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(reports.len(), 1, "the runtime's own report");
    reports[0].assert_quiesced(3);
    assert_eq!(update["runtime_seq"].as_u64(), Some(reports[0].seq));
}

#[test]
fn the_watch_mode_runs_with_the_readme_capabilities() {
    let Some(test) = nobody_target_test() else {
        return;
    };
    let pid = test.pid.as_str();
    let mut child = Command::new(SETPRIV)
        .args(as_nobody(&README_CAPS))
        .arg(artifact("qbench-trace"))
        .args(["--watch", "--pid", pid, "--readiness-interval", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbench-trace --watch");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let child = KillOnDrop(child);
    let mut line = String::new();
    // Notes may come first; the first readiness report names the process.
    let named = format!("pid {pid} (");
    while !line.contains(&named) {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("stderr line");
        assert!(n > 0, "qbench-trace --watch ended early");
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("stderr");
    let status = child.wait();
    assert_eq!(status.code(), Some(0), "{line}{rest}");
    assert!(rest.contains("detached from 1 process(es)"), "{rest}");
}

/// A child process killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn wait(mut self) -> std::process::ExitStatus {
        self.0.wait().expect("wait")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_capability_taken_away_is_named() {
    let Some(test) = nobody_target_test() else {
        return;
    };
    let pid = test.pid.as_str();
    for (kept, named) in [
        ("dac_read_search", "CAP_SYS_ADMIN (to attach uprobes"),
        ("sys_admin", "CAP_DAC_READ_SEARCH (to read tracefs)"),
    ] {
        let out = trace_as_nobody(&[kept], &["--pid", pid, "--request"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("qbench-trace: error: qbench-trace needs ") && err.contains(named),
            "{err}"
        );
    }
}

#[test]
fn another_users_process_is_refused() {
    let Some(_serial) = nobody_test() else { return };
    // A root process: uid 65534 may not ptrace it, so it may not observe it either.
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = sleeper.id().to_string();
    let out = trace_as_nobody(&README_CAPS, &["--pid", &pid, "--request"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "qbench-trace: error: qbench-trace may not trace pid {pid} (uid 0): like a debugger \
             it observes only processes it could ptrace; run it as uid 0 or with CAP_SYS_PTRACE \
             (have: CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN)"
        )
    );
}

#[test]
fn check_as_root_says_observation_would_work() {
    let Some(_serial) = privileged() else { return };
    let out = trace(&["--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("release");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("kernel ") && l.contains(release.trim())),
        "{text}"
    );
    for want in [
        "BTF          found",
        "ring buffer  found",
        "uprobes      found",
        "uprobe NOP5  ",
        "tracefs      mounted at ",
        "tracepoint   signal/signal_generate found",
        "tracepoint   raw_syscalls/sys_enter found",
        "tracepoint   sched/sched_process_exit found",
        "capabilities ",
        "  attach uprobes: allowed by CAP_SYS_ADMIN",
    ] {
        assert!(text.lines().any(|l| l.starts_with(want)), "{want}: {text}");
    }
    assert_eq!(
        text.lines().last(),
        Some("verdict      observation would work")
    );
}

#[test]
fn check_without_capabilities_names_the_missing_ones() {
    let Some(_serial) = nobody_test() else { return };
    let out = trace_as_nobody(&[], &["--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("capabilities none (effective)"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some(
            "verdict      observation would not work: qbench-trace needs CAP_SYS_ADMIN (to \
             attach uprobes, load eBPF programs and maps, attach tracepoints) and \
             CAP_DAC_READ_SEARCH (to read tracefs)"
        ),
        "{text}"
    );
    let out = trace_as_nobody(&README_CAPS, &["--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
}
