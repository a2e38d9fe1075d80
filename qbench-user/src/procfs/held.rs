//! A process's main thread's `stat` held open and read again in place: one `pread` per look,
//! where opening it by path walks /proc each time. What a look tells: whether the process has
//! exited, and whether it still runs the program it ran (the fields an `exec` replaces).
//!
//! The descriptor stays bound to the process it was opened for: once the process is reaped a
//! read fails, even if the kernel hands its pid to a new process.

use std::os::unix::fs::FileExt as _;

/// The fields of a `stat` line that an `exec` replaces: the name, and where the new program's
/// code, data, stack, arguments and environment were placed. Two programs with the same name,
/// code size, data size and argument and environment lengths, loaded at the same addresses
/// (address randomization off), look alike: [`crate::host::request::Image`] tells those apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    comm: String,
    /// Fields 26 to 28 (`startcode`, `endcode`, `startstack`), 45 and 46 (`start_data`,
    /// `end_data`) and 48 to 51 (`arg_start` to `env_end`).
    layout: [u64; 9],
}

/// Fields of [`Program::layout`], numbered as in proc(5).
const LAYOUT_FIELDS: [usize; 9] = [26, 27, 28, 45, 46, 48, 49, 50, 51];
const LAST_FIELD: usize = 51;

/// What one look at a process says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Gone (reaped), a zombie, or dead: it has exited.
    Exited,
    /// Alive, running the program described.
    Running(Program),
}

impl Look {
    /// From a `stat` line (None: unreadable, the process is gone).
    pub fn of(stat: Option<&str>) -> Self {
        let Some(stat) = stat else {
            return Self::Exited;
        };
        match super::parse_stat(stat) {
            Some((_, 'Z' | 'X')) | None => Self::Exited,
            Some((comm, _)) => {
                let mut layout = [0; 9];
                // A field missing or malformed reads as 0 both times: no change is invented.
                let after_name = &stat[stat.rfind(')').map_or(0, |at| at + 1)..];
                for (n, field) in (3..=LAST_FIELD).zip(after_name.split_whitespace()) {
                    if let Some(at) = LAYOUT_FIELDS.iter().position(|&f| f == n) {
                        layout[at] = field.parse().unwrap_or(0);
                    }
                }
                Self::Running(Program { comm, layout })
            }
        }
    }
}

/// `/proc/PID/task/PID/stat` of one process, held open.
#[derive(Debug)]
pub struct HeldStat {
    file: std::fs::File,
    buffer: Vec<u8>,
}

impl HeldStat {
    /// Opens the main thread's `stat` of process `pid`; None when it is gone.
    pub fn open(pid: u32) -> Option<Self> {
        let path = super::proc_root().join(format!("{pid}/task/{pid}/stat"));
        Some(Self {
            file: std::fs::File::open(path).ok()?,
            buffer: vec![0; 1024],
        })
    }

    /// Reads the file again and says what it shows.
    pub fn look(&mut self) -> Look {
        let len = loop {
            match self.file.read_at(&mut self.buffer, 0) {
                Ok(n) if n < self.buffer.len() => break Some(n),
                // A line longer than the buffer (a long name cannot make one; be safe).
                Ok(_) => self.buffer.resize(self.buffer.len() * 2, 0),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        let text = len.map(|n| super::decode(&self.buffer[..n]));
        Look::of(text.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line with `state`, name `comm`, and field n holding n (from field 4 on).
    fn line(comm: &str, state: char, change: Option<(usize, u64)>) -> String {
        let fields: Vec<String> = (4..=52)
            .map(|n| match change {
                Some((at, value)) if at == n => value.to_string(),
                _ => n.to_string(),
            })
            .collect();
        format!("42 ({comm}) {state} {}", fields.join(" "))
    }

    #[test]
    fn exited_is_gone_zombie_or_dead() {
        assert_eq!(Look::of(None), Look::Exited);
        assert_eq!(Look::of(Some(&line("a", 'Z', None))), Look::Exited);
        assert_eq!(Look::of(Some(&line("a", 'X', None))), Look::Exited);
        assert_eq!(Look::of(Some("garbage")), Look::Exited);
        assert!(matches!(
            Look::of(Some(&line("a", 'S', None))),
            Look::Running(_)
        ));
    }

    #[test]
    fn an_exec_changes_the_program_and_a_busy_process_does_not() {
        let before = Look::of(Some(&line("srv) (x", 'S', None)));
        // State, CPU times, faults, RSS: what a running program changes on its own.
        for field in [3usize, 10, 14, 15, 24, 39, 52] {
            let now = if field == 3 {
                line("srv) (x", 'R', None)
            } else {
                line("srv) (x", 'S', Some((field, 7777)))
            };
            assert_eq!(Look::of(Some(&now)), before, "field {field}");
        }
        assert_ne!(Look::of(Some(&line("sleep", 'S', None))), before, "name");
        for field in LAYOUT_FIELDS {
            let now = line("srv) (x", 'S', Some((field, 7777)));
            assert_ne!(Look::of(Some(&now)), before, "field {field}");
        }
    }

    #[test]
    fn this_process_looks_alive_and_the_same_twice() {
        let pid = std::process::id();
        let mut held = HeldStat::open(pid).expect("own stat");
        let first = held.look();
        assert!(matches!(first, Look::Running(_)), "{first:?}");
        assert_eq!(held.look(), first);
        assert!(HeldStat::open(u32::MAX).is_none());
    }
}
