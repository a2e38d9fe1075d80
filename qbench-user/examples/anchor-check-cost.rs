//! What `--watch --all` spends to learn whether a new executable or library has the runtime:
//! `anchor-check-cost [--rounds N] FILE...` runs `kernel::elf_symtab::defines(FILE,
//! "qbench_probe_request")`, the check a rescan makes of each file it has not seen, N times
//! (default 20) per file, and prints for each file one line:
//! `FILE size S defines D cpu_us C read_bytes B`, C the CPU (user and system) and B the bytes
//! read (`rchar` of /proc/self/io: what `read`/`pread` returned, page cache or not) of one check,
//! averaged over the N.
//! Exit codes: 0 measured, 1 a file or /proc/self/io cannot be read, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use qbench_common::symbols::PROBE_REQUEST;
use qbench_user::kernel::elf_symtab;

/// CPU time of this process so far, user and system, in microseconds.
fn cpu_us() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Bytes this process has read so far (`rchar`).
fn rchar() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("rchar: "))?
        .parse()
        .ok()
}

fn parse_args() -> Option<(u64, Vec<PathBuf>)> {
    let mut rounds = 20;
    let mut files = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next()?.to_str()?.parse().ok().filter(|&n| n > 0)?;
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    (!files.is_empty()).then_some((rounds, files))
}

fn main() -> ExitCode {
    let Some((rounds, files)) = parse_args() else {
        eprintln!("usage: anchor-check-cost [--rounds N] FILE... (executables or libraries)");
        return ExitCode::from(2);
    };
    for file in files {
        let Ok(size) = std::fs::metadata(&file).map(|m| m.len()) else {
            eprintln!("anchor-check-cost: cannot read {}", file.display());
            return ExitCode::FAILURE;
        };
        let (Some(read_before), cpu_before) = (rchar(), cpu_us()) else {
            eprintln!("anchor-check-cost: cannot read /proc/self/io");
            return ExitCode::FAILURE;
        };
        let mut defines = false;
        for _ in 0..rounds {
            defines = elf_symtab::defines(&file, PROBE_REQUEST);
        }
        let cpu = cpu_us() - cpu_before;
        // Reading /proc/self/io counts too: about 200 bytes, once, left in the figure.
        let read = rchar().unwrap_or(read_before) - read_before;
        println!(
            "{} size {size} defines {defines} cpu_us {} read_bytes {}",
            file.display(),
            cpu / rounds,
            read / rounds
        );
    }
    ExitCode::SUCCESS
}
