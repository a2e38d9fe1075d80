//! Loads qbench's eBPF object for one target process, attaches its programs, and reads its maps.
//!
//! ```no_run
//! # use std::num::NonZeroU32;
//! # use qbench_user::kernel::loader::{AttachMode, LoadOptions, Probes};
//! # use qbench_user::kernel::symbols::TargetObjects;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pid = NonZeroU32::new(1234).unwrap();
//! let options = LoadOptions { blocking: vec![0, 202], ..LoadOptions::default() }; // read, futex
//! let mut probes = Probes::load(pid, 12, &options)?; // SIGUSR2
//! let mode = AttachMode::detect(&TargetObjects::of(pid)?, &[])?;
//! probes.attach(&mode)?; // syscall tracepoints too (the default): seeds the thread map
//! let mut events = probes.take_events()?; // aya RingBuf: poll its fd, then `next()`
//! # Ok(()) }
//! ```
//!
//! The object is built into this binary by `build.rs`; when the eBPF toolchain was missing at
//! build time it is an empty stub, and loading fails with [`LoaderError::NotBuilt`]. Nothing is
//! pinned: dropping [`Probes`] detaches every link and unloads every program and map.

use std::{io, num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::ProgramError,
};
use qbench_common::{MAX_SYSCALLS, MISS_COUNTERS, ThreadState, Window, globals, maps, programs};

use super::attach::SignalProbe;
use super::symbols::{Location, RuntimeAnchors, SymbolError, TargetObjects};
use super::{attach, btf, memlock, sizing};
use crate::host::capabilities::{self, CapSet};
use crate::kernel::refusal::{refused_hint, tracefs_message};

/// The eBPF object, or an empty stub (see `build.rs`).
#[cfg(not(qbench_ebpf_stub))]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/qbench"));
#[cfg(qbench_ebpf_stub)]
static OBJECT: &[u8] = &[];

/// Whether this binary carries real eBPF programs (false when built without the toolchain).
pub fn ebpf_built() -> bool {
    !OBJECT.is_empty()
}

/// Why loading, attaching or reading failed. aya's errors are boxed to keep `Result`s small.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("eBPF programs were not built (run `cargo xtask setup`)")]
    NotBuilt,
    #[error(
        "loading the eBPF programs was refused; qbench-trace needs CAP_BPF and CAP_PERFMON, or \
         CAP_SYS_ADMIN (have: {have})"
    )]
    NeedsPrivilege {
        have: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error(
        "loading the eBPF programs was refused: this kernel (before Linux 5.11) charges BPF \
         memory to RLIMIT_MEMLOCK, which is {limit_kib} KiB here, and raising it needs \
         CAP_SYS_RESOURCE (have: {have}); grant it, or raise the limit (`ulimit -l unlimited`, \
         or LimitMEMLOCK=infinity in a systemd unit)"
    )]
    MemlockTooLow {
        limit_kib: u64,
        have: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing; CONFIG_DEBUG_INFO_BTF)")]
    NoBtf(#[source] Box<aya::EbpfError>),
    #[error("this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF needs Linux 5.8 or newer)")]
    NoRingBuf(#[source] Box<aya::EbpfError>),
    #[error(
        "this kernel has no uprobes (/sys/bus/event_source/devices/uprobe is missing; \
         CONFIG_UPROBE_EVENTS)"
    )]
    NoUprobes,
    #[error("{}", tracefs_message(.0))]
    NoTracefs(#[source] io::Error),
    #[error("cannot load the eBPF object into the kernel")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no program {name}")]
    NoProgram { name: &'static str },
    #[error("the eBPF object has no map {name}")]
    NoMap { name: &'static str },
    #[error("eBPF program {name} is not usable")]
    Program {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "cannot attach uprobe {program} to {symbol} in {target} for pid {pid}{}",
        refused_hint(source.as_ref(), &[capabilities::CAP_SYS_ADMIN])
    )]
    Attach {
        program: &'static str,
        symbol: String,
        target: String,
        pid: u32,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot read {path} (the layout of a tracepoint's record)")]
    TracepointFormat {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    TracepointLayout(#[from] crate::kernel::tracepoint_layout::LayoutError),
    #[error(
        "cannot attach {program} to tracepoint {tracepoint}{}",
        refused_hint(
            source.as_ref(),
            &[capabilities::CAP_PERFMON, capabilities::CAP_DAC_READ_SEARCH]
        )
    )]
    AttachTracepoint {
        program: &'static str,
        tracepoint: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot access map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("syscall number {nr} cannot be tracked (the limit is {MAX_SYSCALLS})")]
    SyscallOutOfRange { nr: u32 },
    #[error(transparent)]
    Symbols(#[from] SymbolError),
}

impl LoaderError {
    pub(super) fn program(name: &'static str) -> impl FnOnce(ProgramError) -> Self {
        move |source| Self::Program {
            name,
            source: Box::new(source),
        }
    }

    pub(super) fn map(name: &'static str) -> impl FnOnce(MapError) -> Self {
        move |source| Self::Map {
            name,
            source: Box::new(source),
        }
    }

    /// Names the likely cause of a failed load: privileges, ring buffers, BTF.
    fn classify_load(err: aya::EbpfError) -> Self {
        if os_error_in_chain(&err, &[libc::EPERM])
            && let Some(limit_kib) = memlock::limit_that_applies()
        {
            return Self::MemlockTooLow {
                limit_kib,
                have: CapSet::current().describe(),
                source: Box::new(err),
            };
        }
        if os_error_in_chain(&err, &[libc::EPERM, libc::EACCES]) {
            return Self::NeedsPrivilege {
                have: CapSet::current().describe(),
                source: Box::new(err),
            };
        }
        if let aya::EbpfError::MapError(MapError::CreateError { name, .. }) = &err
            && name == maps::EVENTS
        {
            return Self::NoRingBuf(Box::new(err));
        }
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Self::NoBtf(Box::new(err));
        }
        Self::Load(Box::new(err))
    }
}

/// Whether an `io::Error` with one of `codes` is among the causes of `err`.
pub(crate) fn os_error_in_chain(err: &(dyn std::error::Error + 'static), codes: &[i32]) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.raw_os_error().is_some_and(|code| codes.contains(&code))
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// What [`Probes::load`] can be told besides the target and the signal.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Size of the event ring buffer in bytes (a power of two multiple of the page size);
    /// `None` sizes it from the target's thread count ([`sizing::events_bytes_for`]).
    pub events_bytes: Option<u32>,
    /// The syscall numbers whose entry and exit are tracked (the blocking calls).
    pub blocking: Vec<u32>,
    /// When the syscall raw tracepoints are attached ([`SyscallTracking::Always`] by default).
    pub syscalls: SyscallTracking,
    /// Whether the update signal's deliveries are seen (`signal:signal_deliver`): for a target
    /// without the runtime whose syscalls are tracked [`SyscallTracking::OnDemand`], where a
    /// call the request's signal ended comes before the syscall tracepoints are attached.
    pub deliveries: bool,
    /// Where the runtime's `qbench_state` is in the target, when the update's arrivals are read
    /// from its participants table at the release: the arrival anchor is then not probed, so
    /// the threads racing to park run no probe. None: one uprobe per arrival.
    pub arrivals_from_state: Option<u64>,
    /// With [`SyscallTracking::OnDemand`], whether a request wakes the reader only once the
    /// update is late, at the runtime's next interruption of one of its threads
    /// (`qbench_common::WAKE_WHEN_LATE`: a target with the runtime), rather than at once
    /// (`WAKE_AT_REQUEST`).
    pub wake_when_late: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            events_bytes: None,
            blocking: Vec::new(),
            syscalls: SyscallTracking::Always,
            deliveries: false,
            arrivals_from_state: None,
            wake_when_late: false,
        }
    }
}

/// When the syscall raw tracepoints are attached. They tax every syscall of every process on
/// the machine while attached (docs/ARCHITECTURE.md, measured costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallTracking {
    /// Not even loaded: the production mode (`--watch`) reads blocked calls from /proc.
    Off,
    /// Attached by [`Probes::attach`] with the rest and kept until drop: the kernel side as its
    /// own tests drive it, with the thread table up to date at all times.
    Always,
    /// Loaded, but attached only by [`Probes::start_tracking`] and detached by
    /// [`Probes::stop_tracking`]: the diagnosis mode, while an update is pending.
    OnDemand,
}

/// Which update points to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachMode {
    /// The target has the runtime: its request, arrive and depart anchors (boxed: three
    /// locations make this variant ten times the other's size).
    Runtime(Box<RuntimeAnchors>),
    /// A target without the runtime: `qbench_update` or the `--point`s.
    Points(Vec<Location>),
}

impl AttachMode {
    /// `--point`s when given (each `SYMBOL` or `LIB:SYMBOL`), else the runtime's anchors when
    /// the target has them, else `qbench_update`; the error names the objects searched.
    pub fn detect(objects: &TargetObjects, points: &[String]) -> Result<Self, SymbolError> {
        if !points.is_empty() {
            let points = points.iter().map(|point| objects.resolve_point(point));
            return Ok(Self::Points(points.collect::<Result<_, _>>()?));
        }
        if let Some(anchors) = objects.runtime_anchors() {
            return Ok(Self::Runtime(Box::new(anchors)));
        }
        Ok(Self::Points(vec![objects.update_point()?]))
    }
}

/// The loaded programs and maps, observing one target process. Dropping it detaches and unloads
/// everything.
#[derive(Debug)]
pub struct Probes {
    pub(super) ebpf: Ebpf,
    /// What [`Self::attach`] attached, detached all at once on drop.
    links: Vec<attach::Attached>,
    /// The syscall raw tracepoints while attached ([`Self::start_tracking`]).
    pub(super) tracking: Vec<attach::Attached>,
    /// When they were last attached (CLOCK_MONOTONIC ns).
    pub(super) tracking_since_ns: u64,
    tgid: NonZeroU32,
    pub(super) blocking: Vec<u32>,
    pub(super) syscalls: SyscallTracking,
    /// The delivery tracepoint is loaded, and attached with the others.
    deliveries: bool,
    /// Which program sees the update request's signal.
    signal: SignalProbe,
    /// The release program reads the arrivals ([`LoadOptions::arrivals_from_state`]): the
    /// arrival anchor is not probed.
    arrivals_from_state: bool,
    /// [`LoadOptions::wake_when_late`].
    pub(super) wake_when_late: bool,
}

impl Probes {
    /// Loads the object built into this binary for process `tgid` and update signal `signal`,
    /// verifies every program and fills the tracked-syscall map.
    pub fn load(tgid: NonZeroU32, signal: u32, options: &LoadOptions) -> Result<Self, LoaderError> {
        Self::load_object(OBJECT, tgid, signal, options)
    }

    /// Like [`Probes::load`] for `object` (an eBPF ELF object; empty means "not built").
    pub fn load_object(
        object: &[u8],
        tgid: NonZeroU32,
        signal: u32,
        options: &LoadOptions,
    ) -> Result<Self, LoaderError> {
        if object.is_empty() {
            return Err(LoaderError::NotBuilt);
        }
        if let Some(&nr) = options.blocking.iter().find(|&&nr| nr >= MAX_SYSCALLS) {
            return Err(LoaderError::SyscallOutOfRange { nr });
        }
        memlock::raise_limit();
        let target = tgid.get();
        // The fields the tracepoint programs read are wherever this kernel puts them.
        let offsets = attach::tracepoint_offsets(options.deliveries)?;
        // The signalled task's tgid is read from the task where the kernel's BTF says where.
        let signal_probe = match btf::task_offsets() {
            Ok(task) => SignalProbe::Raw(task),
            Err(err) => SignalProbe::Record(err.to_string()),
        };
        let task = match &signal_probe {
            SignalProbe::Raw(task) => *task,
            SignalProbe::Record(_) => btf::TaskOffsets { pid: 0, tgid: 0 },
        };
        let mut loader = EbpfLoader::new();
        // must_exist: a global renamed on one side only fails here, not silently.
        loader
            .override_global(globals::TARGET_TGID, &target, true)
            .override_global(globals::UPDATE_SIGNAL, &signal, true)
            .override_global(globals::TRACEPOINT_OFFSETS, &offsets, true)
            .override_global(globals::TASK_PID_OFFSET, &task.pid, true)
            .override_global(globals::TASK_TGID_OFFSET, &task.tgid, true);
        let state_address = options.arrivals_from_state.unwrap_or(0);
        loader.override_global(globals::STATE_ADDRESS, &state_address, true);
        let threads = sizing::thread_count(target);
        let events_bytes = options
            .events_bytes
            .unwrap_or_else(|| sizing::events_bytes_for(threads));
        loader
            .map_max_entries(maps::EVENTS, events_bytes)
            .map_max_entries(maps::THREADS, sizing::thread_entries_for(threads));
        let mut ebpf = loader.load(object).map_err(LoaderError::classify_load)?;
        let syscalls = options.syscalls != SyscallTracking::Off;
        attach::load_programs(&mut ebpf, &signal_probe, syscalls, options.deliveries)?;
        let mut probes = Self {
            ebpf,
            links: Vec::new(),
            tracking: Vec::new(),
            tracking_since_ns: 0,
            tgid,
            blocking: options.blocking.clone(),
            syscalls: options.syscalls,
            deliveries: options.deliveries,
            signal: signal_probe,
            arrivals_from_state: options.arrivals_from_state.is_some(),
            wake_when_late: options.wake_when_late,
        };
        probes.fill_blocking()?;
        // Detached until wanted: anyone else's request must wake the reader to attach them.
        probes.wake_on_request(options.syscalls == SyscallTracking::OnDemand)?;
        Ok(probes)
    }

    /// The process the programs filter on.
    pub fn tgid(&self) -> NonZeroU32 {
        self.tgid
    }

    /// Which program sees the update request's signal (once attached, the one attached).
    pub fn signal_probe(&self) -> &SignalProbe {
        &self.signal
    }

    fn fill_blocking(&mut self) -> Result<(), LoaderError> {
        let name = maps::BLOCKING;
        let mut map: Array<&mut MapData, u32> = map_mut(&mut self.ebpf, name)?;
        for &nr in &self.blocking {
            map.set(nr, 1, 0).map_err(LoaderError::map(name))?;
        }
        Ok(())
    }

    /// Attaches the update-point uprobes of `mode` (scoped to the target), then the tracepoints
    /// (the update signal's, raw where it can be: [`Self::signal_probe`]; the threads'), then, with [`SyscallTracking::Always`], the syscall raw tracepoints
    /// ([`Self::start_tracking`], which seeds the thread map from /proc).
    pub fn attach(&mut self, mode: &AttachMode) -> Result<(), LoaderError> {
        attach::ensure_uprobes()?;
        match mode {
            AttachMode::Runtime(anchors) => {
                // The release program reads the arrivals only where there is a release anchor.
                let from_state = self.arrivals_from_state && anchors.release.is_some();
                let arrive = (!from_state).then_some(&anchors.arrive);
                let uprobes = [
                    (programs::REQUEST, Some(&anchors.request)),
                    (programs::ARRIVE, arrive),
                    (programs::DEPART, Some(&anchors.depart)),
                ];
                let uprobes = uprobes.into_iter().filter_map(|(p, at)| Some((p, at?)));
                for (program, location) in uprobes {
                    let link = attach::uprobe(&mut self.ebpf, program, location, self.tgid)?;
                    self.links.push(link);
                }
                if let Some(release) = &anchors.release {
                    let link =
                        attach::uprobe(&mut self.ebpf, programs::RELEASE, release, self.tgid)?;
                    self.links.push(link);
                }
            }
            AttachMode::Points(points) => {
                for location in points {
                    let link =
                        attach::uprobe(&mut self.ebpf, programs::POINT, location, self.tgid)?;
                    self.links.push(link);
                }
            }
        }
        let link = attach::signal(&mut self.ebpf, &mut self.signal)?;
        self.links.push(link);
        let links = attach::tracepoints(&mut self.ebpf, self.deliveries)?;
        self.links.extend(links);
        if self.syscalls == SyscallTracking::Always {
            self.start_tracking()?;
        }
        Ok(())
    }

    /// Attaches the arrival program alone at `symbol` in `target` (an executable or library
    /// path); [`Self::attach`] is the whole observer.
    pub fn attach_arrive(&mut self, target: &Path, symbol: &str) -> Result<(), LoaderError> {
        let name = programs::ARRIVE;
        let program: &mut aya::programs::UProbe = attach::program_as(&mut self.ebpf, name)?;
        program
            .attach(
                symbol,
                target,
                aya::programs::uprobe::UProbeScope::OneProcess(self.tgid),
            )
            .map_err(|source| LoaderError::Attach {
                program: name,
                symbol: symbol.to_owned(),
                target: target.display().to_string(),
                pid: self.tgid.get(),
                source: source.into(),
            })?;
        Ok(())
    }

    /// Takes the event ring buffer out, for the reader (poll its fd, then drain `next()`).
    /// Can be done once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoaderError> {
        let name = maps::EVENTS;
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(LoaderError::NoMap { name })?;
        RingBuf::try_from(map).map_err(LoaderError::map(name))
    }

    /// Every thread of the target the kernel keeps state for, by tid.
    pub fn snapshot_threads(&self) -> Result<Vec<(u32, ThreadState)>, LoaderError> {
        self.by_tid(maps::THREADS)
    }

    /// The update window as the kernel last left it.
    pub fn window(&self) -> Result<Window, LoaderError> {
        let name = maps::WINDOW;
        let map: Array<&MapData, Window> = map(&self.ebpf, name)?;
        map.get(&0, 0).map_err(LoaderError::map(name))
    }

    /// Opens the window from userspace, for an update already pending at attach (no request
    /// will open it); `t0_ns` is its request. Returns the window's sequence number.
    pub fn open_window(&mut self, t0_ns: u64) -> Result<u64, LoaderError> {
        let name = maps::WINDOW;
        let mut map: Array<&mut MapData, Window> = map_mut(&mut self.ebpf, name)?;
        let window = map.get(&0, 0).map_err(LoaderError::map(name))?;
        let seq = window.seq.wrapping_add(1);
        let opened = Window {
            open: 1,
            seq,
            t0_ns,
            ..window
        };
        map.set(0, opened, 0).map_err(LoaderError::map(name))?;
        Ok(seq)
    }

    /// Closes the window (keeping its `seq` and `t0_ns`) once the update has been reported, so
    /// that the next request opens a new one.
    pub fn close_window(&mut self) -> Result<(), LoaderError> {
        let name = maps::WINDOW;
        let mut map: Array<&mut MapData, Window> = map_mut(&mut self.ebpf, name)?;
        let window = map.get(&0, 0).map_err(LoaderError::map(name))?;
        let closed = Window { open: 0, ..window };
        map.set(0, closed, 0).map_err(LoaderError::map(name))
    }

    /// Events the programs could not record since load, all kinds, all CPUs: what a report
    /// counts as lost (besides the records it could not decode).
    pub fn lost_events(&self) -> Result<u64, LoaderError> {
        Ok(self.misses()?.iter().sum())
    }

    /// Events that could not be recorded, by `MISS_*` index, summed over CPUs.
    pub fn misses(&self) -> Result<[u64; MISS_COUNTERS as usize], LoaderError> {
        let name = maps::MISSES;
        let map: PerCpuArray<&MapData, u64> = map(&self.ebpf, name)?;
        let mut sums = [0; MISS_COUNTERS as usize];
        for (index, sum) in (0..MISS_COUNTERS).zip(&mut sums) {
            let per_cpu = map.get(&index, 0).map_err(LoaderError::map(name))?;
            *sum = per_cpu.iter().sum();
        }
        Ok(sums)
    }

    /// Every entry of the per-thread hash map `name`.
    fn by_tid<V: aya::Pod, C: FromIterator<(u32, V)>>(
        &self,
        name: &'static str,
    ) -> Result<C, LoaderError> {
        let map: HashMap<&MapData, u32, V> = map(&self.ebpf, name)?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(LoaderError::map(name))
    }
}

impl Drop for Probes {
    /// Detaches every link at once ([`attach::detach_concurrently`]); the programs and maps
    /// go with the `Ebpf` right after.
    fn drop(&mut self) {
        let mut links = std::mem::take(&mut self.links);
        links.append(&mut self.tracking);
        attach::detach_concurrently(&mut self.ebpf, links);
    }
}

/// Map `name` of `ebpf` as the typed map `M`.
pub(super) fn map<'a, M>(ebpf: &'a Ebpf, name: &'static str) -> Result<M, LoaderError>
where
    M: TryFrom<&'a aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map(name).ok_or(LoaderError::NoMap { name })?;
    M::try_from(map).map_err(LoaderError::map(name))
}

/// Map `name` of `ebpf` as the typed, writable map `M`.
pub(super) fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, LoaderError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(LoaderError::NoMap { name })?;
    M::try_from(map).map_err(LoaderError::map(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_says_ebpf_was_not_built() {
        let tgid = NonZeroU32::new(1).expect("nonzero");
        let err =
            Probes::load_object(&[], tgid, 12, &LoadOptions::default()).expect_err("empty object");
        assert!(matches!(err, LoaderError::NotBuilt));
        assert_eq!(
            err.to_string(),
            "eBPF programs were not built (run `cargo xtask setup`)"
        );
    }

    #[test]
    fn tracked_syscalls_must_fit_the_map() {
        let tgid = NonZeroU32::new(1).expect("nonzero");
        let options = LoadOptions {
            blocking: vec![0, MAX_SYSCALLS],
            ..LoadOptions::default()
        };
        let err = Probes::load_object(b"x", tgid, 12, &options).expect_err("out of range");
        assert!(matches!(err, LoaderError::SyscallOutOfRange { nr } if nr == MAX_SYSCALLS));
    }
}
