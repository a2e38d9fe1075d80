//! How a target process ended, for an update its exit cut short.

/// How a process ended, as far as /proc could tell before its parent reaped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(status)`.
    Status(i32),
    /// Killed by a signal.
    Signal { signal: i32, core_dumped: bool },
    /// Reaped before it could be read.
    Unknown,
}

impl Exit {
    /// From a wait status (`/proc/PID/stat`'s `exit_code` of a zombie).
    pub fn from_wait_status(code: i32) -> Self {
        match code & 0x7f {
            0 => Exit::Status((code >> 8) & 0xff),
            signal => Exit::Signal {
                signal,
                core_dumped: code & 0x80 != 0,
            },
        }
    }
}
