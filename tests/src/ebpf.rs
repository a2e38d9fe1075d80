//! Support of the tests that load qbench's eBPF programs themselves, through qbench-user's
//! loader: the root check, building the C targets of `tests/c/`, running them, and reading the
//! event ring buffer into typed events (a decoder of its own, so these tests check the wire format
//! independently of the observer's).

use std::{
    io::{BufRead as _, BufReader, Lines, Write as _},
    mem::size_of,
    num::NonZeroU32,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use qbench_common::{
    ArriveEvent, DepartEvent, EVENT_ARRIVE, EVENT_DEPART, EVENT_RELEASE, EVENT_REQUEST,
    EVENT_SYS_ENTER, EVENT_SYS_EXIT, EVENT_THREAD_EXIT, EVENT_THREAD_NEW, EventHeader,
    ReleaseEvent, RequestEvent, SysEnterEvent, SysExitEvent, ThreadEvent,
};

use crate::{profile_dir, workspace_root};

/// True when the tests may load eBPF programs; otherwise prints why the caller skips.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: skipped: loading eBPF programs needs root (run the tests as root)");
    }
    root
}

/// `{:#}`-style message of an error and its causes, for `unwrap_or_else(|e| panic!(..))`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

/// A C source of `tests/c/`.
pub fn c_source(file: &str) -> PathBuf {
    workspace_root().join("tests/c").join(file)
}

/// Compiles `source` with `cc -O2 -pthread` and `extra` arguments into the profile directory's
/// `qbench-c/`.
/// `-fcf-protection=none`: a function starting with `endbr64` costs 25 times more to probe.
/// Built under a unique name, then renamed: tests running at once may build the same program,
/// and executing a file another `cc` is still writing fails with ETXTBSY.
pub fn compile_c(source: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let dir = profile_dir().join("qbench-c");
    std::fs::create_dir_all(&dir).expect("create output directory");
    let exe = dir.join(name);
    let tmp = dir.join(format!(
        "{name}.{}.{:?}.tmp",
        std::process::id(),
        thread::current().id()
    ));
    let status = Command::new("cc")
        .args([
            "-O2",
            "-g",
            "-pthread",
            "-Wall",
            "-Werror",
            "-fcf-protection=none",
        ])
        .arg(source)
        .args(extra)
        .arg("-o")
        .arg(&tmp)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build {}", source.display());
    std::fs::rename(&tmp, &exe).expect("rename the built program");
    exe
}

/// A running target program, killed when dropped.
#[derive(Debug)]
pub struct Target {
    pub child: Child,
    pub stdin: ChildStdin,
    pub lines: Lines<BufReader<ChildStdout>>,
}

impl Target {
    pub fn spawn(exe: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the target");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        }
    }

    pub fn pid(&self) -> NonZeroU32 {
        NonZeroU32::new(self.child.id()).expect("nonzero pid")
    }

    pub fn line(&mut self) -> String {
        self.lines
            .next()
            .expect("target closed its output early")
            .expect("read target output")
    }

    pub fn send(&mut self, command: &[u8]) {
        self.stdin.write_all(command).expect("write to the target");
    }

    /// Sends `signal` to the whole process, as `kill -SIG PID` does.
    pub fn kill(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid().get()).expect("pid");
        // SAFETY: kill has no memory preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill the target");
    }

    /// The target's thread ids now.
    pub fn tids(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut tids: Vec<u32> = std::fs::read_dir(dir)
            .expect("read the task dir")
            .map(|entry| {
                entry
                    .expect("task")
                    .file_name()
                    .to_str()
                    .expect("utf-8")
                    .parse()
                    .expect("tid")
            })
            .collect();
        tids.sort_unstable();
        tids
    }

    /// A thread's name (`/proc/PID/task/TID/comm`).
    pub fn comm(&self, tid: u32) -> String {
        let path = format!("/proc/{}/task/{tid}/comm", self.pid());
        std::fs::read_to_string(path)
            .expect("comm")
            .trim_end()
            .to_owned()
    }

    /// What file descriptor `fd` of the target is (`pipe:[1234]`, `/dev/pts/0`, ...).
    pub fn fd(&self, fd: u64) -> String {
        let path = format!("/proc/{}/fd/{fd}", self.pid());
        std::fs::read_link(path).map_or_else(|e| e.to_string(), |p| p.display().to_string())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One decoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Request(RequestEvent),
    Arrive(ArriveEvent),
    Depart(DepartEvent),
    SysEnter(SysEnterEvent),
    SysExit(SysExitEvent),
    ThreadNew(ThreadEvent),
    ThreadExit(ThreadEvent),
    Release(ReleaseEvent),
}

impl Event {
    pub fn header(&self) -> EventHeader {
        match self {
            Self::Request(e) => e.header,
            Self::Arrive(e) => e.header,
            Self::Depart(e) => e.header,
            Self::SysEnter(e) => e.header,
            Self::SysExit(e) => e.header,
            Self::ThreadNew(e) | Self::ThreadExit(e) => e.header,
            Self::Release(e) => e.header,
        }
    }

    /// The request, if this is one.
    pub fn request(&self) -> Option<RequestEvent> {
        match self {
            Self::Request(e) => Some(*e),
            _ => None,
        }
    }

    /// The arrival, if this is one.
    pub fn arrive(&self) -> Option<ArriveEvent> {
        match self {
            Self::Arrive(e) => Some(*e),
            _ => None,
        }
    }

    /// The departure, if this is one.
    pub fn depart(&self) -> Option<DepartEvent> {
        match self {
            Self::Depart(e) => Some(*e),
            _ => None,
        }
    }

    /// Decodes one ring-buffer record; panics on a malformed one (a wire-format bug).
    pub fn decode(bytes: &[u8]) -> Self {
        fn read<T: Copy>(bytes: &[u8]) -> T {
            assert!(
                bytes.len() >= size_of::<T>(),
                "short record of {} bytes",
                bytes.len()
            );
            // SAFETY: the length is checked, and T is a plain repr(C) integer struct for
            // which every bit pattern is valid; read_unaligned needs no alignment.
            unsafe { bytes.as_ptr().cast::<T>().read_unaligned() }
        }
        let header: EventHeader = read(bytes);
        match header.kind {
            EVENT_REQUEST => Self::Request(read(bytes)),
            EVENT_ARRIVE => Self::Arrive(read(bytes)),
            EVENT_DEPART => Self::Depart(read(bytes)),
            EVENT_SYS_ENTER => Self::SysEnter(read(bytes)),
            EVENT_SYS_EXIT => Self::SysExit(read(bytes)),
            EVENT_THREAD_NEW => Self::ThreadNew(read(bytes)),
            EVENT_THREAD_EXIT => Self::ThreadExit(read(bytes)),
            EVENT_RELEASE => Self::Release(read(bytes)),
            kind => panic!("unknown event kind {kind}"),
        }
    }
}

/// Reads the ring buffer for `duration`, polling every millisecond.
pub fn read_events(ring: &mut RingBuf<MapData>, duration: Duration) -> Vec<Event> {
    let deadline = Instant::now() + duration;
    let mut events = Vec::new();
    loop {
        while let Some(item) = ring.next() {
            events.push(Event::decode(&item));
        }
        if Instant::now() >= deadline {
            return events;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The blocking syscalls the tests track (x86-64 numbers).
pub fn blocking_syscalls() -> Vec<u32> {
    [
        libc::SYS_read,
        libc::SYS_poll,
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_futex,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_accept,
        libc::SYS_accept4,
    ]
    .into_iter()
    .map(|nr| u32::try_from(nr).expect("syscall number"))
    .collect()
}
