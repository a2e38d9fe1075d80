//! Signal names and numbers (Linux, glibc), parsed the same way by the runtime (`QBENCH_SIGNAL`)
//! and the observer (`--signal`).

use core::fmt;

/// glibc's first real-time signal available to programs (it keeps 32 and 33 for itself).
pub const RTMIN: i32 = 34;
pub const RTMAX: i32 = 64;
/// SIGUSR2: the default update request signal.
pub const USR2: i32 = 12;

const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Signals the kernel raises for a fault of the thread itself (or `abort(3)`, or a seccomp
/// trap): a handler that returns runs the faulting instruction again, and the program's own
/// handler for them (a crash reporter, a sanitizer) must stay its own.
const FAULTS: [i32; 7] = [4, 5, 6, 7, 8, 11, 31];

/// Why a signal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalError {
    NotASignal,
    OutOfRange(i32),
    Uncatchable(i32),
    Reserved(i32),
    Fault(i32),
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SignalError::NotASignal => f.write_str("not a signal name or number"),
            SignalError::OutOfRange(sig) => write!(f, "{sig} is outside 1..={RTMAX}"),
            SignalError::Uncatchable(_) => f.write_str("SIGKILL and SIGSTOP cannot be caught"),
            SignalError::Reserved(sig) => write!(f, "signal {sig} is reserved by the C library"),
            SignalError::Fault(sig) => {
                describe(sig, f)?;
                f.write_str(" reports faults and crashes; use SIGUSR2, SIGUSR1 or SIGRTMIN+N")
            }
        }
    }
}

/// Accepts `SIGUSR1`, `USR1`, `usr1`, `10`, `SIGRTMIN+3`, `RTMAX-1`; refuses, by name and by
/// number alike, signals a handler cannot catch, those that report faults, and those the C
/// library keeps.
pub fn parse(text: &str) -> Result<i32, SignalError> {
    let text = text.trim();
    let sig = match text.parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            let name = match text.get(..3) {
                Some(prefix) if prefix.eq_ignore_ascii_case("SIG") => &text[3..],
                _ => text,
            };
            named(name).ok_or(SignalError::NotASignal)?
        }
    };
    if !(1..=RTMAX).contains(&sig) {
        return Err(SignalError::OutOfRange(sig));
    }
    if sig == 9 || sig == 19 {
        return Err(SignalError::Uncatchable(sig));
    }
    if FAULTS.contains(&sig) {
        return Err(SignalError::Fault(sig));
    }
    if sig > 31 && sig < RTMIN {
        return Err(SignalError::Reserved(sig));
    }
    Ok(sig)
}

fn named(name: &str) -> Option<i32> {
    if let Some(&(_, sig)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Some(sig);
    }
    let (base, rest) = match name.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("RTMIN") => (RTMIN, &name[5..]),
        Some(p) if p.eq_ignore_ascii_case("RTMAX") => (RTMAX, &name[5..]),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(base);
    }
    let offset: i32 = rest.get(1..)?.parse().ok()?;
    match rest.as_bytes()[0] {
        b'+' => Some(base + offset),
        b'-' => Some(base - offset),
        _ => None,
    }
}

/// `SIGUSR2`, `SIGRTMIN+3` or `signal 40`-style name, for messages.
pub fn describe(sig: i32, out: &mut dyn fmt::Write) -> fmt::Result {
    if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == sig) {
        return write!(out, "SIG{name}");
    }
    if (RTMIN..=RTMAX).contains(&sig) {
        return write!(out, "SIGRTMIN+{}", sig - RTMIN);
    }
    write!(out, "signal {sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let cases: &[(&str, Result<i32, SignalError>)] = &[
            ("SIGUSR2", Ok(12)),
            ("usr1", Ok(10)),
            ("SigTerm", Ok(15)),
            (" 10 ", Ok(10)),
            ("SIGRTMIN", Ok(34)),
            ("RTMIN+3", Ok(37)),
            ("sigrtmax-1", Ok(63)),
            ("SIGKILL", Err(SignalError::Uncatchable(9))),
            ("STOP", Err(SignalError::Uncatchable(19))),
            ("19", Err(SignalError::Uncatchable(19))),
            ("SIGSEGV", Err(SignalError::Fault(11))),
            ("11", Err(SignalError::Fault(11))),
            ("bus", Err(SignalError::Fault(7))),
            ("SIGFPE", Err(SignalError::Fault(8))),
            ("8", Err(SignalError::Fault(8))),
            ("ILL", Err(SignalError::Fault(4))),
            ("SIGABRT", Err(SignalError::Fault(6))),
            ("SIGIOT", Err(SignalError::Fault(6))),
            ("SIGTRAP", Err(SignalError::Fault(5))),
            ("SIGSYS", Err(SignalError::Fault(31))),
            ("31", Err(SignalError::Fault(31))),
            ("SIGHUP", Ok(1)),
            ("STKFLT", Ok(16)),
            ("0", Err(SignalError::OutOfRange(0))),
            ("-4", Err(SignalError::OutOfRange(-4))),
            ("65", Err(SignalError::OutOfRange(65))),
            ("32", Err(SignalError::Reserved(32))),
            ("SIGFOO", Err(SignalError::NotASignal)),
            ("RTMIN*2", Err(SignalError::NotASignal)),
            ("RTMIN+", Err(SignalError::NotASignal)),
            ("", Err(SignalError::NotASignal)),
            ("SIG", Err(SignalError::NotASignal)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), *want, "{text:?}");
        }
    }

    #[test]
    fn a_fault_signal_is_refused_with_the_way_out() {
        let mut text = Buf([0; 96], 0);
        fmt::write(&mut text, format_args!("{}", SignalError::Fault(11))).expect("fits");
        assert_eq!(
            &text.0[..text.1],
            b"SIGSEGV reports faults and crashes; use SIGUSR2, SIGUSR1 or SIGRTMIN+N"
        );
    }

    struct Buf<const N: usize>([u8; N], usize);
    impl<const N: usize> fmt::Write for Buf<N> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }

    #[test]
    fn descriptions() {
        for (sig, want) in [
            (12, "SIGUSR2"),
            (37, "SIGRTMIN+3"),
            (33, "signal 33"),
            (11, "SIGSEGV"),
        ] {
            let mut buf = Buf([0; 32], 0);
            describe(sig, &mut buf).expect("fits");
            assert_eq!(&buf.0[..buf.1], want.as_bytes());
        }
    }
}
