//! Attaching the loaded programs: uprobes at resolved file offsets, scoped to the target
//! process, the update request's signal (a raw tracepoint, or the formatted one where the raw
//! one cannot be used: [`SignalProbe`]), the thread tracepoints, with tracefs mounted first when
//! it is missing (as bpftool does for bpffs), and the syscall raw tracepoints. Every link is
//! owned by its program, so dropping the `Ebpf` detaches it.

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
use crate::kernel::{btf::TaskOffsets, tracepoint_layout};

/// The raw tracepoint of the update request, `(program, tracepoint)`: `signal_generate` fires
/// for every signal generated on the machine, the runtime's interruption of each of the target's
/// threads during an update among them, and a raw tracepoint formats no record of each.
pub const SIGNAL_RAW_TRACEPOINT: (&str, &str) = (programs::SIGNAL_RAW, "signal_generate");

/// The formatted tracepoint of the update request, `(program, category, event)`, where
/// [`SIGNAL_RAW_TRACEPOINT`] cannot be used: the kernel has no BTF to find the signalled task's
/// tgid with, or refused the raw tracepoint.
pub const SIGNAL_TRACEPOINT: (&str, &str, &str) = (programs::SIGNAL, "signal", "signal_generate");

/// The thread tracepoints, attached in every mode: `(program, category, event)`.
pub const TRACEPOINTS: [(&str, &str, &str); 2] = [
    (programs::FORK, "sched", "sched_process_fork"),
    (programs::EXIT, "sched", "sched_process_exit"),
];

/// Which program sees the update request's signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalProbe {
    /// [`SIGNAL_RAW_TRACEPOINT`], reading the task at these offsets (from the kernel's BTF).
    Raw(TaskOffsets),
    /// [`SIGNAL_TRACEPOINT`], and why the raw one is not used.
    Record(String),
}

impl SignalProbe {
    /// The program's name.
    pub fn program(&self) -> &'static str {
        match self {
            Self::Raw(_) => SIGNAL_RAW_TRACEPOINT.0,
            Self::Record(_) => SIGNAL_TRACEPOINT.0,
        }
    }

    /// What sees the update signal, and why, for `-v`.
    pub fn describe(&self) -> String {
        match self {
            Self::Raw(offsets) => format!(
                "the update signal is seen by the raw tracepoint signal_generate \
                 (task_struct.tgid at byte {} in the kernel's BTF)",
                offsets.tgid
            ),
            Self::Record(why) => format!(
                "the update signal is seen by the formatted tracepoint signal:signal_generate \
                 ({why})"
            ),
        }
    }
}

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

/// Attaches the update signal's program, loaded by [`load_programs`]: the raw tracepoint, or,
/// when the kernel refuses it, the formatted one, which is then loaded here and `signal` says so.
pub fn signal(ebpf: &mut Ebpf, signal: &mut SignalProbe) -> Result<Attached, LoaderError> {
    if let SignalProbe::Raw(_) = signal {
        let (program, event) = SIGNAL_RAW_TRACEPOINT;
        let raw: &mut RawTracePoint = program_as(ebpf, program)?;
        match raw.attach(event) {
            Ok(link) => return Ok(Attached::RawTracePoint(program, link)),
            Err(err) => {
                let err = attach_error(program, "raw", event)(err);
                *signal = SignalProbe::Record(with_causes(&err));
                load_tracepoint(ebpf, SIGNAL_TRACEPOINT.0)?;
            }
        }
    }
    let (program, category, event) = SIGNAL_TRACEPOINT;
    let tracepoint: &mut TracePoint = program_as(ebpf, program)?;
    let link = tracepoint
        .attach(category, event)
        .map_err(attach_error(program, category, event))?;
    Ok(Attached::TracePoint(program, link))
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

/// `err` and each of its causes, `: `-separated.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
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
    // The formatted signal tracepoint's too: it replaces the raw one if that cannot attach.
    let wanted = |name: &str| {
        TRACEPOINTS
            .iter()
            .chain([&SIGNAL_TRACEPOINT])
            .chain(&deliver)
            .any(|(_, category, event)| name.split_once('/') == Some((*category, *event)))
    };
    tracepoint_layout::offsets(wanted, |event| {
        let path = format!("{dir}/{event}/format");
        std::fs::read_to_string(&path)
            .map_err(|source| LoaderError::TracepointFormat { path, source })
    })
}

/// Loads (verifies) every program (the update signal's as `signal` says, the syscall ones only
/// if `syscalls`, the delivery one only if `deliveries`), so that a verifier rejection shows at
/// load, not at attach.
pub fn load_programs(
    ebpf: &mut Ebpf,
    signal: &SignalProbe,
    syscalls: bool,
    deliveries: bool,
) -> Result<(), LoaderError> {
    for program in UPROBES {
        let uprobe: &mut UProbe = program_as(ebpf, program)?;
        uprobe.load().map_err(LoaderError::program(program))?;
    }
    let signal = match signal {
        SignalProbe::Raw(_) => {
            load_raw_tracepoint(ebpf, SIGNAL_RAW_TRACEPOINT.0)?;
            None
        }
        SignalProbe::Record(_) => Some(SIGNAL_TRACEPOINT),
    };
    let deliver = deliveries.then_some(DELIVER_TRACEPOINT);
    for (program, _, _) in TRACEPOINTS.into_iter().chain(signal).chain(deliver) {
        load_tracepoint(ebpf, program)?;
    }
    if syscalls {
        for (program, _) in SYSCALL_RAW_TRACEPOINTS {
            load_raw_tracepoint(ebpf, program)?;
        }
    }
    Ok(())
}

fn load_tracepoint(ebpf: &mut Ebpf, program: &'static str) -> Result<(), LoaderError> {
    let tracepoint: &mut TracePoint = program_as(ebpf, program)?;
    tracepoint.load().map_err(LoaderError::program(program))
}

fn load_raw_tracepoint(ebpf: &mut Ebpf, program: &'static str) -> Result<(), LoaderError> {
    let raw: &mut RawTracePoint = program_as(ebpf, program)?;
    raw.load().map_err(LoaderError::program(program))
}
