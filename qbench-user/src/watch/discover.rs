//! `--all`: the processes that map the runtime (an object defining `qbench_probe_request`),
//! found by scanning /proc. Each mapped file is looked into once, by (device, inode): a rescan
//! every second reads only the `maps` of each process, not its objects.

use std::collections::{HashMap, HashSet};

use qbench_common::symbols::PROBE_REQUEST;

use crate::kernel::symbols;

/// Cache of "does this file define the runtime's request anchor".
#[derive(Debug, Default)]
pub struct Discovery {
    has_runtime: HashMap<(u64, u64), bool>,
}

impl Discovery {
    /// The processes with the runtime that are not in `known` (nor this process), by pid.
    pub fn scan(&mut self, known: &HashSet<u32>) -> Vec<u32> {
        let own = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != own && !known.contains(pid))
            .filter(|&pid| self.maps_runtime(pid))
            .collect();
        found.sort_unstable();
        found
    }

    /// Whether process `pid` maps a file that defines the runtime's request anchor.
    pub fn maps_runtime(&mut self, pid: u32) -> bool {
        // Kernel threads and processes gone meanwhile map nothing.
        let Some(files) = symbols::mapped_files(pid) else {
            return false;
        };
        files.into_iter().any(|(id, path)| {
            *self
                .has_runtime
                .entry(id)
                .or_insert_with(|| symbols::defines(&path, PROBE_REQUEST))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
