//! Tests of `stack` that need no privileges: pure parsing and formatting, and this process's
//! own threads (reading one's own memory passes the access check).

use super::*;

#[test]
fn registers_of_blocked_running_and_odd_threads() {
    let futex = "202 0x55d0a0004028 0x80 0x0 0x0 0x0 0x0 0x7f12a3c4e000 0x7f12a3c4d5e6\n";
    assert_eq!(registers(futex), Ok((0x7f12_a3c4_e000, 0x7f12_a3c4_d5e6)));
    assert_eq!(
        registers("-1 0x7ffc1000 0x401000"),
        Ok((0x7ffc_1000, 0x40_1000))
    );
    assert!(registers("running\n").unwrap_err().contains("running"));
    assert!(registers("").is_err());
    assert!(registers("0 0xzz 0x1").is_err());
}

#[test]
fn frames_for_people() {
    let base = Frame {
        address: 0x7f12_a3c4_d5e6,
        object: Some("libc.so.6".into()),
        ..Frame::default()
    };
    assert_eq!(format_frame(&base), "0x7f12a3c4d5e6 (libc.so.6)");
    let libc = Frame {
        function: Some("pthread_cond_wait".into()),
        offset: Some(0x1a),
        ..base.clone()
    };
    assert_eq!(format_frame(&libc), "pthread_cond_wait+0x1a (libc.so.6)");
    let at_start = Frame {
        offset: Some(0),
        ..libc.clone()
    };
    assert_eq!(format_frame(&at_start), "pthread_cond_wait (libc.so.6)");
    let with_line = Frame {
        function: Some("wait_for_work".into()),
        offset: Some(0x10),
        file: Some("/src/app/situations.c".into()),
        line: Some(88),
        object: Some("app".into()),
        ..base.clone()
    };
    assert_eq!(format_frame(&with_line), "wait_for_work (situations.c:88)");
    let file_only = Frame {
        line: None,
        ..with_line.clone()
    };
    assert_eq!(
        format_frame(&file_only),
        "wait_for_work+0x10 (situations.c)"
    );
    let nothing = Frame {
        address: 0x1000,
        ..Frame::default()
    };
    assert_eq!(format_frame(&nothing), "0x1000");
}

#[test]
fn a_missing_thread_degrades() {
    let stack = user_stack(std::process::id(), u32::MAX);
    assert!(stack.frames.is_empty());
    assert!(stack.degraded.is_some_and(|d| d.contains("syscall")));
    assert_eq!(data_symbol(u32::MAX, 0x1000), None);
}

static NAMED_DATA: [u64; 4] = [1, 2, 3, 4];

#[test]
fn data_symbol_of_this_test_executable() {
    // The test binary keeps its .symtab, so a static of its own is named.
    let address = (&raw const NAMED_DATA[2]) as u64;
    let (name, offset) = data_symbol(std::process::id(), address).expect("named");
    assert!(name.contains("NAMED_DATA"), "{name}");
    assert_eq!(offset, 16);
}

/// Blocks in `read` on a pipe that is never written, in a function of its own to find in the
/// stack.
#[inline(never)]
fn park_in_read(fd: i32, tid: &std::sync::mpsc::Sender<u32>) {
    // SAFETY: gettid has no preconditions.
    let _ = tid.send(unsafe { libc::gettid() } as u32);
    let mut byte = 0u8;
    // SAFETY: the buffer is one valid byte; the read returns when the write end closes.
    let _ = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
    std::hint::black_box(byte);
}

/// The tid of a thread of this process once `/proc` shows it in `state`.
fn wait_for(tid: u32, ready: impl Fn(&str) -> bool) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&path).is_ok_and(|s| ready(&s)) {
        assert!(
            std::time::Instant::now() < deadline,
            "thread {tid} never got there"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn own_blocked_thread_unwinds_through_rust_frames() {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (send, receive) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || park_in_read(fds[0], &send));
    let tid = receive.recv().expect("tid");
    wait_for(tid, |s| s.starts_with("0 "));
    let stack = user_stack(std::process::id(), tid);
    // SAFETY: closing our own descriptors ends the read.
    unsafe {
        libc::close(fds[1]);
    }
    reader.join().expect("reader thread");
    // SAFETY: the reader is done with it.
    unsafe {
        libc::close(fds[0]);
    }
    let shown: Vec<String> = stack.frames.iter().map(format_frame).collect();
    let parked = stack.frames.iter().position(|f| {
        f.function
            .as_deref()
            .is_some_and(|f| f.ends_with("park_in_read"))
    });
    let parked = parked.unwrap_or_else(|| panic!("park_in_read in {shown:#?} {stack:?}"));
    assert!(parked > 0, "below libc's read: {shown:#?}");
    let frame = &stack.frames[parked];
    assert!(
        frame
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("stack/tests.rs"))
    );
    assert!(frame.line.is_some());
    assert!(
        stack.frames.len() > parked + 2,
        "and its callers: {shown:#?}"
    );
}

#[test]
fn running_thread_degrades() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (send, receive) = std::sync::mpsc::channel();
    let spinning = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = send.send(unsafe { libc::gettid() } as u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let tid = receive.recv().expect("tid");
    wait_for(tid, |s| s.starts_with("running"));
    let stack = user_stack(std::process::id(), tid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinning.join().expect("spinning thread");
    // Rarely, the thread was preempted between the two reads; then its stack is taken.
    if stack.frames.is_empty() {
        let degraded = stack.degraded.expect("a note");
        assert!(degraded.contains("running"), "{degraded}");
    }
}
