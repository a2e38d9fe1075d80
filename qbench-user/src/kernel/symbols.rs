//! Where the probed functions are: the ELF objects a process has mapped (its executable and
//! shared libraries, from `/proc/PID/maps`), their symbol tables (`.dynsym`, then `.symtab`), and
//! the file offsets the kernel's uprobes are placed at.
//!
//! Objects are opened through `/proc/PID/exe` and `/proc/PID/root/PATH` (or
//! `/proc/PID/map_files/RANGE` for a deleted file), so a target in another mount namespace (a
//! container) resolves to its own files. Each object is read at most once, on first use.

use std::{cell::OnceCell, collections::HashSet, fmt, fs, io, num::NonZeroU32, path::PathBuf};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use qbench_common::symbols::{PROBE_ARRIVE, PROBE_DEPART, PROBE_RELEASE, PROBE_REQUEST, UPDATE};

/// Why a symbol could not be resolved. The messages are meant for the command line as they are.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("cannot read the memory map of process {pid}")]
    Maps {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("no {symbol} in {}{hint}", Searched(.searched))]
    NotFound {
        symbol: String,
        /// The objects searched, by the names the user knows them by.
        searched: Vec<String>,
        /// What to do about it, starting with "; " (or empty).
        hint: &'static str,
    },
    #[error("process {pid} has no mapped object named {lib} (it maps {})", Searched(.mapped))]
    NoLibrary {
        pid: u32,
        lib: String,
        mapped: Vec<String>,
    },
}

/// A comma-separated list of object names.
struct Searched<'a>(&'a [String]);

impl fmt::Display for Searched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no ELF object");
        }
        f.write_str(&self.0.join(", "))
    }
}

/// Hint of the error for a target with neither the runtime's anchors nor `qbench_update`.
const NAME_A_POINT: &str = "; name an update point with --point SYMBOL";

/// A resolved probe location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub symbol: String,
    /// The object's name for messages: `/proc/PID/exe` or the path the process mapped.
    pub object: String,
    /// The path to attach through (valid from this mount namespace).
    pub path: PathBuf,
    /// File offset of the symbol in the object: what the kernel's uprobe is placed at.
    pub offset: u64,
}

/// The runtime's three slow-path anchors (the probe contract, docs/ARCHITECTURE.md), found in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeAnchors {
    pub request: Location,
    pub arrive: Location,
    pub depart: Location,
    /// Absent from runtimes built before the anchor existed.
    pub release: Option<Location>,
}

/// One ELF object mapped by the process.
#[derive(Debug)]
struct Mapped {
    /// The name for messages and for `LIB:` matching.
    name: String,
    /// The path to open and attach through.
    path: PathBuf,
    /// The file's bytes, or `None` when it cannot be read or is not ELF; read on first use.
    data: OnceCell<Option<Vec<u8>>>,
}

impl Mapped {
    fn new(name: String, path: PathBuf) -> Self {
        Self {
            name,
            path,
            data: OnceCell::new(),
        }
    }

    fn elf(&self) -> Option<&[u8]> {
        self.data
            .get_or_init(|| {
                fs::read(&self.path)
                    .ok()
                    .filter(|data| data.starts_with(b"\x7fELF"))
            })
            .as_deref()
    }

    /// The symbol's file offset, if this object defines it.
    fn find(&self, symbol: &str) -> Option<Location> {
        let file = object::File::parse(self.elf()?).ok()?;
        // .dynsym survives stripping; .symtab also has the non-exported functions.
        let sym = file
            .dynamic_symbols()
            .chain(file.symbols())
            .find(|sym| sym.is_definition() && sym.name() == Ok(symbol))?;
        let section = file.section_by_index(sym.section_index()?).ok()?;
        let (section_offset, _) = section.file_range()?;
        let offset = sym.address().checked_sub(section.address())? + section_offset;
        Some(Location {
            symbol: symbol.to_owned(),
            object: self.name.clone(),
            path: self.path.clone(),
            offset,
        })
    }

    /// Whether `LIB` of `--point LIB:SYMBOL` names this object: a path names it exactly, a bare
    /// name matches the file name or its start up to a `.` or `-` (`libfoo.so` matches
    /// `libfoo.so.1`, `libc` matches `libc.so.6` but not `libcrypto.so.3`).
    fn is_named(&self, lib: &str) -> bool {
        if lib.contains('/') {
            return self.name == lib;
        }
        let file_name = self.name.rsplit('/').next().unwrap_or(&self.name);
        file_name == lib
            || file_name
                .strip_prefix(lib)
                .is_some_and(|rest| rest.starts_with(['.', '-']))
    }
}

/// The ELF objects a process maps: the executable first, then the libraries in map order.
#[derive(Debug)]
pub struct TargetObjects {
    pid: u32,
    objects: Vec<Mapped>,
}

impl TargetObjects {
    /// Lists the objects process `pid` maps now (libraries it `dlopen`s later are not seen).
    pub fn of(pid: NonZeroU32) -> Result<Self, SymbolError> {
        let pid = pid.get();
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let maps_error = |source| SymbolError::Maps { pid, source };
        let maps = crate::procfs::maps::read(pid).map_err(maps_error)?;
        let exe = proc.join("exe");
        let exe_id = fs::metadata(&exe)
            .map(|m| file_id(&m))
            .map_err(maps_error)?;
        let mut seen = HashSet::from([exe_id]);
        let mut objects = vec![Mapped::new(exe.display().to_string(), exe)];
        for entry in maps.iter().filter(|m| m.is_file()) {
            if seen.insert((entry.dev, entry.inode)) {
                objects.push(Mapped::new(entry.path.clone(), entry.open_path(pid)));
            }
        }
        Ok(Self { pid, objects })
    }

    /// The names of the objects that are ELF files (the ones a search looks into).
    pub fn searched(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|object| object.elf().is_some())
            .map(|object| object.name.clone())
            .collect()
    }

    /// The first definition of `symbol`: the executable's, else the first library's.
    pub fn find(&self, symbol: &str) -> Option<Location> {
        self.objects.iter().find_map(|object| object.find(symbol))
    }

    /// The runtime's anchors, all three from the first object that defines
    /// `qbench_probe_arrive` (the executable for a Rust program, else libqbench.so).
    pub fn runtime_anchors(&self) -> Option<RuntimeAnchors> {
        self.objects.iter().find_map(|object| {
            Some(RuntimeAnchors {
                arrive: object.find(PROBE_ARRIVE)?,
                request: object.find(PROBE_REQUEST)?,
                depart: object.find(PROBE_DEPART)?,
                release: object.find(PROBE_RELEASE),
            })
        })
    }

    /// `qbench_update`, for a target without the runtime's anchors; the error names every
    /// object searched and suggests `--point`.
    pub fn update_point(&self) -> Result<Location, SymbolError> {
        self.find(UPDATE).ok_or_else(|| SymbolError::NotFound {
            symbol: UPDATE.to_owned(),
            searched: self.searched(),
            hint: NAME_A_POINT,
        })
    }

    /// A `--point` argument: `SYMBOL` (the executable, then every library) or `LIB:SYMBOL`.
    pub fn resolve_point(&self, spec: &str) -> Result<Location, SymbolError> {
        let Some((lib, symbol)) = spec.rsplit_once(':') else {
            return self.find(spec).ok_or_else(|| SymbolError::NotFound {
                symbol: spec.to_owned(),
                searched: self.searched(),
                hint: "",
            });
        };
        let named: Vec<&Mapped> = self.objects.iter().filter(|o| o.is_named(lib)).collect();
        if named.is_empty() {
            return Err(SymbolError::NoLibrary {
                pid: self.pid,
                lib: lib.to_owned(),
                mapped: self.objects.iter().map(|o| o.name.clone()).collect(),
            });
        }
        named
            .iter()
            .find_map(|object| object.find(symbol))
            .ok_or_else(|| SymbolError::NotFound {
                symbol: symbol.to_owned(),
                searched: named.iter().map(|o| o.name.clone()).collect(),
                hint: "",
            })
    }
}

/// A file's identity as `/proc/PID/maps` shows it (device as major:minor, inode), to list an
/// object once however many times it is mapped.
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let dev = meta.dev();
    let (major, minor) = (u64::from(libc::major(dev)), u64::from(libc::minor(dev)));
    ((major << 32) | minor, meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_names_match_by_path_or_file_name_prefix() {
        let libc = Mapped::new("/usr/lib/libc.so.6".into(), PathBuf::new());
        let crypto = Mapped::new("/usr/lib/libcrypto.so.3".into(), PathBuf::new());
        assert!(libc.is_named("libc"));
        assert!(libc.is_named("libc.so.6"));
        assert!(libc.is_named("libc.so"));
        assert!(libc.is_named("/usr/lib/libc.so.6"));
        assert!(!libc.is_named("/lib/libc.so.6"));
        assert!(!crypto.is_named("libc"));
        assert!(crypto.is_named("libcrypto"));
    }

    #[test]
    fn not_found_names_the_objects_searched_and_the_way_out() {
        let err = SymbolError::NotFound {
            symbol: UPDATE.to_owned(),
            searched: vec!["/proc/123/exe".into(), "/usr/lib/libc.so.6".into()],
            hint: NAME_A_POINT,
        };
        assert_eq!(
            err.to_string(),
            "no qbench_update in /proc/123/exe, /usr/lib/libc.so.6; \
             name an update point with --point SYMBOL"
        );
    }

    #[test]
    fn resolves_a_function_of_this_test_executable() {
        // Any process will do: this one maps libc, which defines `read`.
        let pid = NonZeroU32::new(std::process::id()).expect("nonzero pid");
        let objects = TargetObjects::of(pid).expect("read own maps");
        let read = objects.resolve_point("libc:read").expect("libc:read");
        assert!(read.object.contains("libc"), "{read:?}");
        assert!(read.offset > 0);
        assert_eq!(objects.find("read"), Some(read));
        let missing = objects.resolve_point("no_such_function_here");
        assert!(
            matches!(&missing, Err(SymbolError::NotFound { searched, .. })
                if searched.len() >= 2 && searched[0].ends_with("/exe")),
            "{missing:?}"
        );
        assert!(matches!(
            objects.resolve_point("libnotmapped:read"),
            Err(SymbolError::NoLibrary { .. })
        ));
    }
}
