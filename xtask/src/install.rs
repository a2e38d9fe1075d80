//! `cargo xtask install`: the runtime as a C library under a prefix, laid out as the .deb of
//! `cargo xtask dist` lays it out: lib/libqbench.so.X.Y.Z with the links libqbench.so.X (its
//! soname, what programs load) and libqbench.so (what `-lqbench` links), lib/libqbench.a,
//! include/qbench.h and lib/pkgconfig/qbench.pc. Into /usr or /usr/local it then runs ldconfig,
//! so that programs find the new library at once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};

use crate::dist::layout::{self, Names};
use crate::workspace::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to install.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Install the debug build instead of the release build.
    #[arg(long)]
    pub debug: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    let mut build = vec!["build", "-p", "qbench-runtime"];
    if profile == Profile::Release {
        build.push("--release");
    }
    workspace::cargo(&build)?;
    install(profile, &args.prefix)
}

/// Copies an already built runtime of `profile` under `prefix`.
pub fn install(profile: Profile, prefix: &Path) -> anyhow::Result<()> {
    let names = Names::new(env!("CARGO_PKG_VERSION"));
    let built = workspace::profile_dir(profile);
    let root = workspace::root();
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for dir in [&lib, &include, &pkgconfig] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    copy(&built.join("libqbench.so"), &lib.join(names.real_so()))?;
    for (link, target) in soname_links(&names) {
        symlink(&target, &lib.join(link))?;
    }
    copy(&built.join("libqbench.a"), &lib.join("libqbench.a"))?;
    copy(
        &root.join("qbench-runtime/include/qbench.h"),
        &include.join("qbench.h"),
    )?;
    let template = std::fs::read_to_string(root.join("qbench-runtime/qbench.pc.in"))?;
    let absolute = std::path::absolute(prefix)?;
    let pc = layout::pkg_config(
        &template,
        &absolute.display().to_string(),
        "lib",
        &names.version,
    );
    let pc_path = pkgconfig.join("qbench.pc");
    std::fs::write(&pc_path, pc).with_context(|| format!("cannot write {}", pc_path.display()))?;
    println!(
        "install: {} (with {} and libqbench.so), libqbench.a, qbench.h, qbench.pc under {}",
        names.real_so(),
        names.soname(),
        absolute.display()
    );
    if is_system_prefix(&absolute) {
        let status = Command::new("ldconfig")
            .status()
            .context("cannot run ldconfig")?;
        ensure!(
            status.success(),
            "ldconfig failed ({status}): run it as root"
        );
        println!("install: ldconfig: the loader's cache is up to date");
    }
    Ok(())
}

/// The symlinks beside the library, (link, target), relative as in the .deb.
fn soname_links(names: &Names) -> [(String, String); 2] {
    [
        (names.soname(), names.real_so()),
        ("libqbench.so".to_owned(), names.soname()),
    ]
}

/// Whether the loader's cache covers `prefix`/lib: the prefixes of Debian's ld.so.conf.
fn is_system_prefix(prefix: &Path) -> bool {
    let prefix = prefix
        .canonicalize()
        .unwrap_or_else(|_| prefix.to_path_buf());
    prefix == Path::new("/usr") || prefix == Path::new("/usr/local")
}

fn symlink(target: &str, link: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot replace {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot create the symlink {}", link.display()))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    // Remove first: overwriting a shared library a running program maps would corrupt it.
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_match_the_deb() {
        assert_eq!(
            soname_links(&Names::new("0.1.0")),
            [
                ("libqbench.so.0".to_owned(), "libqbench.so.0.1.0".to_owned()),
                ("libqbench.so".to_owned(), "libqbench.so.0".to_owned()),
            ]
        );
    }

    #[test]
    fn system_prefixes_are_usr_and_usr_local() {
        assert!(is_system_prefix(Path::new("/usr")));
        assert!(is_system_prefix(Path::new("/usr/local")));
        assert!(!is_system_prefix(Path::new("/opt/qbench")));
        assert!(!is_system_prefix(Path::new("/tmp")));
    }
}
