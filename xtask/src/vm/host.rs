//! What the host needs to boot the kernels (QEMU, a static busybox, cpio), installed like
//! `cargo xtask setup` installs its steps, and whether KVM can be used.

use std::time::Instant;

use crate::debian;
use crate::run::output;

/// A package and the file whose presence says it is installed.
const TOOLS: [(&str, &str); 3] = [
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
];

/// Installs whichever of [`TOOLS`] is missing, saying what it does; does nothing (and says so)
/// when all are present.
pub fn ensure_tools(verbose: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    if debian::install_missing(&TOOLS, "vm-test", verbose)? {
        println!(
            "vm-test: installed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "vm-test: qemu-system-x86_64, busybox (static) and cpio -> present ({})",
            output("qemu-system-x86_64", &["--version"])
                .and_then(|v| v.lines().next().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// KVM only where it works: a /dev/kvm that opens and a CPU that advertises virtualization. A
/// nested VM without it can have a /dev/kvm whose guests hang in the firmware.
pub fn kvm_usable() -> bool {
    let cpu_has_it =
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| cpu_virtualization(&info));
    cpu_has_it
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

/// The `flags` of /proc/cpuinfo have `vmx` (Intel) or `svm` (AMD).
fn cpu_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_is_read_from_the_cpu_flags() {
        assert!(cpu_virtualization("flags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_virtualization("flags\t\t: fpu svm\n"));
        assert!(!cpu_virtualization("flags\t\t: fpu vme sse hypervisor\n"));
        assert!(!cpu_virtualization("model name\t: vmx\n"));
    }
}
