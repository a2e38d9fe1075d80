//! What /proc says about the target's threads: the seed of the thread table at attach (a thread
//! blocked since before attach emits no event), names, and scheduler states. Parsing is pure.

use std::path::PathBuf;

/// One thread as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcThread {
    pub tid: u32,
    pub comm: String,
    /// The scheduler state letter: R, S, D, T, Z, ...
    pub state: char,
    /// The syscall it is blocked in, with its arguments, if any.
    pub syscall: Option<(i64, [u64; 6])>,
}

/// The root of /proc (tests point it elsewhere).
fn proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// Every thread of process `pid`; None when the process does not exist.
pub fn threads(pid: u32) -> Option<Vec<ProcThread>> {
    let task = proc_root().join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(task).ok()?;
    let mut threads: Vec<ProcThread> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| thread(pid, tid))
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
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (comm, state) = parse_stat(&stat)?;
    let syscall = std::fs::read_to_string(dir.join("syscall"))
        .ok()
        .and_then(|s| parse_syscall(&s));
    Some(ProcThread {
        tid,
        comm,
        state,
        syscall,
    })
}

/// The name of thread `tid` of `pid`, if it still exists.
pub fn comm(pid: u32, tid: u32) -> Option<String> {
    let path = proc_root()
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string())
        .join("comm");
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// The scheduler state letter of thread `tid` of `pid`.
pub fn state(pid: u32, tid: u32) -> Option<char> {
    let path = proc_root()
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string())
        .join("stat");
    parse_stat(&std::fs::read_to_string(path).ok()?).map(|(_, state)| state)
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

/// `/proc/.../syscall`: "NR ARG1 .. ARG6 SP PC" for a thread blocked in a syscall, "-1 SP PC"
/// for one blocked elsewhere, "running" for one on a CPU.
pub fn parse_syscall(text: &str) -> Option<(i64, [u64; 6])> {
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for arg in &mut args {
        let field = fields.next()?;
        *arg = u64::from_str_radix(field.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
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
    fn this_process_is_readable() {
        let pid = std::process::id();
        let own = threads(pid).expect("own process");
        assert!(own.iter().any(|t| t.tid == pid));
        assert_eq!(threads(u32::MAX), None);
        assert_eq!(state_word('S'), "sleeping");
    }
}
