//! What an observer's BPF programs ran, from the kernel's own count: with
//! `kernel.bpf_stats_enabled` set, the fdinfo of each BPF program descriptor
//! (`/proc/PID/fdinfo/FD`) gives `run_cnt` and `run_time_ns`. The benchmarks read them around
//! a block to say how often, and for how long, the observer ran in the measured process's
//! paths, which no throughput figure of a shared machine can resolve.

use std::collections::BTreeMap;

use anyhow::Context as _;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Keeps the kernel's BPF run statistics on while it lives, and puts the setting back after.
pub struct Enabled {
    previous: String,
}

impl Enabled {
    pub fn new() -> anyhow::Result<Self> {
        let previous =
            std::fs::read_to_string(SYSCTL).with_context(|| format!("cannot read {SYSCTL}"))?;
        std::fs::write(SYSCTL, "1").with_context(|| format!("cannot enable {SYSCTL}"))?;
        Ok(Self { previous })
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, self.previous.trim());
    }
}

/// Runs of the BPF programs a process holds, and the time they took, since they were loaded.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Runs {
    pub count: u64,
    pub ns: u64,
}

impl Runs {
    /// What ran between `self` and `later`.
    pub fn since(self, later: Runs) -> Runs {
        Runs {
            count: later.count.saturating_sub(self.count),
            ns: later.ns.saturating_sub(self.ns),
        }
    }
}

/// The BPF programs process `pid` holds open, summed once per program.
pub fn of_process(pid: u32) -> anyhow::Result<Runs> {
    let mut by_id = BTreeMap::new();
    let dir = format!("/proc/{pid}/fd");
    for fd in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let fd = fd?;
        let is_prog = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        // A descriptor closed meanwhile has nothing to add.
        let Ok(text) = std::fs::read_to_string(&info) else {
            continue;
        };
        if let Some((id, runs)) = parse(&text) {
            by_id.insert(id, runs);
        }
    }
    Ok(by_id.values().fold(Runs::default(), |sum, r| Runs {
        count: sum.count + r.count,
        ns: sum.ns + r.ns,
    }))
}

/// The program id and its runs, from a BPF program descriptor's fdinfo.
fn parse(fdinfo: &str) -> Option<(u64, Runs)> {
    let field = |name: &str| {
        fdinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse::<u64>().ok())?
        })
    };
    Some((
        field("prog_id")?,
        Runs {
            count: field("run_cnt").unwrap_or(0),
            ns: field("run_time_ns").unwrap_or(0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_programs_runs_come_from_its_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2087\n\
                      prog_type:\t2\nprog_jited:\t1\nprog_tag:\t4f2b1e4c2b4b8a6e\n\
                      memlock:\t4096\nprog_id:\t381\nrun_time_ns:\t123456\nrun_cnt:\t42\n\
                      recursion_misses:\t0\nverified_insns:\t97\n";
        assert_eq!(
            parse(fdinfo),
            Some((
                381,
                Runs {
                    count: 42,
                    ns: 123_456
                }
            ))
        );
        assert_eq!(parse("pos:\t0\nflags:\t02\n"), None, "not a program");
    }
}
