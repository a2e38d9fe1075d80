//! `cargo xtask bench table1 [--quick]`: the run and its figures: percentiles with DNQ, the
//! Markdown tables, the JSON record, the chart, and the generated part of BENCHMARKS.md.

use std::time::{Duration, Instant};

use crate::bench::table1::{Cell, Sample, Setup, VARIANTS, WORKLOADS, build, run_all};
use crate::workspace::{self, Profile};

/// `cargo xtask bench table1 [--quick]`.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let programs = build()?;
    // SAFETY: geteuid has no preconditions.
    let observer = if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: not root: no observer column (qbench-trace needs root)");
        None
    } else if quick {
        // The smoke run uses the debug observer `cargo xtask test` has built already.
        let trace = workspace::profile_dir(Profile::Debug).join("qbench-trace");
        trace.exists().then_some(trace)
    } else {
        workspace::cargo(&["build", "--release", "-p", "qbench-user"])?;
        Some(workspace::profile_dir(Profile::Release).join("qbench-trace"))
    };
    // 1.5 s: longer than icecast-like's 1 s sleeps, so update-only shows how long they take.
    let setup = if quick {
        Setup {
            requests: 3,
            timeout_ms: 500,
            warmup: Duration::from_millis(500),
            observer,
        }
    } else {
        Setup {
            requests: 11,
            timeout_ms: 1500,
            warmup: Duration::from_secs(1),
            observer,
        }
    };
    let observed: &[&str] = if quick { &["all"] } else { &VARIANTS };
    let started = Instant::now();
    let cells = run_all(&programs, &setup, observed)?;
    let table = markdown(&cells);
    println!("{table}");
    eprintln!(
        "bench: table1 took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if quick {
        return Ok(());
    }
    let machine = crate::bench::machine();
    let dir = workspace::root().join("bench");
    std::fs::create_dir_all(dir.join("results"))?;
    let json = json(&cells, &setup, &machine);
    std::fs::write(
        dir.join("results/table1.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let svg = crate::bench::table1_svg::render(&cells, &machine);
    std::fs::write(dir.join("table1.svg"), svg)?;
    render_into_benchmarks(&format!(
        "Measured on: {machine}; {} requests per cell, timeout {} ms.\n\n{table}\n{}",
        setup.requests,
        setup.timeout_ms,
        load_table(&cells)
    ))?;
    eprintln!("bench: wrote bench/results/table1.json, bench/table1.svg and BENCHMARKS.md");
    Ok(())
}
/// Percentile with DNQ counted as longer than any time (None when it falls on a DNQ).
pub fn percentile(samples: &[Sample], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().map(|s| s.unwrap_or(f64::INFINITY)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
    Some(v[rank.min(v.len() - 1)]).filter(|x| x.is_finite())
}

/// "0.052 (0.031–0.090)" in ms, "DNQ" when the median is one, and how many DNQ.
pub fn summary(samples: &[Sample]) -> String {
    if samples.is_empty() {
        return "—".to_string();
    }
    let dnq = samples.iter().filter(|s| s.is_none()).count();
    let ms = |x: Option<f64>| x.map_or("DNQ".to_string(), |us| format!("{:.3}", us / 1e3));
    let mut out = match percentile(samples, 50.0) {
        None => "**DNQ**".to_string(),
        m => format!(
            "{} ({}–{})",
            ms(m),
            ms(percentile(samples, 10.0)),
            ms(percentile(samples, 90.0))
        ),
    };
    if dnq > 0 {
        out.push_str(&format!(" {dnq}/{} DNQ", samples.len()));
    }
    out
}

/// The Markdown tables BENCHMARKS.md shows: the runtime's figures (no observer attached) next
/// to the study's, then the observer's against the runtime's for the same updates.
pub fn markdown(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| workload | load | threads | study ms | `all` ms | study, update points only | `update-only` ms |\n\
         |---|---|---:|---:|---|---|---|\n",
    );
    for w in WORKLOADS {
        for loaded in [true, false] {
            let find = |v: &str| {
                cells
                    .iter()
                    .find(|c| c.workload.name == w.name && c.variant == v && c.loaded == loaded)
            };
            let (Some(all), Some(upd)) = (find("all"), find("update-only")) else {
                continue;
            };
            let study = if loaded {
                w.study_load_ms
            } else {
                w.study_idle_ms
            };
            let study_upd = Some(w.study_update_only).filter(|s| !s.is_empty());
            out.push_str(&format!(
                "| {}-like | {} | {} | {study:.3} | {} | {} | {} |\n",
                w.name,
                load_label(loaded),
                all.threads.iter().max().copied().unwrap_or(0),
                summary(&all.runtime),
                study_upd.unwrap_or("—"),
                summary(&upd.runtime),
            ));
        }
    }
    if !cells.iter().any(|c| c.observed) {
        return out;
    }
    out.push_str(
        "\nWith qbench-trace attached (second pass; the same updates measured by both):\n\n\
         | workload | variant | load | updates observed | observer ms | runtime ms, observer attached |\n\
         |---|---|---|---:|---|---|\n",
    );
    for c in cells.iter().filter(|c| c.observed) {
        let (r, o): (Vec<Sample>, Vec<Sample>) = c.paired.iter().copied().unzip();
        out.push_str(&format!(
            "| {}-like | {} | {} | {}/{} | {} | {} |\n",
            c.workload.name,
            c.variant,
            load_label(c.loaded),
            c.paired.len(),
            c.runtime.len(),
            summary(&o),
            summary(&r)
        ));
    }
    out
}

fn load_label(loaded: bool) -> &'static str {
    if loaded { "load" } else { "idle" }
}

/// The cells as JSON for bench/results/table1.json (times in µs, null for a DNQ).
pub fn json(cells: &[Cell], s: &Setup, machine: &str) -> serde_json::Value {
    serde_json::json!({
        "benchmark": "table1",
        "machine": machine,
        "requests": s.requests,
        "timeout_ms": s.timeout_ms,
        "cells": cells.iter().map(|c| serde_json::json!({
            "workload": c.workload.name,
            "variant": c.variant,
            "load": c.loaded,
            "threads": c.threads,
            "study_ms": if c.loaded { c.workload.study_load_ms } else { c.workload.study_idle_ms },
            "runtime_quiescence_us": c.runtime,
            "attached_runtime_quiescence_us": c.paired.iter().map(|p| p.0).collect::<Vec<_>>(),
            "observer_quiescence_us": c.paired.iter().map(|p| p.1).collect::<Vec<_>>(),
            "load_generator": c.load,
        })).collect::<Vec<_>>(),
    })
}

/// What the load generators achieved (first pass of the `all` variant).
pub fn load_table(cells: &[Cell]) -> String {
    let mut out = String::from("| load generator | ops/s | MB/s |\n|---|---:|---:|\n");
    for c in cells.iter().filter(|c| c.loaded && c.variant == "all") {
        let Some(line) = c.load.first() else { continue };
        let field = |name: &str| {
            let mut words = line.split_whitespace();
            words
                .find(|w| *w == name)
                .and_then(|_| words.next())
                .unwrap_or("?")
                .to_string()
        };
        out.push_str(&format!(
            "| `table1-load {}` | {} | {} |\n",
            c.workload.name,
            field("ops_per_s"),
            field("mb_per_s")
        ));
    }
    out
}

const BEGIN: &str = "<!-- table1:begin (written by cargo xtask bench table1) -->";
const END: &str = "<!-- table1:end -->";

/// Replaces the generated part of BENCHMARKS.md's Table I section (appends one if missing).
pub fn render_into_benchmarks(block: &str) -> anyhow::Result<()> {
    let path = workspace::root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{block}{}", &text[..b], &text[e..])
        }
        _ => format!(
            "{}\n## Table I: the study's workloads\n\n{BEGIN}\n{block}{END}\n",
            text.trim_end()
        ),
    };
    std::fs::write(&path, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{percentile, summary};

    #[test]
    fn dnq_counts_as_longer_than_any_time() {
        let s = [Some(1000.0), None, Some(3000.0)];
        assert_eq!(percentile(&s, 50.0), Some(3000.0));
        assert_eq!(percentile(&s, 100.0), None);
        assert_eq!(summary(&s), "3.000 (1.000–DNQ) 1/3 DNQ");
        assert_eq!(summary(&[None, None, Some(5.0)]), "**DNQ** 2/3 DNQ");
        assert_eq!(summary(&[]), "—");
    }
}
