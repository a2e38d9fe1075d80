//! The guest's root file system: busybox (static) with its applet links, the programs under test
//! in /qbench/bin, every shared library `ldd` names for them at the same path as on the host
//! (so RUNPATHs and the dynamic loader's own path hold), and `init.sh` as /init; packed as an
//! uncompressed newc cpio archive (nothing to decompress under emulation).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};

const BUSYBOX: &str = "/bin/busybox";
const INIT: &str = include_str!("init.sh");

/// Builds `out` from a fresh `staging` directory holding `programs` (copied to /qbench/bin under
/// their file names).
pub fn build(staging: &Path, programs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    for dir in ["proc", "sys", "dev", "tmp", "bin", "qbench/bin"] {
        fs::create_dir_all(staging.join(dir))?;
    }
    install_busybox(staging)?;
    for program in programs {
        let name = program.file_name().context("a program has no file name")?;
        copy(program, &staging.join("qbench/bin").join(name))?;
        for lib in libraries(program)? {
            copy(&lib, &under(staging, &lib))?;
        }
    }
    let init = staging.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    pack(staging, out)
}

fn install_busybox(staging: &Path) -> anyhow::Result<()> {
    copy(Path::new(BUSYBOX), &staging.join("bin/busybox"))?;
    let out = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .context("cannot run busybox --list-full")?;
    ensure!(out.status.success(), "busybox --list-full failed");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        // `bin/sh`, `usr/bin/wget`, `linuxrc`: paths relative to the root.
        let link = staging.join(applet.trim());
        if applet.trim().is_empty() || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    Ok(())
}

/// `path` (absolute) inside `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copies the file `from` (following symlinks) to `to`, creating its directory.
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The shared libraries and loader `ldd` resolves for `program`.
fn libraries(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let static_program = text.contains("statically linked") || text.contains("not a dynamic");
    if !out.status.success() && !static_program {
        bail!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    ldd_paths(&text).with_context(|| format!("ldd {}", program.display()))
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/.../libc.so.6 (0x...)` and the loader's
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has none. A library ldd cannot find fails.
fn ldd_paths(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim) {
        let target = match line.split_once(" => ") {
            Some((name, "not found")) => bail!("{name} not found"),
            Some((_, rest)) => rest,
            None => line,
        };
        let path = target.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// `cpio -o -H newc` over every entry under `staging`, owned by root.
fn pack(staging: &Path, out: &Path) -> anyhow::Result<()> {
    let mut names = Vec::new();
    walk(staging, Path::new("."), &mut names)?;
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0"])
        .current_dir(staging)
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cannot run cpio")?;
    let mut stdin = cpio.stdin.take().context("cpio stdin")?;
    for name in &names {
        writeln!(stdin, "{}", name.display())?;
    }
    drop(stdin);
    let status = cpio.wait()?;
    ensure!(status.success(), "cpio failed ({status})");
    Ok(())
}

/// Every entry below `dir` (`rel` is its name relative to the staging root), directories before
/// their contents.
fn walk(dir: &Path, rel: &Path, names: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = rel.join(entry.file_name());
        names.push(name.clone());
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &name, names)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibqbench.so => /w/target/release/libqbench.so (0x00007f10)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f00)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f20)\n";
        assert_eq!(
            ldd_paths(text).expect("paths"),
            [
                PathBuf::from("/w/target/release/libqbench.so"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(
            ldd_paths("\tnot a dynamic executable\n")
                .expect("none")
                .is_empty()
        );
        let err = ldd_paths("\tlibqbench.so => not found\n").expect_err("missing");
        assert_eq!(err.to_string(), "libqbench.so not found");
    }

    #[test]
    fn absolute_paths_land_under_the_root() {
        assert_eq!(
            under(Path::new("/s"), Path::new("/lib64/ld.so")),
            PathBuf::from("/s/lib64/ld.so")
        );
    }

    #[test]
    fn the_init_script_reports_every_check() {
        for check in super::super::results::CHECKS {
            assert!(INIT.contains(&format!("begin {check}\n")), "{check}");
        }
        assert!(INIT.starts_with("#!/bin/sh\n"));
        assert!(INIT.contains("QBENCH-BOOT") && INIT.contains("QBENCH-DONE"));
    }
}
