//! RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps to (newer ones charge the cgroup):
//! raised before loading, and named in a refusal when it stayed too low.

use std::io;

/// On a kernel before 5.11, which charges BPF maps to RLIMIT_MEMLOCK, the limit in KiB when it
/// is finite (raising it failed): then a refused map is that limit's doing, not a capability's.
pub(super) fn limit_that_applies() -> Option<u64> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let old_kernel =
        crate::host::check::kernel_version(release.trim()).is_some_and(|v| v < (5, 11));
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit struct.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    (old_kernel && read && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur / 1024)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones charge the cgroup. Without
/// CAP_SYS_RESOURCE the limit cannot be raised, which is harmless on a newer kernel and named
/// in the error on an older one ([`LoaderError::MemlockTooLow`](super::loader::LoaderError::MemlockTooLow)).
pub(super) fn raise_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "cannot raise RLIMIT_MEMLOCK ({}); relying on cgroup accounting of BPF memory",
            io::Error::last_os_error()
        );
    }
}
