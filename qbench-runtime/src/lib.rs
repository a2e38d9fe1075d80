//! qbench runtime: the in-process half of qbench.
//!
//! It implements the semantics of QBench from "A Study of Dynamic Software Update Quiescence for
//! Multithreaded Programs" (Hayden, Saur, Hicks, Foster, HotSWUp 2012): programs mark *update
//! points*; an *update request* (the signal SIGUSR2 by default, or [`request_update`]) makes
//! every participating thread park at its next update point; once all are parked at once (full
//! quiescence) the quiescence hook runs and everyone is released. Unlike the study's library it
//! never hangs a program: an update that does not quiesce within `QBENCH_TIMEOUT_MS` is abandoned
//! and reported as DNQ, naming the threads that did not arrive.
//!
//! The same core serves C programs (`libqbench.so`, `libqbench.a`, `include/qbench.h`) and Rust
//! programs (this crate's functions).
//!
//! ```no_run
//! let worker = qbench::spawn(|| loop {
//!     qbench::update(); // an update point, between two iterations of the event loop
//!     qbench::sleep(std::time::Duration::from_secs(1)); // returns early on a request
//! });
//! # drop(worker);
//! ```

mod anchors;
mod config;
mod ffi;
mod fork;
mod helper;
mod interrupt;
mod park;
mod published;
mod report;
mod request;
mod slots;
mod state;
mod sys;
mod threads;
mod waits;

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

pub use config::{Config, DEFAULT_SIGNAL, DEFAULT_TIMEOUT};
pub use report::{MissingThread, Outcome, Report};
pub use threads::RegistrationError;

/// An update point: parks the calling thread while an update is pending, and costs one load of
/// a flag otherwise.
#[inline(always)]
pub fn update() {
    anchors::qbench_update();
}

/// True while an update is pending.
#[inline]
pub fn update_requested() -> bool {
    state::PENDING.load(std::sync::atomic::Ordering::Relaxed) != 0
}

/// Requests an update from inside the process, as the update signal does. Returns false when
/// an update still to come serves it (the pending one before it is decided, or the next one,
/// requested already while the last was closing); a request once the pending update is decided
/// opens the next update at its release.
pub fn request_update() -> bool {
    request::request_update()
}

/// Spawns a participating thread: it is registered before `f` runs, passes an update point
/// first if an update is pending, and is unregistered when it exits.
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let _ = threads::register_current();
        update();
        f()
    })
}

/// Makes the calling thread a participating thread (one not made by [`spawn`]).
pub fn register_current_thread() -> Result<(), RegistrationError> {
    threads::register_current()
}

/// Removes the calling thread from the participating threads.
pub fn unregister_current_thread() -> Result<(), RegistrationError> {
    threads::unregister_current()
}

/// Waits on `cv` like [`Condvar::wait`], but an update request ends the wait; while an update is
/// pending this is an update point itself, parked *without* holding `mutex`. May wake
/// spuriously, like any condition wait: call it in a loop over the predicate.
pub fn cond_wait<'a, T>(
    cv: &Condvar,
    mutex: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
) -> MutexGuard<'a, T> {
    waits::std_cond_wait(cv, mutex, guard)
}

/// Sleeps for `duration`, returning early when an update is requested: then it returns the
/// time that was left. The caller should reach an update point before sleeping again.
pub fn sleep(duration: Duration) -> Option<Duration> {
    waits::sleep(duration)
}

/// Sets the code run for the calling (participating) thread each time an update is requested,
/// on the runtime's helper thread: what a custom blocking wait needs to be broken out of.
pub fn set_update_callback(f: impl Fn() + Send + Sync + 'static) -> Result<(), RegistrationError> {
    threads::set_callback(Some(state::Callback::Rust(Arc::new(f))))
}

/// Sets the code run once at each full quiescence, before the threads are released: where a
/// real update is applied.
pub fn set_quiescence_hook(f: impl Fn() + Send + Sync + 'static) {
    if let Some(rt) = state::runtime() {
        *state::lock(&rt.hook) = Some(state::Callback::Rust(Arc::new(f)));
    }
}

/// The report of the latest update in this process.
pub fn last_report() -> Option<Report> {
    state::runtime().and_then(|rt| state::lock(&rt.last_report).clone())
}

/// Waits up to `timeout` for the report of an update whose sequence number is at least `seq`.
pub fn wait_report(seq: u64, timeout: Duration) -> Option<Report> {
    let rt = state::runtime()?;
    let guard = state::lock(&rt.last_report);
    let (guard, _) = rt
        .report_ready
        .wait_timeout_while(guard, timeout, |r| r.as_ref().is_none_or(|r| r.seq < seq))
        .unwrap_or_else(|e| e.into_inner());
    guard.clone().filter(|r| r.seq >= seq)
}

/// The sequence number of the latest update opened in this process (0 before the first). A
/// request that comes while an update is closing gets its number when the helper opens it.
pub fn request_seq() -> u64 {
    state::SEQ.load(std::sync::atomic::Ordering::Acquire)
}

/// The settings in force (read from the environment when the library loaded).
pub fn config() -> Option<Config> {
    state::runtime().map(|rt| rt.config.clone())
}

/// Sets the runtime up. It runs by itself when the library loads (an ELF constructor); calling
/// it again does nothing.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let config = Config::from_lookup(|k| std::env::var(k).ok(), |w| warn(&w));
        let sink = report::ReportSink::open(config.report_path.as_deref());
        let rt = match state::Runtime::new(config, sink) {
            Ok(rt) => state::install(rt),
            Err(e) => {
                return warn(&format!(
                    "cannot create the runtime's eventfd: {e}; updates are disabled"
                ));
            }
        };
        // The study's semantics: the main thread participates without being asked to.
        if sys::gettid() == sys::getpid() {
            let _ = threads::register_current();
        }
        if let Err(e) = request::install_handler(rt.config.signal) {
            warn(&format!(
                "cannot install the handler of signal {}: {e}",
                rt.config.signal
            ));
        }
        if let Err(e) = helper::spawn(rt) {
            warn(&format!(
                "cannot start the helper thread: {e}; updates will not complete"
            ));
        }
        fork::install_handler();
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn construct() {
        let _ = std::panic::catch_unwind(init);
    }
    construct
};

/// One line on stderr, prefixed so a user knows where it comes from. Never panics.
fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "qbench: {message}");
}
