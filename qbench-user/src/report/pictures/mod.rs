//! Pictures of update windows: Chrome trace-event JSON (`--trace-out`, opens in Perfetto UI and
//! chrome://tracing) and a static SVG timeline (`--svg`, for a bug report). Both are pure
//! functions of the tracker's updates; `write_files` is the only I/O.
//!
//! This folder: the Chrome trace here, the SVG timeline in `timeline`, each with its tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::syscalls;
use crate::tracker::{Call, Outcome, RequestSeen, Update};

mod timeline;

pub use timeline::{svg, xml_text};

/// The smallest stretch of time shown before a request.
const MIN_LEAD_NS: u64 = 1_000;

/// How much of the time before the request a picture shows: a tenth of the window.
fn lead_ns(update: &Update) -> u64 {
    (update.end_ns.saturating_sub(update.request_ns) / 10).max(MIN_LEAD_NS)
}

/// Where a picture of the update begins: just before the request.
fn view_start(update: &Update) -> u64 {
    update.request_ns.saturating_sub(lead_ns(update))
}

/// A call as drawn, within the window: it begins no earlier than `floor_ns`, and one that had not
/// returned when the update ended is drawn to the end as still blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start_ns: u64,
    end_ns: u64,
    /// It began before `floor_ns`, or before qbench-trace attached.
    clamped: bool,
    still_blocked: bool,
}

/// None for a call that began after the update ended (the tracker sees events until it notices
/// the timeout): it is no part of the window.
fn span(call: &Call, update: &Update, floor_ns: u64) -> Option<Span> {
    if call.start_ns.is_some_and(|s| s > update.end_ns) {
        return None;
    }
    let start = call.start_ns.filter(|&s| s >= floor_ns);
    let start_ns = start.unwrap_or(floor_ns);
    let returned = call.end_ns.filter(|&e| e <= update.end_ns);
    Some(Span {
        start_ns,
        end_ns: returned.unwrap_or(update.end_ns).max(start_ns),
        clamped: start.is_none(),
        still_blocked: returned.is_none(),
    })
}

/// `12.3 ms`-style text for a duration.
fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// "update 1: quiesced" / "update 2: DNQ".
fn update_label(update: &Update) -> String {
    match update.outcome {
        Outcome::Quiesced => format!("update {}: quiesced", update.number),
        Outcome::Dnq => format!("update {}: DNQ", update.number),
        Outcome::Exited(_) => format!("update {}: process exited", update.number),
        Outcome::Incomplete => format!("update {}: incomplete (events lost)", update.number),
    }
}

fn call_args(call: &Call, span: &Span, update: &Update) -> Value {
    let mut args = json!({
        "call": syscalls::describe(call.nr, &call.args),
        "update": update.number,
    });
    if let Some(ret) = call.ret {
        args["returned"] = json!(ret);
    }
    if call.restarted() {
        args["restarted"] = json!("the kernel restarted it after a signal handler (SA_RESTART)");
    }
    if span.clamped {
        args["began"] = match call.start_ns {
            None => json!("before qbench-trace attached; drawn from before the request"),
            Some(ns) => json!(format!(
                "{} before the request; drawn from before the request",
                duration(update.request_ns.saturating_sub(ns))
            )),
        };
        args["start_ns"] = json!(call.start_ns);
    }
    if span.still_blocked {
        args["still_blocked"] = json!("still blocked when the update ended");
    }
    args
}

/// The updates as Chrome trace-event JSON (the object form): the process and each thread named,
/// one track per thread with its calls and arrivals, and the update windows on the process's
/// track. `ts` and `dur` are microseconds since `otherData.base_ns` (CLOCK_MONOTONIC).
pub fn chrome_trace(pid: u32, updates: &[Update]) -> String {
    let base = updates.first().map_or(0, view_start);
    let us = |ns: u64| ns.saturating_sub(base) as f64 / 1e3;
    let mut names: BTreeMap<u32, &str> = BTreeMap::new();
    for t in updates.iter().flat_map(|u| &u.threads) {
        names.insert(t.tid, &t.comm);
    }
    let process = names
        .get(&pid)
        .map_or(format!("pid {pid}"), |comm| format!("{comm} (pid {pid})"));
    let mut events = vec![json!({
        "ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": process},
    })];
    for (tid, comm) in &names {
        events.push(json!({
            "ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": comm},
        }));
    }
    let mut previous_end = 0;
    for update in updates {
        // Calls never reach back into the previous window, so a thread's slices never overlap.
        let floor = view_start(update).max(previous_end);
        previous_end = update.end_ns;
        window_events(&mut events, pid, update, &us);
        thread_events(&mut events, pid, update, floor, &us);
    }
    let doc = json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "producer": "qbench-trace",
            "pid": pid,
            "clock": "CLOCK_MONOTONIC",
            "base_ns": base,
            "time_unit": "ts and dur are microseconds since base_ns",
        },
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The window of `update` on the process's track: its slice, the request and, for a DNQ, the
/// moment it was given up.
fn window_events(events: &mut Vec<Value>, pid: u32, update: &Update, us: &impl Fn(u64) -> f64) {
    let label = update_label(update);
    let window = json!({
        "outcome": crate::report::output::outcome_word(update.outcome),
        "request_ns": update.request_ns,
        "end_ns": update.end_ns,
        "quiescence_ns": update.quiescence_ns(),
        "missing_threads": update.missing().count(),
    });
    let (slice, scope) = (json!(1), "update");
    events.push(json!({
        "ph": "b", "cat": scope, "id": slice, "name": label, "ts": us(update.request_ns),
        "pid": pid, "tid": pid, "args": window,
    }));
    events.push(json!({
        "ph": "e", "cat": scope, "id": slice, "name": label, "ts": us(update.end_ns),
        "pid": pid, "tid": pid,
    }));
    events.push(json!({
        "ph": "i", "s": "p", "name": "update requested", "ts": us(update.request_ns),
        "pid": pid, "tid": pid, "args": {"update": update.number, "by": request_text(update.seen)},
    }));
    if update.outcome == Outcome::Dnq {
        events.push(json!({
            "ph": "i", "s": "p", "name": "did not quiesce", "ts": us(update.end_ns),
            "pid": pid, "tid": pid, "args": {"update": update.number},
        }));
    }
}

/// Each thread's calls during `update` (none before `floor`) and its arrival, on its own track.
fn thread_events(
    events: &mut Vec<Value>,
    pid: u32,
    update: &Update,
    floor: u64,
    us: &impl Fn(u64) -> f64,
) {
    for t in &update.threads {
        for call in &t.calls {
            let Some(s) = span(call, update, floor) else {
                continue;
            };
            events.push(json!({
                "ph": "X", "cat": "syscall", "name": syscalls::name(call.nr),
                "ts": us(s.start_ns), "dur": (s.end_ns - s.start_ns) as f64 / 1e3,
                "pid": pid, "tid": t.tid, "args": call_args(call, &s, update),
            }));
        }
        if let Some(arrival) = t.arrival_ns {
            events.push(json!({
                "ph": "i", "s": "t", "name": "arrived at update point", "ts": us(arrival),
                "pid": pid, "tid": t.tid,
                "args": {"update": update.number, "after_request": duration(arrival.saturating_sub(update.request_ns))},
            }));
        }
    }
}

fn request_text(seen: RequestSeen) -> String {
    match seen {
        RequestSeen::Signal {
            signal,
            sender_tgid,
        } => format!("signal {signal} from pid {sender_tgid}"),
        RequestSeen::Runtime => "a request inside the process".to_string(),
        RequestSeen::Arrival => "not seen (the first arrival opened the window)".to_string(),
        RequestSeen::BeforeAttach => "before attach (the runtime showed it pending)".to_string(),
    }
}

/// Writes the trace of all `updates` to `trace_out` and the SVG of the last one to `svg_out`,
/// each by [`crate::report::file_output::write`]: a regular file replaced atomically, a link written
/// through, a device or FIFO written in place.
pub fn write_files(
    trace_out: Option<&Path>,
    svg_out: Option<&Path>,
    pid: u32,
    updates: &[Update],
) -> std::io::Result<()> {
    if let Some(path) = trace_out {
        crate::report::file_output::write(path, chrome_trace(pid, updates).as_bytes())?;
    }
    if let (Some(path), Some(last)) = (svg_out, updates.last()) {
        crate::report::file_output::write(path, svg(pid, last).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
