//! Gathering the facts the diagnosis decides on, from outside the target: /proc (states, wait
//! channels, descriptors, sockets), its memory (mutex owners, requested sleeps), and its stacks.
//! Everything degrades: a fact that cannot be had is left out, never an error.

use std::collections::{HashMap, HashSet};

use crate::diagnosis::diagnose::{self, Cause, Facts, FrameFact, Futex};
use crate::diagnosis::sleep;
use crate::diagnosis::stack::{Stack, StackReader};
use crate::tracker::{Blocked, Outcome, ThreadReport, Update};
use crate::{procfs, syscalls};

/// One thread's diagnosis.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub tid: u32,
    /// None for a thread that arrived when nothing but the request held it.
    pub cause: Option<Cause>,
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
    // Threads of a process that has exited are gone: there is nothing to explain.
    if matches!(update.outcome, Outcome::Exited(_)) {
        return Vec::new();
    }
    let targets = worth_explaining(update);
    if targets.is_empty() {
        return Vec::new();
    }
    let mut reader = StackReader::new(pid);
    let comms: HashMap<u32, &str> = update
        .threads
        .iter()
        .map(|t| (t.tid, t.comm.as_str()))
        .collect();
    let parked: HashSet<u32> = update
        .threads
        .iter()
        .filter(|t| t.arrival_ns.is_some())
        .map(|t| t.tid)
        .collect();
    // Read once per report, whatever the number of threads: sockets are looked up by inode in
    // the target's network tables.
    let mut sockets = SocketTables::default();
    targets
        .into_iter()
        .map(|(thread, blocked)| {
            let missing = thread.arrival_ns.is_none();
            let stack = stack_of(pid, &mut reader, thread.tid, missing, blocked);
            let seen = Seen {
                reader: &reader,
                comms: &comms,
                parked: &parked,
            };
            let facts = facts(
                pid,
                thread,
                blocked,
                earlier_updates,
                Some(&stack),
                &seen,
                &mut sockets,
            );
            let facts = Facts {
                arrived_after_ns: thread
                    .arrival_ns
                    .map(|a| a.saturating_sub(update.request_ns)),
                ..facts
            };
            let (cause, evidence, hint) = diagnose::explain(&facts);
            Diagnosis {
                tid: thread.tid,
                cause,
                evidence,
                hint,
                details: details(&facts, cause),
                stack: Some(stack),
            }
        })
        .collect()
}

/// The threads of `update` to diagnose, each with what it was blocked in: the missing ones, and
/// for an update that quiesced, the last to arrive with the call it was in at the request.
fn worth_explaining(update: &Update) -> Vec<(&ThreadReport, Option<Blocked>)> {
    let mut targets: Vec<(&ThreadReport, Option<Blocked>)> = update
        .threads
        .iter()
        .filter(|t| t.arrival_ns.is_none())
        .map(|t| (t, t.blocked))
        .collect();
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
    targets
}

/// The user stack of a missing thread blocked in a call; for any other, an empty stack whose
/// note says why it was not read.
fn stack_of(
    pid: u32,
    reader: &mut StackReader,
    tid: u32,
    missing: bool,
    blocked: Option<Blocked>,
) -> Stack {
    let Some(blocked) = blocked.filter(|_| missing) else {
        return Stack {
            frames: Vec::new(),
            degraded: Some(diagnose::stack_not_read(!missing).to_string()),
        };
    };
    let syscall = settle(pid, tid);
    if let Ok(text) = &syscall
        && let Some(note) = moved_on(&blocked, text)
    {
        return Stack {
            frames: Vec::new(),
            degraded: Some(note),
        };
    }
    reader.stack_from(tid, syscall)
}

/// Why the stack of a thread diagnosed `blocked` is not shown, when its
/// `/proc/PID/task/TID/syscall` (`text`, read when the stack would be) says it is in another
/// call by then: that stack would be of the later call, not of the wait the diagnosis is about.
fn moved_on(blocked: &Blocked, text: &str) -> Option<String> {
    // On a CPU still: the registers are not readable, which the stack reader says itself.
    if text.starts_with("running") {
        return None;
    }
    let is = left_call(blocked, 0, "descriptor or word", text)?;
    let was = syscalls::name(blocked.nr);
    Some(format!(
        "not read: when it could be read the thread had left {was} and was {is}, so its stack would not be this wait's"
    ))
}

/// Where a thread diagnosed in call `blocked` is by the time its syscall file reads `text`, if
/// that is not the same call with the same argument `arg` (`what` the argument is): "running on
/// a CPU", "in CALL", "in CALL with another WHAT (0x…)", "in no call". None while it still is.
pub(super) fn left_call(blocked: &Blocked, arg: usize, what: &str, text: &str) -> Option<String> {
    let now = procfs::parse_syscall(text);
    if now.is_some_and(|(nr, args)| nr == blocked.nr && args[arg] == blocked.args[arg]) {
        return None;
    }
    Some(match now {
        _ if text.starts_with("running") => "running on a CPU".to_string(),
        Some((nr, args)) if nr == blocked.nr => {
            format!(
                "in {} with another {what} ({:#x})",
                syscalls::name(nr),
                args[arg]
            )
        }
        Some((nr, _)) => format!("in {}", syscalls::name(nr)),
        None => "in no call".to_string(),
    })
}

/// Waits a little (at most 50 ms) for a blocked thread that is momentarily on a CPU, typically
/// running the update signal's handler after one of the runtime's interruptions, to be back in
/// its call: only then are its registers, and so its stack, readable. Returns the last reading
/// of its `/proc/PID/task/TID/syscall`, the registers the stack is read from.
pub(super) fn settle(pid: u32, tid: u32) -> std::io::Result<String> {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let mut tries = 0;
    loop {
        let text =
            procfs::read_record(&path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        tries += 1;
        match text {
            Ok(text) if text.starts_with("running") && tries <= 50 => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            text => return text,
        }
    }
}

/// What is known of the whole process, shared by the facts of every thread.
struct Seen<'a> {
    reader: &'a StackReader,
    comms: &'a HashMap<u32, &'a str>,
    parked: &'a HashSet<u32>,
}

fn facts(
    pid: u32,
    thread: &ThreadReport,
    blocked: Option<Blocked>,
    earlier_updates: u64,
    stack: Option<&Stack>,
    seen: &Seen<'_>,
    sockets: &mut SocketTables,
) -> Facts {
    let memory = seen.reader.memory();
    let missing = thread.arrival_ns.is_none();
    let task = format!("/proc/{pid}/task/{}", thread.tid);
    let state = if missing {
        procfs::state(pid, thread.tid)
    } else {
        Some('S')
    };
    // Only a thread in uninterruptible sleep is explained by its wait channel.
    let wchan = (state == Some('D'))
        .then(|| std::fs::read_to_string(format!("{task}/wchan")).ok())
        .flatten()
        .map(|w| w.trim().to_string());
    let call = blocked.and_then(|b| syscalls::by_number(b.nr).map(|c| (b, c)));
    let futex = call
        .filter(|(_, c)| c.name == "futex")
        .map(|(b, _)| futex_facts(b.args[0], seen));
    let fd = call
        .filter(|(_, c)| matches!(c.args.first(), Some(&"fd" | &"epfd")))
        .and_then(|(b, _)| describe(pid, b.args[0] as i32, sockets));
    let (sleep_ns, sleep_note) =
        match blocked.map(|b| sleep::requested(pid, thread.tid, memory, &b)) {
            Some(Ok(asked)) => (asked, None),
            Some(Err(note)) => (None, Some(note)),
            None => (None, None),
        };
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
        frames: stack.map(frame_facts).unwrap_or_default(),
        futex,
        fd,
        sleep_ns: sleep_ns.map(|d| d.as_nanos() as u64),
        sleep_note,
        arrived_after_ns: None,
    }
}

/// The futex at `uaddr`: the data symbol it lies in and, read as glibc's `pthread_mutex_t` (the
/// futex word first, the owner's tid 8 bytes in), the thread holding it.
fn futex_facts(uaddr: u64, seen: &Seen<'_>) -> Futex {
    let symbol = seen.reader.data_symbol(uaddr).map(|(name, offset)| {
        if offset == 0 {
            name
        } else {
            format!("{name}+{offset}")
        }
    });
    let owner_tid = seen
        .reader
        .memory()
        .and_then(|m| m.read_u32(uaddr + 8))
        .filter(|t| *t != 0 && seen.comms.contains_key(t));
    Futex {
        symbol,
        owner_tid,
        owner_comm: owner_tid.and_then(|t| seen.comms.get(&t).map(|c| c.to_string())),
        owner_parked: owner_tid.is_some_and(|t| seen.parked.contains(&t)),
    }
}

/// The frames of `stack` as the diagnosis reads them.
fn frame_facts(stack: &Stack) -> Vec<FrameFact> {
    stack
        .frames
        .iter()
        .map(|f| FrameFact {
            function: f.function.clone(),
            object: f.object.clone(),
        })
        .collect()
}

fn details(f: &Facts, cause: Option<Cause>) -> serde_json::Value {
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
    if let Some(note) = &f.sleep_note {
        map.insert("sleep_requested_note".into(), note.clone().into());
    }
    if f.state == Some('D') {
        map.insert("wchan".into(), f.wchan.clone().into());
    }
    let restarts = f.calls.iter().filter(|c| c.restarted()).count();
    if restarts > 0 {
        map.insert("restarts".into(), restarts.into());
    }
    let retries = diagnose::eintr_retries(f);
    if retries > 0 {
        map.insert("retries".into(), retries.into());
    }
    if cause == Some(Cause::EintrRetried) {
        map.insert(
            "retry_loop".into(),
            diagnose::loop_frame(&f.frames).map(str::to_string).into(),
        );
    }
    if let Some(wait) = diagnose::runtime_wait(f) {
        map.insert("runtime_wait".into(), wait.into());
    }
    serde_json::Value::Object(map)
}

/// What descriptor `fd` of `pid` is: "TCP 127.0.0.1:5555 LISTEN", "pipe", "epoll instance",
/// "file /var/log/x".
pub fn describe_fd(pid: u32, fd: i32) -> Option<String> {
    describe(pid, fd, &mut SocketTables::default())
}

/// [`describe_fd`], with the network tables read at most once for many descriptors.
fn describe(pid: u32, fd: i32, sockets: &mut SocketTables) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let target = target.to_string_lossy();
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        return Some(
            sockets
                .describe(pid, inode)
                .unwrap_or_else(|| "socket".to_string()),
        );
    }
    Some(match target.as_ref() {
        t if t.starts_with("pipe:") => "pipe".to_string(),
        "anon_inode:[eventpoll]" => "epoll instance".to_string(),
        "anon_inode:[eventfd]" => "eventfd".to_string(),
        t if t.starts_with("anon_inode:") => t.to_string(),
        t => format!("file {t}"),
    })
}

/// The network tables that name sockets, in the order they are searched.
const TABLES: [(&str, &str); 4] = [
    ("tcp", "TCP"),
    ("tcp6", "TCP"),
    ("udp", "UDP"),
    ("udp6", "UDP"),
];

/// The sockets of the target's network namespace by inode, read when a socket is first looked
/// up: the sockets of thousands of threads cost one read of each table, and a lookup each.
#[derive(Debug, Default)]
struct SocketTables {
    by_inode: Option<HashMap<String, Option<String>>>,
}

impl SocketTables {
    /// The socket with `inode`, as the first line that lists it says.
    fn describe(&mut self, pid: u32, inode: &str) -> Option<String> {
        self.by_inode
            .get_or_insert_with(|| read_tables(pid))
            .get(inode)
            .cloned()
            .flatten()
    }
}

/// Every socket of the TCP and UDP tables, then of the Unix one, by inode.
fn read_tables(pid: u32) -> HashMap<String, Option<String>> {
    let mut by_inode = HashMap::new();
    let read = |table: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default()
    };
    for (table, proto) in TABLES {
        for line in read(table).lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                by_inode
                    .entry(inode.to_owned())
                    .or_insert_with(|| parse_socket_line(proto, line));
            }
        }
    }
    for line in read("unix").lines().skip(1) {
        let mut fields = line.split_whitespace().skip(6);
        if let Some(inode) = fields.next() {
            let shown = match fields.next() {
                Some(path) => format!("unix socket {path}"),
                None => "unix socket".to_string(),
            };
            by_inode.entry(inode.to_owned()).or_insert(Some(shown));
        }
    }
    by_inode
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
    fn a_stack_read_after_the_thread_moved_on_is_not_shown() {
        // Diagnosed in clock_nanosleep (230); its syscall file read later for the stack.
        let blocked = Blocked {
            nr: 230,
            args: [1, 1, 0x7ffd_1000, 0, 0, 0],
            since_ns: Some(5),
        };
        let sleeping = "230 0x1 0x1 0x7ffd1000 0x0 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        assert_eq!(moved_on(&blocked, sleeping), None);
        let in_futex = "202 0x5000 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd0f00 0x7f0000005678";
        assert_eq!(
            moved_on(&blocked, in_futex).as_deref(),
            Some(
                "not read: when it could be read the thread had left clock_nanosleep and was in futex, so its stack would not be this wait's"
            )
        );
        // The same call on another descriptor or word is another wait too.
        let other_clock = "230 0x0 0x1 0x7ffd1000 0x0 0x0 0x0 0x7ffd0f00 0x7f0000001234";
        assert!(moved_on(&blocked, other_clock).is_some());
        assert!(
            moved_on(&blocked, "-1 0x7ffd0f00 0x7f0000001234")
                .is_some_and(|note| note.contains("was in no call"))
        );
        // On a CPU still: the registers are not readable, which the stack reader says itself.
        assert_eq!(moved_on(&blocked, "running"), None);
    }

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
