//! The human table, JSON and escaping, on hand-made updates.

use super::*;
use crate::tracker::{Blocked, Call};

fn update(outcome: Outcome) -> Update {
    Update {
        number: 2,
        outcome,
        ended_by_thread_exit: false,
        seen: RequestSeen::Signal {
            signal: 12,
            sender_tgid: 77,
        },
        window_seq: 2,
        runtime_seq: Some(5),
        request_ns: 1_000_000,
        handled_ns: None,
        first_arrival_ns: Some(1_010_000),
        last_arrival_ns: Some(1_050_000),
        end_ns: if outcome == Outcome::Quiesced {
            1_050_000
        } else {
            1_001_000_000
        },
        threads: vec![
            ThreadReport {
                tid: 12,
                comm: "stuck\u{1b}[2J".into(),
                arrival_ns: None,
                blocked: Some(Blocked {
                    nr: 202,
                    args: [0x55aa, 128, 0, 0, 0, 0],
                    since_ns: Some(900_000),
                }),
                // Interrupted once by the runtime, and back in the same wait.
                calls: vec![
                    Call {
                        nr: 202,
                        args: [0x55aa, 128, 0, 0, 0, 0],
                        start_ns: Some(500_000),
                        end_ns: Some(800_000),
                        ret: Some(-4),
                        restarted: false,
                    },
                    Call {
                        nr: 202,
                        args: [0x55aa, 128, 0, 0, 0, 0],
                        start_ns: Some(900_000),
                        end_ns: None,
                        ret: None,
                        restarted: false,
                    },
                ],
                ever_arrived: true,
                participating: true,
                runtime_knows: None,
            },
            ThreadReport {
                tid: 10,
                comm: "main".into(),
                arrival_ns: Some(1_010_000),
                blocked: None,
                calls: vec![],
                ever_arrived: true,
                participating: true,
                runtime_knows: None,
            },
            // A thread the update did not wait for: not counted in the summary.
            ThreadReport {
                tid: 14,
                comm: "outsider".into(),
                arrival_ns: None,
                blocked: None,
                calls: vec![],
                ever_arrived: false,
                participating: false,
                runtime_knows: None,
            },
        ],
    }
}

fn ctx(state_of: &dyn Fn(u32) -> Option<char>) -> Context<'_> {
    Context {
        pid: 10,
        lost_events: 3,
        state_of,
        diagnoses: &[],
    }
}

#[test]
fn json_has_the_documented_fields() {
    let state_of = |_: u32| Some('S');
    let line = json(&update(Outcome::Dnq), &ctx(&state_of));
    let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    assert_eq!(v["pid"], 10);
    assert_eq!(v["outcome"], "dnq");
    assert_eq!(v["request_source"], "signal");
    assert_eq!(v["runtime_seq"], 5);
    assert_eq!(v["request_ns"], 1_000_000);
    assert_eq!(v["quiescence_ns"], serde_json::Value::Null);
    assert_eq!(v["request_latency_ns"], serde_json::Value::Null);
    assert_eq!(v["lost_events"], 3);
    let stuck = &v["threads"][0];
    assert_eq!(stuck["tid"], 12);
    assert_eq!(stuck["comm"], "stuck\u{1b}[2J", "JSON escapes it itself");
    assert!(line.contains("stuck\\u001b[2J"));
    assert_eq!(stuck["arrival_ns"], serde_json::Value::Null);
    assert_eq!(stuck["state"], "sleeping");
    assert_eq!(stuck["blocked_in"]["syscall"], "futex");
    assert_eq!(
        stuck["blocked_in"]["args"],
        serde_json::json!([0x55aa, 128, 0, 0])
    );
    assert_eq!(stuck["blocked_in"]["since_ns"], 900_000);
    assert_eq!(stuck["blocked_in"]["first_blocked_ns"], 500_000);
    assert_eq!(stuck["blocked_in"]["reentries"], 1);
    assert_eq!(v["threads"][1]["state"], "arrived");
    assert_eq!(v["threads"][1]["blocked_in"], serde_json::Value::Null);
}

#[test]
fn quiesced_json_carries_both_intervals() {
    let state_of = |_: u32| None;
    let v: serde_json::Value =
        serde_json::from_str(&json(&update(Outcome::Quiesced), &ctx(&state_of))).expect("json");
    assert_eq!(
        (
            v["quiescence_ns"].as_u64(),
            v["request_latency_ns"].as_u64()
        ),
        (Some(40_000), Some(50_000))
    );
    assert_eq!(v["threads"][0]["state"], "exited");
}

#[test]
fn an_exited_update_says_how_the_process_ended() {
    let state_of = |_: u32| None;
    let exited = |how| update(Outcome::Exited(how));
    let doc: serde_json::Value = serde_json::from_str(&json(
        &exited(Exit::Signal {
            signal: 9,
            core_dumped: false,
        }),
        &ctx(&state_of),
    ))
    .expect("json");
    assert_eq!(doc["outcome"], "exited");
    assert_eq!(
        doc["exit"],
        serde_json::json!({"signal": 9, "core_dumped": false})
    );
    let doc: serde_json::Value =
        serde_json::from_str(&json(&exited(Exit::Unknown), &ctx(&state_of))).expect("json");
    assert!(doc["exit"].is_null() && doc.as_object().unwrap().contains_key("exit"));
    let doc: serde_json::Value =
        serde_json::from_str(&json(&update(Outcome::Dnq), &ctx(&state_of))).expect("json");
    assert!(!doc.as_object().unwrap().contains_key("exit"));
    let text = human(&exited(Exit::Status(3)), &ctx(&state_of));
    assert!(
        text.starts_with(
            "UPDATE 2 pid 10 (signal 12 from pid 77): the process exited with status 3 "
        ),
        "{text}"
    );
    assert_eq!(
        exit_words(Exit::Signal {
            signal: 11,
            core_dumped: true
        }),
        "was killed by SIGSEGV (core dumped)"
    );
}

#[test]
fn human_report_lists_missing_threads_first_and_escapes_names() {
    let state_of = |_: u32| Some('S');
    let text = human(&update(Outcome::Dnq), &ctx(&state_of));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "UPDATE 2 pid 10 (signal 12 from pid 77): DID NOT QUIESCE after 1000.0 ms, 1 of 2 threads missing, 3 events lost"
    );
    assert!(
        lines[1].starts_with("     TID COMM             STATE"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(" FIRST_MS REENTRIES   SINCE_MS"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" 1000.5         1     1000.1"),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("stuck\\x1b[2J"), "{}", lines[2]);
    assert!(lines[2].contains("futex(uaddr=0x55aa, op=FUTEX_WAIT_PRIVATE, val=0, timeout=NULL)"));
    assert!(lines[2].trim_end().ends_with("1000.1"), "{}", lines[2]);
    assert!(
        lines[3].contains("arrived") && lines[3].contains("+10.0"),
        "{}",
        lines[3]
    );
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn an_arrived_thread_may_have_no_cause_and_an_empty_stack_always_a_note() {
    let state_of = |_: u32| Some('S');
    let diagnoses = [Diagnosis {
        tid: 10,
        cause: None,
        evidence: "arrived 0.010 ms after the request".into(),
        hint: "nothing to change".into(),
        details: serde_json::json!({}),
        stack: Some(crate::diagnosis::stack::Stack::default()),
    }];
    let ctx = Context {
        diagnoses: &diagnoses,
        ..ctx(&state_of)
    };
    let v: serde_json::Value =
        serde_json::from_str(&json(&update(Outcome::Quiesced), &ctx)).expect("json");
    let d = &v["threads"][1]["diagnosis"];
    assert_eq!(d["cause"], serde_json::Value::Null);
    assert_eq!(d["stack_note"], "no frame could be read");
    let text = human(&update(Outcome::Quiesced), &ctx);
    assert!(
        text.contains("WHY 10 (main), arrived last: no cause\n"),
        "{text}"
    );
}

#[test]
fn human_quiesced_summary() {
    let state_of = |_: u32| None;
    let text = human(&update(Outcome::Quiesced), &ctx(&state_of));
    assert!(text.starts_with(
        "UPDATE 2 pid 10 (signal 12 from pid 77): quiesced, quiescence 40.0 us, request latency 50.0 us, 2 threads, 3 events lost\n"
    ));
}

#[test]
fn escaping() {
    assert_eq!(escape("plain name"), "plain name");
    assert_eq!(escape("a\nb\tc\u{7f}"), "a\\x0ab\\x09c\\x7f");
    assert_eq!(escape("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    assert_eq!(
        escape("a\u{2066}b\u{200b}c\u{feff}"),
        "a\\u{2066}b\\u{200b}c\\u{feff}"
    );
    assert_eq!(escape("caf\u{e9} \u{4e2d}"), "caf\u{e9} \u{4e2d}");
}
