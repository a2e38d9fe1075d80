//! `cargo xtask dist --test`: the .deb on a Debian system with no Rust, LLVM or compiler. It
//! installs, the loader finds the library by its soname, the man page is there, qbench-trace
//! runs, and it measures an update of a C program built against the installed library (through
//! the installed qbench.pc) and linked to it at run time.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::chroot::{self, Chroot};
use super::cmd;
use super::layout::{LIB_DIR, MAN_SECTION, MULTIARCH, Names};
use crate::workspace;

/// Where the target program goes inside the chroot.
const TARGET: &str = "/tmp/situations";
/// How long qbench-trace may take to attach and report one update.
const TRACE_DEADLINE: Duration = Duration::from_secs(120);

/// Runs every check; `deb` is the package, `dist` the output directory.
pub fn run(names: &Names, deb: &Path, dist: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("dist --test: skipped: installing into a chroot needs root (run as root)");
        return Ok(());
    }
    let started = Instant::now();
    let base = chroot::base_tree()?;
    let chroot = Chroot::new(&base, &dist.join("chroot"))?;
    let step = |name: &str| {
        println!(
            "dist --test: {name} ({:.1} s)",
            started.elapsed().as_secs_f64()
        )
    };

    install(&chroot, deb)?;
    step("dpkg -i: installed");
    check_loader_cache(&chroot, names)?;
    step(&format!("ldconfig -p: {} found", names.soname()));
    check_man_page(&chroot)?;
    step("man page: present");
    check_help(&chroot, names)?;
    step("qbench-trace --help, --version: as expected");
    build_target(&chroot)?;
    step("C program built against the installed library through its qbench.pc");
    observe(&chroot, names)?;
    step("qbench-trace --request: the update quiesced");
    drop(chroot);
    println!(
        "dist --test: passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn install(chroot: &Chroot, deb: &Path) -> anyhow::Result<()> {
    let inside = "/tmp/qbench.deb";
    std::fs::copy(deb, chroot.host_path(inside))?;
    cmd::run(chroot.command("dpkg").args(["-i", inside]))?;
    let status = cmd::output(
        chroot
            .command("dpkg-query")
            .args(["-W", "-f=${Status}", "qbench"]),
    )?;
    ensure!(
        status == "install ok installed",
        "dpkg-query says {status:?}"
    );
    Ok(())
}

fn check_loader_cache(chroot: &Chroot, names: &Names) -> anyhow::Result<()> {
    let cache = cmd::output(chroot.command("ldconfig").arg("-p"))?;
    let path = loader_cache_entry(&cache, &names.soname())
        .with_context(|| format!("ldconfig -p does not list {}", names.soname()))?;
    ensure!(
        path == format!("/lib/{MULTIARCH}/{}", names.soname())
            || path == format!("/usr/lib/{MULTIARCH}/{}", names.soname()),
        "ldconfig -p lists {} at {path}",
        names.soname()
    );
    let resolved = chroot.host_path(&path).canonicalize()?;
    ensure!(
        resolved == chroot.host_path(&format!("/{LIB_DIR}/{}", names.real_so())),
        "{path} resolves to {}",
        resolved.display()
    );
    Ok(())
}

/// The path `ldconfig -p` gives for `soname` on x86-64.
pub fn loader_cache_entry(ldconfig_p: &str, soname: &str) -> Option<String> {
    ldconfig_p.lines().find_map(|line| {
        let (name, rest) = line.trim().split_once(' ')?;
        let (kind, path) = rest.split_once(" => ")?;
        (name == soname && kind.starts_with("(libc6,x86-64")).then(|| path.to_owned())
    })
}

fn check_man_page(chroot: &Chroot) -> anyhow::Result<()> {
    let page = chroot.host_path(&format!(
        "/usr/share/man/man{MAN_SECTION}/qbench-trace.{MAN_SECTION}.gz"
    ));
    let text = cmd::output(Command::new("gzip").arg("-dc").arg(&page))?;
    ensure!(
        text.contains(&format!("\n.TH qbench-trace {MAN_SECTION} ")),
        "{} is not qbench-trace's man page",
        page.display()
    );
    Ok(())
}

fn check_help(chroot: &Chroot, names: &Names) -> anyhow::Result<()> {
    let help = cmd::output(chroot.command("qbench-trace").arg("--help"))?;
    ensure!(
        help.contains("\nUsage: qbench-trace [OPTIONS]"),
        "qbench-trace --help printed {help:?}"
    );
    let version = cmd::output(chroot.command("qbench-trace").arg("--version"))?;
    ensure!(
        version == format!("qbench-trace {}\n", names.version),
        "qbench-trace --version printed {version:?}"
    );
    Ok(())
}

/// Builds workloads/c/situations.c on the host, with the flags the installed qbench.pc gives
/// for the chroot's tree, into the chroot (which has no compiler).
fn build_target(chroot: &Chroot) -> anyhow::Result<()> {
    let root = chroot.root.display().to_string();
    let flags = cmd::output(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "qbench"])
            .env("PKG_CONFIG_SYSROOT_DIR", &root)
            // LIBDIR rather than PATH: the host's own qbench.pc (`cargo xtask install`) must not
            // be found instead.
            .env("PKG_CONFIG_LIBDIR", format!("{root}/{LIB_DIR}/pkgconfig"))
            // Keep /usr/include and the multiarch dir: they are the chroot's, not the host's.
            .env("PKG_CONFIG_ALLOW_SYSTEM_CFLAGS", "1")
            .env("PKG_CONFIG_ALLOW_SYSTEM_LIBS", "1"),
    )?;
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let include = format!("-I{root}/usr/include");
    let lib = format!("-L{root}/{LIB_DIR}");
    ensure!(
        flags == [include.as_str(), "-pthread", lib.as_str(), "-lqbench"],
        "pkg-config gave {flags:?}"
    );
    let source = workspace::root().join("workloads/c/situations.c");
    cmd::run(
        Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(&source)
            .args(&flags)
            .arg("-o")
            .arg(chroot.host_path(TARGET)),
    )
}

/// Starts the target in the chroot, checks it loaded the packaged library, and has the packaged
/// qbench-trace request and measure one update.
fn observe(chroot: &Chroot, names: &Names) -> anyhow::Result<()> {
    let target = Target::spawn(chroot)?;
    let pid = target.child.id();
    let mapped = loaded_runtime(pid)?;
    let packaged = chroot.host_path(&format!("/{LIB_DIR}/{}", names.real_so()));
    ensure!(
        Path::new(&mapped) == packaged,
        "the target loaded {mapped}, not the packaged {}",
        packaged.display()
    );
    let mut trace = chroot.command("qbench-trace");
    trace
        .args([
            "--pid",
            &pid.to_string(),
            "--request",
            "--count",
            "1",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_with_deadline(&mut trace, TRACE_DEADLINE)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "qbench-trace failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines.len() == 1,
        "qbench-trace printed {} lines: {stdout}",
        lines.len()
    );
    let report: serde_json::Value =
        serde_json::from_str(lines[0]).context("qbench-trace's report is not JSON")?;
    ensure!(
        report["outcome"] == "quiesced" && report["request_source"] == "signal",
        "qbench-trace reported {report}"
    );
    target.quit()
}

/// The file of libqbench that process `pid` maps, as the host sees it.
fn loaded_runtime(pid: u32) -> anyhow::Result<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains("/libqbench.so"))
        .map(str::to_owned)
        .with_context(|| format!("process {pid} has not loaded libqbench"))
}

/// workloads/c/situations running in the chroot, threads blocked in a read, a condition wait
/// and a sleep; killed if the test fails before it quits.
struct Target {
    child: Child,
}

impl Target {
    fn spawn(chroot: &Chroot) -> anyhow::Result<Self> {
        let child = chroot
            .command(TARGET)
            .args(["read:2", "condwait:1", "sleep:1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the target in the chroot")?;
        let mut target = Self { child };
        let mut line = String::new();
        let stdout = target.child.stdout.as_mut().context("no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        // chroot execs the program: the child's pid is the target's.
        let expected = format!("ready {}", target.child.id());
        ensure!(
            line.trim_end() == expected,
            "the target printed {line:?}, not {expected:?}"
        );
        Ok(target)
    }

    /// The "q" command: the target exits 0.
    fn quit(mut self) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        stdin.write_all(b"q\n")?;
        let status = self.child.wait()?;
        ensure!(status.success(), "the target exited with {status}");
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion; kills it and fails after `deadline`.
fn run_with_deadline(
    cmd: &mut Command,
    deadline: Duration,
) -> anyhow::Result<std::process::Output> {
    let shown = crate::run::display(cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let pid = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(deadline) {
        Ok(out) => Ok(out?),
        Err(_) => {
            // SAFETY: kill has no memory preconditions. The waiter thread reaps the child only
            // after it exits, so until then the pid is still the child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            bail!("`{shown}` did not finish within {} s", deadline.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_cache_entry_is_the_x86_64_one() {
        let cache = "3 libs found in cache `/etc/ld.so.cache'\n\
                     \tlibqbench.so.0 (libc6) => /usr/lib32/libqbench.so.0\n\
                     \tlibqbench.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libqbench.so.0\n\
                     \tlibqbench.so.01 (libc6,x86-64) => /lib/x86_64-linux-gnu/libqbench.so.01\n";
        assert_eq!(
            loader_cache_entry(cache, "libqbench.so.0").as_deref(),
            Some("/lib/x86_64-linux-gnu/libqbench.so.0")
        );
        assert_eq!(loader_cache_entry(cache, "libqbench.so.1"), None);
    }
}
