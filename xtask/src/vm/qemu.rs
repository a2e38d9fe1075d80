//! Booting a kernel with the initramfs under QEMU, its serial console captured to a log file,
//! and QEMU killed when the guest overruns its time.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How a boot ended.
#[derive(Debug)]
pub struct Boot {
    pub elapsed: Duration,
    /// QEMU was killed at the timeout.
    pub timed_out: bool,
}

/// The QEMU command line: TCG with every CPU feature it emulates (or KVM where it works), 2 GiB
/// and 2 CPUs, no network device (the guest needs only loopback), the console on the serial port.
///
/// TCG runs both vCPUs in one thread (`thread=single`): with a thread per vCPU, QEMU 7.2 lets a
/// vCPU execute a breakpoint the kernel's live code patching (static keys, as tracepoints and
/// uprobes are enabled) has already removed, and the guest dies of `Oops: int3` in an idle
/// CPU's `__schedule` (seen on 6.12).
pub fn command(vmlinuz: &Path, initrd: &Path, kvm: bool) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    if kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg,thread=single", "-cpu", "max"]);
    }
    cmd.args([
        "-m",
        "2048",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ])
    .arg("-kernel")
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    // panic=-1: a guest whose /init dies reboots at once, and -no-reboot ends QEMU then.
    .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    cmd
}

/// Runs `cmd` with its output (the serial console, and QEMU's own messages) in `log`; kills it
/// after `timeout`.
pub fn boot(mut cmd: Command, log: &Path, timeout: Duration) -> anyhow::Result<Boot> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(Boot {
                elapsed: started.elapsed(),
                timed_out: false,
            });
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Boot {
                elapsed: started.elapsed(),
                timed_out: true,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
