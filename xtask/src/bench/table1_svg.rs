//! The Table I chart (bench/table1.svg): per workload, the median quiescence time of the four
//! runs (all / update-only × load / idle) as bars on a log scale, p10–p90 whiskers, DNQ bars
//! hatched to the top, the study's figures as black ticks, and the 1 ms target as a dashed line.

use std::fmt::Write as _;

use crate::bench::table1::{Cell, WORKLOADS};
use crate::bench::table1_report::percentile;

const W: f64 = 960.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The axis: 10^1 to 10^7 µs (10 µs to 10 s).
const DECADES: (i32, i32) = (1, 7);

const SERIES: [(&str, bool, &str, &str); 4] = [
    ("all", true, "#1f77b4", "all, load"),
    ("all", false, "#9ecae1", "all, idle"),
    ("update-only", true, "#d62728", "update-only, load"),
    ("update-only", false, "#fc9272", "update-only, idle"),
];

/// y of a time in µs (clamped to the axis).
fn y(us: f64) -> f64 {
    let (lo, hi) = (f64::from(DECADES.0), f64::from(DECADES.1));
    let t = ((us.max(1e-9).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    H - BOTTOM - t * (H - TOP - BOTTOM)
}

pub fn render(cells: &[Cell], machine: &str) -> String {
    let machine = machine.replace('&', "&amp;").replace('<', "&lt;");
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<defs><pattern id="dnq" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" stroke-width="3"/></pattern></defs>
<rect width="{W}" height="{H}" fill="#fff"/>
<text x="{LEFT}" y="20" font-size="15" font-weight="bold">Table I: median quiescence time per workload (log scale; lower is better)</text>
<text x="{LEFT}" y="37" fill="#555">{machine}; whiskers p10–p90; black ticks: the study (all changes); hatched: DNQ</text>"##
    );
    axis(&mut s);
    let group = (W - LEFT - RIGHT) / WORKLOADS.len() as f64;
    let bar = group / 6.0;
    for (i, w) in WORKLOADS.iter().enumerate() {
        let x0 = LEFT + i as f64 * group + bar;
        for (k, series) in SERIES.iter().enumerate() {
            let (variant, loaded) = (series.0, series.1);
            let found = cells
                .iter()
                .find(|c| c.workload.name == w.name && c.variant == variant && c.loaded == loaded);
            if let Some(c) = found {
                cell_bar(&mut s, c, series, x0 + k as f64 * bar, bar);
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{}-like</text>"##,
            x0 + 2.0 * bar - 1.0,
            H - BOTTOM + 16.0,
            w.name
        );
    }
    legend(&mut s);
    s.push_str("</svg>\n");
    s
}

/// The decades of the time axis, and the 1 ms target as a dashed line.
fn axis(s: &mut String) {
    for d in DECADES.0..=DECADES.1 {
        let us = 10f64.powi(d);
        let label = match d {
            0..=2 => format!("{us} µs"),
            3..=5 => format!("{} ms", us / 1e3),
            _ => format!("{} s", us / 1e6),
        };
        let yy = y(us);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let target = y(1000.0);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{target}" x2="{}" y2="{target}" stroke="#333" stroke-dasharray="6,4"/>"##,
        W - RIGHT
    );
}

/// One cell's bar at `x` (`bar` wide): the median with p10–p90 whiskers, or a hatched DNQ; for
/// the "all" series, the study's figure as a tick.
fn cell_bar(s: &mut String, c: &Cell, series: &(&str, bool, &str, &str), x: f64, bar: f64) {
    let (variant, loaded, colour, _) = *series;
    let w = c.workload;
    let base = y(10f64.powi(DECADES.0));
    match percentile(&c.runtime, 50.0) {
        Some(median) => {
            let top = y(median);
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="{top}" width="{}" height="{}" fill="{colour}"><title>{} {variant} {}: median {:.3} ms</title></rect>"##,
                bar - 2.0,
                base - top,
                w.name,
                if loaded { "load" } else { "idle" },
                median / 1e3
            );
            let hi = percentile(&c.runtime, 90.0).map_or(TOP, y);
            let lo = percentile(&c.runtime, 10.0).map_or(base, y);
            let xm = x + (bar - 2.0) / 2.0;
            let _ = writeln!(
                s,
                r##"<line x1="{xm}" y1="{hi}" x2="{xm}" y2="{lo}" stroke="#000" stroke-width="1"/>"##
            );
        }
        None => {
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="{TOP}" width="{}" height="{}" fill="url(#dnq)" stroke="#d62728"><title>{} {variant}: DNQ</title></rect><text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#d62728">DNQ</text>"##,
                bar - 2.0,
                base - TOP,
                w.name,
                x + (bar - 2.0) / 2.0,
                TOP - 3.0
            );
        }
    }
    if variant == "all" {
        let study = if loaded {
            w.study_load_ms
        } else {
            w.study_idle_ms
        } * 1e3;
        let ys = y(study);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{ys}" x2="{}" y2="{ys}" stroke="#000" stroke-width="3"><title>study: {:.3} ms</title></line>"##,
            x - 2.0,
            x + bar,
            study / 1e3
        );
    }
}

/// The series' colours, and the target's dashes.
fn legend(s: &mut String) {
    for (k, (_, _, colour, label)) in SERIES.iter().enumerate() {
        let x = LEFT + k as f64 * 170.0;
        let yy = H - 18.0;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{yy}">{label}</text>"##,
            yy - 10.0,
            x + 16.0
        );
    }
    let (x, yy) = (LEFT + 4.0 * 170.0, H - 18.0);
    let _ = writeln!(
        s,
        r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#333" stroke-dasharray="6,4"/><text x="{}" y="{yy}">target for all: 1 ms</text>"##,
        yy - 4.0,
        x + 24.0,
        yy - 4.0,
        x + 28.0
    );
}
