//! Support for the integration tests: build the C target programs against the runtime, run real
//! target processes, request real updates with real signals, and read the runtime's reports.
//!
//! The tests expect the workspace to be built (`cargo xtask test` does it first): the runtime's
//! libqbench.so and libqbench.a, and the Rust target programs of `workloads/`. [`observer`] runs
//! qbench-trace; [`ebpf`] loads the eBPF programs directly through qbench-user's loader.

pub mod ebpf;
pub mod observer;
pub mod real;
pub mod rsvg;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The runtime's own record of an update: one line of a `QBENCH_REPORT` file.
pub use qbench_common::report::{MissingThread, Outcome, Report};

/// Checks of the runtime's records.
pub trait ReportChecks {
    /// Checks what every quiesced report must satisfy: the order of the three instants and the
    /// two intervals derived from them.
    fn assert_quiesced(&self, threads: usize);
}

impl ReportChecks for Report {
    fn assert_quiesced(&self, threads: usize) {
        assert_eq!(self.outcome, Outcome::Quiesced, "{self:?}");
        assert_eq!(self.threads, threads, "{self:?}");
        assert!(self.missing.is_empty(), "{self:?}");
        let first = self.first_arrival_ns.expect("first arrival");
        let last = self.last_arrival_ns.expect("last arrival");
        assert!(self.request_ns <= first && first <= last, "{self:?}");
        assert_eq!(self.quiescence_ns, Some(last - first), "{self:?}");
        assert_eq!(
            self.request_latency_ns,
            Some(last - self.request_ns),
            "{self:?}"
        );
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The profile directory the tests were built into (target/debug or target/release).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("profile directory")
        .to_path_buf()
}

/// Path of a built artifact, with a clear message when the workspace was not built first.
pub fn artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// How a C target program is linked to the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    Dynamic,
    Static,
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Compiles `workloads/c/<name>.c` against the runtime (rebuilt on every call of a new test
/// process, so it never runs against a stale library).
pub fn build_c(name: &str, linkage: Linkage) -> PathBuf {
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let source = root.join("workloads/c").join(format!("{name}.c"));
    let out_dir = profile_dir().join("qbench-c");
    std::fs::create_dir_all(&out_dir).expect("create output directory");
    let suffix = match linkage {
        Linkage::Dynamic => "dyn",
        Linkage::Static => "static",
    };
    let out = out_dir.join(format!("{name}-{suffix}"));
    // Build under a unique name, then rename: test processes may build the same program at once.
    let tmp = out_dir.join(format!("{name}-{suffix}.{}.tmp", std::process::id()));
    let lib_dir = profile_dir();
    let mut cc = Command::new("cc");
    cc.args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(root.join("qbench-runtime/include"))
        .arg(&source)
        .arg("-o")
        .arg(&tmp);
    match linkage {
        Linkage::Dynamic => {
            artifact("libqbench.so");
            cc.arg("-L")
                .arg(&lib_dir)
                .arg("-lqbench")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
        }
        Linkage::Static => {
            cc.arg(artifact("libqbench.a")).args([
                "-lgcc_s",
                "-lutil",
                "-lrt",
                "-lpthread",
                "-lm",
                "-ldl",
                "-lc",
            ]);
        }
    }
    let output = cc.output().expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename built program");
    out
}

/// A running target program whose updates are reported to a file of its own.
#[derive(Debug)]
pub struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub pid: i32,
    pub report_path: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Target {
    /// Starts `program` with `args` and extra environment, and waits for its "ready PID" line.
    pub fn start(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Target {
        let dir = TempDir::new();
        let report_path = dir.0.join("report.jsonl");
        let stderr_path = dir.0.join("stderr");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("QBENCH_REPORT", &report_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A program file just written (copied or built) may still be open for writing in a child
        // another test thread is forking: exec then fails with ETXTBSY for a moment.
        let mut attempts = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => {
                    break result.unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
                }
            }
        };
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut target = Target {
            pid: child.id() as i32,
            child,
            stdin,
            stdout,
            report_path,
            stderr_path,
            _dir: dir,
        };
        let line = target.read_line();
        assert_eq!(
            line,
            format!("ready {}", target.pid),
            "unexpected first line"
        );
        target
    }

    /// The next line the program printed (without its newline).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .expect("read target stdout");
        assert!(n > 0, "target exited; stderr: {}", self.stderr());
        line.trim_end().to_string()
    }

    /// Sends a one-letter command to the program's main loop.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(command.as_bytes()).expect("write command");
        stdin.flush().expect("flush command");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The program's threads: (tid, name).
    pub fn threads(&self) -> Vec<(i32, String)> {
        let mut threads = Vec::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return threads;
        };
        for entry in dir.flatten() {
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            threads.push((tid, name.trim_end().to_string()));
        }
        threads.sort();
        threads
    }

    /// Waits (at most 10 s) until every thread of the program sleeps, i.e. is blocked where the
    /// test put it, so that a request finds the situation under test.
    pub fn wait_blocked(&self) {
        poll(
            Duration::from_secs(10),
            Duration::from_millis(2),
            || {
                let states: Vec<char> = self
                    .threads()
                    .iter()
                    .filter_map(|(tid, _)| thread_state(self.pid, *tid))
                    .collect();
                if !states.is_empty() && states.iter().all(|&s| s == 'S') {
                    Ok(())
                } else {
                    Err(states)
                }
            },
            |states| format!("threads never all blocked: {states:?}"),
        );
    }

    /// Requests an update with a real signal from outside the process.
    pub fn request(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    /// All reports written so far.
    pub fn reports(&self) -> Vec<Report> {
        read_reports(&self.report_path)
    }

    /// Waits (at most `timeout`) until at least `n` reports were written, and returns them all.
    pub fn wait_reports(&self, n: usize, timeout: Duration) -> Vec<Report> {
        poll(
            timeout,
            Duration::from_micros(200),
            || {
                let reports = self.reports();
                if reports.len() >= n {
                    Ok(reports)
                } else {
                    Err(reports.len())
                }
            },
            |got| {
                format!(
                    "{got} of {n} reports after {timeout:?}; stderr: {}",
                    self.stderr()
                )
            },
        )
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails the test unless the process, which executed `program`, still runs it: nothing
    /// signalled the new program.
    pub fn assert_runs(&mut self, program: &str) {
        assert!(self.is_running(), "the executed program was killed");
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).expect("comm");
        assert_eq!(comm.trim_end(), program);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tries `attempt` every `every` until it succeeds, for at most `timeout`; past that, fails the
/// test with `late`'s account of what the last attempt saw.
pub fn poll<T, Seen>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, Seen>,
    late: impl Fn(Seen) -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(done) => return done,
            Err(seen) => assert!(Instant::now() < deadline, "{}", late(seen)),
        }
        std::thread::sleep(every);
    }
}

/// Parses a report file; a line that is not a report fails the test.
pub fn read_reports(path: &Path) -> Vec<Report> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written has no newline yet: only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad report line {l:?}: {e}")))
        .collect()
}

/// The scheduler state letter of a thread (R, S, D, ...).
pub fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The state follows the parenthesised name, which may itself contain ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("qbench-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
