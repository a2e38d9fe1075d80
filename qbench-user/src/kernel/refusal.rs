//! The one-line messages of the kernel's refusals while loading and attaching: which capability
//! this process lacks for the step refused, and what tracefs's mount error means.

use std::io;

use crate::host::capabilities::{self, CapSet};
use crate::kernel::loader::os_error_in_chain;

/// Why tracefs could not be mounted: already mounted (EBUSY) but not readable by this process,
/// or not mounted and mounting refused.
pub fn tracefs_message(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "tracefs is mounted at /sys/kernel/tracing but this process may not read it; \
             qbench-trace needs CAP_DAC_READ_SEARCH (have: {})",
            CapSet::current().describe()
        ),
        Some(libc::EPERM | libc::EACCES) => format!(
            "tracefs is not mounted, and mounting it needs CAP_SYS_ADMIN (have: {}); mount it \
             with `mount -t tracefs nodev /sys/kernel/tracing`",
            CapSet::current().describe()
        ),
        _ => "tracefs is not mounted and mounting it failed; mount it with \
              `mount -t tracefs nodev /sys/kernel/tracing`"
            .to_string(),
    }
}

/// For an attach the kernel refused (EACCES, EPERM): which of `wanted` (the capabilities the
/// step needs; CAP_SYS_ADMIN passes for CAP_PERFMON) this process lacks. Empty otherwise.
pub fn refused_hint(
    err: &(dyn std::error::Error + 'static),
    wanted: &[capabilities::Cap],
) -> String {
    if !os_error_in_chain(err, &[libc::EPERM, libc::EACCES]) {
        return String::new();
    }
    let held = CapSet::current();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|&&cap| {
            let covered = held.has(cap)
                || (cap == capabilities::CAP_PERFMON && held.has(capabilities::CAP_SYS_ADMIN));
            !covered
        })
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        return format!(
            "; the kernel refused although this process has {}",
            held.describe()
        );
    }
    format!(
        "; perf_event_open was refused: qbench-trace needs {} (have: {})",
        missing.join(" and "),
        held.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_missing_capability() {
        let refused = io::Error::from_raw_os_error(libc::EACCES);
        let held = CapSet::current();
        let hint = refused_hint(&refused, &[capabilities::CAP_SYS_ADMIN]);
        if held.has(capabilities::CAP_SYS_ADMIN) {
            assert!(hint.starts_with("; the kernel refused although"), "{hint}");
        } else {
            assert!(hint.contains("needs CAP_SYS_ADMIN (have: "), "{hint}");
        }
        let other = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(refused_hint(&other, &[capabilities::CAP_SYS_ADMIN]), "");
        assert!(
            tracefs_message(&io::Error::from_raw_os_error(libc::EBUSY))
                .starts_with("tracefs is mounted at /sys/kernel/tracing but this process may not")
        );
        assert!(
            tracefs_message(&io::Error::from_raw_os_error(libc::EPERM))
                .starts_with("tracefs is not mounted, and mounting it needs CAP_SYS_ADMIN")
        );
    }
}
