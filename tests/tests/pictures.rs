//! `qbench-trace --trace-out --svg` against a real target with a thread stuck in read(2): the
//! trace JSON has what the trace-event format requires and shows the stuck call, and the SVG
//! renders in a real renderer (rsvg-convert, installed by `cargo xtask setup`). Skipped, with the
//! reason printed, when not root.

use std::path::Path;

use qbench_tests::observer::{assert_exit, privileged, request, situations};
use qbench_tests::rsvg::render_png;
use qbench_tests::{Target, TempDir};
use serde_json::Value;

/// The fields the Trace Event Format requires of each phase: every event has `name`, `ph`,
/// `pid` and `tid`; all but metadata (`M`) a numeric `ts`; `X` a `dur` >= 0; an instant's scope
/// `s` is g, p or t; async `b`/`e` have `cat` and `id`; `M` has `args`.
fn validate(doc: &Value) -> Result<(), String> {
    let events = doc["traceEvents"]
        .as_array()
        .ok_or("no traceEvents array")?;
    for e in events {
        let ph = e["ph"].as_str().ok_or_else(|| format!("no ph: {e}"))?;
        let ok = e["name"].is_string()
            && e["pid"].is_u64()
            && e["tid"].is_u64()
            && (ph == "M" || e["ts"].as_f64().is_some_and(|ts| ts >= 0.0))
            && match ph {
                "X" => e["dur"].as_f64().is_some_and(|d| d >= 0.0),
                "i" | "I" => matches!(e["s"].as_str(), None | Some("g" | "p" | "t")),
                "b" | "e" => e["cat"].is_string() && !e["id"].is_null(),
                "M" => e["args"].is_object(),
                _ => false,
            };
        if !ok {
            return Err(format!("event lacks what phase {ph} requires: {e}"));
        }
    }
    Ok(())
}

/// The number in `attr="N"` on the SVG's root element.
fn svg_attr(svg: &str, attr: &str) -> u32 {
    let root = &svg[svg.find("<svg").expect("an svg element")..];
    let value = root
        .split_once(&format!(" {attr}=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("no {attr} on the svg root"));
    value.parse::<f64>().expect("a number") as u32
}

/// Requests one update of `target` (with `args`) and draws it to `trace_out` and `svg`; checks
/// the exit status (`code`) and that both files were written.
fn draw(target: &Target, args: &[&str], trace_out: &str, svg: &Path, code: i32) {
    let mut all = args.to_vec();
    all.extend([
        "--trace-out",
        trace_out,
        "--svg",
        svg.to_str().expect("utf-8 path"),
    ]);
    let out = request(target, &all);
    assert_exit(&out, code);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot write"), "{stderr}");
}

#[test]
fn writes_a_trace_and_a_picture_of_a_thread_stuck_in_read() {
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:1", "stuckread:1"], &[("QBENCH_TIMEOUT_MS", "2000")]);
    target.wait_blocked();
    let dir = TempDir::new();
    let (trace_path, svg_path) = (dir.0.join("update.json"), dir.0.join("update.svg"));
    draw(
        &target,
        &["--timeout", "300ms"],
        trace_path.to_str().expect("utf-8 path"),
        &svg_path,
        3,
    );

    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).expect("the trace file"))
            .expect("the trace is JSON");
    validate(&doc).expect("a valid trace");
    let events = doc["traceEvents"].as_array().expect("events");
    let stuck_tid = events
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == "stuckread")
        .map(|e| e["tid"].clone())
        .unwrap_or_else(|| panic!("no thread_name for stuckread: {doc}"));
    let read = events
        .iter()
        .rfind(|e| e["ph"] == "X" && e["tid"] == stuck_tid && e["name"] == "read")
        .unwrap_or_else(|| panic!("no read on the stuckread track: {doc}"));
    assert!(read["args"]["still_blocked"].is_string(), "{read}");
    assert!(read["dur"].as_f64().expect("dur") > 0.0, "{read}");
    let window = events
        .iter()
        .find(|e| e["ph"] == "b")
        .expect("the update's slice");
    assert_eq!(window["name"], "update 1: DNQ");
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "i" && e["name"] == "arrived at update point"),
        "the reader's arrival"
    );

    let svg = std::fs::read_to_string(&svg_path).expect("the SVG file");
    assert!(svg.contains("DID NOT QUIESCE") && svg.contains("stuckread"));
    let png_path = dir.0.join("update.png");
    let drawn = render_png(&svg_path, &png_path);
    assert_eq!(
        (drawn.width, drawn.height),
        (svg_attr(&svg, "width"), svg_attr(&svg, "height"))
    );
    assert!(
        drawn.inked_permille > 10,
        "the picture is nearly blank: {drawn:?}"
    );
}

#[test]
fn dev_null_stays_a_device_and_a_linked_picture_keeps_its_link() {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let Some(_serial) = privileged() else { return };
    let target = situations(&["read:2"], &[]);
    target.wait_blocked();
    let dir = TempDir::new();
    let (real, link) = (dir.0.join("real.svg"), dir.0.join("link.svg"));
    std::fs::write(&real, "old").expect("write");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    draw(&target, &[], "/dev/null", &link, 0);
    let null = std::fs::symlink_metadata("/dev/null").expect("/dev/null");
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    let svg = std::fs::read_to_string(&real).expect("the linked file");
    assert!(svg.contains("<svg") && svg.contains("quiesced"), "{svg}");
    assert!(!Path::new("/dev/.null.tmp").exists());
}
