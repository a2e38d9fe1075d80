//! Checks, before attaching, that this kernel's tracepoint records hold the fields the eBPF
//! programs read where the programs read them ([`qbench_common::tracepoints`]), from each
//! event's `format` file under tracefs. The programs load those fields at offsets fixed at build
//! time; on a kernel whose layout moved they would read the wrong bytes without any error, so a
//! mismatch refuses to attach instead.

use qbench_common::tracepoints::Field;

/// A field the programs read is missing, or lies elsewhere, on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "tracepoint {event} has no field `{name}` on this kernel, which qbench-trace reads at \
         offset {offset}: set its offset in qbench-common/src/tracepoints.rs from \
         /sys/kernel/tracing/events/{event}/format and rebuild"
    )]
    Missing {
        event: &'static str,
        name: &'static str,
        offset: usize,
    },
    #[error(
        "tracepoint {event} has field `{name}` at offset {found_offset} (size {found_size}) on \
         this kernel, where qbench-trace reads offset {offset} (size {size}): set it in \
         qbench-common/src/tracepoints.rs and rebuild"
    )]
    Moved {
        event: &'static str,
        name: &'static str,
        offset: usize,
        size: usize,
        found_offset: usize,
        found_size: usize,
    },
}

/// Offset and size of the field `name` in the text of a tracepoint `format` file, whose field
/// lines read `field:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;`.
pub fn find(format: &str, name: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let (declaration, attributes) = line.trim().strip_prefix("field:")?.split_once(';')?;
        // The name is the declaration's last word, without an array suffix.
        let word = declaration.split_whitespace().last()?;
        if word.split('[').next()? != name {
            return None;
        }
        let value = |key: &str| {
            attributes
                .split(';')
                .find_map(|a| a.trim().strip_prefix(key)?.parse().ok())
        };
        Some((value("offset:")?, value("size:")?))
    })
}

/// Checks `field` against the `format` text of its event.
pub fn check(field: &Field, format: &str) -> Result<(), LayoutError> {
    match find(format, field.name) {
        None => Err(LayoutError::Missing {
            event: field.event,
            name: field.name,
            offset: field.offset,
        }),
        Some((offset, size)) if (offset, size) == (field.offset, field.size) => Ok(()),
        Some((found_offset, found_size)) => Err(LayoutError::Moved {
            event: field.event,
            name: field.name,
            offset: field.offset,
            size: field.size,
            found_offset,
            found_size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use qbench_common::tracepoints;

    use super::*;

    /// `sched/sched_process_fork` as Linux 6.18 has it.
    const FORK_6_18: &str = "name: sched_process_fork
ID: 312
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\"
";

    /// The same event before Linux 6.6, with the names inline.
    const FORK_OLD: &str = "format:
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;
";

    const SYS_ENTER: &str = "format:
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;
";

    #[test]
    fn finds_fields_by_exact_name_with_arrays_and_data_loc() {
        assert_eq!(find(FORK_6_18, "parent_pid"), Some((12, 4)));
        assert_eq!(find(FORK_6_18, "child_comm"), Some((16, 4)));
        assert_eq!(find(FORK_OLD, "child_comm"), Some((28, 16)));
        assert_eq!(find(SYS_ENTER, "args"), Some((16, 48)));
        assert_eq!(find(SYS_ENTER, "id"), Some((8, 8)));
        // `pid` is not `common_pid`.
        assert_eq!(find(FORK_6_18, "pid"), None);
        assert_eq!(find("", "id"), None);
    }

    #[test]
    fn the_built_in_layout_matches_6_18_and_refuses_the_old_one() {
        assert_eq!(check(&tracepoints::FORK_CHILD_PID, FORK_6_18), Ok(()));
        assert_eq!(check(&tracepoints::FORK_PARENT_PID, FORK_6_18), Ok(()));
        assert_eq!(check(&tracepoints::SYS_ENTER_ARGS, SYS_ENTER), Ok(()));
        let err = check(&tracepoints::FORK_PARENT_PID, FORK_OLD).unwrap_err();
        assert_eq!(
            err,
            LayoutError::Moved {
                event: "sched/sched_process_fork",
                name: "parent_pid",
                offset: 12,
                size: 4,
                found_offset: 24,
                found_size: 4,
            }
        );
        assert_eq!(
            err.to_string(),
            "tracepoint sched/sched_process_fork has field `parent_pid` at offset 24 (size 4) on \
             this kernel, where qbench-trace reads offset 12 (size 4): set it in \
             qbench-common/src/tracepoints.rs and rebuild"
        );
        assert_eq!(
            check(&tracepoints::SYS_EXIT_RET, SYS_ENTER),
            Err(LayoutError::Missing {
                event: "raw_syscalls/sys_exit",
                name: "ret",
                offset: 16,
            })
        );
    }
}
