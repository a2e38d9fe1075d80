//! Settings read from the environment once, when the library loads.
//!
//! Parsing is pure so that every accepted and refused spelling is covered by unit tests; a bad
//! value produces one warning and the default, never a failure: a program must not stop running
//! because of a typo in an environment variable.

use std::time::Duration;

/// The update request signal when `QBENCH_SIGNAL` is unset.
pub const DEFAULT_SIGNAL: libc::c_int = qbench_common::signals::USR2;
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
    qbench_common::signals::parse(text).map_err(|e| e.to_string())
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
