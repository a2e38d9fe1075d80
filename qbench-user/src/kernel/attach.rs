//! Attaching the loaded programs: uprobes at resolved file offsets, scoped to the target
//! process, the tracepoints, with tracefs mounted first when it is missing (as bpftool does for
//! bpffs), and the syscall raw tracepoints. Every link is owned by its program, so dropping the
//! `Ebpf` detaches it.

use std::{ffi::CStr, io, num::NonZeroU32, path::Path};

use aya::{
    Ebpf,
    programs::{
        Program, ProgramError, RawTracePoint, TracePoint, UProbe,
        raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
        uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope},
    },
};
use qbench_common::{programs, tracepoints::Offsets};

use super::loader::LoaderError;
use super::symbols::Location;
use crate::kernel::tracepoint_layout;

/// The tracepoints attached in every mode: `(program, category, event)`.
pub const TRACEPOINTS: [(&str, &str, &str); 3] = [
    (programs::SIGNAL, "signal", "signal_generate"),
    (programs::FORK, "sched", "sched_process_fork"),
    (programs::EXIT, "sched", "sched_process_exit"),
];

/// The tracepoint attached for a target without the runtime in the diagnosis mode: the update
/// signal delivered to a thread, which ended the call it was blocked in (EINTR or a restart)
/// before the syscall tracepoints, attached for someone else's request, could see it.
pub const DELIVER_TRACEPOINT: (&str, &str, &str) = (programs::DELIVER, "signal", "signal_deliver");

/// The raw tracepoints of syscall tracking, `(program, tracepoint)`: attached in the diagnosis
/// mode only, and there only while an update is pending, since they tax every syscall of every
/// process on the machine.
pub const SYSCALL_RAW_TRACEPOINTS: [(&str, &str); 2] = [
    (programs::SYS_ENTER, "sys_enter"),
    (programs::SYS_EXIT, "sys_exit"),
];

/// Every uprobe program of the object.
pub const UPROBES: [&str; 5] = [
    programs::ARRIVE,
    programs::DEPART,
    programs::RELEASE,
    programs::REQUEST,
    programs::POINT,
];

const TRACEFS: &CStr = c"/sys/kernel/tracing";
/// Where aya looks for tracefs: the mount point, or the old one under debugfs.
const TRACEFS_EVENTS: [&str; 2] = [
    "/sys/kernel/tracing/events",
    "/sys/kernel/debug/tracing/events",
];
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";

/// Mounts tracefs at /sys/kernel/tracing unless it (or the debugfs copy) is there already.
pub fn ensure_tracefs() -> Result<(), LoaderError> {
    if TRACEFS_EVENTS.iter().any(|dir| Path::new(dir).is_dir()) {
        return Ok(());
    }
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            TRACEFS.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoaderError::NoTracefs(io::Error::last_os_error()));
    }
    log::debug!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

/// Fails clearly on a kernel built without uprobe events (the PMU `perf_event_open` needs).
pub fn ensure_uprobes() -> Result<(), LoaderError> {
    if Path::new(UPROBE_PMU).exists() {
        Ok(())
    } else {
        Err(LoaderError::NoUprobes)
    }
}

/// A link attached by [`uprobe`] or [`tracepoints`], for [`detach_concurrently`].
#[derive(Debug)]
pub enum Attached {
    Uprobe(&'static str, UProbeLinkId),
    TracePoint(&'static str, TracePointLinkId),
    RawTracePoint(&'static str, RawTracePointLinkId),
}

/// Program `name` of `ebpf`, as the kind `T` it must be.
pub(super) fn program_as<'e, T>(
    ebpf: &'e mut Ebpf,
    name: &'static str,
) -> Result<&'e mut T, LoaderError>
where
    &'e mut T: TryFrom<&'e mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoaderError::NoProgram { name })?
        .try_into()
        .map_err(LoaderError::program(name))
}

/// Attaches uprobe `program` at `location`, firing for process `pid` only.
pub fn uprobe(
    ebpf: &mut Ebpf,
    program: &'static str,
    location: &Location,
    pid: NonZeroU32,
) -> Result<Attached, LoaderError> {
    let uprobe: &mut UProbe = program_as(ebpf, program)?;
    let link = uprobe
        .attach(
            UProbeAttachLocation::AbsoluteOffset(location.offset),
            &location.path,
            UProbeScope::OneProcess(pid),
        )
        .map_err(|source| LoaderError::Attach {
            program,
            symbol: location.symbol.clone(),
            target: location.object.clone(),
            pid: pid.get(),
            source: Box::new(source),
        })?;
    log::debug!(
        "attached {program} to {} in {} at offset {:#x}",
        location.symbol,
        location.object,
        location.offset
    );
    Ok(Attached::Uprobe(program, link))
}

/// Attaches the tracepoint programs of [`TRACEPOINTS`], and [`DELIVER_TRACEPOINT`] with
/// `deliveries`.
pub fn tracepoints(ebpf: &mut Ebpf, deliveries: bool) -> Result<Vec<Attached>, LoaderError> {
    let mut links = Vec::new();
    let deliver = deliveries.then_some(DELIVER_TRACEPOINT);
    for (program, category, event) in TRACEPOINTS.into_iter().chain(deliver) {
        let tracepoint: &mut TracePoint = program_as(ebpf, program)?;
        let link = tracepoint
            .attach(category, event)
            .map_err(attach_error(program, category, event))?;
        links.push(Attached::TracePoint(program, link));
    }
    Ok(links)
}

/// Attaches the syscall raw tracepoints of [`SYSCALL_RAW_TRACEPOINTS`] into `links`, back to
/// back (a syscall entry seen without its exit would leave a stale state). On an error, what was
/// attached before it is in `links`, for the caller to detach.
pub fn syscall_tracepoints(ebpf: &mut Ebpf, links: &mut Vec<Attached>) -> Result<(), LoaderError> {
    for (program, event) in SYSCALL_RAW_TRACEPOINTS {
        let raw: &mut RawTracePoint = program_as(ebpf, program)?;
        let link = raw
            .attach(event)
            .map_err(attach_error(program, "raw", event))?;
        links.push(Attached::RawTracePoint(program, link));
    }
    Ok(())
}

fn attach_error(
    program: &'static str,
    category: &str,
    event: &str,
) -> impl FnOnce(ProgramError) -> LoaderError {
    let tracepoint = format!("{category}:{event}");
    move |source| LoaderError::AttachTracepoint {
        program,
        tracepoint,
        source: Box::new(source),
    }
}

/// Detaches `links`, each from a thread of its own. Closing a perf-event link waits for RCU
/// grace periods (`synchronize_rcu_tasks_trace` for the BPF program, again for a tracepoint,
/// `synchronize_rcu` to remove a uprobe), and on a machine whose cores are busy each wait takes
/// from tens of milliseconds to seconds. Closed at once, the links' waits overlap (an observer
/// stopped in 0.5 s instead of 0.8–2.4 s under load); the kernel still removes uprobes one at a
/// time, which no caller can change. What cannot be taken out here is closed later, with its
/// program.
pub fn detach_concurrently(ebpf: &mut Ebpf, links: Vec<Attached>) {
    let mut owned: Vec<Box<dyn Send>> = Vec::with_capacity(links.len());
    for link in links {
        let taken: Option<Box<dyn Send>> = match link {
            Attached::Uprobe(program, id) => ebpf
                .program_mut(program)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
                .and_then(|p| p.take_link(id).ok())
                .map(|l| Box::new(l) as Box<dyn Send>),
            Attached::TracePoint(program, id) => ebpf
                .program_mut(program)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
                .and_then(|p| p.take_link(id).ok())
                .map(|l| Box::new(l) as Box<dyn Send>),
            Attached::RawTracePoint(program, id) => ebpf
                .program_mut(program)
                .and_then(|p| <&mut RawTracePoint>::try_from(p).ok())
                .and_then(|p| p.take_link(id).ok())
                .map(|l| Box::new(l) as Box<dyn Send>),
        };
        owned.extend(taken);
    }
    std::thread::scope(|scope| {
        for link in owned {
            // Without a thread, the link is closed here, in turn.
            let _ = std::thread::Builder::new()
                .name("qbench-detach".into())
                .spawn_scoped(scope, move || drop(link));
        }
    });
}

/// Where the fields the programs read lie on this kernel, from the `format` files of
/// [`TRACEPOINTS`] (and of [`DELIVER_TRACEPOINT`] with `deliveries`). Mounts tracefs first if it
/// is missing.
pub fn tracepoint_offsets(deliveries: bool) -> Result<Offsets, LoaderError> {
    ensure_tracefs()?;
    let dir = TRACEFS_EVENTS
        .iter()
        .find(|dir| Path::new(dir).is_dir())
        .unwrap_or(&TRACEFS_EVENTS[0]);
    let deliver = deliveries.then_some(DELIVER_TRACEPOINT);
    let wanted = |name: &str| {
        TRACEPOINTS
            .iter()
            .chain(&deliver)
            .any(|(_, category, event)| name.split_once('/') == Some((*category, *event)))
    };
    tracepoint_layout::offsets(wanted, |event| {
        let path = format!("{dir}/{event}/format");
        std::fs::read_to_string(&path)
            .map_err(|source| LoaderError::TracepointFormat { path, source })
    })
}

/// Loads (verifies) every program (the syscall ones only if `syscalls`, the delivery one only if
/// `deliveries`), so that a verifier rejection shows at load, not at attach.
pub fn load_programs(ebpf: &mut Ebpf, syscalls: bool, deliveries: bool) -> Result<(), LoaderError> {
    for program in UPROBES {
        let uprobe: &mut UProbe = program_as(ebpf, program)?;
        uprobe.load().map_err(LoaderError::program(program))?;
    }
    let deliver = deliveries.then_some(DELIVER_TRACEPOINT);
    for (program, _, _) in TRACEPOINTS.into_iter().chain(deliver) {
        let tracepoint: &mut TracePoint = program_as(ebpf, program)?;
        tracepoint.load().map_err(LoaderError::program(program))?;
    }
    if syscalls {
        for (program, _) in SYSCALL_RAW_TRACEPOINTS {
            let raw: &mut RawTracePoint = program_as(ebpf, program)?;
            raw.load().map_err(LoaderError::program(program))?;
        }
    }
    Ok(())
}
