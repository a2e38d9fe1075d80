//! Gathering the facts the diagnosis decides on, from outside the target: /proc (states, wait
//! channels, descriptors, sockets), its memory (mutex owners, requested sleeps), and its stacks.
//! Everything degrades: a fact that cannot be had is left out, never an error.

use std::collections::HashMap;

use crate::diagnosis::diagnose::{self, Cause, Facts, Futex};
use crate::diagnosis::memory;
use crate::diagnosis::stack::{Stack, StackReader};
use crate::tracker::{Blocked, Outcome, ThreadReport, Update};
use crate::{procfs, syscalls};

/// One thread's diagnosis.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub tid: u32,
    pub cause: Cause,
    /// One line: what was seen.
    pub evidence: String,
    /// One line: the change that fixes it.
    pub hint: String,
    /// The structured evidence, for `--json`.
    pub details: serde_json::Value,
    pub stack: Option<Stack>,
}

/// Diagnoses the threads of `update` worth explaining: every thread that did not arrive, and for
/// an update that quiesced, the last thread to arrive (the one that set the time).
pub fn diagnose(pid: u32, update: &Update, earlier_updates: u64) -> Vec<Diagnosis> {
    let mut targets: Vec<(&ThreadReport, Option<Blocked>)> = update
        .threads
        .iter()
        .filter(|t| t.arrival_ns.is_none())
        .map(|t| (t, t.blocked))
        .collect();
    // Threads of a process that has exited are gone: there is nothing to explain.
    if matches!(update.outcome, Outcome::Exited(_)) {
        return Vec::new();
    }
    if update.outcome == Outcome::Quiesced
        && let Some(last) = update
            .threads
            .iter()
            .filter(|t| t.arrival_ns.is_some())
            .max_by_key(|t| t.arrival_ns)
    {
        // What it was in at the request, before it was woken and arrived.
        let first = last
            .calls
            .first()
            .filter(|c| c.start_ns.is_none_or(|s| s <= update.request_ns));
        let blocked = first.map(|c| Blocked {
            nr: c.nr,
            args: c.args,
            since_ns: c.start_ns,
        });
        targets.push((last, blocked));
    }
    if targets.is_empty() {
        return Vec::new();
    }
    let mut reader = StackReader::new(pid);
    let comms: HashMap<u32, &str> = update
        .threads
        .iter()
        .map(|t| (t.tid, t.comm.as_str()))
        .collect();
    let parked: Vec<u32> = update
        .threads
        .iter()
        .filter(|t| t.arrival_ns.is_some())
        .map(|t| t.tid)
        .collect();
    targets
        .into_iter()
        .map(|(thread, blocked)| {
            let missing = thread.arrival_ns.is_none();
            let stack = (missing && blocked.is_some()).then(|| {
                settle(pid, thread.tid);
                reader.stack(thread.tid)
            });
            let facts = facts(
                pid,
                thread,
                blocked,
                earlier_updates,
                stack.as_ref(),
                &reader,
                &comms,
                &parked,
            );
            let cause = diagnose::classify(&facts);
            Diagnosis {
                tid: thread.tid,
                cause,
                evidence: diagnose::evidence(cause, &facts),
                hint: diagnose::hint(cause, &facts),
                details: details(&facts),
                stack,
            }
        })
        .collect()
}

/// Waits a little (at most 50 ms) for a blocked thread that is momentarily on a CPU, typically
/// running the update signal's handler after one of the runtime's interruptions, to be back in
/// its call: only then are its registers, and so its stack, readable.
fn settle(pid: u32, tid: u32) {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    for _ in 0..50 {
        match std::fs::read_to_string(&path) {
            Ok(text) if text.starts_with("running") => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            _ => return,
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each argument a different source"
)]
fn facts(
    pid: u32,
    thread: &ThreadReport,
    blocked: Option<Blocked>,
    earlier_updates: u64,
    stack: Option<&Stack>,
    reader: &StackReader,
    comms: &HashMap<u32, &str>,
    parked: &[u32],
) -> Facts {
    let missing = thread.arrival_ns.is_none();
    let task = format!("/proc/{pid}/task/{}", thread.tid);
    let state = if missing {
        procfs::state(pid, thread.tid)
    } else {
        Some('S')
    };
    let wchan = std::fs::read_to_string(format!("{task}/wchan"))
        .ok()
        .map(|w| w.trim().to_string());
    let call = blocked.and_then(|b| syscalls::by_number(b.nr).map(|c| (b, c)));
    let futex = call.filter(|(_, c)| c.name == "futex").map(|(b, _)| {
        let uaddr = b.args[0];
        let symbol = reader.data_symbol(uaddr).map(|(name, offset)| {
            if offset == 0 {
                name
            } else {
                format!("{name}+{offset}")
            }
        });
        // glibc's pthread_mutex_t: the futex word first, the owner's tid 8 bytes in.
        let owner_tid =
            memory::read_u32(pid, uaddr + 8).filter(|t| *t != 0 && comms.contains_key(t));
        Futex {
            symbol,
            owner_tid,
            owner_comm: owner_tid.and_then(|t| comms.get(&t).map(|c| c.to_string())),
            owner_parked: owner_tid.is_some_and(|t| parked.contains(&t)),
        }
    });
    let fd = call
        .filter(|(_, c)| matches!(c.args.first(), Some(&"fd" | &"epfd")))
        .and_then(|(b, _)| describe_fd(pid, b.args[0] as i32));
    let sleep_ns = call.and_then(|(b, c)| match c.name {
        "nanosleep" => memory::read_timespec(pid, b.args[0]),
        "clock_nanosleep" => memory::read_timespec(pid, b.args[2]),
        _ => None,
    });
    Facts {
        state,
        wchan,
        blocked,
        calls: thread.calls.clone(),
        participating: thread.participating,
        ever_arrived: thread.ever_arrived,
        participation_known: thread.runtime_knows.is_some(),
        earlier_updates,
        stack_functions: stack
            .map(|s| s.frames.iter().filter_map(|f| f.function.clone()).collect())
            .unwrap_or_default(),
        futex,
        fd,
        sleep_ns: sleep_ns.map(|d| d.as_nanos() as u64),
    }
}

fn details(f: &Facts) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(b) = f.blocked {
        map.insert("syscall".into(), syscalls::name(b.nr).into());
        map.insert("args".into(), syscalls::shown_args(b.nr, &b.args).into());
    }
    if let Some(fd) = &f.fd {
        map.insert("fd".into(), fd.clone().into());
    }
    if let Some(x) = &f.futex {
        map.insert("futex_symbol".into(), x.symbol.clone().into());
        map.insert("owner_tid".into(), x.owner_tid.into());
        map.insert("owner_parked".into(), x.owner_parked.into());
    }
    if let Some(ns) = f.sleep_ns {
        map.insert("sleep_requested_ns".into(), ns.into());
    }
    if f.state == Some('D') {
        map.insert("wchan".into(), f.wchan.clone().into());
    }
    let restarts = f.calls.iter().filter(|c| c.restarted()).count();
    if restarts > 0 {
        map.insert("restarts".into(), restarts.into());
    }
    serde_json::Value::Object(map)
}

/// What descriptor `fd` of `pid` is: "TCP 127.0.0.1:5555 LISTEN", "pipe", "epoll instance",
/// "file /var/log/x".
pub fn describe_fd(pid: u32, fd: i32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let target = target.to_string_lossy();
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        return Some(socket(pid, inode).unwrap_or_else(|| "socket".to_string()));
    }
    Some(match target.as_ref() {
        t if t.starts_with("pipe:") => "pipe".to_string(),
        "anon_inode:[eventpoll]" => "epoll instance".to_string(),
        "anon_inode:[eventfd]" => "eventfd".to_string(),
        t if t.starts_with("anon_inode:") => t.to_string(),
        t => format!("file {t}"),
    })
}

/// The socket with `inode` in the target's network namespace.
fn socket(pid: u32, inode: &str) -> Option<String> {
    for (table, proto) in [
        ("tcp", "TCP"),
        ("tcp6", "TCP"),
        ("udp", "UDP"),
        ("udp6", "UDP"),
    ] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().nth(9) == Some(inode))
        {
            return parse_socket_line(proto, line);
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    unix.lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(6) == Some(inode))
        .map(|l| match l.split_whitespace().nth(7) {
            Some(path) => format!("unix socket {path}"),
            None => "unix socket".to_string(),
        })
}

/// A line of /proc/net/{tcp,udp}[6]: `sl local rem st ...` with hex addresses.
pub fn parse_socket_line(proto: &str, line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = parse_endpoint(fields.get(1)?)?;
    let remote = parse_endpoint(fields.get(2)?)?;
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    Some(match (proto, state) {
        ("TCP", 0x0a) => format!("TCP {local} LISTEN"),
        ("TCP", 0x01) => format!("TCP {local} -> {remote} ESTABLISHED"),
        ("TCP", s) => format!("TCP {local} -> {remote} state {s:#04x}"),
        (p, _) if remote.ends_with(":0") => format!("{p} {local}"),
        (p, _) => format!("{p} {local} -> {remote}"),
    })
}

/// `0100007F:1F90` (IPv4, little-endian words) or the 32-hex-digit IPv6 form, to `ip:port`.
fn parse_endpoint(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::from_be))
        .collect::<Result<_, _>>()
        .ok()?;
    match words.as_slice() {
        [v4] => Some(format!(
            "{}:{port}",
            std::net::Ipv4Addr::from(v4.to_be_bytes())
        )),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_lines() {
        let cases = [
            (
                "TCP",
                "   0: 0100007F:A0F0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0",
                "TCP 127.0.0.1:41200 LISTEN",
            ),
            (
                "TCP",
                "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 654321 1",
                "TCP 127.0.0.1:8080 -> 127.0.0.1:50000 ESTABLISHED",
            ),
            (
                "TCP",
                "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0 0 0 0 0 1",
                "TCP [::1]:8080 LISTEN",
            ),
            (
                "UDP",
                "   2: 00000000:0035 00000000:0000 07 0 0 0 0 0 42",
                "UDP 0.0.0.0:53",
            ),
        ];
        for (proto, line, shown) in cases {
            assert_eq!(
                parse_socket_line(proto, line).as_deref(),
                Some(shown),
                "{line}"
            );
        }
        assert_eq!(parse_socket_line("TCP", "garbage"), None);
    }

    #[test]
    fn descriptors_of_this_process() {
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        assert_eq!(
            describe_fd(pid, fd),
            Some(format!("TCP 127.0.0.1:{port} LISTEN"))
        );
        let (reader, _writer) = std::io::pipe().expect("pipe");
        assert_eq!(
            describe_fd(pid, std::os::fd::AsRawFd::as_raw_fd(&reader)).as_deref(),
            Some("pipe")
        );
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let text = describe_fd(pid, std::os::fd::AsRawFd::as_raw_fd(&file)).expect("file");
        assert!(text.starts_with("file /proc/"), "{text}");
        assert_eq!(describe_fd(pid, 99_999), None);
    }
}
