//! `--all`: the processes that map the runtime (an object defining `qbench_probe_request`),
//! found by scanning /proc. Each file mapped as code is looked into once, by (device, inode); a
//! process is looked at (its `maps` read) when it is new, and again every [`LOOK_AGAIN_EVERY`]
//! scans, for one that maps the runtime later (a `dlopen`). A process is told from another with
//! the same pid by the inode of its /proc directory, which the kernel makes anew for each
//! process (and now and then for the same one, which then is only looked at once more).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::DirEntryExt as _;

use qbench_common::symbols::PROBE_REQUEST;

use crate::kernel::symbols;
use crate::procfs::maps;

/// Scans between two looks at a process already found without the runtime.
const LOOK_AGAIN_EVERY: u32 = 10;

/// What was found of the files and processes looked at.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Whether each file (device, inode) defines the runtime's request anchor.
    has_runtime: HashMap<(u64, u64), bool>,
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
            .any(|m| {
                *self
                    .has_runtime
                    .entry((m.dev, m.inode))
                    .or_insert_with(|| symbols::defines(&m.open_path(pid), PROBE_REQUEST))
            })
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
        assert!(!d.has_runtime.is_empty());
        assert!(d.has_runtime.values().all(|&has| !has));
    }
}
