//! The command line of `qbench-trace`: parsing and validation only (pure). [`crate::mode`] turns
//! the arguments into the mode they ask for.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

const AFTER_HELP: &str = "\
EXAMPLES:
    qbench-trace --check                        # on a new host: can observation work here?
    qbench-trace --pid 1234                     # report every update of process 1234 until Ctrl-C
    qbench-trace --pid 1234 --request           # request one update (SIGUSR2) and report it
    qbench-trace --pid 1234 --request --count 11 --json
                                                # 11 updates, one after another, as JSON lines
    qbench-trace --pid 1234 --timeout 250ms     # call an update DNQ after 250 ms
    qbench-trace --pid 1234 --point loop_top    # a program without libqbench: its update point
    qbench-trace --pid 1234 --point libsrv.so:srv_idle --signal SIGUSR1
    qbench-trace --pid 1234 --request --trace-out update.json --svg update.svg
                                                # the timeline for Perfetto UI and as a picture
    qbench-trace --watch --all --metrics 127.0.0.1:9464
                                                # production: every process with the runtime,
                                                # Prometheus metrics, DNQs and readiness on stderr
    qbench-trace --watch --pid 1234 --pid 5678 --readiness-interval 30s

EXIT STATUS:
    0  every observed update quiesced (--watch: stopped by SIGINT or SIGTERM)
    3  at least one update did not quiesce (DNQ)
    1  could not attach or load (no such process, missing privileges, kernel features, symbols);
       --check: observation would not work
    2  usage error

Needs root, or CAP_SYS_ADMIN (uprobes; it also passes the BPF and perfmon checks) and
CAP_DAC_READ_SEARCH (reading tracefs); observes only processes it could ptrace (its own user's,
or any with CAP_SYS_PTRACE). `qbench-trace --check` says what this host lacks.";

/// Measure and explain how a running process reaches quiescence for a dynamic software update:
/// the time from the first to the last thread reaching an update point, and what each thread
/// that does not arrive is blocked in.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "qbench-trace", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The process to observe (repeat with --watch for several).
    #[arg(short, long = "pid", value_name = "PID", value_parser = parse_pid,
          required_unless_present_any = ["all", "check"])]
    pub pids: Vec<u32>,
    /// Check this host and exit: kernel features, tracefs, capabilities, and whether
    /// observation would work (exit 0 if so, 1 if not). Needs no --pid.
    #[arg(long, exclusive = true)]
    pub check: bool,
    /// Production mode: observe until stopped, at no per-syscall cost (no syscall
    /// tracepoints); log each DNQ, report readiness periodically, serve --metrics.
    #[arg(long, conflicts_with_all = ["request", "count", "trace_out", "svg"])]
    pub watch: bool,
    /// With --watch: every process that maps the runtime, found at start and rescanned every
    /// second (exited processes are dropped, new ones picked up).
    #[arg(long, requires = "watch", conflicts_with_all = ["pids", "points"])]
    pub all: bool,
    /// With --watch: serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics: Option<std::net::SocketAddr>,
    /// With --watch: how often to report what an update requested now would wait for.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub readiness_interval: Duration,
    /// Request the update(s) by sending the update signal once attached (implies --count 1
    /// unless --count is given; with --count N, a new request follows each report).
    #[arg(long)]
    pub request: bool,
    /// The update request signal: a name (SIGUSR2, USR1, SIGRTMIN+3) or a number.
    #[arg(long, default_value = "SIGUSR2", value_parser = parse_signal)]
    pub signal: i32,
    /// With --request: send the signal even when the target does not catch it (by default
    /// qbench-trace refuses, since its default action would kill or stop the target); a signal
    /// the target ignores is never sent (the kernel would drop it).
    #[arg(long, requires = "request")]
    pub force_signal: bool,
    /// Call an update DNQ (did not quiesce) when it has not quiesced after this long
    /// (e.g. 1s, 250ms, 500us).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop after this many updates (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<NonZeroU64>,
    /// The update point of a program without libqbench: SYMBOL in the executable or any library
    /// it maps, or LIB:SYMBOL. Repeat for several.
    #[arg(long = "point", value_name = "[LIB:]SYMBOL", value_parser = parse_point)]
    pub points: Vec<String>,
    /// One JSON object per update on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write the updates' timelines as Chrome trace-event JSON to FILE (rewritten after each
    /// update; open it in ui.perfetto.dev or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace_out: Option<PathBuf>,
    /// Draw the latest update's timeline as an SVG picture in FILE (rewritten after each update).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// More diagnostics on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Size of the event ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, hide = true, value_parser = parse_ring_bytes)]
    pub ring_bytes: Option<u32>,
}

fn parse_pid(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a process id (a positive number)")),
        Ok(pid) if pid > i32::MAX as u32 => Err(format!("{pid} is not a process id")),
        Ok(pid) => Ok(pid),
    }
}

fn parse_signal(text: &str) -> Result<i32, String> {
    qbench_common::signals::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

/// `1s`, `1.5s`, `250ms`, `500us`, `100ns`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 1s, 250ms)"))?;
    let scale = match unit {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, ms, us or ns)"
            ));
        }
    };
    let nanos = value * scale;
    if !(1.0..=3.6e12).contains(&nanos) {
        return Err(format!("{text:?} must be between 1ns and 1h"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

fn parse_point(text: &str) -> Result<String, String> {
    let symbol = text.rsplit_once(':').map_or(text, |(_, s)| s);
    if symbol.is_empty() || text.starts_with(':') {
        return Err(format!("{text:?}: want SYMBOL or LIB:SYMBOL"));
    }
    Ok(text.to_string())
}

fn parse_ring_bytes(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n >= 4096 && n.is_power_of_two() => Ok(n),
        _ => Err(format!("{text:?}: want a power of two of at least 4096")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("qbench-trace").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let a = parse(&["--pid", "42"]).expect("valid");
        assert_eq!(
            (a.pids, a.signal, a.timeout, a.json, a.request, a.count),
            (vec![42], 12, Duration::from_secs(1), false, false, None)
        );
    }

    #[test]
    fn every_option() {
        let a = parse(&[
            "--pid",
            "7",
            "--signal",
            "SIGRTMIN+1",
            "--timeout",
            "250ms",
            "--point",
            "libx.so:idle",
            "--point",
            "loop_top",
            "--json",
            "-vv",
            "--ring-bytes",
            "4096",
        ])
        .expect("valid");
        assert_eq!(a.signal, 35);
        assert_eq!(a.timeout, Duration::from_millis(250));
        assert_eq!(
            a.points,
            vec!["libx.so:idle".to_string(), "loop_top".to_string()]
        );
        assert_eq!((a.json, a.verbose, a.ring_bytes), (true, 2, Some(4096)));
    }

    #[test]
    fn usage_errors_exit_2_with_one_clear_reason() {
        for (args, needle) in [
            (&["--pid", "0"][..], "is not a process id"),
            (&["--pid", "abc"], "is not a process id"),
            (&[][..], "--pid"),
            (&["--pid", "1", "--signal", "SIGKILL"], "cannot be caught"),
            (&["--pid", "1", "--timeout", "soon"], "is not a duration"),
            (&["--pid", "1", "--timeout", "5m"], "unknown unit"),
            (&["--pid", "1", "--count", "0"], "count"),
            (
                &["--pid", "1", "--point", ":x"],
                "want SYMBOL or LIB:SYMBOL",
            ),
            (
                &["--pid", "1", "--point", "lib.so:"],
                "want SYMBOL or LIB:SYMBOL",
            ),
            (&["--pid", "1", "--ring-bytes", "1000"], "power of two"),
        ] {
            let err = parse(args).expect_err("invalid");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn watch_mode() {
        let a = parse(&[
            "--watch",
            "-p",
            "1",
            "-p",
            "2",
            "--metrics",
            "127.0.0.1:9464",
        ])
        .expect("valid");
        assert_eq!(a.pids, vec![1, 2]);
        assert_eq!(a.metrics, Some("127.0.0.1:9464".parse().expect("addr")));
        assert_eq!(a.readiness_interval, Duration::from_secs(10));
        let a = parse(&["--watch", "--all", "--readiness-interval", "200ms"]).expect("valid");
        assert!(a.all && a.pids.is_empty());
        assert_eq!(a.readiness_interval, Duration::from_millis(200));
        for args in [
            &["--all"][..],
            &["--watch", "--all", "-p", "1"],
            &["--watch", "-p", "1", "--request"],
            &["-p", "1", "--metrics", "127.0.0.1:1"],
            &["--watch", "-p", "1", "--metrics", "localhost"],
        ] {
            assert_eq!(parse(args).expect_err("invalid").exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn check_needs_nothing_else() {
        let a = parse(&["--check"]).expect("valid");
        assert!(a.check && a.pids.is_empty());
        for args in [&["--check", "--pid", "1"][..], &["--check", "--json"]] {
            assert_eq!(parse(args).expect_err("alone").exit_code(), 2, "{args:?}");
        }
        let help = parse(&["--help"]).expect_err("help").to_string();
        assert!(help.contains("--check") && help.contains("qbench-trace --check "));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn help_has_examples_and_exit_codes() {
        let help = parse(&["--help"]).expect_err("help").to_string();
        assert!(help.contains("EXAMPLES:") && help.contains("EXIT STATUS:"));
        assert!(help.contains("3  at least one update did not quiesce"));
    }
}
