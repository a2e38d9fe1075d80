//! Fetching from Debian, as `cargo xtask real` (source packages) and `cargo xtask vm-test`
//! (kernels) do: the machine's apt installs a tool that is missing; a private apt state reads
//! Debian's mirrors without touching the machine's sources, lists and caches; and what is
//! downloaded is kept in a cache that `cargo clean` does not touch.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run::Runner;

/// debian-archive-keyring has the keys of every release since bullseye in this one file.
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// A download cache outside `target/`: `default`, unless the environment variable `var` names
/// another directory.
#[derive(Debug)]
pub struct Cache {
    pub var: &'static str,
    pub default: &'static str,
    /// What it holds, for errors: "source cache".
    pub what: &'static str,
}

impl Cache {
    pub fn root(&self) -> PathBuf {
        std::env::var_os(self.var).map_or_else(|| PathBuf::from(self.default), PathBuf::from)
    }

    /// Creates `dir` (in the cache); the error says how to get a writable one.
    pub fn create(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the {} {}: run as root, or set {} to a writable directory",
                self.what,
                dir.display(),
                self.var
            )
        })
    }
}

/// Installs with the machine's apt whichever of `tools` (a package and the file whose presence
/// says it is installed) is missing, and checks each file is there afterwards. `task` starts
/// what is printed and names the log. Ok(false): nothing was missing, nothing was done.
pub fn install_missing(tools: &[(&str, &str)], task: &str, verbose: bool) -> anyhow::Result<bool> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let shown = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing {}: run as root (it would run `{shown}`)",
            missing.join(", ")
        );
    }
    println!(
        "{task}: missing {}; running `apt-get update && {shown}`",
        missing.join(", ")
    );
    let runner = Runner::new(verbose, &format!("{task}-tools"))?;
    runner.run(Command::new("apt-get").arg("update"))?;
    runner.run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for (package, file) in tools {
        if !Path::new(file).exists() {
            bail!(
                "installed {package}, but {file} is still missing (log: {})",
                runner.log.display()
            );
        }
    }
    Ok(true)
}

/// An apt state of its own in one directory: its sources, lists, caches and an empty dpkg
/// status, read by the commands of [`PrivateApt::command`] only.
#[derive(Debug)]
pub struct PrivateApt {
    pub dir: PathBuf,
    conf: PathBuf,
}

impl PrivateApt {
    /// The state in `dir`, with `sources` as its sources.list; nothing is downloaded yet.
    pub fn create(dir: PathBuf, sources: &str) -> anyhow::Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial", "parts"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::write(dir.join("sources.list"), sources)?;
        fs::write(dir.join("status"), "")?;
        let conf = dir.join("apt.conf");
        fs::write(&conf, apt_conf(&dir))?;
        Ok(Self { dir, conf })
    }

    /// `program` (apt-get, apt-cache) reading this state.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.conf);
        cmd
    }

    /// `apt-get update` of the sources' lists.
    pub fn update(&self, runner: &Runner) -> anyhow::Result<()> {
        runner.run(self.command("apt-get").args(["-q", "update"]))
    }
}

/// An apt configuration that reads and writes only under `dir`: its own sources, lists, caches
/// and an empty dpkg status, and none of the machine's apt.conf.d (whose hooks, such as the
/// AppStream refresh, are for the machine's own lists).
fn apt_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "Dir::Etc::SourceList \"{d}/sources.list\";\n\
         Dir::Etc::SourceParts \"{d}/parts\";\n\
         Dir::Etc::Parts \"{d}/parts\";\n\
         Dir::Etc::Preferences \"{d}/preferences\";\n\
         Dir::Etc::PreferencesParts \"{d}/parts\";\n\
         Dir::State::Lists \"{d}/lists\";\n\
         Dir::State::status \"{d}/status\";\n\
         Dir::Cache \"{d}/cache\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Sandbox::User \"root\";\n\
         Acquire::Languages \"none\";\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_apt_configuration_stays_in_its_directory() {
        let conf = apt_conf(Path::new("/c/bullseye/apt"));
        for line in conf.lines() {
            let value = line.split('"').nth(1).expect("a quoted value");
            assert!(
                !value.starts_with('/') || value.starts_with("/c/bullseye/apt/"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_cache_is_the_default_unless_the_environment_names_another() {
        let cache = Cache {
            var: "QBENCH_TEST_CACHE_NEVER_SET",
            default: "/var/cache/x",
            what: "test cache",
        };
        assert_eq!(cache.root(), Path::new("/var/cache/x"));
    }
}
