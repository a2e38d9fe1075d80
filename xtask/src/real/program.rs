//! What differs between the real programs: how each is built, started and observed. The rest of
//! `cargo xtask real` (fetching, patching, running, summarising) is the same for all.

/// One real program of Debian's.
#[derive(Debug)]
pub struct Spec {
    /// The source package, the directory under workloads/real/ and target/real/.
    pub name: &'static str,
    /// Packages its build needs besides dpkg-dev, patch, make and gcc, each with the file whose
    /// presence says it is installed.
    pub tools: &'static [(&'static str, &'static str)],
    /// Regenerate the build system before `./configure`, as Debian's build does (`autoreconf
    /// -fi`): Debian's patches change a Makefile.am, not the Makefile.in shipped beside it.
    pub autoreconf: bool,
    /// The targets of `make -j2` (none: the default target).
    pub make_targets: &'static [&'static str],
    /// The executable, relative to the built tree.
    pub exe: &'static str,
    /// Its arguments to serve on 127.0.0.1 at `PORT`.
    pub args: &'static [&'static str],
    /// Further arguments when started as root.
    pub root_args: &'static [&'static str],
    /// Its threads once it is ready (without the runtime's helper).
    pub threads: usize,
    /// How it runs, for the summary line (`-t 4`).
    pub shown: &'static str,
    /// The arguments of qbench-trace for the unpatched program, which has no update points.
    pub unpatched_trace: &'static [&'static str],
}

/// Stands for the port in [`Spec::args`].
pub const PORT: &str = "PORT";

/// The arguments for a stage: three update requests by the runtime's signal.
pub const STAGE_TRACE: [&str; 3] = ["--request", "--count", "3"];

/// Debian's memcached 1.6 with 4 worker threads, as the study's memcached runs had.
pub const MEMCACHED: Spec = Spec {
    name: "memcached",
    tools: &[("libevent-dev", "/usr/include/event.h")],
    autoreconf: false,
    make_targets: &["memcached"],
    exe: "memcached",
    args: &["-t", "4", "-U", "0", "-l", "127.0.0.1", "-p", PORT],
    // memcached refuses to run as root without -u.
    root_args: &["-u", "nobody"],
    // main, 4 workers, mc-log, mc-assocmaint, mc-itemcrawler, mc-lrumaint, mc-slabmaint
    threads: 10,
    shown: "-t 4",
    // A function its worker loop calls (the connection event handler) and the signal memcached
    // handles itself (SIGHUP: it only sets a flag).
    unpatched_trace: &["--point", "event_handler", "--signal", "HUP", "--request"],
};

/// Debian's iperf 2 as a TCP server: main (waiting for the other threads in
/// `thread_joinall`), the reporter and the listener; one server thread per client besides.
pub const IPERF: Spec = Spec {
    name: "iperf",
    tools: &[
        ("g++", "/usr/bin/g++"),
        ("autoconf", "/usr/bin/autoreconf"),
        ("automake", "/usr/bin/automake"),
    ],
    autoreconf: true,
    make_targets: &[],
    exe: "src/iperf",
    args: &["-s", "-B", "127.0.0.1", "-p", PORT],
    root_args: &[],
    threads: 3,
    shown: "-s",
    // A function each connection's server thread calls once a read (`ReportPacket`), and
    // SIGALRM: iperf catches only SIGINT, SIGTERM and SIGALRM, and SIGALRM only sets
    // `sInterupted`, which the reporter clears again within a second while no test runs (it
    // would end a running test: the unpatched program is observed idle). SIGPIPE, which it
    // ignores, would request nothing: the kernel drops an ignored signal.
    unpatched_trace: &["--point", "ReportPacket", "--signal", "ALRM", "--request"],
};

impl Spec {
    /// The arguments to start it with on `port`.
    pub fn command_args(&self, port: u16, root: bool) -> Vec<String> {
        let port = port.to_string();
        let mut args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if *a == PORT {
                    port.clone()
                } else {
                    (*a).to_owned()
                }
            })
            .collect();
        if root {
            args.extend(self.root_args.iter().map(|a| (*a).to_owned()));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_filled_in_and_root_arguments_added_for_root() {
        assert_eq!(
            IPERF.command_args(5001, true),
            ["-s", "-B", "127.0.0.1", "-p", "5001"]
        );
        assert_eq!(
            MEMCACHED.command_args(11211, true)[6..],
            ["-p", "11211", "-u", "nobody"]
        );
        assert!(
            !MEMCACHED
                .command_args(1, false)
                .contains(&"nobody".to_owned())
        );
    }
}
