//! `--all`: the processes that map the runtime (an object defining `qbench_probe_request`),
//! found by scanning /proc. Each file mapped as code is looked into once (its symbol tables
//! only, [`elf_symtab::defines`]), known by (device, inode) and, to tell it from a later file
//! given the same inode or from itself rewritten in place, by size and modification time. A
//! process is looked at (its `maps` read) when it is new, and again every [`LOOK_AGAIN_EVERY`]
//! scans, for one that maps the runtime later (a `dlopen`). A process is told from another with
//! the same pid by the inode of its /proc directory, which the kernel makes anew for each
//! process (and now and then for the same one, which then is only looked at once more).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
use std::path::Path;

use qbench_common::symbols::PROBE_REQUEST;

use crate::kernel::elf_symtab;
use crate::procfs::maps::{self, Mapping};

/// Scans between two looks at a process already found without the runtime.
const LOOK_AGAIN_EVERY: u32 = 10;

/// A file's size and modification time (seconds, nanoseconds): with its device and inode, what
/// tells it from another file. Where programs are built, an inode freed is soon given to a new
/// executable; a library can be rewritten in place.
type Version = (u64, i64, i64);

/// What was learnt of one file mapped as code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Looked {
    version: Version,
    /// Whether it defines the runtime's request anchor.
    has_runtime: bool,
    /// The last scan that found it mapped.
    scan: u32,
}

/// What was found of the files and processes looked at.
#[derive(Debug, Default)]
pub struct Discovery {
    /// The files looked into, by (device, inode). Those no process mapped during the last scan
    /// of every process are forgotten, so that a machine making new programs all day does not
    /// grow it without end.
    files: HashMap<(u64, u64), Looked>,
    /// The processes looked at and found without the runtime: pid, and the inode of their /proc
    /// directory then.
    without: HashMap<u32, u64>,
    scans: u32,
}

impl Discovery {
    /// The processes with the runtime that are not in `known` (nor this process), by pid.
    pub fn scan(&mut self, known: &HashSet<u32>) -> Vec<u32> {
        let own = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let listed: Vec<(u32, u64)> = dir
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.ino())))
            .filter(|(pid, _)| *pid != own && !known.contains(pid))
            .collect();
        let again = self.scans.is_multiple_of(LOOK_AGAIN_EVERY);
        self.scans = self.scans.wrapping_add(1);
        let scan = self.scans;
        let (look, mut without) = to_look_at(&listed, &self.without, again);
        let mut found = Vec::new();
        for (pid, ino) in look {
            if self.maps_runtime(pid) {
                found.push(pid);
            } else {
                without.insert(pid, ino);
            }
        }
        self.without = without;
        if again {
            self.files.retain(|_, file| file.scan == scan);
        }
        found.sort_unstable();
        found
    }

    /// Whether process `pid` maps a file that defines the runtime's request anchor.
    pub fn maps_runtime(&mut self, pid: u32) -> bool {
        // Kernel threads and processes gone meanwhile map nothing.
        let Some(mappings) = maps::mappings(pid) else {
            return false;
        };
        // Only files mapped as code: the anchor is code. A data file a process maps (a
        // database's, a compiler's object files) is never read, whatever its size.
        mappings
            .iter()
            .filter(|m| m.is_file() && m.is_executable())
            .any(|m| self.file_has_runtime(m, pid))
    }

    /// Whether the file of mapping `m` (of process `pid`) defines the runtime's request anchor:
    /// known already when it was seen during this scan, or seen before and is the same file
    /// still (one `stat`); else looked into.
    fn file_has_runtime(&mut self, m: &Mapping, pid: u32) -> bool {
        let key = (m.dev, m.inode);
        match self.files.get(&key) {
            Some(file) if file.scan == self.scans => file.has_runtime,
            _ => self.look_into(key, &m.open_path(pid)),
        }
    }

    /// Whether the file at `path`, known by `key`, defines the anchor, from what was learnt of
    /// it if its size and modification time are the same, else from its symbol tables.
    fn look_into(&mut self, key: (u64, u64), path: &Path) -> bool {
        // A file gone meanwhile: its process is gone or has unmapped it.
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let version = (meta.size(), meta.mtime(), meta.mtime_nsec());
        let has_runtime = match self.files.get(&key) {
            Some(file) if file.version == version => file.has_runtime,
            _ => elf_symtab::defines(path, PROBE_REQUEST),
        };
        let scan = self.scans;
        self.files.insert(
            key,
            Looked {
                version,
                has_runtime,
                scan,
            },
        );
        has_runtime
    }
}

/// Of the processes `listed` (pid, inode of its /proc directory), those to look at: the ones
/// not among those found `without` the runtime before (a new pid, or a new process with an old
/// pid), or all of them when looking `again`. Also what is still known of the others, for the
/// next scan (processes gone are forgotten).
fn to_look_at(
    listed: &[(u32, u64)],
    without: &HashMap<u32, u64>,
    again: bool,
) -> (Vec<(u32, u64)>, HashMap<u32, u64>) {
    let (mut look, mut kept) = (Vec::new(), HashMap::new());
    for &(pid, ino) in listed {
        if !again && without.get(&pid) == Some(&ino) {
            kept.insert(pid, ino);
        } else {
            look.push((pid, ino));
        }
    }
    (look, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_processes_are_looked_at_but_every_one_now_and_then() {
        let without = HashMap::from([(10, 100), (11, 110), (12, 120)]);
        // 10 is the same process, 11 a new one with the same pid, 12 gone, 13 new.
        let listed = [(10, 100), (11, 999), (13, 130)];
        let (look, kept) = to_look_at(&listed, &without, false);
        assert_eq!(look, vec![(11, 999), (13, 130)]);
        assert_eq!(kept, HashMap::from([(10, 100)]));
        let (look, kept) = to_look_at(&listed, &without, true);
        assert_eq!(look, listed.to_vec());
        assert!(kept.is_empty());
    }

    #[test]
    fn the_test_binary_has_no_runtime_and_is_never_its_own_target() {
        let own = std::process::id();
        assert!(!Discovery::default().scan(&HashSet::new()).contains(&own));
        let mut d = Discovery::default();
        assert!(!d.maps_runtime(own));
        // Every file this process maps was looked into and remembered as not the runtime.
        assert!(!d.files.is_empty());
        assert!(d.files.values().all(|file| !file.has_runtime));
    }

    #[test]
    fn a_file_seen_again_is_read_again_only_if_another_size_or_time() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("program");
        std::fs::copy("/bin/true", &path).expect("copy /bin/true");
        let mut d = Discovery::default();
        let key = (1, 2);
        assert!(!d.look_into(key, &path));
        // What was learnt is trusted while size and time are the same: a file marked as having
        // the runtime (which /bin/true has not) stays so, not being read again.
        d.files.get_mut(&key).expect("remembered").has_runtime = true;
        assert!(d.look_into(key, &path));
        // Rewritten in place (the same device and inode): read again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"\0"))
            .expect("append to the copy");
        assert!(!d.look_into(key, &path));
    }

    #[test]
    fn files_no_process_maps_any_more_are_forgotten_at_the_scan_of_every_process() {
        let mut d = Discovery::default();
        let gone = Looked {
            version: (0, 0, 0),
            has_runtime: false,
            scan: 0,
        };
        d.files.insert((u64::MAX, u64::MAX), gone);
        // The first scan looks at every process; the next nine at new ones only.
        d.scan(&HashSet::new());
        assert!(!d.files.contains_key(&(u64::MAX, u64::MAX)));
        d.files.insert((u64::MAX, u64::MAX), gone);
        d.scan(&HashSet::new());
        assert!(d.files.contains_key(&(u64::MAX, u64::MAX)));
    }
}
