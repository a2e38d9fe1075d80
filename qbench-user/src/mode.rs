//! What qbench-trace was asked to do, decided once from the parsed arguments ([`crate::cli`]):
//! check the host, observe one process (the diagnosis mode), or watch several (production).
//! Everything after this reads a [`Mode`], never the flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Args;
use crate::pipeline::Probing;

/// One of qbench-trace's modes, with exactly the settings it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--check`: whether observation would work on this host.
    Check,
    /// `--pid N`: one process, every update reported on stdout.
    Observe(Observe),
    /// `--watch`: processes watched until stopped, at no per-syscall cost.
    Watch(Watch),
}

/// The diagnosis mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observe {
    /// `--pid`: the process observed.
    pub pid: u32,
    pub probing: Probing,
    /// `--request`: qbench-trace sends the update requests, one after each report.
    pub request: bool,
    /// `--force-signal`: send the request signal even when the target does not catch it.
    pub force_signal: bool,
    /// How many updates to observe before stopping (None: until Ctrl-C).
    pub wanted: Option<u64>,
    /// `--json`: one JSON object per update on stdout instead of the table.
    pub json: bool,
    /// `--trace-out`: the Chrome trace-event file of the updates' timelines.
    pub trace_out: Option<PathBuf>,
    /// `--svg`: the SVG picture of the latest update's timeline.
    pub svg: Option<PathBuf>,
}

/// Which processes `--watch` watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// The `--pid`s, each once, in the order given.
    Pids(Vec<u32>),
    /// `--all`: every process that maps the runtime, now and later.
    All,
}

/// The production mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub targets: Targets,
    pub probing: Probing,
    /// `--metrics`: where to serve the Prometheus metrics.
    pub metrics: Option<SocketAddr>,
    pub readiness_interval: Duration,
    pub json: bool,
}

impl Mode {
    /// The mode `args` ask for, with the checks clap's attributes cannot express (several
    /// processes need `--watch`); an error is a usage error (exit status 2).
    pub fn from_args(args: Args) -> Result<Self, clap::Error> {
        if args.check {
            return Ok(Self::Check);
        }
        let probing = Probing {
            signal: args.signal,
            timeout: args.timeout,
            points: args.points,
            ring_bytes: args.ring_bytes,
            verbose: args.verbose,
        };
        if args.watch {
            let targets = if args.all {
                Targets::All
            } else {
                Targets::Pids(unique(&args.pids))
            };
            return Ok(Self::Watch(Watch {
                targets,
                probing,
                metrics: args.metrics,
                readiness_interval: args.readiness_interval,
                json: args.json,
            }));
        }
        let [pid] = args.pids[..] else {
            let mut cmd = <Args as clap::CommandFactory>::command();
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                "several --pid need --watch (the other modes observe one process)",
            ));
        };
        let wanted = match (args.count, args.request) {
            (Some(n), _) => Some(n.get()),
            (None, true) => Some(1),
            (None, false) => None,
        };
        Ok(Self::Observe(Observe {
            pid,
            probing,
            request: args.request,
            force_signal: args.force_signal,
            wanted,
            json: args.json,
            trace_out: args.trace_out,
            svg: args.svg,
        }))
    }
}

/// `pids` without repeats, in the order given (a pid watched twice would count each update
/// twice).
fn unique(pids: &[u32]) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    pids.iter()
        .copied()
        .filter(|&pid| seen.insert(pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn mode(args: &[&str]) -> Result<Mode, clap::Error> {
        let args =
            Args::try_parse_from(std::iter::once("qbench-trace").chain(args.iter().copied()))
                .expect("parses");
        Mode::from_args(args)
    }

    fn observe(args: &[&str]) -> Observe {
        match mode(args).expect("valid") {
            Mode::Observe(observe) => observe,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn one_pid_is_the_diagnosis_mode_and_request_implies_one_update() {
        let o = observe(&["--pid", "42"]);
        assert_eq!(
            (o.pid, o.request, o.wanted, o.json),
            (42, false, None, false)
        );
        assert_eq!(
            o.probing,
            Probing {
                signal: 12,
                timeout: Duration::from_secs(1),
                points: Vec::new(),
                ring_bytes: None,
                verbose: 0,
            }
        );
        assert_eq!(observe(&["-p", "42", "--request"]).wanted, Some(1));
        assert_eq!(
            observe(&["-p", "42", "--request", "--count", "11"]).wanted,
            Some(11)
        );
        assert_eq!(observe(&["-p", "42", "--count", "3"]).wanted, Some(3));
    }

    #[test]
    fn several_pids_need_watch() {
        let err = mode(&["-p", "1", "-p", "2"]).expect_err("needs --watch");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("several --pid need --watch"),
            "{err}"
        );
    }

    #[test]
    fn watch_takes_each_pid_once_or_all() {
        let Ok(Mode::Watch(w)) = mode(&["--watch", "-p", "7", "-p", "3", "-p", "7", "-p", "9"])
        else {
            panic!("watch mode");
        };
        assert_eq!(w.targets, Targets::Pids(vec![7, 3, 9]));
        assert_eq!(w.readiness_interval, Duration::from_secs(10));
        let Ok(Mode::Watch(w)) = mode(&["--watch", "--all", "--metrics", "127.0.0.1:9464"]) else {
            panic!("watch mode");
        };
        assert_eq!(w.targets, Targets::All);
        assert_eq!(w.metrics, Some("127.0.0.1:9464".parse().expect("addr")));
        assert_eq!(mode(&["--check"]).expect("valid"), Mode::Check);
    }

    #[test]
    fn a_pid_given_twice_is_watched_once() {
        assert_eq!(unique(&[7, 3, 7, 3, 9]), [7, 3, 9]);
        assert_eq!(unique(&[]), Vec::<u32>::new());
    }
}
