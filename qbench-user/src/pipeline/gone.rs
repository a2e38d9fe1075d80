//! How an observed process goes away: it exits (a zombie counts, its parent may not have reaped
//! it yet), or it executes another program, whose update points are not the ones probed.
//!
//! Watching costs little between updates: the process's exit is announced by a pidfd (readable
//! once every thread has exited), and each periodic look is one read of its main thread's `stat`,
//! held open ([`procfs::held`]); the program's file is looked at only when that line shows
//! another program, and every [`FULL_LOOK_EVERY`] looks in case two programs look alike in it.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::host::request::Image;
use crate::procfs;
use crate::procfs::held::{HeldStat, Look, Program};
use crate::tracker::Exit;

/// Looks at the held `stat` between two looks at the program's file as well.
const FULL_LOOK_EVERY: u32 = 16;

/// Why observing a process ended on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    Exited(Exit),
    /// It executed another program: its update points are gone.
    Executed,
}

impl Gone {
    /// How process `pid` went away since it ran `image`, if it did.
    pub fn check(pid: u32, image: Option<Image>) -> Option<Self> {
        if exited(pid) {
            // Read while it is a zombie, before its parent reaps it.
            return Some(Self::Exited(procfs::exit(pid)));
        }
        Image::changed(image, pid).then_some(Self::Executed)
    }

    /// What happened, after "process P ": `exited with status 0`, `was killed by SIGKILL`, ...
    pub fn words(self) -> String {
        match self {
            Self::Exited(how) => crate::report::output::exit_words(how),
            Self::Executed => "executed a new program; its update points are gone".to_string(),
        }
    }
}

/// What is kept to tell, cheaply and often, whether one process went away.
#[derive(Debug)]
pub struct Liveness {
    pid: u32,
    /// The program it ran at attach (None: unknown, never taken for a change).
    image: Option<Image>,
    held: Option<HeldStat>,
    /// The program as the held `stat` showed it at the last look.
    program: Option<Program>,
    /// Looks since the program's file was last looked at.
    looks: u32,
}

impl Liveness {
    /// For process `pid`, which ran `image` at attach.
    pub fn new(pid: u32, image: Option<Image>) -> Self {
        Self {
            pid,
            image,
            held: HeldStat::open(pid),
            program: None,
            looks: 0,
        }
    }

    /// How the process went away since it ran the image, if it did.
    pub fn check(&mut self) -> Option<Gone> {
        let Some(held) = &mut self.held else {
            // Not even opened: the process was gone already, or /proc is not what is expected.
            return Gone::check(self.pid, self.image);
        };
        let program = match held.look() {
            // Read while it is a zombie, before its parent reaps it.
            Look::Exited => return Some(Gone::Exited(procfs::exit(self.pid))),
            Look::Running(program) => program,
        };
        let changed = self.program.as_ref().is_some_and(|p| *p != program);
        let due = self.looks.is_multiple_of(FULL_LOOK_EVERY);
        self.looks = self.looks.wrapping_add(1);
        self.program = Some(program);
        ((changed || due) && Image::changed(self.image, self.pid)).then_some(Gone::Executed)
    }
}

/// A pidfd of process `pid`, readable once it has exited; None when the kernel has no pidfds
/// (before 5.3) or the process is gone already (the periodic look then tells).
pub fn exit_notice(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the descriptor, which stays open and the same for its lifetime.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}

/// Gone, or a zombie its parent has not reaped yet: either way it has exited.
fn exited(pid: u32) -> bool {
    matches!(procfs::state(pid, pid), None | Some('Z' | 'X'))
}

/// How a dying process ended, once its main thread is a zombie (at most 200 ms from now).
pub async fn dying_process_exit(pid: u32) -> Exit {
    for _ in 0..40 {
        if exited(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    procfs::exit(pid)
}
