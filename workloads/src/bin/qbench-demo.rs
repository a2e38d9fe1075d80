//! qbench-demo: a small server-like Rust program using the qbench runtime's Rust API, the
//! built-in target of `cargo xtask demo` and of the Rust API's tests.
//!
//! Threads (each named after its role):
//! - `worker` x2: take jobs from a queue under a Mutex/Condvar, waiting with `qbench::cond_wait`;
//! - `listener`: blocked in accept(2) on a TCP socket on 127.0.0.1;
//! - `reader`: blocked in read(2) on a pipe;
//! - `ticker`: wakes every second with `qbench::sleep`;
//! - `custom`: blocked in a private wait that its update callback breaks;
//! - the main thread: reads one-letter commands from stdin ("q" quits).
//!
//! It prints "ready PID" once every thread has started, and "applied SEQ" from the quiescence
//! hook each time an update reaches full quiescence (where a real program would apply it).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

static STARTED: AtomicUsize = AtomicUsize::new(0);

fn main() {
    qbench::set_quiescence_hook(|| {
        // Runs while every participating thread is parked: print the update being applied.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "applied {}", qbench::request_seq());
        let _ = out.flush();
    });

    let queue = Arc::new((Mutex::new(Vec::<u32>::new()), Condvar::new()));
    for _ in 0..2 {
        let queue = Arc::clone(&queue);
        named("worker", move || worker(&queue));
    }
    named("listener", listener);
    named("reader", reader);
    named("ticker", ticker);
    named("custom", custom);
    while STARTED.load(Ordering::Acquire) < 6 {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    serve_commands();
}

fn named(name: &str, body: impl FnOnce() + Send + 'static) {
    let name = name.to_string();
    qbench::spawn(move || {
        set_thread_name(&name);
        body();
    });
}

fn set_thread_name(name: &str) {
    let name = std::ffi::CString::new(name).expect("thread name");
    // SAFETY: a NUL-terminated name of at most 15 bytes for the calling thread.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
}

fn worker(queue: &(Mutex<Vec<u32>>, Condvar)) {
    let (jobs, available) = queue;
    STARTED.fetch_add(1, Ordering::Release);
    loop {
        qbench::update();
        let mut guard = jobs.lock().unwrap_or_else(|e| e.into_inner());
        while guard.is_empty() {
            guard = qbench::cond_wait(available, jobs, guard);
        }
        guard.pop();
    }
}

/// Loops over accept(2) itself: std's accept retries EINTR, which would hide the request.
fn listener() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    STARTED.fetch_add(1, Ordering::Release);
    loop {
        qbench::update();
        // SAFETY: accept on a listening socket we own; null address pointers are allowed.
        let conn = unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) };
        if conn >= 0 {
            // SAFETY: closes the descriptor accept just returned.
            unsafe { libc::close(conn) };
        }
    }
}

fn reader() {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    STARTED.fetch_add(1, Ordering::Release);
    loop {
        qbench::update();
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a live buffer.
        unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) };
    }
}

fn ticker() {
    STARTED.fetch_add(1, Ordering::Release);
    loop {
        qbench::update();
        qbench::sleep(Duration::from_secs(1));
    }
}

/// A wait the runtime knows nothing about; the update callback breaks it.
fn custom() {
    let wait = Arc::new((Mutex::new(false), Condvar::new()));
    let for_callback = Arc::clone(&wait);
    qbench::set_update_callback(move || {
        let (woken, cv) = &*for_callback;
        *woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    })
    .expect("custom thread is registered");
    STARTED.fetch_add(1, Ordering::Release);
    let (woken, cv) = &*wait;
    loop {
        qbench::update();
        let mut flag = woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*flag {
            flag = cv.wait(flag).unwrap_or_else(|e| e.into_inner());
        }
        *flag = false;
    }
}

fn serve_commands() {
    loop {
        qbench::update();
        let mut byte = 0u8;
        // SAFETY: reads at most one byte of stdin into a live buffer.
        let n = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 || byte == b'q' {
            return;
        }
    }
}
