//! Where the tracepoint fields the eBPF programs read ([`qbench_common::tracepoints::ALL`]) lie on
//! the running kernel, read from each event's `format` file under tracefs before the programs are
//! loaded. Layouts differ between kernels (`sched_process_fork`'s pids moved after Linux 6.12), so the
//! offsets are found here and handed to the programs as a read-only global; what cannot be
//! handled (a field gone, or of another size) refuses to load rather than read the wrong bytes.

use qbench_common::tracepoints::{ALL, Field, Offsets};

/// A field the programs read cannot be read on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "this kernel's tracepoint {event} has no field `{name}`, which qbench-trace reads; this \
         kernel is not supported (run `qbench-trace --check` for what it has)"
    )]
    Missing {
        event: &'static str,
        name: &'static str,
    },
    #[error(
        "this kernel's tracepoint {event} has field `{name}` of {found_size} bytes at offset \
         {found_offset}, where qbench-trace reads {size} bytes at a multiple of {load}; this \
         kernel is not supported (run `qbench-trace --check` for what it has)"
    )]
    Unreadable {
        event: &'static str,
        name: &'static str,
        size: usize,
        load: usize,
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

/// The offset of `field` in the `format` text of its event: it must be there, of the size the
/// programs read, and aligned for their loads (the verifier rejects a misaligned context load).
pub fn locate(field: &Field, format: &str) -> Result<u32, LayoutError> {
    let (offset, size) = find(format, field.name).ok_or(LayoutError::Missing {
        event: field.event,
        name: field.name,
    })?;
    let readable = size == field.size && offset % field.load == 0;
    match u32::try_from(offset) {
        Ok(offset) if readable => Ok(offset),
        _ => Err(LayoutError::Unreadable {
            event: field.event,
            name: field.name,
            size: field.size,
            load: field.load,
            found_offset: offset,
            found_size: size,
        }),
    }
}

/// The offsets of every field of the events `wanted` accepts, from `format_of(event)` (the text
/// of the event's `format` file, or the error reading it). Fields of other events stay 0: their
/// programs are not loaded.
pub fn offsets<E>(
    wanted: impl Fn(&str) -> bool,
    mut format_of: impl FnMut(&'static str) -> Result<String, E>,
) -> Result<Offsets, E>
where
    E: From<LayoutError>,
{
    let mut offsets = Offsets::UNSET;
    let mut last: Option<(&str, String)> = None;
    for field in ALL.iter().filter(|field| wanted(field.event)) {
        let format = match last.take() {
            Some((event, text)) if event == field.event => text,
            _ => format_of(field.event)?,
        };
        offsets.at[field.id as usize] = locate(field, &format)?;
        last = Some((field.event, format));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use qbench_common::tracepoints::FieldId;

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

    /// The same event on Linux 5.10 to 6.12, with the names inline.
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

    const SIGNAL: &str = "format:
\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int errno;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int code;\toffset:16;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:36;\tsize:4;\tsigned:1;
\tfield:int group;\toffset:40;\tsize:4;\tsigned:1;
\tfield:int result;\toffset:44;\tsize:4;\tsigned:1;
";

    /// `signal/signal_deliver`, the same from Linux 5.10 to 6.18.
    const DELIVER: &str = "format:
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int errno;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int code;\toffset:16;\tsize:4;\tsigned:1;
\tfield:unsigned long sa_handler;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long sa_flags;\toffset:32;\tsize:8;\tsigned:0;
";

    fn field(id: FieldId) -> Field {
        ALL[id as usize]
    }

    /// The format texts of a kernel whose fork event is `fork`.
    fn kernel(fork: &'static str) -> impl FnMut(&'static str) -> Result<String, LayoutError> {
        move |event| {
            Ok(match event {
                "signal/signal_generate" => SIGNAL,
                "sched/sched_process_fork" => fork,
                "signal/signal_deliver" => DELIVER,
                other => panic!("no format for {other}"),
            }
            .to_owned())
        }
    }

    #[test]
    fn the_fork_pids_are_found_in_both_layouts() {
        let parent = field(FieldId::ForkParentPid);
        let child = field(FieldId::ForkChildPid);
        assert_eq!(locate(&parent, FORK_6_18), Ok(12));
        assert_eq!(locate(&child, FORK_6_18), Ok(20));
        assert_eq!(locate(&parent, FORK_OLD), Ok(24));
        assert_eq!(locate(&child, FORK_OLD), Ok(44));
    }

    #[test]
    fn every_offset_is_set_from_the_kernels_formats() {
        let all = |_: &str| true;
        let new = offsets(all, kernel(FORK_6_18)).unwrap();
        assert_eq!(new.at, [8, 16, 36, 44, 12, 20, 8, 16, 24, 32]);
        let old = offsets(all, kernel(FORK_OLD)).unwrap();
        assert_eq!(old.at, [8, 16, 36, 44, 24, 44, 8, 16, 24, 32]);
    }

    #[test]
    fn events_not_wanted_are_neither_read_nor_set() {
        let mut read = Vec::new();
        let mut formats = kernel(FORK_OLD);
        let found = offsets(
            |event| event == "signal/signal_generate",
            |event| {
                read.push(event);
                formats(event)
            },
        )
        .unwrap();
        assert_eq!(found.at, [8, 16, 36, 44, 0, 0, 0, 0, 0, 0]);
        // Each wanted event's file is read once, however many of its fields are used.
        assert_eq!(read, ["signal/signal_generate"]);
    }

    #[test]
    fn a_missing_or_resized_field_is_refused_without_asking_for_a_rebuild() {
        let err = locate(&field(FieldId::ForkChildPid), SIGNAL).unwrap_err();
        assert_eq!(
            err,
            LayoutError::Missing {
                event: "sched/sched_process_fork",
                name: "child_pid",
            }
        );
        let narrow = FORK_OLD.replace(
            "pid_t parent_pid;\toffset:24;\tsize:4",
            "short parent_pid;\toffset:24;\tsize:2",
        );
        let err = locate(&field(FieldId::ForkParentPid), &narrow).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this kernel's tracepoint sched/sched_process_fork has field `parent_pid` of 2 bytes at \
             offset 24, where qbench-trace reads 4 bytes at a multiple of 4; this kernel is not \
             supported (run `qbench-trace --check` for what it has)"
        );
        let misaligned = SIGNAL.replace("offset:8;\tsize:4", "offset:10;\tsize:4");
        assert!(matches!(
            locate(&field(FieldId::SignalSig), &misaligned),
            Err(LayoutError::Unreadable {
                found_offset: 10,
                load: 4,
                ..
            })
        ));
        assert!(!err.to_string().contains("rebuild"));
    }
}
