//! How an observed process goes away: it exits (a zombie counts, its parent may not have reaped
//! it yet), or it executes another program, whose update points are not the ones probed.

use std::time::Duration;

use crate::host::request::Image;
use crate::procfs;
use crate::tracker::Exit;

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
