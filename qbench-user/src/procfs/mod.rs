//! What /proc says about the target's threads: the seed of the thread table at attach (a thread
//! blocked since before attach emits no event), names, and scheduler states. Parsing is pure.
//!
//! This folder holds the /proc parsers: the threads here, the address space in [`maps`], and
//! files held open to be read again cheaply: a process's `stat` ([`held`]), its threads' files
//! ([`tasks`]).

pub mod held;
pub mod maps;
pub mod tasks;

use std::path::PathBuf;

/// A blocking call: its number and its six arguments.
pub type Syscall = (i64, [u64; 6]);
/// A blocked thread's user stack pointer and program counter.
pub type Registers = (u64, u64);

/// One thread as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcThread {
    pub tid: u32,
    pub comm: String,
    /// The scheduler state letter: R, S, D, T, Z, ...
    pub state: char,
    /// The syscall it is blocked in, with its arguments, if any.
    pub syscall: Option<(i64, [u64; 6])>,
    /// Its user stack pointer and program counter when blocked (in a syscall or not), read
    /// with `syscall`: where its stack is unwound from.
    pub registers: Option<(u64, u64)>,
}

/// Text from /proc that may hold names (thread and process names, paths): bytes, not UTF-8.
/// Each byte that is not part of valid UTF-8 becomes `\xNN` and each backslash `\\`, so the
/// result says exactly which bytes the kernel holds, in every output alike, and a name that is
/// not valid UTF-8 never makes its thread look gone.
pub fn decode(bytes: &[u8]) -> String {
    // The common case, read for every thread: nothing to escape.
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.contains('\\')
    {
        return text.to_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Reads a /proc file as [`decode`]d text; None when it cannot be read (the task is gone).
pub fn read(path: impl AsRef<std::path::Path>) -> Option<String> {
    read_small(path).map(|bytes| decode(&bytes))
}

/// The bytes of a small /proc file. `std::fs::read` asks the file's size first (a `statx`),
/// which /proc files do not know: this reads straight away, thousands of times per check.
pub fn read_small(path: impl AsRef<std::path::Path>) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    read_all(std::fs::File::open(path).ok()?, false, &mut bytes).ok()?;
    Some(bytes)
}

/// [`read_small`] for a file the kernel writes in one go (see [`read_all`]): a task's `stat`,
/// `syscall`, `comm`.
pub fn read_record(path: impl AsRef<std::path::Path>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    read_all(std::fs::File::open(path)?, true, &mut bytes)?;
    Ok(bytes)
}

/// The whole of `file`, into `bytes` (emptied first; its capacity is reused); with
/// `one_record`, a read that does not fill the buffer is taken as the end (true of the files
/// whose one line the kernel writes in one go, such as a task's `stat` and `syscall`), which
/// spares the read that would return nothing.
fn read_all(mut file: std::fs::File, one_record: bool, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read as _;
    bytes.clear();
    bytes.resize(bytes.capacity().max(1024), 0);
    let mut len = 0;
    let result = loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break Ok(()),
            Ok(n) if one_record && len + n < bytes.len() => {
                len += n;
                break Ok(());
            }
            Ok(n) => len += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => break Err(err),
        }
    };
    bytes.truncate(len);
    result
}

/// A /proc directory held open, its files opened relative to it: the kernel then walks two
/// path components per file instead of five, which is a third of reading a thread's `stat`.
struct ProcDir(std::fs::File);

impl ProcDir {
    fn open(path: &std::path::Path) -> Option<Self> {
        std::fs::File::open(path).ok().map(Self)
    }

    /// Reads the one-record file (see [`read_all`]) `TID/NAME` under this directory into
    /// `bytes`; false when it cannot be read (the thread is gone).
    fn read_task_record(&self, tid: u32, name: &str, bytes: &mut Vec<u8>) -> bool {
        self.open_task_file(tid, name)
            .is_some_and(|file| read_all(file, true, bytes).is_ok())
    }

    /// Opens `TID/NAME` under this directory; None when the thread is gone.
    fn open_task_file(&self, tid: u32, name: &str) -> Option<std::fs::File> {
        use std::io::Write as _;
        use std::os::fd::{AsRawFd as _, FromRawFd as _};
        // "TID/NAME\0", built without allocating: this runs twice per thread per check.
        let mut path = [0u8; 64];
        let mut cursor = &mut path[..];
        write!(cursor, "{tid}/{name}\0").ok()?;
        // SAFETY: the directory descriptor is open for the life of `self`, and `path` holds a
        // NUL-terminated string (written above) that outlives the call.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                path.as_ptr().cast(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: `fd`, when valid, was just opened here and nothing else owns it.
        (fd >= 0).then(|| unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

/// The root of /proc (tests point it elsewhere).
fn proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// Every thread of process `pid`; None when the process does not exist.
pub fn threads(pid: u32) -> Option<Vec<ProcThread>> {
    let task = proc_root().join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&task).ok()?;
    let dir = ProcDir::open(&task)?;
    // One buffer for each file, reused for every thread.
    let (mut stat, mut syscall) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
    let mut threads: Vec<ProcThread> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| {
            if !dir.read_task_record(tid, "stat", &mut stat) {
                return None;
            }
            let blocked = dir.read_task_record(tid, "syscall", &mut syscall);
            proc_thread(tid, &stat, blocked.then_some(&syscall[..]))
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    Some(threads)
}

/// One thread of `pid`; None when it is gone.
pub fn thread(pid: u32, tid: u32) -> Option<ProcThread> {
    let dir = proc_root()
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string());
    let stat = read_record(dir.join("stat")).ok()?;
    let syscall = read_record(dir.join("syscall")).ok();
    proc_thread(tid, &stat, syscall.as_deref())
}

/// A thread from its `stat` and `syscall` files; None when the stat line is malformed.
fn proc_thread(tid: u32, stat: &[u8], syscall: Option<&[u8]>) -> Option<ProcThread> {
    let (comm, state) = parse_stat_bytes(stat)?;
    let text = syscall.map(String::from_utf8_lossy);
    let (syscall, registers) = text.as_deref().map_or((None, None), parse_syscall_line);
    Some(ProcThread {
        tid,
        comm,
        state,
        syscall,
        registers,
    })
}

/// `/proc/PID/task/TID/NAME`.
fn task_file(pid: u32, tid: u32, name: &str) -> PathBuf {
    proc_root()
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string())
        .join(name)
}

/// The name of thread `tid` of `pid`, if it still exists.
pub fn comm(pid: u32, tid: u32) -> Option<String> {
    read(task_file(pid, tid, "comm")).map(|s| s.trim_end_matches('\n').to_string())
}

/// The scheduler state letter of thread `tid` of `pid`.
pub fn state(pid: u32, tid: u32) -> Option<char> {
    let stat = read_record(task_file(pid, tid, "stat")).ok()?;
    parse_stat_bytes(&stat).map(|(_, state)| state)
}

/// Whether process `pid` is gone or on its way out: its main thread a zombie or dead, exiting
/// (`PF_EXITING`), or with SIGKILL pending, which the kernel puts on every thread of a process
/// that is killed or calls `exit_group` before any of them leaves.
pub fn exiting(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let (Some(stat), Some(status)) = (
        read(task_file(pid, pid, "stat")),
        read(task_file(pid, pid, "status")),
    ) else {
        return true;
    };
    let state = stat_field(&stat, 3).unwrap_or("X");
    let flags: u64 = stat_field(&stat, 9)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    let sigkill_pending = status
        .lines()
        .find_map(|l| l.strip_prefix("SigPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0);
    matches!(state, "Z" | "X") || flags & PF_EXITING != 0 || sigkill_pending
}

/// How process `pid` ended, read from its `/proc/PID/stat` while it is a zombie (field 52,
/// `exit_code`, a wait status); [`Exit::Unknown`](crate::tracker::Exit::Unknown) once its parent
/// has reaped it.
pub fn exit(pid: u32) -> crate::tracker::Exit {
    read(proc_root().join(pid.to_string()).join("stat"))
        .and_then(|stat| parse_exit_code(&stat))
        .map_or(
            crate::tracker::Exit::Unknown,
            crate::tracker::Exit::from_wait_status,
        )
}

/// Field 52 of a zombie's stat line; None for a live process (whose field is 0 and means
/// nothing yet) or a short line.
pub fn parse_exit_code(stat: &str) -> Option<i32> {
    if stat_field(stat, 3)? != "Z" {
        return None;
    }
    stat_field(stat, 52)?.parse().ok()
}

/// Field `n` (numbered from 1 as in proc(5); 3, the state, or later) of a `/proc/.../stat` line,
/// counted after the parenthesized name, which may itself hold spaces and parentheses.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n.checked_sub(3)?)
}

/// `/proc/.../stat`: "TID (COMM) S ...". The name may itself contain spaces and parentheses, so
/// it runs from the first '(' to the last ')'.
pub fn parse_stat(stat: &str) -> Option<(String, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

/// [`parse_stat`] of the bytes as read: only the name is [`decode`]d, not the whole line.
pub fn parse_stat_bytes(stat: &[u8]) -> Option<(String, char)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let comm = decode(stat.get(open + 1..close)?);
    let state = *stat.get(close + 1..)?.trim_ascii_start().first()?;
    // The kernel writes a letter; anything else is no stat line.
    state.is_ascii().then(|| (comm, char::from(state)))
}

/// `/proc/.../syscall`: "NR ARG1 .. ARG6 SP PC" for a thread blocked in a syscall, "-1 SP PC"
/// for one blocked elsewhere, "running" for one on a CPU.
pub fn parse_syscall(text: &str) -> Option<(i64, [u64; 6])> {
    parse_syscall_line(text).0
}

/// The SP and PC of a blocked thread from `/proc/PID/task/TID/syscall`: "NR ARGS.. SP PC" in a
/// syscall, "-1 SP PC" blocked elsewhere, "running" on a CPU (its registers change under us).
pub fn parse_registers(text: &str) -> Result<(u64, u64), String> {
    if text.split_whitespace().next() == Some("running") {
        return Err("the thread is running on a CPU: its registers cannot be read".to_owned());
    }
    parse_syscall_line(text)
        .1
        .ok_or_else(|| format!("unreadable registers {:?}", text.trim()))
}

/// Both of [`parse_syscall`] and [`parse_registers`] (without the reason) in one pass over a
/// `syscall` line: the call and its arguments (the first seven fields), and the SP and PC (the
/// last two of three or more).
pub fn parse_syscall_line(text: &str) -> (Option<Syscall>, Option<Registers>) {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let mut first = [""; 7];
    let (mut count, mut before_last, mut last) = (0, "", "");
    for field in text.split_whitespace() {
        if let Some(slot) = first.get_mut(count) {
            *slot = field;
        }
        (before_last, last) = (last, field);
        count += 1;
    }
    let registers = if count >= 3 {
        hex(before_last).zip(hex(last))
    } else {
        None
    };
    let call = || {
        let nr: i64 = first[0].parse().ok()?;
        if nr < 0 || count < 7 {
            return None;
        }
        let mut args = [0u64; 6];
        for (arg, field) in args.iter_mut().zip(&first[1..]) {
            *arg = hex(field)?;
        }
        Some((nr, args))
    };
    (call(), registers)
}

/// The word for a scheduler state letter, as reports print it.
pub fn state_word(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "uninterruptible",
        'T' | 't' => "stopped",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_says_how_it_ended() {
        use crate::tracker::Exit;
        let fields = |state: &str, code: i32| {
            let mut f: Vec<String> = (4..=51).map(|n| n.to_string()).collect();
            f.push(code.to_string());
            format!("42 (a) b) {state} {}", f.join(" "))
        };
        assert_eq!(parse_exit_code(&fields("Z", 9)), Some(9));
        assert_eq!(parse_exit_code(&fields("S", 0)), None, "alive");
        assert_eq!(parse_exit_code("42 (x) Z 1 2"), None);
        assert_eq!(
            Exit::from_wait_status(9),
            Exit::Signal {
                signal: 9,
                core_dumped: false
            }
        );
        assert_eq!(
            Exit::from_wait_status(0x8b),
            Exit::Signal {
                signal: 11,
                core_dumped: true
            }
        );
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Status(3));
        assert_eq!(Exit::from_wait_status(0), Exit::Status(0));
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_byte_for_byte() {
        assert_eq!(decode(b"worker-1"), "worker-1");
        assert_eq!(decode(b"\xff\xfebad"), "\\xff\\xfebad");
        assert_eq!(
            decode(b"a\\xff"),
            "a\\\\xff",
            "a real backslash is told apart"
        );
        assert_eq!(decode("caf\u{e9}\u{202e}".as_bytes()), "caf\u{e9}\u{202e}");
        // A cut multi-byte character: its bytes, one by one.
        assert_eq!(decode(&"\u{e9}".as_bytes()[..1]), "\\xc3");
        let stat = decode(b"42 (\xffmain) S 1 42");
        assert_eq!(parse_stat(&stat), Some(("\\xffmain".to_string(), 'S')));
    }

    #[test]
    fn stat_with_hostile_names() {
        assert_eq!(
            parse_stat("42 (worker) S 1 2 3"),
            Some(("worker".into(), 'S'))
        );
        assert_eq!(
            parse_stat("42 (a) b) (c) R 1 2"),
            Some(("a) b) (c".into(), 'R'))
        );
        assert_eq!(parse_stat("42 () D 1"), Some((String::new(), 'D')));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("42 (x)"), None);
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(
            parse_syscall("0 0x3 0x7ffc1 0x1 0x0 0x0 0x0 0x7ffc0 0x7f12\n"),
            Some((0, [3, 0x7ffc1, 1, 0, 0, 0]))
        );
        assert_eq!(
            parse_syscall("202 0x55 0x80 0x0 0x0 0x0 0x0 0x1 0x2"),
            Some((202, [0x55, 0x80, 0, 0, 0, 0]))
        );
        assert_eq!(parse_syscall("-1 0x7ffc0 0x7f12"), None);
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(parse_syscall("0 0x3"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn stat_bytes_say_what_the_decoded_line_says() {
        for line in [
            &b"42 (worker) S 1 2 3"[..],
            b"42 (a) b) (c) R 1 2",
            b"42 () D 1",
            b"42 (\xffmain\\) S 1 42",
            b"42 (x)  T 1",
        ] {
            assert_eq!(
                parse_stat_bytes(line),
                parse_stat(&decode(line)),
                "{}",
                decode(line)
            );
        }
        for bad in [&b"garbage"[..], b"42 (x)", b"42 (x) \xe9 1"] {
            assert_eq!(parse_stat_bytes(bad), None, "{}", decode(bad));
        }
    }

    #[test]
    fn one_pass_over_a_syscall_line_reads_the_call_and_the_registers() {
        let lines = [
            "202 0x55 0x89 0x0 0x0 0x0 0xffffffff 0x7ffc0 0x7f12\n",
            "-1 0x7ffc0 0x7f12\n",
            "running\n",
            "0 0x3",
            "0 0x3 0x7ffc1 0x1 0x0 0x0 0x0",
            "",
            "7 zz 0x1 0x2",
        ];
        for line in lines {
            assert_eq!(
                parse_syscall_line(line),
                (parse_syscall(line), parse_registers(line).ok()),
                "{line:?}"
            );
        }
        assert_eq!(
            parse_syscall_line(lines[0]),
            (
                Some((202, [0x55, 0x89, 0, 0, 0, 0xffff_ffff])),
                Some((0x7ffc0, 0x7f12))
            )
        );
        assert_eq!(
            parse_syscall_line(lines[1]),
            (None, Some((0x7ffc0, 0x7f12)))
        );
        assert_eq!(
            parse_registers("running\n").unwrap_err(),
            "the thread is running on a CPU: its registers cannot be read"
        );
        assert_eq!(
            parse_registers("7 zz").unwrap_err(),
            "unreadable registers \"7 zz\""
        );
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        let own = threads(pid).expect("own process");
        assert!(own.iter().any(|t| t.tid == pid));
        assert_eq!(threads(u32::MAX), None);
        assert_eq!(state_word('S'), "sleeping");
    }
}
