//! What a guest printed on its console, read back: the kernel it booted, one result per check,
//! and the table of kernels × checks.

use std::fmt::Write as _;

/// The checks `init.sh` runs, in its order.
pub const CHECKS: [&str; 6] = [
    "capabilities",
    "quiesced",
    "dnq-lock-held",
    "point",
    "watch-metrics",
    "pictures",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    NotRun,
}

impl Status {
    fn cell(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::NotRun => "not run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// One guest's console, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Console {
    /// `uname -r` in the guest, once `/init` started.
    pub release: Option<String>,
    /// Every check of [`CHECKS`], in order; those the console does not mention are `NotRun`.
    pub checks: Vec<Check>,
    /// `/init` reached its end.
    pub done: bool,
}

impl Console {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status != Status::Ok)
    }
}

/// Reads the `QBENCH-` lines of a serial console log. Kernel messages and carriage returns
/// around them are ignored; a check printed twice keeps its last result.
pub fn parse(log: &str) -> Console {
    let mut console = Console {
        checks: CHECKS
            .iter()
            .map(|name| Check {
                name: (*name).to_owned(),
                status: Status::NotRun,
                detail: String::new(),
            })
            .collect(),
        ..Console::default()
    };
    for line in log.lines().filter_map(marker) {
        if let Some(release) = line.strip_prefix("QBENCH-BOOT ") {
            console.release = Some(release.trim().to_owned());
        } else if line == "QBENCH-DONE" {
            console.done = true;
        } else if let Some(rest) = line.strip_prefix("QBENCH-CHECK ") {
            let mut words = rest.splitn(3, ' ');
            let (Some(name), Some(status)) = (words.next(), words.next()) else {
                continue;
            };
            let status = match status {
                "ok" => Status::Ok,
                "fail" => Status::Fail,
                _ => continue,
            };
            if let Some(check) = console.checks.iter_mut().find(|c| c.name == name) {
                check.status = status;
                check.detail = words.next().unwrap_or("").to_owned();
            }
        }
    }
    console
}

/// The `QBENCH-` line in a console line: the firmware's terminal resets (`ESC c`...) can precede
/// the first one on the same line.
fn marker(line: &str) -> Option<&str> {
    line.find("QBENCH-")
        .map(|at| line[at..].trim_end_matches(['\r', ' ']))
}

/// `line` without terminal control: escape sequences (`ESC [ ... final`, `ESC c`, which the
/// firmware sends and which would reset the terminal they are shown on) and other control
/// characters are dropped.
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // A control sequence (ESC [) ends with a byte in @..~; other escapes are one
            // character after ESC.
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    let _ = chars.by_ref().find(|c| ('@'..='~').contains(c));
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The console lines that explain a failed check: what `init.sh` printed after the previous
/// check's result line, up to this check's.
pub fn relevant(log: &str, check: &str) -> Vec<String> {
    let mut since_last = Vec::new();
    for line in log.lines().map(|l| l.trim_end_matches('\r')) {
        match marker(line) {
            Some(m) => {
                let rest = m.strip_prefix("QBENCH-CHECK ").unwrap_or("");
                if rest.split(' ').next() == Some(check) {
                    return since_last;
                }
                since_last.clear();
            }
            None => since_last.push(printable(line)),
        }
    }
    Vec::new()
}

/// The last `n` lines of a log: what a guest that never finished printed last.
pub fn tail(log: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| printable(l)).collect()
}

/// The table: one row per check, one column per kernel (its label, and the guest's release when
/// it booted).
pub fn table(columns: &[(String, Console)]) -> String {
    let heads: Vec<String> = columns.iter().map(|(label, _)| label.clone()).collect();
    let first = CHECKS.iter().map(|c| c.len()).max().unwrap_or(0).max(5);
    let widths: Vec<usize> = heads.iter().map(|h| h.len().max(7)).collect();
    let mut out = String::new();
    let _ = write!(out, "{:first$}", "check");
    for (head, width) in heads.iter().zip(&widths) {
        let _ = write!(out, "  {head:width$}");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    let row = |out: &mut String, name: &str, cells: Vec<&str>| {
        let _ = write!(out, "{name:first$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:width$}");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    let booted = columns
        .iter()
        .map(|(_, c)| if c.release.is_some() { "ok" } else { "FAIL" })
        .collect();
    row(&mut out, "boot", booted);
    for (index, name) in CHECKS.iter().enumerate() {
        let cells = columns
            .iter()
            .map(|(_, c)| c.checks.get(index).map_or("not run", |k| k.status.cell()))
            .collect();
        row(&mut out, name, cells);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    0.000000] Linux version 6.1.0-57-cloud-amd64\r
\x1bc\x1b[?7l\x1b[2JQBENCH-BOOT 6.1.0-57-cloud-amd64\r
QBENCH-CHECK quiesced ok 3 updates quiesced\r
| --- /tmp/dnq-lock-held/err\r
| qbench-trace: tracepoint sched/sched_process_fork has field `parent_pid` at offset 24\r
QBENCH-CHECK dnq-lock-held fail exit 1, want 3: qbench-trace: tracepoint\r
[   12.5] random: crng init done\r
QBENCH-CHECK point ok 2 updates\r
";

    #[test]
    fn parses_release_results_and_checks_not_reached() {
        let console = parse(LOG);
        assert_eq!(console.release.as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert!(!console.done);
        let statuses: Vec<(&str, &Status)> = console
            .checks
            .iter()
            .map(|c| (c.name.as_str(), &c.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("capabilities", &Status::NotRun),
                ("quiesced", &Status::Ok),
                ("dnq-lock-held", &Status::Fail),
                ("point", &Status::Ok),
                ("watch-metrics", &Status::NotRun),
                ("pictures", &Status::NotRun),
            ]
        );
        assert_eq!(
            console.checks[2].detail,
            "exit 1, want 3: qbench-trace: tracepoint"
        );
        let failed: Vec<&str> = console.failures().map(|c| c.name.as_str()).collect();
        assert_eq!(
            failed,
            ["capabilities", "dnq-lock-held", "watch-metrics", "pictures"]
        );
    }

    #[test]
    fn unknown_checks_and_statuses_are_ignored_and_done_is_seen() {
        let console = parse("QBENCH-CHECK other ok x\nQBENCH-CHECK point maybe\nQBENCH-DONE\n");
        assert!(console.done);
        assert!(console.release.is_none());
        assert!(console.checks.iter().all(|c| c.status == Status::NotRun));
    }

    #[test]
    fn relevant_lines_are_those_since_the_previous_result() {
        assert_eq!(
            relevant(LOG, "dnq-lock-held"),
            [
                "| --- /tmp/dnq-lock-held/err",
                "| qbench-trace: tracepoint sched/sched_process_fork has field `parent_pid` at offset 24",
            ]
        );
        assert_eq!(relevant(LOG, "point"), ["[   12.5] random: crng init done"]);
        assert!(relevant(LOG, "pictures").is_empty());
        assert_eq!(tail(LOG, 1), ["QBENCH-CHECK point ok 2 updates"]);
        assert_eq!(tail("a\nb", 5), ["a", "b"]);
    }

    #[test]
    fn terminal_control_is_dropped_from_shown_lines() {
        assert_eq!(
            printable("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\x07"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(printable("a\tb \u{1b}"), "a\tb ");
        assert_eq!(tail("\x1b[2Jlast\r\n", 1), ["last"]);
    }

    #[test]
    fn the_table_has_a_row_per_check_and_a_column_per_kernel() {
        let columns = vec![
            ("6.1".to_owned(), parse(LOG)),
            ("6.12".to_owned(), Console::default()),
        ];
        assert_eq!(
            table(&columns),
            "\
check          6.1      6.12
boot           ok       FAIL
capabilities   not run  not run
quiesced       ok       not run
dnq-lock-held  FAIL     not run
point          ok       not run
watch-metrics  not run  not run
pictures       not run  not run"
        );
    }
}
