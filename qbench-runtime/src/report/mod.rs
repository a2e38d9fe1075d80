//! The in-process measurement of one update ([`record`]), and the `QBENCH_REPORT` file it is
//! appended to.

use std::io::{Seek as _, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

pub use qbench_common::report::{Ending, MissingThread, Outcome, Report};

/// `report` as one JSON line, newline included.
pub fn json_line(report: &Report) -> String {
    let mut line = serde_json::to_string(report).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');
    line
}

/// Where reports go: a file opened for appending, or nowhere. Problems are said once on stderr
/// and never stop the program.
#[derive(Debug)]
pub struct ReportSink {
    file: Option<std::fs::File>,
    path: Option<String>,
    warned: AtomicBool,
}

impl ReportSink {
    pub fn open(path: Option<&str>) -> ReportSink {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| {
                    crate::warn(&format!(
                        "cannot open QBENCH_REPORT file {p}: {e}; reports will not be written"
                    ))
                })
                .ok()
        });
        ReportSink {
            file,
            path: path.map(str::to_string),
            warned: AtomicBool::new(false),
        }
    }

    /// A sink for a forked child: the same open file (appends from both processes interleave by
    /// whole lines, each being one write).
    pub fn duplicate(&self) -> ReportSink {
        ReportSink {
            file: self.file.as_ref().and_then(|f| f.try_clone().ok()),
            path: self.path.clone(),
            warned: AtomicBool::new(self.warned.load(Ordering::Relaxed)),
        }
    }

    pub fn write(&self, report: &Report) {
        let Some(file) = self.file.as_ref() else {
            return;
        };
        if let Err(e) = append_whole_line(file, json_line(report).as_bytes())
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            let path = self.path.as_deref().unwrap_or("?");
            crate::warn(&format!(
                "cannot write QBENCH_REPORT file {path}: {e}; the program keeps running"
            ));
        }
    }
}

/// Appends `line` in one `write(2)` (so lines from a forked child never interleave inside a
/// line), and takes back a short write: on a full disk or past `RLIMIT_FSIZE` the file would
/// otherwise keep a cut line, and the next record would be glued to it.
fn append_whole_line(mut file: &std::fs::File, line: &[u8]) -> std::io::Result<()> {
    let written = file.write(line)?;
    if written == line.len() {
        return Ok(());
    }
    // O_APPEND left the offset at the end of what was written; cut it off, unless another
    // process has appended after it meanwhile (then its line would go too: leave both).
    let end = file.stream_position()?;
    if file.metadata()?.len() == end {
        file.set_len(end - written as u64)?;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!(
            "only {written} of {} bytes could be written (disk full?); the line was taken back",
            line.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(missing: Vec<MissingThread>) -> Ending {
        Ending {
            pid: 7,
            seq: 3,
            request_ns: 1_000,
            first_arrival_ns: Some(1_500),
            last_arrival_ns: Some(1_900),
            threads: 4,
            missing,
        }
    }

    #[test]
    fn quiesced_report_derives_both_intervals() {
        let r = Report::new(ending(vec![]));
        assert_eq!(r.outcome, Outcome::Quiesced);
        assert_eq!(r.quiescence_ns, Some(400));
        assert_eq!(r.request_latency_ns, Some(900));
        assert_eq!(
            json_line(&r),
            "{\"pid\":7,\"seq\":3,\"outcome\":\"quiesced\",\"request_ns\":1000,\
             \"first_arrival_ns\":1500,\"last_arrival_ns\":1900,\"quiescence_ns\":400,\
             \"request_latency_ns\":900,\"threads\":4,\"missing\":[]}\n"
        );
    }

    #[test]
    fn dnq_report_names_missing_threads_and_escapes_names() {
        let r = Report::new(ending(vec![MissingThread {
            tid: 42,
            name: "bad\"\u{1b}[31m".into(),
        }]));
        assert_eq!(r.outcome, Outcome::Dnq);
        assert_eq!(r.quiescence_ns, None);
        assert!(
            json_line(&r).ends_with(
                "\"quiescence_ns\":null,\"request_latency_ns\":null,\"threads\":4,\
                 \"missing\":[{\"tid\":42,\"name\":\"bad\\\"\\u001b[31m\"}]}\n"
            ),
            "{}",
            json_line(&r)
        );
    }

    #[test]
    fn no_participants_quiesce_at_once() {
        let mut e = ending(vec![]);
        e.first_arrival_ns = None;
        e.last_arrival_ns = None;
        e.threads = 0;
        let r = Report::new(e);
        assert_eq!(
            (r.outcome, r.quiescence_ns, r.request_latency_ns),
            (Outcome::Quiesced, Some(0), Some(0))
        );
    }

    /// A file limited to `limit` bytes by RLIMIT_FSIZE, in a child process (the limit and the
    /// ignored SIGXFSZ must not touch the test harness): the lines that fit are whole, and the
    /// one that did not is not there at all.
    #[test]
    fn a_line_that_does_not_fit_is_taken_back_whole() {
        const CHILD: &str = "QBENCH_REPORT_TEST_CHILD";
        let line = json_line(&Report::new(ending(vec![])));
        if let Ok(path) = std::env::var(CHILD) {
            let limit = (2 * line.len() + line.len() / 2) as libc::rlim_t;
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: plain syscalls with a valid struct; this process only writes and exits.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
            }
            let sink = ReportSink::open(Some(&path));
            for _ in 0..4 {
                sink.write(&Report::new(ending(vec![])));
            }
            return;
        }
        let path = std::env::temp_dir().join(format!("qbench-report-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "report::tests::a_line_that_does_not_fit_is_taken_back_whole",
            ])
            .env(CHILD, &path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, line.repeat(2), "two whole lines, no cut third");
        std::fs::remove_file(&path).unwrap();
    }
}
