//! The Debian packages: DEBIAN/ control files for a staged tree, then `dpkg-deb --build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use super::cmd;
use super::layout::{self, Control, LIB_DIR, Names, PACKAGE};

/// What a program linked with Rust's standard library needs when dpkg-shlibdeps is not there to
/// say: glibc 2.34 (Rust's `std` symbols of bookworm's toolchain era) and the unwinder.
const FALLBACK_DEPENDS: &str = "libc6 (>= 2.34), libgcc-s1 (>= 4.2)";

/// Builds `qbench_<version>_amd64.deb` from `root` into `out_dir`.
pub fn build_main(names: &Names, root: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let elf_files = [
        root.join("usr/bin/qbench-trace"),
        root.join(format!("{LIB_DIR}/{}", names.real_so())),
    ];
    let depends = depends(&elf_files)?;
    let control = Control {
        package: PACKAGE,
        version: &names.version,
        depends: &depends,
        installed_size_kib: installed_size(root)?,
        section: "devel",
        description: layout::DESCRIPTION,
    };
    let debian = write_control(root, &control.render())?;
    // The library is public: tell dpkg-shlibdeps of other packages who provides it, and let the
    // ldconfig trigger refresh the loader's cache after install and removal.
    std::fs::write(debian.join("shlibs"), names.shlibs())?;
    std::fs::write(debian.join("triggers"), "activate-noawait ldconfig\n")?;
    dpkg_deb(root, &out_dir.join(names.deb()))
}

/// Builds `qbench-dbgsym_<version>_amd64.deb` from `debug_root` into `out_dir`.
pub fn build_dbgsym(names: &Names, debug_root: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let depends = format!("{PACKAGE} (= {})", names.version);
    let description = layout::dbgsym_description(&names.version);
    let control = Control {
        package: &format!("{PACKAGE}-dbgsym"),
        version: &names.version,
        depends: &depends,
        installed_size_kib: installed_size(debug_root)?,
        section: "debug",
        description: &description,
    };
    write_control(debug_root, &control.render())?;
    dpkg_deb(debug_root, &out_dir.join(names.dbgsym_deb()))
}

/// Runs lintian on `deb` when it is installed; its findings are printed, and an error fails.
pub fn lint(deb: &Path) -> anyhow::Result<()> {
    if !cmd::available("lintian") {
        println!("dist: lintian is not installed (apt-get install lintian): not linted");
        return Ok(());
    }
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--suppress-tags-from-file"])
        .arg(lintian_suppressions()?)
        .arg(deb)
        .output()
        .context("cannot run lintian")?;
    let findings = String::from_utf8_lossy(&out.stdout);
    for line in findings.lines() {
        println!("dist: lintian: {line}");
    }
    anyhow::ensure!(
        out.status.success(),
        "lintian found errors in {}: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if findings.trim().is_empty() {
        println!("dist: lintian: {} is clean", deb.display());
    }
    Ok(())
}

/// Tags that follow from the package's design, not from a mistake in it.
fn lintian_suppressions() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join("qbench-dist-lintian-suppress");
    std::fs::write(&path, LINTIAN_SUPPRESSED)?;
    Ok(path)
}

/// One package carries the runtime library, its development files and the observer, by design
/// (one file to copy to a server): policy would split them into libqbench0, libqbench-dev and
/// qbench, and lintian says so.
const LINTIAN_SUPPRESSED: &str = "\
package-name-doesnt-match-sonames
link-to-shared-library-in-wrong-package
";

/// Writes DEBIAN/control and DEBIAN/md5sums of `root`; returns DEBIAN/.
fn write_control(root: &Path, control: &str) -> anyhow::Result<PathBuf> {
    let debian = root.join("DEBIAN");
    if debian.exists() {
        std::fs::remove_dir_all(&debian)?;
    }
    let files = files(root)?;
    std::fs::create_dir_all(&debian)?;
    std::fs::write(debian.join("control"), control)?;
    let mut md5 = Command::new("md5sum");
    md5.current_dir(root).args(&files);
    let sums = cmd::output(&mut md5)?;
    std::fs::write(debian.join("md5sums"), sums)?;
    Ok(debian)
}

fn dpkg_deb(root: &Path, deb: &Path) -> anyhow::Result<PathBuf> {
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zxz"])
            .arg(root)
            .arg(deb),
    )?;
    Ok(deb.to_path_buf())
}

/// The Depends of the binaries: dpkg-shlibdeps's, else a fixed minimum.
fn depends(elf_files: &[PathBuf]) -> anyhow::Result<String> {
    if !cmd::available("dpkg-shlibdeps") {
        println!(
            "dist: dpkg-shlibdeps is not installed (apt-get install dpkg-dev): \
             Depends: {FALLBACK_DEPENDS}"
        );
        return Ok(FALLBACK_DEPENDS.to_owned());
    }
    // dpkg-shlibdeps wants a source package around it: a minimal debian/control.
    let dir = std::env::temp_dir().join(format!("qbench-dist-shlibdeps-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("debian"))?;
    std::fs::write(
        dir.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: amd64\n"),
    )?;
    let mut shlibdeps = Command::new("dpkg-shlibdeps");
    shlibdeps.current_dir(&dir).arg("-O");
    for file in elf_files {
        shlibdeps.arg(format!("-e{}", file.display()));
    }
    let result = cmd::output(&mut shlibdeps);
    let _ = std::fs::remove_dir_all(&dir);
    let out = result?;
    out.lines()
        .find_map(|line| line.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))
}

/// Installed-Size of the tree (without DEBIAN/).
fn installed_size(root: &Path) -> anyhow::Result<u64> {
    let mut file_sizes = Vec::new();
    let mut others = 0;
    walk(root, &mut |path, meta| {
        if meta.is_file() {
            file_sizes.push(meta.len());
        } else if path != root {
            others += 1;
        }
    })?;
    Ok(layout::installed_size_kib(&file_sizes, others))
}

/// The regular files of the tree (without DEBIAN/), relative and sorted.
fn files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(root, &mut |path, meta| {
        if meta.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            files.push(relative.to_path_buf());
        }
    })?;
    files.sort();
    Ok(files)
}

/// Calls `visit` on every entry under `dir` (itself included), not following symlinks, skipping
/// the control directory DEBIAN/.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    visit(dir, &meta);
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name == "DEBIAN") {
            continue;
        }
        walk(&path, visit)?;
    }
    Ok(())
}
