//! The SVG timeline of one update (`--svg`): drawn for a bug report, so everything is in the
//! picture itself (title, labels, axis with units, legend) and every string from the target is
//! escaped.

use std::fmt::Write as _;

use super::{Span, duration, request_text, span, view_start};
use crate::report::output::escape;
use crate::syscalls;
use crate::tracker::{Call, Outcome, ThreadReport, Update};

/// Text from the target made safe for XML: control characters (which XML 1.0 cannot carry even
/// as references) become `\xNN` as in the terminal, then the markup characters become entities.
pub fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escape(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The picture's width (px); its height follows from the rows.
const WIDTH: f64 = 1000.0;
/// The time axis spans these x coordinates; the thread names are left of it.
const PLOT_X0: f64 = 250.0;
const PLOT_X1: f64 = 975.0;
/// Where the first thread's row starts, below the title and the legend, and each row's height.
const ROWS_TOP: f64 = 74.0;
const ROW_H: f64 = 26.0;
/// Rows beyond this are summarised in one line (the trace JSON has them all).
const MAX_ROWS: usize = 48;
const RETURNED: &str = "#4a7fb5";
const BLOCKED: &str = "#d0453a";
const RESTARTED: &str = "#e8a33d";
const ARRIVED: &str = "#2e9d46";

/// A tick step of 1, 2 or 5 times a power of ten giving at most about eight ticks over `span_ns`.
fn tick_step(span_ns: u64) -> u64 {
    let rough = (span_ns / 8).max(1);
    let mut power = 1u64;
    while power.saturating_mul(10) <= rough {
        power *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= rough)
        .unwrap_or(10 * power)
}

/// The unit to label ticks of `step_ns` in: the largest that keeps labels whole numbers.
fn tick_unit(step_ns: u64) -> (u64, &'static str) {
    match step_ns {
        1_000_000_000.. => (1_000_000_000, "s"),
        1_000_000.. => (1_000_000, "ms"),
        1_000.. => (1_000, "us"),
        _ => (1, "ns"),
    }
}

fn svg_title(pid: u32, update: &Update) -> String {
    let threads = update.threads.len();
    let head = format!("qbench-trace: pid {pid}, update {}", update.number);
    match (update.outcome, update.quiescence_ns()) {
        (Outcome::Quiesced, Some(q)) => format!(
            "{head}: quiesced, quiescence {}, request latency {}, {threads} threads",
            duration(q),
            duration(update.request_latency_ns().unwrap_or(0)),
        ),
        (Outcome::Exited(how), _) => format!(
            "{head}: the process {} {} after the request, {threads} threads",
            crate::report::output::exit_words(how),
            duration(update.end_ns.saturating_sub(update.request_ns)),
        ),
        _ => format!(
            "{head}: DID NOT QUIESCE after {}, {} of {threads} threads missing",
            duration(update.end_ns.saturating_sub(update.request_ns)),
            update.missing().count(),
        ),
    }
}

/// One update as a self-contained SVG timeline: a title, one row per thread (missing threads
/// first) with its calls and its arrival, the request and the end as vertical lines, a time
/// axis relative to the request, and a legend.
pub fn svg(pid: u32, update: &Update) -> String {
    let start = view_start(update);
    let span_ns = update.end_ns.saturating_sub(start).max(1);
    let x = |ns: u64| {
        let f = ns.saturating_sub(start) as f64 / span_ns as f64;
        PLOT_X0 + f.clamp(0.0, 1.0) * (PLOT_X1 - PLOT_X0)
    };
    let shown = update.threads.len().min(MAX_ROWS);
    let hidden = update.threads.len() - shown;
    let rows_end = ROWS_TOP + ROW_H * (shown + usize::from(hidden > 0)) as f64;
    let height = rows_end + 116.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="12" y="24" font-size="15" font-weight="bold">{}</text>
<text x="12" y="44" fill="#555555">requested by {}; times relative to the request (CLOCK_MONOTONIC)</text>"##,
        xml_text(&svg_title(pid, update)),
        xml_text(&request_text(update.seen)),
    );
    for (i, t) in update.threads.iter().take(shown).enumerate() {
        row(&mut s, i, t, update, start, &x);
    }
    if hidden > 0 {
        let _ = writeln!(
            s,
            r##"<text x="12" y="{}" fill="#555555">… {hidden} more threads (all are in --trace-out)</text>"##,
            rows_end - 9.0
        );
    }
    axis(&mut s, update, start, span_ns, rows_end, &x);
    let end_colour = match update.outcome {
        Outcome::Quiesced => ARRIVED,
        Outcome::Dnq | Outcome::Exited(_) | Outcome::Incomplete => BLOCKED,
    };
    legend(&mut s, rows_end + 62.0, end_colour);
    s.push_str("</svg>\n");
    s
}

/// Row `i` of the timeline: thread `t`'s name, state, calls and arrival.
fn row(
    s: &mut String,
    i: usize,
    t: &ThreadReport,
    update: &Update,
    start: u64,
    x: &impl Fn(u64) -> f64,
) {
    let y = ROWS_TOP + ROW_H * i as f64;
    let missing = t.participating && t.arrival_ns.is_none();
    let band = match (missing, i % 2) {
        (true, _) => "#fbe9e7",
        (false, 0) => "#f3f3f3",
        _ => "#ffffff",
    };
    let (colour, state) = match t.arrival_ns {
        Some(a) => (
            "#222222",
            format!("+{}", duration(a.saturating_sub(update.request_ns))),
        ),
        None if missing => (BLOCKED, "missing".to_string()),
        None => ("#777777", "not participating".to_string()),
    };
    let _ = writeln!(
        s,
        r##"<rect x="0" y="{y}" width="{WIDTH}" height="{ROW_H}" fill="{band}"/>
<text x="12" y="{ty}" fill="{colour}" font-family="DejaVu Sans Mono, monospace">{} {}</text>
<text x="{sx}" y="{ty}" fill="{colour}" text-anchor="end" font-size="11">{state}</text>"##,
        t.tid,
        xml_text(&t.comm.chars().take(24).collect::<String>()),
        ty = y + 17.0,
        sx = PLOT_X0 - 8.0,
    );
    for call in &t.calls {
        if let Some(sp) = span(call, update, start) {
            call_bar(s, call, &sp, y, x);
        }
    }
    if let Some(a) = t.arrival_ns {
        s.push_str(&diamond(x(a), y + ROW_H / 2.0));
    }
}

/// One call of a row at `y`, as a bar from its start to its end with its description as a
/// tooltip.
fn call_bar(s: &mut String, call: &Call, sp: &Span, y: f64, x: &impl Fn(u64) -> f64) {
    let (mut x0, x1) = (x(sp.start_ns), x(sp.end_ns).max(x(sp.start_ns) + 1.5));
    if sp.still_blocked {
        // Visible beside the end line even when it began just before the end.
        x0 = x0.min(x1 - 8.0).max(PLOT_X0);
    }
    let fill = match (sp.still_blocked, call.restarted()) {
        (true, _) => BLOCKED,
        (false, true) => RESTARTED,
        (false, false) => RETURNED,
    };
    let name = syscalls::name(call.nr);
    let mut tip = syscalls::describe(call.nr, &call.args);
    match (sp.still_blocked, call.ret) {
        (true, _) => tip.push_str(": still blocked at the end"),
        (false, Some(r)) if call.restarted() => {
            tip.push_str(&format!(" = {r}: restarted by the kernel (SA_RESTART)"));
        }
        (false, Some(r)) => tip.push_str(&format!(" = {r}")),
        (false, None) => {}
    }
    let _ = writeln!(
        s,
        r#"<rect x="{x0:.1}" y="{by}" width="{w:.1}" height="{bh}" fill="{fill}" rx="2"><title>{}</title></rect>"#,
        xml_text(&tip),
        by = y + 6.0,
        w = x1 - x0,
        bh = ROW_H - 12.0,
    );
    if sp.clamped {
        let _ = writeln!(
            s,
            r##"<polygon points="{x0:.1},{m} {a:.1},{t} {a:.1},{b}" fill="#222222"/>"##,
            m = y + ROW_H / 2.0,
            a = x0 + 6.0,
            t = y + 8.0,
            b = y + ROW_H - 8.0,
        );
    }
    if x1 - x0 > 7.0 * name.len() as f64 + 16.0 {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" fill="#ffffff" font-size="11">{name}</text>"##,
            x0 + if sp.clamped { 10.0 } else { 4.0 },
            y + 17.0,
        );
    }
}

fn diamond(cx: f64, cy: f64) -> String {
    format!(
        "<polygon points=\"{cx:.1},{} {:.1},{cy} {cx:.1},{} {:.1},{cy}\" fill=\"{ARRIVED}\" stroke=\"#ffffff\"/>\n",
        cy - 7.0,
        cx + 6.0,
        cy + 7.0,
        cx - 6.0,
    )
}

/// The time axis under the rows, and the request and end lines across them.
fn axis(s: &mut String, u: &Update, start: u64, span_ns: u64, bottom: f64, x: &dyn Fn(u64) -> f64) {
    let step = tick_step(span_ns);
    let (div, unit) = tick_unit(step);
    let _ = writeln!(
        s,
        r##"<line x1="{PLOT_X0}" y1="{bottom}" x2="{PLOT_X1}" y2="{bottom}" stroke="#222222"/>"##
    );
    // Ticks at multiples of the step relative to the request.
    let first = -((u.request_ns - start) as i64 / step as i64) * step as i64;
    let mut rel = first;
    while rel <= u.end_ns.saturating_sub(u.request_ns) as i64 {
        let tx = x(u.request_ns.saturating_add_signed(rel));
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{bottom}" x2="{tx:.1}" y2="{}" stroke="#222222"/><text x="{tx:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            rel / div as i64,
        );
        rel += step as i64;
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555555">{unit} since the request</text>"##,
        (PLOT_X0 + PLOT_X1) / 2.0,
        bottom + 36.0,
    );
    let (rx, ex) = (x(u.request_ns), x(u.end_ns));
    let (end_colour, end_label) = match u.outcome {
        Outcome::Quiesced => (ARRIVED, "last arrival"),
        Outcome::Dnq => (BLOCKED, "timeout: DNQ"),
        Outcome::Exited(_) => (BLOCKED, "process exited"),
        Outcome::Incomplete => (BLOCKED, "timeout: events lost"),
    };
    let _ = writeln!(
        s,
        r##"<line x1="{rx:.1}" y1="{t}" x2="{rx:.1}" y2="{bottom}" stroke="#222222" stroke-dasharray="4 3"/>
<text x="{:.1}" y="{ly}" text-anchor="end" font-size="11">request</text>
<line x1="{ex:.1}" y1="{t}" x2="{ex:.1}" y2="{bottom}" stroke="{end_colour}" stroke-width="2"/>
<text x="{:.1}" y="{ly}" text-anchor="{}" font-size="11" fill="{end_colour}">{end_label}</text>"##,
        rx - 3.0,
        ex + if ex > PLOT_X1 - 80.0 { -3.0 } else { 3.0 },
        if ex > PLOT_X1 - 80.0 { "end" } else { "start" },
        t = ROWS_TOP - 14.0,
        ly = ROWS_TOP - 4.0,
    );
}

/// The legend: two rows of a swatch and what it means.
fn legend(s: &mut String, y: f64, end_colour: &str) {
    let rows: [&[(&str, &str)]; 2] = [
        &[
            ("returned", "call (returned)"),
            ("restarted", "call restarted by the kernel (SA_RESTART)"),
            ("blocked", "call still blocked at the end"),
        ],
        &[
            ("arrived", "arrived at the update point"),
            ("clamped", "call began before the picture"),
            ("request", "request"),
            ("end", "end of the update"),
        ],
    ];
    s.push_str("<g font-size=\"11\">\n");
    for (row, items) in rows.iter().enumerate() {
        let y = y + 20.0 * row as f64;
        let (top, mid) = (y - 10.0, y - 4.0);
        let mut x = 12.0;
        for (kind, label) in items.iter() {
            let swatch = |fill: &str| {
                format!(r#"<rect x="{x}" y="{top}" width="22" height="12" fill="{fill}"/>"#)
            };
            let _ = match *kind {
                "returned" => writeln!(s, "{}", swatch(RETURNED)),
                "restarted" => writeln!(s, "{}", swatch(RESTARTED)),
                "blocked" => writeln!(s, "{}", swatch(BLOCKED)),
                "arrived" => writeln!(s, "{}", diamond(x + 11.0, mid).trim_end()),
                "clamped" => writeln!(
                    s,
                    r##"<polygon points="{},{mid} {},{} {},{}" fill="#222222"/>"##,
                    x + 8.0,
                    x + 14.0,
                    mid - 5.0,
                    x + 14.0,
                    mid + 5.0,
                ),
                "request" => writeln!(
                    s,
                    r##"<line x1="{0}" y1="{top}" x2="{0}" y2="{1}" stroke="#222222" stroke-dasharray="4 3"/>"##,
                    x + 11.0,
                    y + 3.0,
                ),
                _ => writeln!(
                    s,
                    r#"<line x1="{0}" y1="{top}" x2="{0}" y2="{1}" stroke="{end_colour}" stroke-width="2"/>"#,
                    x + 11.0,
                    y + 3.0,
                ),
            };
            let _ = writeln!(s, r#"<text x="{}" y="{y}">{label}</text>"#, x + 28.0);
            x += 28.0 + 6.4 * label.len() as f64 + 22.0;
        }
    }
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests;
