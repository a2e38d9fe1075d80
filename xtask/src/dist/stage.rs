//! The installed tree of the packages, laid out under target/dist: `qbench/` (what the .deb and
//! the tarball install) and `qbench-dbgsym/` (the detached debug information).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use super::cmd;
use super::layout::{self, LIB_DIR, MAN_SECTION, Names, PACKAGE};
use crate::workspace;

/// The two staged trees and what stripping did.
#[derive(Debug)]
pub struct Staged {
    pub root: PathBuf,
    pub debug_root: PathBuf,
    pub sizes: Vec<Stripped>,
}

/// One file's size before and after stripping, and its debug file's size.
#[derive(Debug)]
pub struct Stripped {
    pub path: String,
    pub before: u64,
    pub after: u64,
    pub debug: Option<u64>,
}

/// How a file is stripped (Debian's dh_strip does the same for each kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Executable,
    SharedLibrary,
    StaticLibrary,
}

/// Lays out both trees from the release build in `built` and the man page `man_page`.
pub fn stage(names: &Names, built: &Path, man_page: &Path, dist: &Path) -> anyhow::Result<Staged> {
    let root = dist.join(PACKAGE);
    let debug_root = dist.join(format!("{PACKAGE}-dbgsym"));
    for dir in [&root, &debug_root] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    let workspace = workspace::root();
    let mut sizes = Vec::new();
    let lib = |name: &str| format!("{LIB_DIR}/{name}");
    for (from, to, kind) in [
        (
            "qbench-trace",
            "usr/bin/qbench-trace".to_owned(),
            Kind::Executable,
        ),
        ("libqbench.so", lib(&names.real_so()), Kind::SharedLibrary),
        ("libqbench.a", lib("libqbench.a"), Kind::StaticLibrary),
    ] {
        let dest = root.join(&to);
        let mode = if kind == Kind::Executable {
            0o755
        } else {
            0o644
        };
        install(&built.join(from), &dest, mode)?;
        sizes.push(strip(&dest, &to, kind, &debug_root)?);
    }
    // The loader's name (ldconfig would make it too) and the link-time name, both relative.
    symlink(&names.real_so(), &root.join(lib(&names.soname())))?;
    symlink(&names.soname(), &root.join(lib("libqbench.so")))?;

    install(
        &workspace.join("qbench-runtime/include/qbench.h"),
        &root.join("usr/include/qbench.h"),
        0o644,
    )?;
    let template = std::fs::read_to_string(workspace.join("qbench-runtime/qbench.pc.in"))?;
    let lib_subdir = LIB_DIR.trim_start_matches("usr/");
    let pc = layout::pkg_config(&template, "/usr", lib_subdir, &names.version);
    write(&root.join(lib("pkgconfig/qbench.pc")), &pc)?;
    write(
        &root.join("lib/systemd/system/qbench-trace.service"),
        layout::SYSTEMD_UNIT,
    )?;
    let man = root.join(format!(
        "usr/share/man/man{MAN_SECTION}/qbench-trace.{MAN_SECTION}"
    ));
    install(man_page, &man, 0o644)?;
    gzip(&man)?;
    let date = release_date();
    let doc = root.join(format!("usr/share/doc/{PACKAGE}"));
    write(&doc.join("copyright"), &layout::copyright(&date))?;
    write(
        &doc.join("changelog"),
        &layout::changelog(&names.version, &date),
    )?;
    gzip(&doc.join("changelog"))?;
    // The debug package's own copyright, as every Debian package has one.
    write(
        &debug_root.join(format!("usr/share/doc/{PACKAGE}-dbgsym/copyright")),
        &layout::copyright(&date),
    )?;
    for tree in [&root, &debug_root] {
        normalize_dirs(tree)?;
    }
    Ok(Staged {
        root,
        debug_root,
        sizes,
    })
}

/// Strips `file` (installed at `/installed`), moving its debug information first into
/// `debug_root/usr/lib/debug/<installed>.debug`, which the file names in its .gnu_debuglink
/// (where gdb and the symbolizers look). A static library only loses its debug sections: its
/// objects are linked into programs, whose own build decides about debug information.
fn strip(file: &Path, installed: &str, kind: Kind, debug_root: &Path) -> anyhow::Result<Stripped> {
    let before = size(file)?;
    let mut debug = None;
    let mut strip = Command::new("strip");
    strip.args(["--remove-section=.comment", "--remove-section=.note"]);
    match kind {
        Kind::Executable | Kind::SharedLibrary => {
            let debug_file = debug_root.join(format!("usr/lib/debug/{installed}.debug"));
            create_parent(&debug_file)?;
            cmd::run(
                Command::new("objcopy")
                    .args(["--only-keep-debug", "--compress-debug-sections=zlib"])
                    .arg(file)
                    .arg(&debug_file),
            )?;
            set_mode(&debug_file, 0o644)?;
            if kind == Kind::SharedLibrary {
                strip.arg("--strip-unneeded");
            }
            cmd::run(strip.arg(file))?;
            cmd::run(
                Command::new("objcopy")
                    .arg(format!("--add-gnu-debuglink={}", debug_file.display()))
                    .arg(file),
            )?;
            debug = Some(size(&debug_file)?);
        }
        Kind::StaticLibrary => {
            strip.args(["--strip-debug", "--enable-deterministic-archives"]);
            cmd::run(strip.arg(file))?;
        }
    }
    Ok(Stripped {
        path: format!("/{installed}"),
        before,
        after: size(file)?,
        debug,
    })
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    create_parent(to)?;
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    create_parent(path)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, 0o644)
}

fn symlink(target: &str, link: &Path) -> anyhow::Result<()> {
    create_parent(link)?;
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot create the symlink {}", link.display()))
}

/// `gzip -9n`: the best compression and no name or time stamp, as Debian policy asks.
fn gzip(path: &Path) -> anyhow::Result<()> {
    cmd::run(Command::new("gzip").args(["-9n", "--force"]).arg(path))
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().context("a path without a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Every directory 0755, whatever the umask was.
fn normalize_dirs(dir: &Path) -> anyhow::Result<()> {
    set_mode(dir, 0o755)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            normalize_dirs(&entry.path())?;
        }
    }
    Ok(())
}

pub fn size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// The changelog's date: the last commit's, so that rebuilding the same commit gives the same
/// file (RFC 2822, as `date -R` writes it); now if git cannot say.
fn release_date() -> String {
    let git = Command::new("git")
        .args(["log", "-1", "--format=%cD"])
        .current_dir(workspace::root())
        .output();
    match git {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
        _ => cmd::output(Command::new("date").arg("-R"))
            .map(|date| date.trim().to_owned())
            .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_owned()),
    }
}
