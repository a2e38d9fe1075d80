//! CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns()` and of the runtime's reports, and the
//! other clocks a program may sleep on.

pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// Clock `clock`'s time now (ns), or None for a clock this process cannot read (an unknown id,
/// another process's CPU clock).
pub fn now_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; an unknown clock id is an error, not UB.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
