//! User stacks, data symbols and memory reads of a real target (tests/c/stack_target.c) whose
//! threads are blocked in a condition wait, a mutex wait, and a read inside a shared library.
//! Reading another process's stack and /proc/PID/map_files needs root; as another user each test
//! says it is skipped and why.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use qbench_user::diagnosis::{
    memory,
    stack::{self, Frame, Stack, StackReader},
};

const SYS_READ: i64 = 0;
const SYS_FUTEX: i64 = 202;

fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        // The test harness names each test's thread after the test.
        let current = std::thread::current();
        let test = current.name().unwrap_or("a stack test");
        println!("skipped: {test} (needs root to read another process's memory and map_files)");
    }
    !root
}

/// `program` (one [`built`] makes) running; None, the test said to be skipped, when not root.
fn start_as_root(program: &str) -> Option<Target> {
    if skip_unless_root() {
        return None;
    }
    Some(Target::run(&mut Command::new(built().join(program))))
}

fn sources() -> PathBuf {
    qbench_tests::workspace_root().join("tests/c")
}

/// The line of `file` that carries the marker `line:NAME`.
fn marked_line(file: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(sources().join(file)).expect("read the C source");
    let marker = format!("line:{name} ");
    let index = text.lines().position(|l| l.contains(&marker));
    u32::try_from(index.expect("marker in the source") + 1).expect("small")
}

/// Builds the library and the target once per test run, into a directory of its own (cargo's
/// scratch directory for integration tests, so `cargo clean` removes it).
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("privileged_stacks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("build dir");
        let cc = |args: &[&str]| {
            let status = Command::new("cc").args(args).current_dir(&dir).status();
            assert!(status.expect("run cc").success(), "cc {args:?}");
        };
        let src = sources();
        let lib = src.join("stack_lib.c");
        let target = src.join("stack_target.c");
        let rpath = format!("-Wl,-rpath,{}", dir.display());
        cc(&[
            "-g",
            "-O1",
            "-shared",
            "-fPIC",
            "-o",
            "libstack.so",
            path(&lib),
        ]);
        cc(
            &["-g", "-O1", "-pthread", "-o", "stack_target", path(&target)]
                .into_iter()
                .chain(["-L.", "-lstack", &rpath])
                .collect::<Vec<_>>(),
        );
        let status = Command::new("strip")
            .args(["-o", "stack_target.stripped", "stack_target"])
            .current_dir(&dir)
            .status();
        assert!(status.expect("run strip").success());
        dir
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A running target; killed when dropped.
struct Target {
    child: Child,
    /// The target's pid here (it differs from the child's when a namespace tool runs it).
    pid: u32,
    /// From the target's "ready" line, as the target sees them.
    main_tid: u32,
    work_ready: u64,
    big_lock: u64,
}

impl Target {
    fn run(command: &mut Command) -> Self {
        command.stdout(Stdio::piped());
        // A copy just written may still be open for writing in a child another test thread is
        // forking (until it execs): exec fails with ETXTBSY for that moment, so try again.
        let mut attempts = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                result => break result.expect("start target"),
            }
        };
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let field = |key: &str| {
            let value = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{key} in {line:?}"));
            let hex = value.trim_start_matches("0x");
            u64::from_str_radix(hex, if value.starts_with("0x") { 16 } else { 10 }).expect(key)
        };
        let pid = u32::try_from(field("pid")).expect("pid");
        Self {
            main_tid: u32::try_from(field("main_tid")).expect("tid"),
            work_ready: field("work_ready"),
            big_lock: field("big_lock"),
            pid,
            child,
        }
    }

    /// The thread named `name` once it is blocked in syscall `nr`, and that call's arguments.
    fn blocked(&self, name: &str, nr: i64) -> (u32, Vec<u64>) {
        let every = Duration::from_millis(10);
        qbench_tests::poll(
            Duration::from_secs(10),
            every,
            || self.find_blocked(name, nr).ok_or(()),
            |()| format!("thread {name} never blocked in {nr}"),
        )
    }

    /// The thread named `name` if it is in syscall `nr` now, and that call's arguments.
    fn find_blocked(&self, name: &str, nr: i64) -> Option<(u32, Vec<u64>)> {
        let task = PathBuf::from(format!("/proc/{}/task", self.pid));
        for entry in std::fs::read_dir(&task).expect("task dir").flatten() {
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let syscall = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
            let fields: Vec<&str> = syscall.split_whitespace().collect();
            if comm.trim_end() == name && fields.first() == Some(&nr.to_string().as_str()) {
                let args = fields[1..7]
                    .iter()
                    .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).expect("hex"))
                    .collect();
                let tid = entry.file_name().to_str().and_then(|t| t.parse().ok());
                return Some((tid.expect("tid"), args));
            }
        }
        None
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is the target this test started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a frame must show.
struct Want<'a> {
    /// The function, after any leading underscores, starts with this (glibc's internal names
    /// are `___pthread_mutex_lock` and the like).
    function: &'a str,
    /// The source file's name and line, when the frame must have them.
    at: Option<(&'a str, u32)>,
}

fn want(function: &str) -> Want<'_> {
    Want { function, at: None }
}

fn want_at<'a>(function: &'a str, file: &'a str, line: u32) -> Want<'a> {
    Want {
        function,
        at: Some((file, line)),
    }
}

fn matches(frame: &Frame, want: &Want<'_>) -> bool {
    let name = frame.function.as_deref().unwrap_or("");
    let named = name.trim_start_matches('_').starts_with(want.function);
    let placed = want.at.is_none_or(|(file, line)| {
        frame.file.as_deref().is_some_and(|f| f.ends_with(file)) && frame.line == Some(line)
    });
    named && placed
}

/// The stack has frames matching `wants`, in that order (others may come between).
fn assert_frames(stack: &Stack, wants: &[Want<'_>]) {
    let shown: Vec<String> = stack.frames.iter().map(stack::format_frame).collect();
    let mut frames = stack.frames.iter();
    for want in wants {
        assert!(
            frames.any(|f| matches(f, want)),
            "no {} {:?} in order in {shown:#?} (degraded: {:?})",
            want.function,
            want.at,
            stack.degraded
        );
    }
}

/// glibc's `start_thread` is a local symbol: it is named only with libc's detached debug info
/// (Debian's libc6-dbg, found by build id).
fn libc_debug_info() -> bool {
    Path::new("/usr/lib/debug/.build-id").is_dir()
}

/// `function` at the line of `file` marked `line:FUNCTION`.
fn want_marked<'a>(function: &'a str, file: &'a str) -> Want<'a> {
    want_at(function, file, marked_line(file, function))
}

/// Checks `stack` against `wants` followed by the frames every thread starts from; returns the
/// whole list.
fn assert_from_root<'a>(stack: &Stack, mut wants: Vec<Want<'a>>) -> Vec<Want<'a>> {
    wants.extend(thread_root());
    assert_frames(stack, &wants);
    wants
}

fn thread_root<'a>() -> Vec<Want<'a>> {
    if libc_debug_info() {
        vec![want("start_thread")]
    } else {
        println!("note: no libc debug info, start_thread is not checked");
        Vec::new()
    }
}

#[test]
fn blocked_threads_unwind_to_named_frames_with_lines() {
    let Some(target) = start_as_root("stack_target") else {
        return;
    };
    let (cond, _) = target.blocked("cond", SYS_FUTEX);
    let (mutex, _) = target.blocked("mutex", SYS_FUTEX);
    let (pipe, _) = target.blocked("pipe", SYS_READ);

    let started = Instant::now();
    let mut reader = StackReader::new(target.pid);
    let prepared = started.elapsed();
    let first = Instant::now();
    let cond_stack = reader.stack(cond);
    let first = first.elapsed();
    let next = Instant::now();
    let mutex_stack = reader.stack(mutex);
    let next = next.elapsed();
    let pipe_stack = reader.stack(pipe);
    let alone = Instant::now();
    let _ = stack::user_stack(target.pid, cond);
    let alone = alone.elapsed();
    println!(
        "cost: reader {prepared:?}, first stack {first:?}, next {next:?}, user_stack alone {alone:?}"
    );
    for (name, stack) in [
        ("cond", &cond_stack),
        ("mutex", &mutex_stack),
        ("pipe", &pipe_stack),
    ] {
        println!("{name}: degraded {:?}", stack.degraded);
        for frame in &stack.frames {
            println!("    {}", stack::format_frame(frame));
        }
    }

    assert_from_root(
        &cond_stack,
        vec![
            want("pthread_cond_wait"),
            want_marked("wait_for_work", "stack_target.c"),
            want("cond_main"),
        ],
    );

    assert_from_root(
        &mutex_stack,
        vec![
            want("pthread_mutex_lock"),
            want_marked("take_lock", "stack_target.c"),
        ],
    );

    let pipe_wants = assert_from_root(
        &pipe_stack,
        vec![
            want_marked("blocking_read", "stack_lib.c"),
            want("pipe_main"),
        ],
    );
    let lib_frame = pipe_stack
        .frames
        .iter()
        .find(|f| matches(f, &pipe_wants[0]));
    assert_eq!(
        lib_frame.and_then(|f| f.object.as_deref()),
        Some("libstack.so")
    );
    // The innermost frame is libc's read, whose name varies with the glibc version.
    assert!(
        pipe_stack.frames[0]
            .function
            .as_deref()
            .is_some_and(|f| f.contains("read"))
    );

    if libc_debug_info() {
        for stack in [&cond_stack, &mutex_stack, &pipe_stack] {
            assert_eq!(stack.degraded, None, "a whole stack is not degraded");
        }
    }
}

#[test]
fn futex_and_lock_words_are_named_and_read() {
    let Some(target) = start_as_root("stack_target") else {
        return;
    };
    let (cond, futex_args) = target.blocked("cond", SYS_FUTEX);
    let futex = futex_args[0];
    let offset = futex - target.work_ready;
    // glibc 2.36 waits on __g_signals[0 or 1] (offsets 40 and 44 of a pthread_cond_t).
    assert!(offset < 48, "futex {futex:#x} is in work_ready");
    assert_eq!(
        stack::data_symbol(target.pid, futex),
        Some(("work_ready".to_owned(), offset))
    );
    assert_eq!(
        stack::data_symbol(target.pid, target.big_lock),
        Some(("big_lock".to_owned(), 0))
    );
    // glibc's pthread_mutex_t keeps the owner's tid in __owner, at offset 8.
    assert_eq!(
        memory::read_u32(target.pid, target.big_lock + 8),
        Some(target.main_tid)
    );
    // Code is not data.
    let cond_stack = stack::user_stack(target.pid, cond);
    let code = cond_stack.frames.first().expect("the PC frame").address;
    assert_eq!(stack::data_symbol(target.pid, code), None);
}

#[test]
fn stripped_target_degrades_to_addresses() {
    let Some(target) = start_as_root("stack_target.stripped") else {
        return;
    };
    let (cond, _) = target.blocked("cond", SYS_FUTEX);
    let stack = stack::user_stack(target.pid, cond);
    let shown: Vec<String> = stack.frames.iter().map(stack::format_frame).collect();
    println!("stripped: {shown:#?} degraded {:?}", stack.degraded);
    // The unwind info survives stripping: the whole stack is there, libc's frames named.
    assert_frames(&stack, &[want("pthread_cond_wait")]);
    let own: Vec<&Frame> = stack
        .frames
        .iter()
        .filter(|f| f.object.as_deref() == Some("stack_target.stripped"))
        .collect();
    assert!(
        own.len() >= 2,
        "wait_for_work and cond_main frames: {shown:#?}"
    );
    assert!(own.iter().all(|f| f.function.is_none()), "{shown:#?}");
    let degraded = stack.degraded.expect("a degraded note");
    assert!(degraded.contains("stack_target.stripped"), "{degraded}");
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("0x") && s.ends_with("(stack_target.stripped)"))
    );
}

/// The condition-waiting thread of `target` unwinds to `wait_for_work` at its line, and the
/// flag it waits on is named.
fn assert_waits_for_work(target: &Target) {
    let (cond, _) = target.blocked("cond", SYS_FUTEX);
    let stack = stack::user_stack(target.pid, cond);
    let line = marked_line("stack_target.c", "wait_for_work");
    assert_frames(
        &stack,
        &[
            want("pthread_cond_wait"),
            want_at("wait_for_work", "stack_target.c", line),
        ],
    );
    assert_eq!(
        stack::data_symbol(target.pid, target.work_ready),
        Some(("work_ready".to_owned(), 0))
    );
}

#[test]
fn deleted_executable_still_symbolizes() {
    if skip_unless_root() {
        return;
    }
    let copy = built().join("stack_target.deleted");
    std::fs::copy(built().join("stack_target"), &copy).expect("copy target");
    let target = Target::run(&mut Command::new(&copy));
    std::fs::remove_file(&copy).expect("delete the executable");
    assert_waits_for_work(&target);
}

#[test]
fn target_in_other_mount_and_pid_namespaces_symbolizes() {
    if skip_unless_root() {
        return;
    }
    // The target runs from a tmpfs mounted only inside its own mount namespace: its path does not
    // exist here, and its pid there is not its pid here.
    let inside = built().join("ns");
    std::fs::create_dir_all(&inside).expect("mount point");
    let script = format!(
        "mount -t tmpfs tmpfs {dir} && cp {target} {dir}/ && exec {dir}/stack_target",
        dir = inside.display(),
        target = built().join("stack_target").display()
    );
    let probe = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!(
            "skipped: target_in_other_mount_and_pid_namespaces_symbolizes (unshare fails here)"
        );
        return;
    }
    let mut target = Target::run(
        Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--kill-child", "sh", "-c"])
            .arg(&script),
    );
    // The pid printed is the namespace's; here, the target is unshare's child.
    let children = format!("/proc/{0}/task/{0}/children", target.child.id());
    let children = std::fs::read_to_string(children).expect("unshare's children");
    target.pid = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert!(
        !inside.join("stack_target").exists(),
        "the path exists only inside"
    );
    assert_waits_for_work(&target);
}
