//! What the packages contain and what they are called: names, paths and the text of the metadata
//! files (pure; `stage` and `deb` write them).

use std::fmt::Write as _;

/// Debian's multiarch directory of x86-64 libraries.
pub const MULTIARCH: &str = "x86_64-linux-gnu";
/// Where the packaged libraries go, relative to the root of the tree.
pub const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
/// The Debian package, the tarball's name stem and the documentation directory.
pub const PACKAGE: &str = "qbench";
/// The man section of qbench-trace (it needs root or capabilities).
pub const MAN_SECTION: &str = "8";
pub const MAINTAINER: &str = "qbench maintainers <qbench@example.invalid>";
pub const HOMEPAGE: &str = "https://example.invalid/qbench";

/// The names that follow from the workspace's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub version: String,
}

impl Names {
    pub fn new(version: &str) -> Self {
        Self {
            version: version.to_owned(),
        }
    }

    /// The major version: the soname's suffix.
    pub fn major(&self) -> &str {
        self.version.split('.').next().unwrap_or(&self.version)
    }

    /// The library's soname, which programs record and the loader looks for.
    pub fn soname(&self) -> String {
        format!("libqbench.so.{}", self.major())
    }

    /// The library file itself; the soname and the `libqbench.so` link point to it.
    pub fn real_so(&self) -> String {
        format!("libqbench.so.{}", self.version)
    }

    pub fn deb(&self) -> String {
        format!("{PACKAGE}_{}_amd64.deb", self.version)
    }

    pub fn dbgsym_deb(&self) -> String {
        format!("{PACKAGE}-dbgsym_{}_amd64.deb", self.version)
    }

    pub fn tarball(&self) -> String {
        format!("{PACKAGE}-{}-x86_64-linux.tar.gz", self.version)
    }

    pub fn debug_tarball(&self) -> String {
        format!("{PACKAGE}-dbgsym-{}-x86_64-linux.tar.gz", self.version)
    }

    /// The dpkg shlibs line: a program linked against the library depends on this package.
    pub fn shlibs(&self) -> String {
        format!(
            "libqbench {} {PACKAGE} (>= {})\n",
            self.major(),
            self.version
        )
    }
}

/// qbench.pc from its template (`qbench-runtime/qbench.pc.in`, whose libdir is `${prefix}/lib`)
/// for `prefix`, with the libraries in `${prefix}/<lib_subdir>`.
pub fn pkg_config(template: &str, prefix: &str, lib_subdir: &str, version: &str) -> String {
    template
        .replace(
            "libdir=${prefix}/lib\n",
            &format!("libdir=${{prefix}}/{lib_subdir}\n"),
        )
        .replace("@PREFIX@", prefix)
        .replace("@VERSION@", version)
}

/// The fields of the binary package's control file that are computed.
#[derive(Debug)]
pub struct Control<'a> {
    pub package: &'a str,
    pub version: &'a str,
    pub depends: &'a str,
    pub installed_size_kib: u64,
    pub section: &'a str,
    pub description: &'a str,
}

impl Control<'_> {
    /// DEBIAN/control; `description` is the synopsis line, then the extended lines.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "Package: {}", self.package);
        let _ = writeln!(text, "Version: {}", self.version);
        let _ = writeln!(text, "Architecture: amd64");
        let _ = writeln!(text, "Maintainer: {MAINTAINER}");
        let _ = writeln!(text, "Installed-Size: {}", self.installed_size_kib);
        if !self.depends.is_empty() {
            let _ = writeln!(text, "Depends: {}", self.depends);
        }
        let _ = writeln!(text, "Section: {}", self.section);
        let _ = writeln!(text, "Priority: optional");
        let _ = writeln!(text, "Homepage: {HOMEPAGE}");
        let mut lines = self.description.lines();
        let _ = writeln!(text, "Description: {}", lines.next().unwrap_or_default());
        for line in lines {
            // Continuation lines start with a space; an empty line is a lone " .".
            let _ = writeln!(text, " {}", if line.is_empty() { "." } else { line });
        }
        text
    }
}

pub const DESCRIPTION: &str = "\
quiescence runtime and eBPF observer for dynamic software updates
qbench measures and explains quiescence in multithreaded programs: the
moment when every thread of a process is parked at an update point, where a
dynamic software update can safely be applied.

This package contains libqbench (the in-process runtime: update points,
update requests by signal, measurement; shared and static library, C header,
pkg-config file) and qbench-trace, the eBPF observer that measures an update
from outside the process and names what each late thread is blocked in,
with a systemd unit for its production mode.";

pub fn dbgsym_description(version: &str) -> String {
    format!(
        "debug symbols for {PACKAGE}\n\
         The detached debug information of qbench-trace and libqbench {version}."
    )
}

/// dpkg's Installed-Size: the size in KiB, each file rounded up to a whole KiB, each directory
/// and symlink counting one (as dpkg-gencontrol computes it).
pub fn installed_size_kib(file_sizes: &[u64], other_entries: u64) -> u64 {
    file_sizes
        .iter()
        .map(|size| size.div_ceil(1024))
        .sum::<u64>()
        + other_entries
}

/// The debian changelog of a native package: one entry for this version.
pub fn changelog(version: &str, date_rfc2822: &str) -> String {
    format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\
         \n  * Release {version}.\n\
         \n -- {MAINTAINER}  {date_rfc2822}\n"
    )
}

/// The machine-readable debian/copyright file, for a release dated `date_rfc2822`.
pub fn copyright(date_rfc2822: &str) -> String {
    // "Mon, 30 Nov 2026 03:00:00 +0000": the year is the fourth word.
    let year = date_rfc2822.split_whitespace().nth(3).unwrap_or_default();
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {PACKAGE}\n\
         Source: {HOMEPAGE}\n\
         \n\
         Files: *\n\
         Copyright: {year} qbench contributors\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: MIT\n{MIT}\n\
         \n\
         License: Apache-2.0\n\
         {APACHE}\n"
    )
}

const MIT: &str = " Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.";

const APACHE: &str = " Licensed under the Apache License, Version 2.0 (the \"License\");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an \"AS IS\" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in \"/usr/share/common-licenses/Apache-2.0\".";

/// Whether `binary` embeds an eBPF object (a relocatable 64-bit little-endian ELF for EM_BPF),
/// as qbench-trace does when built with the eBPF toolchain; without it, the build degrades to
/// an empty stub and the binary cannot observe anything.
pub fn embeds_ebpf_object(binary: &[u8]) -> bool {
    const HEADER: [u8; 7] = [0x7f, b'E', b'L', b'F', 2, 1, 1];
    // e_type ET_REL (1) at offset 16, e_machine EM_BPF (247) at 18, both little-endian.
    const TYPE_MACHINE: [u8; 4] = [1, 0, 247, 0];
    binary
        .windows(20)
        .any(|window| window[..7] == HEADER && window[16..20] == TYPE_MACHINE)
}

/// The systemd unit of the README's production mode, at the packaged path of qbench-trace.
pub const SYSTEMD_UNIT: &str = include_str!("qbench-trace.service");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_version() {
        let names = Names::new("0.1.0");
        assert_eq!(names.soname(), "libqbench.so.0");
        assert_eq!(names.real_so(), "libqbench.so.0.1.0");
        assert_eq!(names.deb(), "qbench_0.1.0_amd64.deb");
        assert_eq!(names.dbgsym_deb(), "qbench-dbgsym_0.1.0_amd64.deb");
        assert_eq!(names.tarball(), "qbench-0.1.0-x86_64-linux.tar.gz");
        assert_eq!(names.shlibs(), "libqbench 0 qbench (>= 0.1.0)\n");
        assert_eq!(Names::new("2.3.4").soname(), "libqbench.so.2");
    }

    #[test]
    fn pkg_config_points_at_the_multiarch_libdir() {
        let template = "prefix=@PREFIX@\nlibdir=${prefix}/lib\nincludedir=${prefix}/include\n\
                        Version: @VERSION@\n";
        assert_eq!(
            pkg_config(
                template,
                "/usr",
                LIB_DIR.trim_start_matches("usr/"),
                "0.1.0"
            ),
            "prefix=/usr\nlibdir=${prefix}/lib/x86_64-linux-gnu\nincludedir=${prefix}/include\n\
             Version: 0.1.0\n"
        );
        assert_eq!(
            pkg_config(template, "/opt/q", "lib", "1.0.0"),
            "prefix=/opt/q\nlibdir=${prefix}/lib\nincludedir=${prefix}/include\nVersion: 1.0.0\n"
        );
    }

    #[test]
    fn control_has_every_field_and_folds_the_description() {
        let control = Control {
            package: "qbench",
            version: "0.1.0",
            depends: "libc6 (>= 2.34)",
            installed_size_kib: 42,
            section: "devel",
            description: "synopsis\nfirst line\n\nafter a blank",
        };
        assert_eq!(
            control.render(),
            format!(
                "Package: qbench\nVersion: 0.1.0\nArchitecture: amd64\nMaintainer: {MAINTAINER}\n\
                 Installed-Size: 42\nDepends: libc6 (>= 2.34)\nSection: devel\n\
                 Priority: optional\nHomepage: {HOMEPAGE}\nDescription: synopsis\n first line\n \
                 .\n after a blank\n"
            )
        );
    }

    #[test]
    fn installed_size_rounds_each_file_up() {
        assert_eq!(installed_size_kib(&[1, 1024, 1025], 3), 1 + 1 + 2 + 3);
        assert_eq!(installed_size_kib(&[], 0), 0);
    }

    #[test]
    fn changelog_is_a_debian_changelog_entry() {
        let text = changelog("0.1.0", "Mon, 30 Nov 2026 03:00:00 +0000");
        assert!(
            text.starts_with("qbench (0.1.0) unstable; urgency=medium\n\n  * Release 0.1.0.\n")
        );
        assert!(text.ends_with(&format!(
            " -- {MAINTAINER}  Mon, 30 Nov 2026 03:00:00 +0000\n"
        )));
    }

    #[test]
    fn copyright_names_the_year_and_both_licenses() {
        let text = copyright("Mon, 30 Nov 2026 03:00:00 +0000");
        assert!(text.contains("\nFiles: *\nCopyright: 2026 qbench contributors\n"));
        assert!(text.contains("\nLicense: MIT or Apache-2.0\n"));
        assert!(text.contains("\n\nLicense: MIT\n Permission is hereby granted"));
        assert!(text.contains("\n\nLicense: Apache-2.0\n Licensed under the Apache License"));
    }

    #[test]
    fn an_embedded_bpf_object_is_recognised() {
        let mut object = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        object.extend([0; 8]);
        object.extend([1, 0, 247, 0]);
        let mut binary = b"host code".to_vec();
        binary.extend(&object);
        assert!(embeds_ebpf_object(&binary));
        // An x86-64 shared object (ET_DYN, EM_X86_64) is not one.
        let host: Vec<u8> = object[..16].iter().copied().chain([3, 0, 62, 0]).collect();
        assert!(!embeds_ebpf_object(&host));
        assert!(!embeds_ebpf_object(b""));
    }

    #[test]
    fn the_unit_runs_the_packaged_binary() {
        assert!(SYSTEMD_UNIT.contains(
            "\nExecStart=/usr/bin/qbench-trace --watch --all --metrics 127.0.0.1:9464\n"
        ));
    }
}
