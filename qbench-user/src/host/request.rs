//! Sending the update signal (`--request`) only where it requests an update: to the process
//! qbench-trace attached to, held by a pidfd (a pid reused after the target exited is never
//! signalled), while it still runs the program it attached to, and only if that program catches
//! the signal (its default action would kill or stop it; an ignored one would do nothing).
//! The decisions are pure functions of /proc's text; [`Requester`] does the I/O.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    os::unix::fs::MetadataExt as _,
};

use qbench_common::signals;

/// Why a request was not sent. Each message is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "pid {pid} ({comm}) does not catch {signal}, and {consequence}; give the signal its update \
         handler catches with --signal ({caught}), or --force-signal to send it anyway"
    )]
    NotCaught {
        pid: u32,
        comm: String,
        signal: String,
        consequence: &'static str,
        caught: String,
    },
    #[error(
        "pid {pid} ({comm}) ignores {signal}, so the kernel drops it and no update can be \
         requested with it (--force-signal or not); give the signal its update handler catches \
         with --signal ({caught})"
    )]
    Dropped {
        pid: u32,
        comm: String,
        signal: String,
        caught: String,
    },
    #[error(
        "the update request ({signal} to pid {pid}) opened no update within {waited_ms} ms: the \
         kernel did not deliver it as a request (the signal may be ignored, or taken by another \
         handler); give the signal its update handler catches with --signal"
    )]
    Unanswered {
        pid: u32,
        signal: String,
        waited_ms: u128,
    },
    #[error(
        "pid {pid} executed a new program since qbench-trace attached; its update points are \
         gone, so no request is sent (attach to it again)"
    )]
    Executed { pid: u32 },
    #[error("process {0} has exited; no request is sent")]
    Exited(u32),
    #[error("cannot hold process {pid} by a pidfd (pidfd_open needs Linux 5.3): {source}")]
    PidfdOpen {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "qbench-trace may not signal pid {pid} (another user's process): --request needs \
         CAP_KILL for it, or run it as that user"
    )]
    NotPermitted { pid: u32 },
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Send {
        pid: u32,
        signal: String,
        #[source]
        source: io::Error,
    },
}

/// SIGCHLD, SIGCONT, SIGURG, SIGWINCH: signals whose default action is to ignore them.
fn ignored_by_default(sig: i32) -> bool {
    matches!(sig, 17 | 18 | 23 | 28)
}

/// What the process does with each signal, from the masks of /proc/PID/status (`SigIgn`,
/// `SigCgt`: process-wide, as signal handlers are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dispositions {
    pub ignored: u64,
    pub caught: u64,
}

impl Dispositions {
    /// Parses the `SigIgn:` and `SigCgt:` lines; None when either is missing.
    pub fn parse(status: &str) -> Option<Self> {
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        };
        Some(Self {
            ignored: mask("SigIgn:")?,
            caught: mask("SigCgt:")?,
        })
    }

    fn has(mask: u64, sig: i32) -> bool {
        (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0
    }

    /// Whether the kernel drops `sig` sent to the process: ignored, explicitly or by default,
    /// and not caught. No request can come of it.
    pub fn drops(&self, sig: i32) -> bool {
        !Self::has(self.caught, sig) && (Self::has(self.ignored, sig) || ignored_by_default(sig))
    }

    /// None when `sig` is caught; otherwise what sending it would do instead of a request.
    pub fn refusal(&self, sig: i32) -> Option<&'static str> {
        if Self::has(self.caught, sig) {
            return None;
        }
        if Self::has(self.ignored, sig) {
            return Some("it ignores it, so a request would do nothing");
        }
        Some(match sig {
            _ if ignored_by_default(sig) => {
                "its default action ignores it, so a request would do nothing"
            }
            // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU.
            19..=22 => "its default action would stop it",
            _ => "its default action would terminate it",
        })
    }

    /// The signals caught, by name, for the error message.
    pub fn caught_names(&self) -> String {
        let mut names = String::new();
        for sig in (1..=64).filter(|&sig| Self::has(self.caught, sig)) {
            if signals::parse(&sig.to_string()).is_err() {
                // Not one qbench could use (SIGSEGV for a crash handler, glibc's own).
                continue;
            }
            if !names.is_empty() {
                names.push_str(", ");
            }
            let _ = signals::describe(sig, &mut names);
        }
        if names.is_empty() {
            "it catches none that could be".to_string()
        } else {
            format!("it catches {names}")
        }
    }
}

/// What tells one program image from the next in the same process: the executable's file, and
/// where its stack starts (randomized at every exec, so a program that executes itself again is
/// told apart too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub exe: (u64, u64),
    pub start_stack: u64,
}

impl Image {
    /// Whether process `pid` runs another image than `then` (false when either is unknown).
    pub fn changed(then: Option<Self>, pid: u32) -> bool {
        then.zip(Self::of(pid))
            .is_some_and(|(then, now)| then != now)
    }

    /// Reads the image of process `pid`; None when it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let exe = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
        let stat = crate::procfs::read(format!("/proc/{pid}/stat"))?;
        Some(Self {
            exe: (exe.dev(), exe.ino()),
            start_stack: start_stack(&stat)?,
        })
    }
}

/// Field 28 of /proc/PID/stat (`startstack`).
pub fn start_stack(stat: &str) -> Option<u64> {
    crate::procfs::stat_field(stat, 28)?.parse().ok()
}

fn signal_name(sig: i32) -> String {
    let mut name = String::new();
    let _ = signals::describe(sig, &mut name);
    name
}

/// Sends the update signal to one process, as the module says.
#[derive(Debug)]
pub struct Requester {
    pid: u32,
    signal: i32,
    force: bool,
    pidfd: OwnedFd,
    image: Option<Image>,
}

impl Requester {
    /// Holds process `pid` by a pidfd and checks that it catches `signal` (unless `force`).
    pub fn open(pid: u32, signal: i32, force: bool) -> Result<Self, RequestError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::ESRCH) => RequestError::Exited(pid),
                _ => RequestError::PidfdOpen { pid, source },
            });
        }
        // SAFETY: a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let requester = Self {
            pid,
            signal,
            force,
            pidfd,
            image: Image::of(pid),
        };
        // Signal 0 is the kernel's permission check alone: refused now, not after attaching.
        requester
            .raw_send(0)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EPERM) => RequestError::NotPermitted { pid },
                _ => RequestError::Send {
                    pid,
                    signal: signal_name(signal),
                    source,
                },
            })?;
        requester.check()?;
        Ok(requester)
    }

    /// Whether the process runs another program than when [`Self::open`] looked.
    pub fn executed(&self) -> bool {
        Image::changed(self.image, self.pid)
    }

    /// The checks made before every request.
    fn check(&self) -> Result<(), RequestError> {
        if self.executed() {
            return Err(RequestError::Executed { pid: self.pid });
        }
        let status = crate::procfs::read(format!("/proc/{}/status", self.pid))
            .ok_or(RequestError::Exited(self.pid))?;
        let dispositions = Dispositions::parse(&status).ok_or(RequestError::Exited(self.pid))?;
        let Some(consequence) = dispositions.refusal(self.signal) else {
            return Ok(());
        };
        let (pid, signal, caught) = (
            self.pid,
            signal_name(self.signal),
            dispositions.caught_names(),
        );
        let comm =
            crate::report::output::escape(&crate::procfs::comm(pid, pid).unwrap_or_default());
        // An ignored signal opens no update, whatever --force-signal says: nothing to wait for.
        if dispositions.drops(self.signal) {
            return Err(RequestError::Dropped {
                pid,
                comm,
                signal,
                caught,
            });
        }
        if self.force {
            return Ok(());
        }
        Err(RequestError::NotCaught {
            pid,
            comm,
            signal,
            consequence,
            caught,
        })
    }

    /// The error for a request sent `waited` ago that opened no update.
    pub fn unanswered(&self, waited: std::time::Duration) -> RequestError {
        RequestError::Unanswered {
            pid: self.pid,
            signal: signal_name(self.signal),
            waited_ms: waited.as_millis(),
        }
    }

    /// `pidfd_send_signal(2)` of `signal` (0: only the permission check), no siginfo (the
    /// kernel fills SI_USER).
    fn raw_send(&self, signal: i32) -> io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, a null siginfo, flags 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Checks again, then sends the signal through the pidfd: to this process or to none.
    pub fn send(&self) -> Result<(), RequestError> {
        self.check()?;
        let Err(source) = self.raw_send(self.signal) else {
            return Ok(());
        };
        Err(match source.raw_os_error() {
            Some(libc::ESRCH) => RequestError::Exited(self.pid),
            Some(libc::EPERM) => RequestError::NotPermitted { pid: self.pid },
            _ => RequestError::Send {
                pid: self.pid,
                signal: signal_name(self.signal),
                source,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/status of a program that catches SIGHUP (1), SIGINT (2), SIGSEGV (11) and
    /// SIGTERM (15), ignores SIGPIPE (13), and catches glibc's 32 and 33.
    const STATUS: &str = "Name:\tmemcached\nSigQ:\t0/127480\nSigPnd:\t0000000000000000\n\
ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\n\
SigCgt:\t0000000180004403\nCapInh:\t0000000000000000\n";

    #[test]
    fn dispositions_are_read_from_the_status_masks() {
        let d = Dispositions::parse(STATUS).unwrap();
        assert_eq!(
            d,
            Dispositions {
                ignored: 1 << 12,
                caught: (1 << 0) | (1 << 1) | (1 << 10) | (1 << 14) | (1 << 31) | (1 << 32),
            }
        );
        assert_eq!(Dispositions::parse("Name:\tx\nSigIgn:\t0\n"), None);
    }

    #[test]
    fn only_a_caught_signal_is_sent() {
        let d = Dispositions::parse(STATUS).unwrap();
        assert_eq!(d.refusal(1), None);
        assert_eq!(d.refusal(15), None);
        assert_eq!(d.refusal(12), Some("its default action would terminate it"));
        assert_eq!(d.refusal(34), Some("its default action would terminate it"));
        assert_eq!(
            d.refusal(13),
            Some("it ignores it, so a request would do nothing")
        );
        assert_eq!(d.refusal(20), Some("its default action would stop it"));
        assert_eq!(
            d.refusal(28),
            Some("its default action ignores it, so a request would do nothing")
        );
    }

    #[test]
    fn an_ignored_signal_is_dropped_by_the_kernel() {
        let d = Dispositions::parse(STATUS).unwrap();
        // SIGPIPE ignored, SIGURG ignored by default: dropped; caught or fatal ones are not.
        assert!(d.drops(13) && d.drops(23));
        assert!(!d.drops(1) && !d.drops(12) && !d.drops(20));
    }

    #[test]
    fn the_message_names_what_the_program_catches() {
        let d = Dispositions::parse(STATUS).unwrap();
        // SIGSEGV and glibc's signals are caught but are no update signal.
        assert_eq!(d.caught_names(), "it catches SIGHUP, SIGINT, SIGTERM");
        assert_eq!(
            Dispositions::default().caught_names(),
            "it catches none that could be"
        );
        let err = RequestError::NotCaught {
            pid: 42,
            comm: "memcached".into(),
            signal: signal_name(12),
            consequence: d.refusal(12).unwrap(),
            caught: d.caught_names(),
        };
        assert_eq!(
            err.to_string(),
            "pid 42 (memcached) does not catch SIGUSR2, and its default action would terminate \
             it; give the signal its update handler catches with --signal (it catches SIGHUP, \
             SIGINT, SIGTERM), or --force-signal to send it anyway"
        );
    }

    #[test]
    fn the_start_of_the_stack_is_field_28_whatever_the_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 12345 \
                    1000000 200 18446744073709551615 94000000000000 94000000100000 \
                    140735000000000 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(start_stack(stat), Some(140_735_000_000_000));
        assert_eq!(start_stack("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_held_and_its_image_does_not_change() {
        let requester = Requester::open(std::process::id(), 12, true).unwrap();
        assert!(!requester.executed());
        assert!(Image::of(std::process::id()).is_some_and(|i| i.start_stack != 0 || i.exe.1 != 0));
    }

    #[test]
    fn a_process_that_has_exited_is_never_signalled_even_if_its_pid_returns() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let requester = Requester::open(child.id(), libc::SIGTERM, true).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Reaped: the pid is free for any new process, and the pidfd still names the old one.
        assert!(matches!(requester.send(), Err(RequestError::Exited(_))));
    }
}
