//! A Debian source package, fetched with `apt-get source` into a cache that `cargo clean` does
//! not touch: a second run downloads nothing. Where the machine's apt has no deb-src entry, a
//! private apt configuration adds one for the machine's own suite (the machine's sources, lists
//! and caches are left alone).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::debian::{self, Cache, KEYRING, MIRROR, PrivateApt, SECURITY_MIRROR};
use crate::run::Runner;

/// Where sources are kept.
const CACHE: Cache = Cache {
    var: "QBENCH_REAL_CACHE",
    default: "/var/cache/qbench-real",
    what: "source cache",
};

/// A package and the file whose presence says it is installed: `dpkg-source` unpacks the
/// source, the rest build it (with each program's own, [`super::program::Spec::tools`]).
const TOOLS: [(&str, &str); 4] = [
    ("dpkg-dev", "/usr/bin/dpkg-source"),
    ("patch", "/usr/bin/patch"),
    ("make", "/usr/bin/make"),
    ("gcc", "/usr/bin/gcc"),
];

/// An unpacked source package, Debian's patches applied.
#[derive(Debug)]
pub struct Source {
    pub dir: PathBuf,
    pub version: String,
}

/// The source of `package`, from the cache or fetched into it (`refresh`: fetch again), and the
/// tools to build it, installed if missing (`tools`: the package's own besides [`TOOLS`]).
pub fn fetch(
    package: &str,
    tools: &[(&str, &str)],
    refresh: bool,
    verbose: bool,
) -> anyhow::Result<Source> {
    let all: Vec<(&str, &str)> = TOOLS.iter().chain(tools).copied().collect();
    debian::install_missing(&all, "real", verbose)?;
    let dir = CACHE.root().join(package);
    let stamp = dir.join("source");
    if !refresh && let Some(source) = cached(&dir, &stamp) {
        println!(
            "real: {package} {}: cached source in {}",
            source.version,
            source.dir.display()
        );
        return Ok(source);
    }
    CACHE.create(&dir)?;
    let started = Instant::now();
    let runner = Runner::new(verbose, &format!("real-{package}"))?;
    let apt = private_apt(package, &dir, &runner)?;
    let unpacked = dir.join("src.tmp");
    let _ = fs::remove_dir_all(&unpacked);
    fs::create_dir_all(&unpacked)?;
    let mut cmd = apt
        .as_ref()
        .map_or_else(|| Command::new("apt-get"), |apt| apt.command("apt-get"));
    runner.run(cmd.args(["-q", "source", package]).current_dir(&unpacked))?;
    let src = dir.join("src");
    let _ = fs::remove_dir_all(&src);
    fs::rename(&unpacked, &src)?;
    let tree = only_directory(&src)?;
    let version = changelog_version(&tree)?;
    let name = tree.file_name().context("source directory name")?;
    fs::write(&stamp, format!("{version}\n{}\n", name.to_string_lossy()))?;
    println!(
        "real: {package} {version}: fetched with apt-get source in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        tree.display()
    );
    Ok(Source { dir: tree, version })
}

/// The source the stamp names, if it is still there.
fn cached(dir: &Path, stamp: &Path) -> Option<Source> {
    let text = fs::read_to_string(stamp).ok()?;
    let mut lines = text.lines();
    let (version, name) = (lines.next()?, lines.next()?);
    let tree = dir.join("src").join(name);
    tree.join("debian/changelog").exists().then(|| Source {
        dir: tree,
        version: version.to_owned(),
    })
}

/// None when the machine's apt knows the package's source already; otherwise a private apt
/// state in `dir/apt` with deb-src entries for the machine's suite, updated once.
fn private_apt(package: &str, dir: &Path, runner: &Runner) -> anyhow::Result<Option<PrivateApt>> {
    let known = Command::new("apt-cache")
        .args(["showsrc", package])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if known {
        println!("real: the machine's apt has a deb-src entry for {package}");
        return Ok(None);
    }
    let os_release =
        fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    let Some(suite) = debian_suite(&os_release) else {
        bail!(
            "cargo xtask real fetches Debian's sources: /etc/os-release names no Debian suite (ID=debian, VERSION_CODENAME)"
        );
    };
    let apt = PrivateApt::create(dir.join("apt"), &source_list(&suite))?;
    println!(
        "real: no deb-src entry for {package}; apt-get update of {suite}'s sources in a private apt state ({})",
        apt.dir.display()
    );
    apt.update(runner)?;
    Ok(Some(apt))
}

/// The one directory `apt-get source` unpacked into `dir`.
fn only_directory(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut dirs = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir());
    match (dirs.next(), dirs.next()) {
        (Some(tree), None) => Ok(tree),
        _ => bail!(
            "apt-get source left no single directory in {}",
            dir.display()
        ),
    }
}

/// The version of the top entry of `debian/changelog`: `memcached (1.6.18-1+deb12u1) ...`.
fn changelog_version(tree: &Path) -> anyhow::Result<String> {
    let changelog = fs::read_to_string(tree.join("debian/changelog"))
        .with_context(|| format!("{} has no debian/changelog", tree.display()))?;
    top_version(&changelog).context("debian/changelog names no version")
}

fn top_version(changelog: &str) -> Option<String> {
    let first = changelog.lines().next()?;
    let (_, rest) = first.split_once('(')?;
    let (version, _) = rest.split_once(')')?;
    Some(version.to_owned())
}

/// The Debian suite (`bookworm`) of an /etc/os-release, or None when it is not Debian's.
fn debian_suite(os_release: &str) -> Option<String> {
    let field = |name: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    (field("ID")? == "debian")
        .then(|| field("VERSION_CODENAME"))
        .flatten()
        .filter(|s| !s.is_empty())
}

/// deb-src entries for the suite, its updates and its security updates, checked with Debian's
/// archive keyring.
fn source_list(suite: &str) -> String {
    format!(
        "deb-src [signed-by={KEYRING}] {MIRROR} {suite} main\n\
         deb-src [signed-by={KEYRING}] {MIRROR} {suite}-updates main\n\
         deb-src [signed-by={KEYRING}] {SECURITY_MIRROR} {suite}-security main\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_debians_codename() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(debian_suite(bookworm).as_deref(), Some("bookworm"));
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";
        assert_eq!(debian_suite(ubuntu), None);
        assert_eq!(debian_suite("ID=debian\nVERSION_CODENAME=\n"), None);
    }

    #[test]
    fn the_version_is_the_changelogs_top_entry() {
        let changelog = "memcached (1.6.18-1+deb12u1) bookworm-security; urgency=medium\n\n  * x\n";
        assert_eq!(top_version(changelog).as_deref(), Some("1.6.18-1+deb12u1"));
        assert_eq!(top_version("garbage\n"), None);
    }

    #[test]
    fn the_source_list_has_only_deb_src_entries_for_the_suite() {
        let list = source_list("bookworm");
        assert_eq!(list.lines().count(), 3);
        assert!(list.lines().all(|l| l.starts_with("deb-src [signed-by=")));
        for suite in [
            " bookworm main",
            " bookworm-updates main",
            " bookworm-security main",
        ] {
            assert!(list.contains(suite), "{list}");
        }
    }
}
