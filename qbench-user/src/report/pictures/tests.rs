//! The trace JSON against the trace-event format's required fields, and the files written.

use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::kernel::decode::tests::signal_request;
use crate::tracker::{ThreadReport, Tracker};

const MS: u64 = 1_000_000;
pub(super) const HOSTILE: &str = "a\"b<c>&\u{1b}";

/// A call made by the tracker itself (a thread seeded blocked in `nr`, a window opened and timed
/// out), then given its times: the fixture names only the fields it sets.
fn call(nr: i64, start_ns: Option<u64>, end_ns: Option<u64>, ret: Option<i64>) -> Call {
    let mut tracker = Tracker::new(1);
    tracker.seed(1, "t", Some((nr, [3, 0x7ffd_0000, 1, 0, 0, 0])));
    tracker.on_event(signal_request(1, 1, 1));
    let update = tracker.on_tick(u64::MAX).expect("a DNQ");
    let mut call = update.threads[0].calls[0];
    (call.start_ns, call.end_ns, call.ret) = (start_ns, end_ns, ret);
    call
}

/// A DNQ: a hostile-named thread whose read began before attach, was restarted, and is still
/// blocked (a read it began after the end is no part of the window); `main` slept and arrived.
/// Then a quiesced update.
pub(super) fn updates() -> Vec<Update> {
    let stuck = |calls| ThreadReport {
        tid: 12,
        comm: HOSTILE.into(),
        arrival_ns: None,
        blocked: None,
        calls,
        ever_arrived: true,
        participating: true,
        runtime_knows: None,
    };
    let main = |arrival_ns, calls| ThreadReport {
        tid: 10,
        comm: "main".into(),
        arrival_ns: Some(arrival_ns),
        blocked: None,
        calls,
        ever_arrived: true,
        participating: true,
        runtime_knows: None,
    };
    let dnq = Update {
        number: 1,
        outcome: Outcome::Dnq,
        ended_by_thread_exit: false,
        seen: RequestSeen::Signal {
            signal: 12,
            sender_tgid: 77,
        },
        window_seq: 1,
        runtime_seq: Some(1),
        request_ns: 1000 * MS,
        handled_ns: None,
        first_arrival_ns: Some(1001 * MS),
        last_arrival_ns: Some(1001 * MS),
        end_ns: 1300 * MS,
        threads: vec![
            stuck(vec![
                call(0, None, Some(1000 * MS + 20_000), Some(-512)),
                // Returned only after the update ended, then re-entered: still blocked at the end.
                call(
                    0,
                    Some(1000 * MS + 30_000),
                    Some(1300 * MS + 500),
                    Some(-512),
                ),
                call(0, Some(1300 * MS + 1_000), None, None),
            ]),
            main(
                1001 * MS,
                vec![call(
                    230,
                    Some(900 * MS),
                    Some(1000 * MS + 50_000),
                    Some(-4),
                )],
            ),
        ],
    };
    let quiesced = Update {
        number: 2,
        outcome: Outcome::Quiesced,
        ended_by_thread_exit: false,
        window_seq: 2,
        request_ns: 1400 * MS,
        handled_ns: None,
        first_arrival_ns: Some(1400 * MS + 40_000),
        last_arrival_ns: Some(1400 * MS + 90_000),
        end_ns: 1400 * MS + 90_000,
        threads: vec![
            main(1400 * MS + 40_000, vec![]),
            ThreadReport {
                arrival_ns: Some(1400 * MS + 90_000),
                ..stuck(vec![call(
                    0,
                    Some(1300 * MS),
                    Some(1400 * MS + 80_000),
                    Some(-4),
                )])
            },
        ],
        ..dnq.clone()
    };
    vec![dnq, quiesced]
}

fn trace() -> Value {
    serde_json::from_str(&chrome_trace(10, &updates())).expect("the trace is JSON")
}

fn events<'a>(doc: &'a Value, ph: &str) -> Vec<&'a Value> {
    let all = doc["traceEvents"].as_array().expect("traceEvents");
    all.iter().filter(|e| e["ph"] == ph).collect()
}

/// The fields the Trace Event Format requires of each phase used here: every event has `name`,
/// `ph`, `pid` and `tid`; all but metadata have a numeric `ts` (microseconds); `X` has `dur` >= 0;
/// an instant's `s` is g, p or t; `b`/`e` carry `cat` and `id`; `M` names a known kind with
/// `args.name`.
pub(crate) fn validate(doc: &Value) -> Result<(), String> {
    let events = doc["traceEvents"]
        .as_array()
        .ok_or("no traceEvents array")?;
    for e in events {
        let fail = |why: &str| Err(format!("{why}: {e}"));
        let ph = e["ph"].as_str().ok_or_else(|| format!("no ph: {e}"))?;
        if !e["name"].is_string() || !e["pid"].is_u64() || !e["tid"].is_u64() {
            return fail("name, pid and tid are required");
        }
        if ph != "M" && !e["ts"].as_f64().is_some_and(|ts| ts >= 0.0) {
            return fail("ts must be a non-negative number");
        }
        match ph {
            "X" if !e["dur"].as_f64().is_some_and(|d| d >= 0.0) => return fail("X needs dur >= 0"),
            "i" | "I" if !matches!(e["s"].as_str(), None | Some("g" | "p" | "t")) => {
                return fail("instant scope must be g, p or t");
            }
            "b" | "e" if !e["cat"].is_string() || e["id"].is_null() => {
                return fail("async events need cat and id");
            }
            "M" if !matches!(
                e["name"].as_str(),
                Some("process_name" | "thread_name" | "process_sort_index" | "thread_sort_index")
            ) || e["args"].as_object().is_none() =>
            {
                return fail("metadata needs a known name and args");
            }
            "X" | "i" | "I" | "b" | "e" | "M" => {}
            other => return Err(format!("phase {other} not expected here: {e}")),
        }
    }
    Ok(())
}

#[test]
fn every_trace_event_has_the_fields_its_phase_requires() {
    let doc = trace();
    validate(&doc).expect("valid");
    assert_eq!(doc["displayTimeUnit"], "ns");
    assert_eq!(
        doc["otherData"]["base_ns"],
        1000 * MS - 30 * MS,
        "a tenth before"
    );
    // The validator itself rejects what the format forbids.
    for bad in [
        r#"{"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1,"ts":1,"dur":-1}]}"#,
        r#"{"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1,"ts":1}]}"#,
        r#"{"traceEvents":[{"ph":"i","name":"a","pid":1,"tid":1}]}"#,
        r#"{"traceEvents":[{"ph":"i","name":"a","pid":1,"tid":1,"ts":1,"s":"x"}]}"#,
        r#"{"traceEvents":[{"ph":"M","name":"thread_name","pid":1,"tid":1}]}"#,
        r#"{"traceEvents":[{"ph":"b","name":"a","pid":1,"tid":1,"ts":1}]}"#,
        r#"{"traceEvents":[{"ph":"X","pid":1,"tid":1,"ts":1,"dur":1}]}"#,
    ] {
        let doc: Value = serde_json::from_str(bad).expect("json");
        assert!(validate(&doc).is_err(), "{bad}");
    }
}

#[test]
fn the_trace_names_the_process_and_every_thread() {
    let doc = trace();
    let meta = events(&doc, "M");
    let named = |kind: &str, tid: u32| {
        meta.iter()
            .find(|e| e["name"] == kind && e["tid"] == tid)
            .map(|e| e["args"]["name"].clone())
    };
    assert_eq!(named("process_name", 10), Some("main (pid 10)".into()));
    assert_eq!(named("thread_name", 10), Some("main".into()));
    assert_eq!(named("thread_name", 12), Some(HOSTILE.into()));
    assert_eq!(meta.len(), 3);
}

#[test]
fn the_trace_has_one_complete_event_per_call() {
    let doc = trace();
    let calls = events(&doc, "X");
    assert_eq!(calls.len(), 4);
    let names: Vec<&str> = calls.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["read", "read", "clock_nanosleep", "read"]);
    for e in &calls {
        assert!(e["dur"].as_f64().unwrap() >= 0.0, "{e}");
        assert!(e["args"]["call"].as_str().unwrap().contains('('), "{e}");
    }
    // Began before attach: drawn from 30 ms before the request (ts 0), and says so.
    assert_eq!(
        (calls[0]["ts"].as_f64(), calls[0]["tid"].as_u64()),
        (Some(0.0), Some(12))
    );
    assert!(
        calls[0]["args"]["began"]
            .as_str()
            .unwrap()
            .contains("attached")
    );
    // (Whether the tracker counts a -512 as a restart is its business; the trace follows it.)
    let restarted = updates()[0].threads[0].calls[0].restarted();
    assert_eq!(calls[0]["args"]["restarted"].is_string(), restarted);
    assert_eq!(calls[0]["args"]["returned"], -512);
    // Still blocked: ends at the update's end, and says so.
    let end_us = 300_000.0 + 30_000.0;
    let blocked = calls[1];
    let until = blocked["ts"].as_f64().unwrap() + blocked["dur"].as_f64().unwrap();
    assert!((until - end_us).abs() < 1e-6, "{blocked}");
    assert!(blocked["args"]["still_blocked"].is_string());
    assert_eq!(blocked["args"]["returned"], -512, "after the end");
    // Began 100 ms before the request: clamped, with how long before.
    assert!(
        calls[2]["args"]["began"]
            .as_str()
            .unwrap()
            .starts_with("100.0 ms before")
    );
    // The second update's read began during the first: it never reaches back into it.
    assert!(calls[3]["ts"].as_f64().unwrap() >= end_us, "{}", calls[3]);
}

#[test]
fn the_trace_marks_each_arrival_the_request_and_the_window() {
    let doc = trace();
    let instants = events(&doc, "i");
    let arrivals: Vec<(u64, f64)> = instants
        .iter()
        .filter(|e| e["name"] == "arrived at update point")
        .map(|e| (e["tid"].as_u64().unwrap(), e["ts"].as_f64().unwrap()))
        .collect();
    assert_eq!(arrivals, [(10, 31_000.0), (10, 430_040.0), (12, 430_090.0)]);
    assert!(
        instants
            .iter()
            .filter(|e| e["name"] != "arrived at update point")
            .all(|e| e["s"] == "p")
    );
    let requests = instants
        .iter()
        .filter(|e| e["name"] == "update requested")
        .count();
    assert_eq!(requests, 2);
    let begins: Vec<&str> = events(&doc, "b")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(begins, ["update 1: DNQ", "update 2: quiesced"]);
    assert_eq!(events(&doc, "e").len(), 2);
}

#[test]
fn the_trace_escapes_a_hostile_thread_name() {
    let text = chrome_trace(10, &updates());
    assert!(!text.contains('\u{1b}'));
    assert!(text.contains(r#""a\"b<c>&\u001b""#), "JSON escapes it");
    serde_json::from_str::<Value>(&text).expect("still JSON");
}

#[test]
fn an_empty_trace_is_still_valid() {
    let doc: Value = serde_json::from_str(&chrome_trace(10, &[])).expect("json");
    validate(&doc).expect("valid");
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qbench-pictures-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn write_files_replaces_both_files_and_leaves_no_temporary() {
    let dir = scratch("write");
    let (trace_path, svg_path) = (dir.join("t.json"), dir.join("t.svg"));
    std::fs::write(&trace_path, "old").expect("write");
    write_files(Some(&trace_path), Some(&svg_path), 10, &updates()).expect("written");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert_eq!(events(&doc, "b").len(), 2);
    assert!(
        std::fs::read_to_string(&svg_path)
            .unwrap()
            .contains("update 2: quiesced")
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no temporary left"
    );
    let err = write_files(Some(&dir.join("no/such/dir/t.json")), None, 10, &updates());
    assert!(
        err.expect_err("no directory")
            .to_string()
            .contains("no/such/dir/t.json")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
