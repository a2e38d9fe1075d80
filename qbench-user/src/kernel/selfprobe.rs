//! Two kernel behaviours found by trying them on qbench-trace's own process: whether the
//! uprobe PMU lets this process attach (which capability it wants), and whether a uprobe on a
//! 5-byte NOP is optimized into a call (Linux 6.18+ on x86-64: after the first hit the process
//! gets a `[uprobes-trampoline]` mapping and later hits cost a call instead of a trap).

use std::ffi::CString;
use std::io;

/// What attaching a uprobe to a 5-byte NOP of this process showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfProbe {
    /// The uprobe was attached and hit; `optimized` says whether it became a call.
    Attached { optimized: bool },
    /// The uprobe attached but never fired (nothing can be said of the optimization).
    NotHit,
    /// `perf_event_open` refused (EACCES or EPERM): a capability is missing.
    Refused,
    /// Not tried or failed otherwise (no uprobe PMU, no such NOP on this architecture, ...).
    Unavailable(String),
}

/// The name the kernel gives the optimized uprobes' trampoline mapping.
pub const TRAMPOLINE: &str = "[uprobes-trampoline]";

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.qbench_nop5_site,\"ax\",@progbits",
    ".balign 16",
    ".globl qbench_nop5_site",
    ".type qbench_nop5_site,@function",
    "qbench_nop5_site:",
    // nopl 0x0(%rax,%rax,1): the 5-byte NOP the kernel can turn into a call.
    ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "ret",
    ".size qbench_nop5_site, .-qbench_nop5_site",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    fn qbench_nop5_site();
}

/// Attaches a counting uprobe (no BPF program) to this process's 5-byte NOP through the uprobe
/// PMU of type `pmu_type`, calls it, and looks for the trampoline mapping.
#[cfg(target_arch = "x86_64")]
pub fn probe(pmu_type: u32) -> SelfProbe {
    let site = qbench_nop5_site as *const () as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    if maps.contains(TRAMPOLINE) {
        return SelfProbe::Attached { optimized: true };
    }
    let Some((path, offset)) = file_offset(&maps, site) else {
        return SelfProbe::Unavailable("the probe site is in no file mapping".into());
    };
    let fd = match open_uprobe(pmu_type, &path, offset) {
        Ok(fd) => fd,
        Err(err) if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
            return SelfProbe::Refused;
        }
        Err(err) => return SelfProbe::Unavailable(format!("perf_event_open: {err}")),
    };
    for _ in 0..3 {
        // SAFETY: the site is a NOP followed by `ret`; it touches no memory and no register
        // a C call may not clobber.
        unsafe { qbench_nop5_site() };
    }
    let hits = read_count(fd);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    // SAFETY: fd was returned by perf_event_open above and is closed once.
    unsafe { libc::close(fd) };
    match hits {
        Some(0) | None => SelfProbe::NotHit,
        Some(_) => SelfProbe::Attached {
            optimized: maps.contains(TRAMPOLINE),
        },
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn probe(_pmu_type: u32) -> SelfProbe {
    SelfProbe::Unavailable("uprobes are optimized on x86-64 only".into())
}

/// The file and file offset of process address `addr`, from a /proc/PID/maps text.
pub fn file_offset(maps: &str, addr: u64) -> Option<(String, u64)> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        let _perms = fields.next()?;
        let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
        let path = fields.nth(2)?;
        ((start..end).contains(&addr) && path.starts_with('/'))
            .then(|| (path.to_string(), addr - start + offset))
    })
}

/// `linux/perf_event.h`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_open` of a uprobe at `offset` in `path`, counting hits in this process.
fn open_uprobe(pmu_type: u32, path: &str, offset: u64) -> io::Result<i32> {
    let path = CString::new(path).map_err(io::Error::other)?;
    // struct perf_event_attr, PERF_ATTR_SIZE_VER8 (136 bytes), as u64 words: type and size,
    // config, sample_period, sample_type, read_format, flags (all clear: enabled), wakeup and
    // bp_type, config1 (the path), config2 (the offset), the rest zero.
    let mut attr = [0u64; 17];
    attr[0] = u64::from(pmu_type) | (136 << 32);
    attr[7] = path.as_ptr() as u64;
    attr[8] = offset;
    // SAFETY: attr is a valid, zero-padded perf_event_attr that outlives the call; the path it
    // points to is NUL-terminated and alive. pid 0 (this process), any CPU, no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(fd).map_err(io::Error::other)
}

/// The counter of a perf event: how many times the uprobe fired.
fn read_count(fd: i32) -> Option<u64> {
    let mut count = 0u64;
    // SAFETY: reads at most 8 bytes into a u64 owned here.
    let n = unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
    (n == 8).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_file_offsets() {
        let maps = "\
55d0a0000000-55d0a0001000 r--p 00000000 fd:01 123 /usr/bin/qbench-trace
55d0a0001000-55d0a0400000 r-xp 00001000 fd:01 123 /usr/bin/qbench-trace
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            file_offset(maps, 0x55d0_a000_1234),
            Some(("/usr/bin/qbench-trace".into(), 0x1234))
        );
        assert_eq!(file_offset(maps, 0x7ffd_0000_0010), None);
        assert_eq!(file_offset(maps, 0x1000), None);
    }

    /// A real uprobe on this test process: it fires, and on Linux 6.18+ (x86-64) it becomes a
    /// call through the trampoline.
    #[test]
    fn a_uprobe_on_this_process_fires() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: attaching a uprobe needs root (CAP_SYS_ADMIN)");
            return;
        }
        let pmu = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type");
        let Some(pmu) = pmu.ok().and_then(|t| t.trim().parse().ok()) else {
            eprintln!("skipped: this kernel has no uprobe PMU");
            return;
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let new = crate::host::check::kernel_version(&release).is_some_and(|v| v >= (6, 18));
        match probe(pmu) {
            SelfProbe::Attached { optimized } => {
                if cfg!(target_arch = "x86_64") && new {
                    assert!(
                        optimized,
                        "Linux {release} optimizes a uprobe on a 5-byte NOP"
                    );
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
