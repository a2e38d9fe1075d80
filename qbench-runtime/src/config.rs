//! Settings read from the environment once, when the library loads.
//!
//! Parsing is pure so that every accepted and refused spelling is covered by unit tests; a bad
//! value produces one warning and the default, never a failure: a program must not stop running
//! because of a typo in an environment variable.

use std::time::Duration;

/// The update request signal when `QBENCH_SIGNAL` is unset.
pub const DEFAULT_SIGNAL: libc::c_int = libc::SIGUSR2;
/// How long an update may wait for full quiescence before it is abandoned as DNQ.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest timeout accepted; longer values are almost certainly a unit mistake.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The runtime's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The signal that requests an update (`QBENCH_SIGNAL`).
    pub signal: libc::c_int,
    /// Abandon an update that has not quiesced after this long (`QBENCH_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Append one JSON line per update to this file (`QBENCH_REPORT`).
    pub report_path: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            signal: DEFAULT_SIGNAL,
            timeout: DEFAULT_TIMEOUT,
            report_path: None,
        }
    }
}

impl Config {
    /// Builds the settings from variables looked up by `get`; each refused value is passed to
    /// `warn` as a one-line message and replaced by its default.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        mut warn: impl FnMut(String),
    ) -> Config {
        let mut config = Config::default();
        if let Some(text) = get("QBENCH_SIGNAL") {
            match parse_signal(&text) {
                Ok(sig) => config.signal = sig,
                Err(why) => warn(format!(
                    "QBENCH_SIGNAL={text:?} ignored ({why}); using SIGUSR2"
                )),
            }
        }
        if let Some(text) = get("QBENCH_TIMEOUT_MS") {
            match parse_timeout_ms(&text) {
                Ok(timeout) => config.timeout = timeout,
                Err(why) => warn(format!(
                    "QBENCH_TIMEOUT_MS={text:?} ignored ({why}); using {} ms",
                    DEFAULT_TIMEOUT.as_millis()
                )),
            }
        }
        config.report_path = get("QBENCH_REPORT").filter(|p| !p.is_empty());
        config
    }
}

/// Accepts `SIGUSR1`, `USR1`, `usr1`, `10`, `SIGRTMIN+3`, `RTMAX-1`.
pub fn parse_signal(text: &str) -> Result<libc::c_int, String> {
    let text = text.trim();
    let sig = if let Ok(n) = text.parse::<libc::c_int>() {
        n
    } else {
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        named_signal(name).ok_or_else(|| "not a signal name or number".to_string())?
    };
    check_signal(sig)
}

fn named_signal(name: &str) -> Option<libc::c_int> {
    const NAMES: &[(&str, libc::c_int)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
        ("KILL", libc::SIGKILL),
        ("STOP", libc::SIGSTOP),
    ];
    if let Some(&(_, sig)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some(sig);
    }
    let (base, rest) = if let Some(rest) = name.strip_prefix("RTMIN") {
        (libc::SIGRTMIN(), rest)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        (libc::SIGRTMAX(), rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return Some(base);
    }
    let offset: libc::c_int = rest.get(1..)?.parse().ok()?;
    match rest.as_bytes()[0] {
        b'+' => Some(base + offset),
        b'-' => Some(base - offset),
        _ => None,
    }
}

fn check_signal(sig: libc::c_int) -> Result<libc::c_int, String> {
    if sig <= 0 || sig > libc::SIGRTMAX() {
        return Err(format!("{sig} is outside 1..={}", libc::SIGRTMAX()));
    }
    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return Err("SIGKILL and SIGSTOP cannot be caught".to_string());
    }
    // glibc keeps the first real-time signals for itself (thread cancellation, setxid).
    if sig > 31 && sig < libc::SIGRTMIN() {
        return Err(format!("signal {sig} is reserved by the C library"));
    }
    Ok(sig)
}

/// Accepts a whole number of milliseconds, 1 to one hour.
pub fn parse_timeout_ms(text: &str) -> Result<Duration, String> {
    let ms: u64 = text
        .trim()
        .parse()
        .map_err(|_| "not a whole number of milliseconds".to_string())?;
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(format!("must be between 1 and {MAX_TIMEOUT_MS}"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_spellings() {
        let rtmin = libc::SIGRTMIN();
        let rtmax = libc::SIGRTMAX();
        let cases: &[(&str, Result<libc::c_int, ()>)] = &[
            ("SIGUSR2", Ok(libc::SIGUSR2)),
            ("usr1", Ok(libc::SIGUSR1)),
            (" 10 ", Ok(10)),
            ("SIGRTMIN", Ok(rtmin)),
            ("RTMIN+3", Ok(rtmin + 3)),
            ("sigrtmax-1", Ok(rtmax - 1)),
            ("SIGKILL", Err(())),
            ("STOP", Err(())),
            ("0", Err(())),
            ("-4", Err(())),
            ("65", Err(())),
            ("32", Err(())),
            ("SIGFOO", Err(())),
            ("RTMIN*2", Err(())),
            ("RTMIN+", Err(())),
            ("", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_signal(text).map_err(|_| ()), *want, "{text:?}");
        }
    }

    #[test]
    fn timeout_spellings() {
        assert_eq!(parse_timeout_ms("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout_ms("3600000"), Ok(Duration::from_secs(3600)));
        for bad in ["0", "-5", "1.5", "1s", "", "3600001"] {
            assert!(parse_timeout_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_warn_once_each_and_fall_back() {
        let env = |k: &str| match k {
            "QBENCH_SIGNAL" => Some("SIGNOPE".to_string()),
            "QBENCH_TIMEOUT_MS" => Some("soon".to_string()),
            "QBENCH_REPORT" => Some("/tmp/r.jsonl".to_string()),
            _ => None,
        };
        let mut warnings = Vec::new();
        let config = Config::from_lookup(env, |w| warnings.push(w));
        assert_eq!(config.signal, libc::SIGUSR2);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.report_path.as_deref(), Some("/tmp/r.jsonl"));
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("QBENCH_SIGNAL=\"SIGNOPE\" ignored"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("QBENCH_TIMEOUT_MS=\"soon\" ignored"),
            "{warnings:?}"
        );
    }

    #[test]
    fn good_values_are_taken() {
        let env = |k: &str| match k {
            "QBENCH_SIGNAL" => Some("SIGUSR1".to_string()),
            "QBENCH_TIMEOUT_MS" => Some("40".to_string()),
            "QBENCH_REPORT" => Some(String::new()),
            _ => None,
        };
        let config = Config::from_lookup(env, |w| panic!("unexpected warning {w}"));
        assert_eq!(
            config,
            Config {
                signal: libc::SIGUSR1,
                timeout: Duration::from_millis(40),
                report_path: None
            }
        );
    }
}
