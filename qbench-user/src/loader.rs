//! Loads qbench's eBPF object, sets the target, attaches the programs to the target process and
//! reads the maps back.
//!
//! The object is built into this binary by `build.rs`; when the eBPF toolchain was missing at
//! build time it is an empty stub, and loading fails with [`LoaderError::NotBuilt`].

use std::{collections::BTreeMap, num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, UProbe, uprobe::UProbeScope},
};
use qbench_common::{Arrivals, MISS_ARRIVALS_FULL, globals, maps, programs};

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
    #[error("cannot attach {program} to {symbol} in {target} for pid {pid}")]
    Attach {
        program: &'static str,
        symbol: String,
        target: String,
        pid: u32,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot read map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
}

impl LoaderError {
    fn program(name: &'static str) -> impl FnOnce(ProgramError) -> Self {
        move |source| Self::Program {
            name,
            source: Box::new(source),
        }
    }

    fn map(name: &'static str) -> impl FnOnce(MapError) -> Self {
        move |source| Self::Map {
            name,
            source: Box::new(source),
        }
    }
}

/// The loaded programs and maps, observing one target process. Dropping it detaches and unloads
/// everything.
#[derive(Debug)]
pub struct Probes {
    ebpf: Ebpf,
    tgid: NonZeroU32,
}

impl Probes {
    /// Loads the object built into this binary, filtering on process `tgid`.
    pub fn load(tgid: NonZeroU32) -> Result<Self, LoaderError> {
        Self::load_object(OBJECT, tgid)
    }

    /// Loads `object` (an eBPF ELF object; empty means "not built"), filtering on `tgid`.
    pub fn load_object(object: &[u8], tgid: NonZeroU32) -> Result<Self, LoaderError> {
        if object.is_empty() {
            return Err(LoaderError::NotBuilt);
        }
        raise_memlock_rlimit();
        let target = tgid.get();
        let ebpf = EbpfLoader::new()
            // must_exist: a global renamed on one side only fails here, not silently.
            .override_global(globals::TARGET_TGID, &target, true)
            .load(object)
            .map_err(|err| LoaderError::Load(Box::new(err)))?;
        Ok(Self { ebpf, tgid })
    }

    /// The process the programs filter on.
    pub fn tgid(&self) -> NonZeroU32 {
        self.tgid
    }

    /// Attaches the arrival program at `symbol` (normally `qbench_probe_arrive`) in `target`, an
    /// executable or shared library path, for the target process only.
    pub fn attach_arrive(&mut self, target: &Path, symbol: &str) -> Result<(), LoaderError> {
        let name = programs::ARRIVE;
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or(LoaderError::NoProgram { name })?
            .try_into()
            .map_err(LoaderError::program(name))?;
        // Loading twice is an error in aya; a second attach (another library) reuses it.
        if program.fd().is_err() {
            program.load().map_err(LoaderError::program(name))?;
        }
        program
            .attach(symbol, target, UProbeScope::OneProcess(self.tgid))
            .map_err(|source| LoaderError::Attach {
                program: name,
                symbol: symbol.to_owned(),
                target: target.display().to_string(),
                pid: self.tgid.get(),
                source: source.into(),
            })?;
        Ok(())
    }

    /// Arrivals recorded so far, by thread id.
    pub fn arrivals(&self) -> Result<BTreeMap<u32, Arrivals>, LoaderError> {
        let name = maps::ARRIVALS;
        let map = self.ebpf.map(name).ok_or(LoaderError::NoMap { name })?;
        let map: HashMap<&MapData, u32, Arrivals> =
            HashMap::try_from(map).map_err(LoaderError::map(name))?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(LoaderError::map(name))
    }

    /// Arrivals that could not be recorded because the per-thread map was full (all CPUs).
    pub fn arrivals_missed(&self) -> Result<u64, LoaderError> {
        let name = maps::MISSES;
        let map = self.ebpf.map(name).ok_or(LoaderError::NoMap { name })?;
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(LoaderError::map(name))?;
        let per_cpu = map
            .get(&MISS_ARRIVALS_FULL, 0)
            .map_err(LoaderError::map(name))?;
        Ok(per_cpu.iter().sum())
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones charge the cgroup. Root
/// without CAP_SYS_RESOURCE cannot raise the limit, which is harmless there (DESIGN §7).
fn raise_memlock_rlimit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "cannot raise RLIMIT_MEMLOCK ({}); relying on cgroup accounting of BPF memory",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_says_ebpf_was_not_built() {
        let tgid = NonZeroU32::new(1).expect("nonzero");
        let err = Probes::load_object(&[], tgid).expect_err("empty object");
        assert!(matches!(err, LoaderError::NotBuilt));
        assert_eq!(
            err.to_string(),
            "eBPF programs were not built (run `cargo xtask setup`)"
        );
    }
}
