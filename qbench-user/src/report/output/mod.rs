//! Reports for people (libbpf-tools style: a summary line, one header row, fixed-width columns
//! with units in their names) and for machines (`--json`: one object per update).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::diagnosis::diagnose::{self, Cause};
use crate::diagnosis::evidence::Diagnosis;
use crate::diagnosis::stack::format_frame;
use crate::procfs;
use crate::syscalls;
use crate::tracker::{Exit, Outcome, RequestSeen, ThreadReport, Update};

/// What the I/O layer adds to a tracker's update: the process, losses, and thread states.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub pid: u32,
    /// Events lost (ring buffer full, thread table full, undecodable) since the previous report.
    pub lost_events: u64,
    /// The scheduler state letter of a thread, read when the update ended.
    pub state_of: &'a dyn Fn(u32) -> Option<char>,
    /// Why the missing (and the slowest) threads were late.
    pub diagnoses: &'a [Diagnosis],
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("pid", &self.pid)
            .field("lost_events", &self.lost_events)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize)]
struct UpdateJson<'a> {
    pid: u32,
    update: u64,
    outcome: &'static str,
    request_source: &'static str,
    runtime_seq: Option<u64>,
    request_ns: u64,
    first_arrival_ns: Option<u64>,
    last_arrival_ns: Option<u64>,
    quiescence_ns: Option<u64>,
    request_latency_ns: Option<u64>,
    /// From the signal's sending (`request_ns`) to the runtime's handler taking it up, whose
    /// time is the runtime's own request time; null when not seen or not a signal.
    signal_delivery_ns: Option<u64>,
    /// When the update ended: the last arrival, the runtime's release, or the timeout.
    end_ns: u64,
    lost_events: u64,
    /// For an update the target's exit ended: how it ended (null when unknown, absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<Option<serde_json::Value>>,
    threads: Vec<ThreadJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ThreadJson<'a> {
    tid: u32,
    comm: &'a str,
    arrival_ns: Option<u64>,
    /// Whether the runtime waits for it: as its exported state lists it when read, else false
    /// for a thread the runtime reached full quiescence without.
    participating: bool,
    state: String,
    blocked_in: Option<BlockedJson>,
    /// Why it was missing or last, for the threads that were.
    diagnosis: Option<DiagnosisJson>,
}

#[derive(Debug, Serialize)]
struct DiagnosisJson {
    /// Null for a thread that arrived when nothing but the request held it.
    cause: Option<&'static str>,
    evidence: String,
    hint: String,
    details: serde_json::Value,
    stack: Vec<FrameJson>,
    /// Why the stack is short, empty or unsymbolized; null when complete.
    stack_note: Option<String>,
}

#[derive(Debug, Serialize)]
struct FrameJson {
    address: String,
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    object: Option<String>,
}

fn diagnosis_json(d: &Diagnosis) -> DiagnosisJson {
    let stack = d.stack.as_ref();
    DiagnosisJson {
        cause: d.cause.map(Cause::code),
        evidence: d.evidence.clone(),
        hint: d.hint.clone(),
        details: d.details.clone(),
        stack: stack
            .map(|s| {
                s.frames
                    .iter()
                    .map(|f| FrameJson {
                        address: format!("{:#x}", f.address),
                        function: f.function.clone(),
                        file: f.file.clone(),
                        line: f.line,
                        object: f.object.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        stack_note: match stack {
            Some(s) if s.degraded.is_some() => s.degraded.clone(),
            Some(s) if !s.frames.is_empty() => None,
            _ => Some("no frame could be read".to_string()),
        },
    }
}

#[derive(Debug, Serialize)]
struct BlockedJson {
    syscall: String,
    args: Vec<u64>,
    /// When the call began; null when it began before qbench-trace attached. The runtime
    /// interrupts a straggler every few milliseconds, so this is its latest entry.
    since_ns: Option<u64>,
    /// When it first entered this syscall in the window: when the wait began.
    first_blocked_ns: Option<u64>,
    /// How many times it entered the syscall again since `first_blocked_ns`.
    reentries: usize,
}

fn blocked_json(t: &ThreadReport) -> Option<BlockedJson> {
    let b = t.blocked?;
    let span = diagnose::wait_span(&b, &t.calls);
    Some(BlockedJson {
        syscall: syscalls::name(b.nr),
        args: syscalls::shown_args(b.nr, &b.args),
        since_ns: b.since_ns,
        first_blocked_ns: span.first_blocked_ns,
        reentries: span.reentries,
    })
}

/// The outcome's code in JSON and in metrics labels.
pub fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Quiesced => "quiesced",
        Outcome::Dnq => "dnq",
        Outcome::Exited(_) => "exited",
        Outcome::Incomplete => "incomplete",
    }
}

/// How a process ended, for people: "exited with status 3", "was killed by SIGKILL".
pub fn exit_words(how: Exit) -> String {
    match how {
        Exit::Status(status) => format!("exited with status {status}"),
        Exit::Signal {
            signal,
            core_dumped,
        } => {
            let mut name = String::new();
            let _ = qbench_common::signals::describe(signal, &mut name);
            let core = if core_dumped { " (core dumped)" } else { "" };
            format!("was killed by {name}{core}")
        }
        Exit::Unknown => "exited (how is unknown: its parent reaped it first)".to_string(),
    }
}

/// `{"status": N}`, `{"signal": N, "core_dumped": B}`, or null when unknown.
fn exit_json(outcome: Outcome) -> Option<serde_json::Value> {
    match outcome {
        Outcome::Exited(Exit::Status(status)) => Some(serde_json::json!({ "status": status })),
        Outcome::Exited(Exit::Signal {
            signal,
            core_dumped,
        }) => Some(serde_json::json!({ "signal": signal, "core_dumped": core_dumped })),
        _ => None,
    }
}

fn source_word(seen: RequestSeen) -> &'static str {
    match seen {
        RequestSeen::Signal { .. } => "signal",
        RequestSeen::Runtime => "runtime",
        RequestSeen::Arrival => "arrival",
        RequestSeen::BeforeAttach => "before_attach",
    }
}

fn state(thread: &ThreadReport, ctx: &Context<'_>) -> String {
    if thread.arrival_ns.is_some() {
        return "arrived".to_string();
    }
    (ctx.state_of)(thread.tid)
        .map_or("exited", procfs::state_word)
        .to_string()
}

/// The update as one line of JSON (no trailing newline).
pub fn json(update: &Update, ctx: &Context<'_>) -> String {
    let diagnoses = first_by_tid(ctx.diagnoses.iter(), |d| d.tid);
    let threads = update
        .threads
        .iter()
        .map(|t| ThreadJson {
            tid: t.tid,
            comm: &t.comm,
            arrival_ns: t.arrival_ns,
            participating: t.participating,
            state: state(t, ctx),
            blocked_in: blocked_json(t),
            diagnosis: diagnoses.get(&t.tid).map(|d| diagnosis_json(d)),
        })
        .collect();
    let doc = UpdateJson {
        pid: ctx.pid,
        update: update.number,
        outcome: outcome_word(update.outcome),
        request_source: source_word(update.seen),
        runtime_seq: update.runtime_seq,
        request_ns: update.request_ns,
        first_arrival_ns: update.first_arrival_ns,
        last_arrival_ns: update.last_arrival_ns,
        quiescence_ns: update.quiescence_ns(),
        request_latency_ns: update.request_latency_ns(),
        signal_delivery_ns: update.signal_delivery_ns(),
        end_ns: update.end_ns,
        lost_events: ctx.lost_events,
        exit: matches!(update.outcome, Outcome::Exited(_)).then(|| exit_json(update.outcome)),
        threads,
    };
    serde_json::to_string(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// The first item of each tid.
fn first_by_tid<T>(items: impl Iterator<Item = T>, tid: impl Fn(&T) -> u32) -> HashMap<u32, T> {
    let mut by_tid = HashMap::new();
    for item in items {
        by_tid.entry(tid(&item)).or_insert(item);
    }
    by_tid
}

/// The update for a terminal: a summary line, a header row, one row per thread (missing ones
/// first), and a blank line.
pub fn human(update: &Update, ctx: &Context<'_>) -> String {
    let mut out = summary(update, ctx);
    let _ = writeln!(
        out,
        "{:>8} {:<16} {:<16} {:>11} {:<56} {:>10} {:>9} {:>10}",
        "TID", "COMM", "STATE", "ARRIVAL_US", "BLOCKED_IN", "FIRST_MS", "REENTRIES", "SINCE_MS"
    );
    for t in &update.threads {
        row(&mut out, t, update, ctx);
    }
    why(&mut out, update, ctx);
    out
}

/// How the request was seen, for the summary line.
fn request_words(update: &Update) -> String {
    match update.seen {
        RequestSeen::Signal {
            signal,
            sender_tgid,
        } => match update.signal_delivery_ns() {
            Some(ns) => format!(
                "signal {signal} from pid {sender_tgid}, delivered in {} us",
                micros(ns)
            ),
            None => format!("signal {signal} from pid {sender_tgid}"),
        },
        RequestSeen::Runtime => "requested inside the process".to_string(),
        RequestSeen::Arrival => "request not seen".to_string(),
        RequestSeen::BeforeAttach => "requested before attach (pending then)".to_string(),
    }
}

/// The summary line: the update, how it was requested, and how it ended.
fn summary(update: &Update, ctx: &Context<'_>) -> String {
    let source = request_words(update);
    // The participants: the threads the update waited for.
    let threads = update.threads.iter().filter(|t| t.participating).count();
    let after_ms = update.end_ns.saturating_sub(update.request_ns) as f64 / 1e6;
    let (number, pid, lost) = (update.number, ctx.pid, ctx.lost_events);
    let missing = update.missing().count();
    let how = match update.outcome {
        Outcome::Quiesced => format!(
            "quiesced, quiescence {} us, request latency {} us, {threads} threads, {lost} events lost",
            micros(update.quiescence_ns().unwrap_or(0)),
            micros(update.request_latency_ns().unwrap_or(0)),
        ),
        Outcome::Dnq => format!(
            "DID NOT QUIESCE after {after_ms:.1} ms, {missing} of {threads} threads missing, {lost} events lost"
        ),
        Outcome::Incomplete => format!(
            "INCOMPLETE, {lost} events lost: not seen to quiesce after {after_ms:.1} ms, {missing} of {threads} threads not seen arriving (no diagnosis: they may have arrived unseen)"
        ),
        Outcome::Exited(how) => format!(
            "the process {} {after_ms:.1} ms after the request, {threads} threads, {lost} events lost",
            exit_words(how),
        ),
    };
    format!("UPDATE {number} pid {pid} ({source}): {how}\n")
}

/// One thread's row of the table.
fn row(out: &mut String, t: &ThreadReport, update: &Update, ctx: &Context<'_>) {
    let arrival = t.arrival_ns.map_or("-".to_string(), |a| {
        format!("+{}", micros(a.saturating_sub(update.request_ns)))
    });
    let ago = |ns: Option<u64>| {
        ns.map_or("<attach".to_string(), |s| {
            format!("{:.1}", update.end_ns.saturating_sub(s) as f64 / 1e6)
        })
    };
    let (blocked, first, reentries, since) = match t.blocked {
        Some(b) => {
            let span = diagnose::wait_span(&b, &t.calls);
            (
                syscalls::describe(b.nr, &b.args),
                ago(span.first_blocked_ns),
                span.reentries.to_string(),
                ago(b.since_ns),
            )
        }
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    let _ = writeln!(
        out,
        "{:>8} {:<16} {:<16} {:>11} {:<56} {:>10} {:>9} {:>10}",
        t.tid,
        escape(&t.comm),
        state(t, ctx),
        arrival,
        blocked,
        first,
        reentries,
        since
    );
}

/// The diagnoses, one block per thread: cause, evidence, hint, and the stack.
fn why(out: &mut String, update: &Update, ctx: &Context<'_>) {
    // By tid: a DNQ of thousands of threads has thousands of diagnoses.
    let threads = first_by_tid(update.threads.iter(), |t| t.tid);
    for d in ctx.diagnoses {
        let thread = threads.get(&d.tid);
        let comm = thread.map_or("?", |t| t.comm.as_str());
        let late = if thread.is_some_and(|t| t.arrival_ns.is_some()) {
            "arrived last"
        } else {
            "missing"
        };
        let _ = writeln!(
            out,
            "WHY {} ({}), {late}: {}",
            d.tid,
            escape(comm),
            d.cause.map_or("no cause", Cause::code)
        );
        let _ = writeln!(out, "    evidence: {}", escape(&d.evidence));
        let _ = writeln!(out, "    fix:      {}", d.hint);
        if let Some(stack) = &d.stack {
            for (i, frame) in stack.frames.iter().enumerate() {
                let label = if i == 0 { "stack:" } else { "" };
                let _ = writeln!(out, "    {label:<9} {}", escape(&format_frame(frame)));
            }
            if let Some(note) = &stack.degraded {
                let _ = writeln!(out, "    (stack: {})", escape(note));
            }
        }
    }
}

/// Text from the target (thread names, paths) made safe for a terminal: control characters,
/// which could move the cursor or recolour the screen, are shown as `\xNN`, and the invisible
/// characters that reorder or hide text (bidirectional overrides and isolates such as U+202E,
/// zero-width marks) as `\u{NNNN}`. Backslashes come already doubled from /proc
/// ([`crate::procfs::decode`]), so an escape shown here is never a name's own text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else if reorders_or_hides(c) {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode format characters a terminal would obey rather than show: bidirectional marks,
/// embeddings, overrides and isolates, zero-width characters, and the byte-order mark.
fn reorders_or_hides(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests;
