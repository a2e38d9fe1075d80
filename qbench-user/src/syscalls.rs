//! The blocking system calls the observer tracks (x86-64 numbers), how to name them and their
//! arguments, and what would end each one (classified by what would wake it).

/// What ends a blocking call when the update signal arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Returns EINTR after a signal handler runs, whatever SA_RESTART says
    /// (epoll_wait, poll, select, nanosleep, pause, sigsuspend, ...).
    SignalAlways,
    /// Returns EINTR only if the handler lacks SA_RESTART (read, accept, recv, connect, wait4).
    SignalUnlessRestart,
    /// A futex wait: pthread_cond_wait and pthread_mutex_lock resume waiting after a handler.
    Futex,
}

/// One tracked syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    pub nr: u32,
    pub name: &'static str,
    /// Names of the arguments worth showing, in order (a prefix of the six).
    pub args: &'static [&'static str],
    pub wake: Wake,
}

const fn sc(nr: u32, name: &'static str, args: &'static [&'static str], wake: Wake) -> Syscall {
    Syscall {
        nr,
        name,
        args,
        wake,
    }
}

use Wake::{Futex, SignalAlways as Always, SignalUnlessRestart as Restart};

/// Every tracked syscall, by number (x86-64), one a line as a table reads.
#[rustfmt::skip]
pub const TRACKED: &[Syscall] = &[
    sc(0, "read", &["fd", "buf", "count"], Restart),
    sc(1, "write", &["fd", "buf", "count"], Restart),
    sc(7, "poll", &["fds", "nfds", "timeout_ms"], Always),
    sc(17, "pread64", &["fd", "buf", "count", "offset"], Restart),
    sc(19, "readv", &["fd", "iov", "iovcnt"], Restart),
    sc(20, "writev", &["fd", "iov", "iovcnt"], Restart),
    sc(23, "select", &["nfds", "readfds", "writefds", "exceptfds", "timeout"], Always),
    sc(34, "pause", &[], Always),
    sc(35, "nanosleep", &["req", "rem"], Always),
    sc(42, "connect", &["fd", "addr", "addrlen"], Restart),
    sc(43, "accept", &["fd", "addr", "addrlen"], Restart),
    sc(44, "sendto", &["fd", "buf", "len", "flags"], Restart),
    sc(45, "recvfrom", &["fd", "buf", "len", "flags"], Restart),
    sc(46, "sendmsg", &["fd", "msg", "flags"], Restart),
    sc(47, "recvmsg", &["fd", "msg", "flags"], Restart),
    sc(61, "wait4", &["pid", "status", "options"], Restart),
    sc(128, "rt_sigtimedwait", &["set", "info", "timeout"], Always),
    sc(130, "rt_sigsuspend", &["mask"], Always),
    sc(202, "futex", &["uaddr", "op", "val", "timeout"], Futex),
    sc(230, "clock_nanosleep", &["clockid", "flags", "req"], Always),
    sc(232, "epoll_wait", &["epfd", "events", "maxevents", "timeout_ms"], Always),
    sc(247, "waitid", &["idtype", "id", "infop", "options"], Restart),
    sc(270, "pselect6", &["nfds", "readfds", "writefds", "exceptfds", "timeout"], Always),
    sc(271, "ppoll", &["fds", "nfds", "timeout", "sigmask"], Always),
    sc(281, "epoll_pwait", &["epfd", "events", "maxevents", "timeout_ms"], Always),
    sc(288, "accept4", &["fd", "addr", "addrlen", "flags"], Restart),
    sc(299, "recvmmsg", &["fd", "msgvec", "vlen", "flags"], Restart),
    sc(441, "epoll_pwait2", &["epfd", "events", "maxevents", "timeout"], Always),
    sc(449, "futex_waitv", &["waiters", "nr_futexes", "flags"], Futex),
];

/// rt_sigreturn: not a blocking call, but its exit tells whether the call a signal interrupted
/// is restarted by the kernel (it returns that call's number) or returns EINTR (it returns -4).
pub const RT_SIGRETURN: i64 = qbench_common::runtime::RT_SIGRETURN;

/// The tracked syscall with number `nr`.
pub fn by_number(nr: i64) -> Option<&'static Syscall> {
    TRACKED.iter().find(|s| i64::from(s.nr) == nr)
}

/// The numbers to put in the kernel's tracking table.
pub fn tracked_numbers() -> Vec<u32> {
    let mut numbers: Vec<u32> = TRACKED.iter().map(|s| s.nr).collect();
    numbers.push(RT_SIGRETURN as u32);
    numbers
}

/// A syscall's name, or `syscall_NR` for one not in the table.
pub fn name(nr: i64) -> String {
    by_number(nr).map_or_else(|| format!("syscall_{nr}"), |s| s.name.to_string())
}

/// The arguments worth showing, as raw numbers (what `--json` prints).
pub fn shown_args(nr: i64, args: &[u64; 6]) -> Vec<u64> {
    let count = by_number(nr).map_or(3, |s| s.args.len());
    args[..count].to_vec()
}

/// `read(fd=3, buf=0x7ffd5c1e, count=1)`-style text for people.
pub fn describe(nr: i64, args: &[u64; 6]) -> String {
    let Some(call) = by_number(nr) else {
        return format!(
            "syscall_{nr}({:#x}, {:#x}, {:#x})",
            args[0], args[1], args[2]
        );
    };
    let shown: Vec<String> = call
        .args
        .iter()
        .zip(args)
        .map(|(&name, &value)| format!("{name}={}", arg_text(call, name, value)))
        .collect();
    format!("{}({})", call.name, shown.join(", "))
}

fn arg_text(call: &Syscall, name: &str, value: u64) -> String {
    match name {
        "fd" | "epfd" | "nfds" | "count" | "len" | "maxevents" | "iovcnt" | "vlen"
        | "nr_futexes" | "clockid" | "idtype" | "addrlen" | "val" | "flags" | "options"
        | "offset" => (value as i64).to_string(),
        "timeout_ms" => (value as i32).to_string(),
        "op" if call.nr == 202 => futex_op(value),
        "pid" | "id" => (value as i32).to_string(),
        _ if value == 0 => "NULL".to_string(),
        _ => format!("{value:#x}"),
    }
}

/// `FUTEX_WAIT_BITSET_PRIVATE`-style name of a futex operation.
pub fn futex_op(op: u64) -> String {
    const PRIVATE: u64 = 128;
    const CLOCK_REALTIME: u64 = 256;
    let base = match op & !(PRIVATE | CLOCK_REALTIME) {
        0 => "FUTEX_WAIT",
        1 => "FUTEX_WAKE",
        5 => "FUTEX_WAKE_OP",
        6 => "FUTEX_LOCK_PI",
        9 => "FUTEX_WAIT_BITSET",
        11 => "FUTEX_WAIT_REQUEUE_PI",
        13 => "FUTEX_LOCK_PI2",
        other => return format!("{other:#x}"),
    };
    let mut text = base.to_string();
    if op & PRIVATE != 0 {
        text.push_str("_PRIVATE");
    }
    if op & CLOCK_REALTIME != 0 {
        text.push_str("|FUTEX_CLOCK_REALTIME");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_fits_the_kernel_table() {
        for pair in TRACKED.windows(2) {
            assert!(pair[0].nr < pair[1].nr, "{pair:?}");
        }
        assert!(TRACKED.iter().all(|s| s.nr < qbench_common::MAX_SYSCALLS));
        assert!(TRACKED.iter().all(|s| s.args.len() <= 6));
    }

    #[test]
    fn descriptions() {
        let cases: &[(i64, [u64; 6], &str)] = &[
            (
                0,
                [3, 0x7ffd_0000, 1, 0, 0, 0],
                "read(fd=3, buf=0x7ffd0000, count=1)",
            ),
            (43, [5, 0, 0, 0, 0, 0], "accept(fd=5, addr=NULL, addrlen=0)"),
            (
                202,
                [0x5555_1000, 393, 0, 0, 0, 0],
                "futex(uaddr=0x55551000, op=FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, val=0, timeout=NULL)",
            ),
            (
                232,
                [4, 0x10, 1, u32::MAX as u64, 0, 0],
                "epoll_wait(epfd=4, events=0x10, maxevents=1, timeout_ms=-1)",
            ),
            (34, [0; 6], "pause()"),
            (999, [1, 2, 3, 0, 0, 0], "syscall_999(0x1, 0x2, 0x3)"),
        ];
        for (nr, args, want) in cases {
            assert_eq!(describe(*nr, args), *want);
        }
    }

    #[test]
    fn futex_ops() {
        assert_eq!(futex_op(128), "FUTEX_WAIT_PRIVATE");
        assert_eq!(futex_op(0), "FUTEX_WAIT");
        assert_eq!(futex_op(137), "FUTEX_WAIT_BITSET_PRIVATE");
        assert_eq!(futex_op(42), "0x2a");
    }

    #[test]
    fn shown_args_follow_the_table() {
        assert_eq!(shown_args(0, &[3, 4, 5, 6, 7, 8]), vec![3, 4, 5]);
        assert_eq!(shown_args(34, &[3, 4, 5, 6, 7, 8]), Vec::<u64>::new());
        assert_eq!(shown_args(999, &[3, 4, 5, 6, 7, 8]), vec![3, 4, 5]);
        assert_eq!(name(232), "epoll_wait");
        assert_eq!(name(1000), "syscall_1000");
    }
}
