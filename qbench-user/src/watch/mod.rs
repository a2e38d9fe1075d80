//! `qbench-trace --watch`: the production mode. Each watched process gets its own load of the
//! programs, without the syscall tracepoints (they would tax every syscall on the machine,
//! docs/ARCHITECTURE.md), and its own task; all of them feed one metrics registry, served by `--metrics`.
//! With `--all`, /proc is rescanned every second for processes that map the runtime; with
//! `--pid`, nothing wakes the supervisor but a watched process ending or a signal. Runs until
//! SIGINT or SIGTERM; dropping the tasks detaches everything.
//!
//! This folder: finding the processes to watch (`discover`), one watched process (`process`) and
//! which of its threads wait on ready I/O (`ready_io`), the metrics ([`metrics`]) and the HTTP
//! endpoint that serves them (`http`).

mod discover;
mod http;
pub mod metrics;
mod process;
mod ready_io;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::{JoinHandle, JoinSet};

use self::discover::Discovery;
use self::metrics::Metrics;
use self::process::Watched;
use crate::host::preflight;
use crate::mode::{Targets, Watch};

/// How often `--all` looks for new processes.
const RESCAN: Duration = Duration::from_secs(1);

/// Watches as `settings` say until SIGINT or SIGTERM (or, without `--all`, until every watched
/// process has exited).
pub fn run(settings: Watch) -> anyhow::Result<()> {
    preflight::privileges()?;
    preflight::kernel()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, supervise(Arc::new(settings)))
}

/// A warning when the metrics endpoint is reachable from other hosts: it has no authentication.
fn exposure_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "the metrics endpoint on {addr} has no authentication and is reachable from other \
             hosts; bind it to 127.0.0.1 or a management network"
        )
    })
}

/// Serves `metrics` on `addr` (`--metrics`) from a task of its own, once the address is bound.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics"))?;
    let addr = listener.local_addr()?;
    eprintln!("qbench-trace: serving metrics at http://{addr}/metrics");
    if let Some(warning) = exposure_warning(addr) {
        eprintln!("qbench-trace: warning: {warning}");
    }
    Ok(tokio::task::spawn_local(http::serve(
        listener,
        Arc::clone(metrics),
    )))
}

/// The watched processes' tasks, and which process each one watches.
#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    pids: HashMap<tokio::task::Id, u32>,
}

impl Tasks {
    fn spawn(
        &mut self,
        pid: u32,
        watched: Watched,
        events: aya::maps::RingBuf<aya::maps::MapData>,
    ) {
        let task = self.set.spawn_local(watched.run(events));
        self.pids.insert(task.id(), pid);
    }

    /// Attaches to `pid`, which `--all` found, and watches it; one it cannot attach to is said
    /// and remembered in `refused`.
    fn watch_found(
        &mut self,
        pid: u32,
        settings: &Arc<Watch>,
        metrics: &Arc<Metrics>,
        refused: &mut HashSet<u32>,
    ) {
        match Watched::attach(pid, Arc::clone(settings), Arc::clone(metrics)) {
            Ok((watched, events)) => self.spawn(pid, watched, events),
            Err(err) => {
                eprintln!("qbench-trace: cannot watch pid {pid}: {err:#}");
                refused.insert(pid);
            }
        }
    }

    /// Forgets the task that ended (`id`).
    fn ended(&mut self, id: tokio::task::Id) {
        self.pids.remove(&id);
    }

    fn known(&self) -> impl Iterator<Item = &u32> {
        self.pids.values()
    }
}

async fn supervise(settings: Arc<Watch>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let server = match settings.metrics {
        Some(addr) => Some(serve_metrics(addr, &metrics).await?),
        None => None,
    };
    let mut tasks = Tasks::default();
    let (pids, all) = match &settings.targets {
        Targets::Pids(pids) => (pids.clone(), false),
        Targets::All => (Vec::new(), true),
    };
    // An explicit --pid that cannot be watched is an error; a process --all finds is skipped.
    for pid in pids {
        let (watched, events) = Watched::attach(pid, Arc::clone(&settings), Arc::clone(&metrics))
            .with_context(|| format!("cannot watch pid {pid}"))?;
        tasks.spawn(pid, watched, events);
    }
    let mut discovery = Discovery::default();
    // Processes --all could not attach to, not retried while they live.
    let mut refused: HashSet<u32> = HashSet::new();
    let mut rescan = tokio::time::interval(RESCAN);
    if all {
        eprintln!("qbench-trace: watching every process that maps the runtime (Ctrl-C to stop)");
    }
    loop {
        tokio::select! {
            _ = rescan.tick(), if all => {
                refused.retain(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                let known: HashSet<u32> = tasks.known().chain(&refused).copied().collect();
                for pid in discovery.scan(&known) {
                    tasks.watch_found(pid, &settings, &metrics, &mut refused);
                }
            }
            Some(ended) = tasks.set.join_next_with_id() => {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                tasks.ended(id);
                if !all && tasks.pids.is_empty() {
                    eprintln!("qbench-trace: every watched process has exited");
                    break;
                }
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // Dropping each task's future drops its programs: every link detached, every map freed.
    let watched = tasks.pids.len();
    tasks.set.shutdown().await;
    if let Some(server) = server {
        server.abort();
    }
    eprintln!("qbench-trace: detached from {watched} process(es)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_endpoint_off_loopback_is_warned_about() {
        assert_eq!(exposure_warning("127.0.0.1:9464".parse().unwrap()), None);
        assert_eq!(exposure_warning("[::1]:9464".parse().unwrap()), None);
        assert_eq!(
            exposure_warning("0.0.0.0:9464".parse().unwrap()).as_deref(),
            Some(
                "the metrics endpoint on 0.0.0.0:9464 has no authentication and is reachable \
                 from other hosts; bind it to 127.0.0.1 or a management network"
            )
        );
        assert!(exposure_warning("[::]:80".parse().unwrap()).is_some());
    }
}
