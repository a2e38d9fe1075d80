//! The SVG timeline: well-formed XML with escaped names. That a real renderer draws it is checked
//! by the integration tests (tests/tests/pictures.rs), on a real target's timeline.

use super::*;
use crate::report::pictures::tests::updates;
use crate::tracker::ThreadReport;

const MS: u64 = 1_000_000;

/// The SVG's root and the text of every `<text>` element.
fn svg_texts(svg: &str) -> (f64, f64, Vec<String>) {
    let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let size = |a: &str| {
        root.attribute(a)
            .and_then(|v| v.parse().ok())
            .expect("size")
    };
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect();
    (size("width"), size("height"), texts)
}

#[test]
fn the_svg_is_well_formed_and_escapes_names() {
    let updates = updates();
    let svg = svg(10, &updates[0]);
    assert!(!svg.contains('\u{1b}') && !svg.contains("<c>"));
    let (width, height, texts) = svg_texts(&svg);
    assert_eq!((width, height), (1000.0, 74.0 + 2.0 * 26.0 + 116.0));
    assert_eq!(
        texts[0],
        "qbench-trace: pid 10, update 1: DID NOT QUIESCE after 300.0 ms, 1 of 2 threads missing"
    );
    // Missing threads first, labelled tid and name, the control character shown as \x1b.
    let rows: Vec<&String> = texts.iter().filter(|t| t.starts_with("1")).collect();
    assert_eq!(rows[..2], ["12 a\"b<c>&\\x1b", "10 main"]);
    assert!(texts.contains(&"missing".to_string()));
    assert!(texts.iter().any(|t| t == "ms since the request"));
    assert!(texts.iter().any(|t| t == "timeout: DNQ") && texts.iter().any(|t| t == "request"));
    for label in [
        "call still blocked at the end",
        "arrived at the update point",
    ] {
        assert!(texts.iter().any(|t| t == label), "legend {label}");
    }
    let quiesced = svg_texts(&super::svg(10, &updates[1])).2;
    assert!(quiesced[0].contains("quiesced, quiescence 50.0 us, request latency 90.0 us"));
    assert!(quiesced.iter().any(|t| t == "us since the request"));
}

#[test]
fn calls_are_coloured_by_how_they_ended_and_bystanders_are_named() {
    let mut update = updates().remove(0);
    update.threads[1].participating = false;
    update.threads[1].arrival_ns = None;
    let svg = svg(10, &update);
    let fills = |colour: &str| svg.matches(&format!("fill=\"{colour}\" rx")).count();
    // The stuck thread: a restarted read, then one still blocked; main's sleep returned.
    let restarted = usize::from(update.threads[0].calls[0].restarted());
    assert_eq!(
        (fills(RESTARTED), fills(BLOCKED), fills(RETURNED)),
        (restarted, 1, 2 - restarted)
    );
    assert_eq!(
        svg.contains("= -512: restarted by the kernel"),
        restarted == 1
    );
    let texts = svg_texts(&svg).2;
    assert!(texts.iter().any(|t| t == "not participating"), "{texts:?}");
    assert_eq!(texts.iter().filter(|t| *t == "missing").count(), 1);
}

#[test]
fn a_long_thread_list_is_summarised() {
    let mut update = updates().remove(1);
    let one = update.threads[0].clone();
    update.threads = (0..100)
        .map(|tid| ThreadReport { tid, ..one.clone() })
        .collect();
    let texts = svg_texts(&svg(10, &update)).2;
    assert!(
        texts.iter().any(|t| t.contains("52 more threads")),
        "{texts:?}"
    );
}

#[test]
fn ticks_are_one_two_or_five_times_a_power_of_ten() {
    for (span, step, unit) in [
        (330 * MS, 50 * MS, "ms"),
        (99_000, 20_000, "us"),
        (1_100, 200, "ns"),
        (1, 1, "ns"),
        (12_000 * MS, 2_000 * MS, "s"),
    ] {
        assert_eq!(
            (tick_step(span), tick_unit(tick_step(span)).1),
            (step, unit),
            "{span}"
        );
    }
}
