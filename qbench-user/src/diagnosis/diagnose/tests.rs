//! Every cause, from the facts that produce it; precedence between rules.

use super::*;

pub(super) const FUTEX: i64 = 202;

pub(super) fn blocked(nr: i64, args: [u64; 6]) -> Option<Blocked> {
    Some(Blocked {
        nr,
        args,
        since_ns: Some(10),
    })
}

pub(super) fn facts() -> Facts {
    Facts {
        state: Some('S'),
        participating: true,
        ever_arrived: true,
        ..Facts::default()
    }
}

fn call(nr: i64, ret: Option<i64>) -> Call {
    // In these facts an interrupted call (-ERESTARTSYS) is one the kernel restarted.
    Call {
        nr,
        args: [3, 0, 1, 0, 0, 0],
        start_ns: Some(1),
        end_ns: ret.map(|_| 2),
        ret,
        restarted: ret == Some(-512),
    }
}

/// A thread waiting for a mutex that thread 7 (`holder`) owns.
fn mutex_facts() -> Facts {
    Facts {
        blocked: blocked(FUTEX, [0x2000, 128, 2, 0, 0, 0]),
        stack_functions: vec!["__lll_lock_wait".into(), "___pthread_mutex_lock".into()],
        futex: Some(Futex {
            owner_tid: Some(7),
            owner_comm: Some("holder".into()),
            ..Futex::default()
        }),
        ..facts()
    }
}

/// A thread blocked in accept on a listening socket.
fn io_facts() -> Facts {
    Facts {
        blocked: blocked(43, [4, 0, 0, 0, 0, 0]),
        fd: Some("TCP 127.0.0.1:80 LISTEN".into()),
        ..facts()
    }
}

fn running_facts() -> Facts {
    Facts {
        state: Some('R'),
        ..facts()
    }
}

/// A stopped thread may still show the call it was in; being stopped is why it is late.
fn stopped_facts() -> Facts {
    Facts {
        state: Some('T'),
        ..io_facts()
    }
}

fn traced_facts() -> Facts {
    Facts {
        state: Some('t'),
        ..running_facts()
    }
}

#[test]
fn a_stopped_or_traced_thread_is_said_to_be_so() {
    assert_eq!(
        evidence(Cause::Stopped, &stopped_facts())
            .split("; ")
            .next(),
        Some("state T: stopped by a signal")
    );
    assert_eq!(
        hint(Cause::Stopped, &traced_facts()),
        "a tracer (a debugger, strace) holds it stopped: detach it or continue the thread"
    );
}

#[test]
fn every_cause_from_its_facts() {
    let cond = Facts {
        blocked: blocked(FUTEX, [0x1000, 393, 0, 0, 0, 0]),
        stack_functions: vec![
            "__futex_abstimed_wait_common".into(),
            "___pthread_cond_wait".into(),
            "worker".into(),
        ],
        ..facts()
    };
    let mutex = mutex_facts();
    let deadlock = Facts {
        futex: Some(Futex {
            owner_tid: Some(7),
            owner_parked: true,
            symbol: Some("big_lock+0".into()),
            ..Futex::default()
        }),
        ..mutex.clone()
    };
    let restarted = Facts {
        blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
        calls: vec![call(0, Some(-512)), call(0, None)],
        ..facts()
    };
    let io = io_facts();
    let sleeping = Facts {
        blocked: blocked(230, [0, 0, 0x10, 0x20, 0, 0]),
        sleep_ns: Some(100_000_000_000),
        ..facts()
    };
    let running = running_facts();
    let d = Facts {
        state: Some('D'),
        wchan: Some("io_schedule".into()),
        blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
        ..facts()
    };
    let (stopped, traced) = (stopped_facts(), traced_facts());
    let outside = Facts {
        participating: false,
        blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
        ..facts()
    };
    let never = Facts {
        ever_arrived: false,
        earlier_updates: 2,
        ..running.clone()
    };
    let cases = [
        (&cond, Cause::CondWaitUnwrapped, "cond_wait_unwrapped"),
        (&mutex, Cause::MutexWait, "mutex_wait"),
        (
            &deadlock,
            Cause::LockHeldAtUpdatePoint,
            "lock_held_at_update_point",
        ),
        (&restarted, Cause::IoRestarted, "io_restarted"),
        (&io, Cause::IoBlocked, "io_blocked"),
        (&sleeping, Cause::Sleeping, "sleeping"),
        (&running, Cause::Running, "running"),
        (&d, Cause::Uninterruptible, "uninterruptible"),
        (&stopped, Cause::Stopped, "stopped"),
        (&traced, Cause::Stopped, "stopped"),
        (&outside, Cause::NotParticipating, "not_participating"),
        (&never, Cause::NotParticipating, "not_participating"),
    ];
    for (f, cause, code) in cases {
        assert_eq!(classify(f), cause, "{f:?}");
        assert_eq!(cause.code(), code);
        assert!(!hint(cause, f).is_empty());
    }
}

#[test]
fn without_a_stack_the_futex_operation_decides() {
    let bitset = Facts {
        blocked: blocked(FUTEX, [0x1000, 137, 0, 0, 0, 0]),
        ..facts()
    };
    assert_eq!(classify(&bitset), Cause::CondWaitUnwrapped);
    let plain = Facts {
        blocked: blocked(FUTEX, [0x1000, 128, 2, 0, 0, 0]),
        ..facts()
    };
    assert_eq!(classify(&plain), Cause::MutexWait);
    let owned = Facts {
        futex: Some(Futex {
            owner_tid: Some(9),
            ..Futex::default()
        }),
        ..bitset.clone()
    };
    assert_eq!(classify(&owned), Cause::MutexWait);
}

#[test]
fn a_first_update_does_not_call_unseen_threads_outsiders() {
    let first = Facts {
        ever_arrived: false,
        earlier_updates: 0,
        blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
        ..facts()
    };
    assert_eq!(classify(&first), Cause::IoBlocked);
}

#[test]
fn evidence_and_hints_name_the_specifics() {
    // What the diagnosis says of `facts`: its hint and its evidence.
    let says = |facts: &Facts| {
        let cause = classify(facts);
        (hint(cause, facts), evidence(cause, facts))
    };
    let deadlock = Facts {
        blocked: blocked(FUTEX, [0x2000, 128, 2, 0, 0, 0]),
        futex: Some(Futex {
            owner_tid: Some(77),
            owner_comm: Some("holder".into()),
            owner_parked: true,
            symbol: Some("big_lock".into()),
        }),
        ..facts()
    };
    assert_eq!(
        says(&deadlock),
        (
            "release big_lock before the update point: thread 77 (holder) is parked holding it"
                .to_string(),
            "futex(uaddr=0x2000, op=FUTEX_WAIT_PRIVATE, val=2, timeout=NULL); futex in big_lock; owner thread 77 (holder), parked at an update point".to_string()
        )
    );
    let io = Facts {
        blocked: blocked(0, [5, 0, 1, 0, 0, 0]),
        fd: Some("pipe".into()),
        ..facts()
    };
    assert_eq!(says(&io).1, "read(fd=5, buf=NULL, count=1); fd is pipe");
    let d = Facts {
        state: Some('D'),
        wchan: Some("io_schedule".into()),
        ..facts()
    };
    let nothing_wakes = "nothing can wake it: it waits in the kernel in io_schedule";
    assert_eq!(says(&d).0, nothing_wakes);
    let sleeping = Facts {
        blocked: blocked(230, [0, 0, 0x10, 0, 0, 0]),
        sleep_ns: Some(1_500_000_000),
        ..facts()
    };
    let (_, sleep_evidence) = says(&sleeping);
    assert!(
        sleep_evidence.starts_with("asked to sleep 1.500 s; clock_nanosleep("),
        "{sleep_evidence}"
    );
}

pub(super) const EPOLL_WAIT: i64 = 232;

pub(super) fn ended(nr: i64, start_ns: u64, ret: i64, restarted: bool) -> Call {
    Call {
        nr,
        args: [5, 0x1000, 32, u64::from(u32::MAX), 0, 0],
        start_ns: Some(start_ns),
        end_ns: Some(start_ns + 1),
        ret: Some(ret),
        restarted,
    }
}

fn open_call(nr: i64, start_ns: u64) -> Call {
    Call {
        end_ns: None,
        ret: None,
        ..ended(nr, start_ns, 0, false)
    }
}

fn frame(function: Option<&str>, object: &str) -> FrameFact {
    FrameFact {
        function: function.map(str::to_string),
        object: Some(object.to_string()),
    }
}

/// libevent's loop in the main thread of memcached: epoll_dispatch is static (no symbol).
fn event_loop_frames() -> Vec<FrameFact> {
    vec![
        frame(Some("epoll_wait"), "libc.so.6"),
        frame(None, "libevent-2.1.so.7.0.1"),
        frame(Some("event_base_loop"), "libevent-2.1.so.7.0.1"),
        frame(Some("main"), "memcached"),
        frame(Some("__libc_start_call_main"), "libc.so.6"),
    ]
}

/// The main thread of memcached after SIGHUP: its epoll_wait returned EINTR (twice: the
/// second time a later signal), and libevent called it again.
fn retried_facts() -> Facts {
    Facts {
        blocked: blocked(EPOLL_WAIT, [5, 0x1000, 32, 1000, 0, 0]),
        calls: vec![
            ended(EPOLL_WAIT, 5, -4, false),
            ended(EPOLL_WAIT, 7, 0, false),
            ended(EPOLL_WAIT, 9, -4, false),
            open_call(EPOLL_WAIT, 11),
        ],
        frames: event_loop_frames(),
        fd: Some("epoll instance".into()),
        ..facts()
    }
}

#[test]
fn a_call_interrupted_and_called_again_is_an_eintr_retry() {
    let f = retried_facts();
    assert_eq!(classify(&f), Cause::EintrRetried);
    assert_eq!(Cause::EintrRetried.code(), "eintr_retried");
    assert_eq!(eintr_retries(&f), 2);
    assert_eq!(loop_frame(&f.frames), Some("event_base_loop"));
    assert_eq!(
        evidence(Cause::EintrRetried, &f),
        "interrupted 2 time(s) by a signal during the update (EINTR) and called again by event_base_loop; \
         epoll_wait(epfd=5, events=0x1000, maxevents=32, timeout_ms=1000); fd is epoll instance"
    );
    assert_eq!(
        hint(Cause::EintrRetried, &f),
        "break event_base_loop from an update callback (event_base_loopbreak, pcap_breakloop, a \
         write to a notify pipe or eventfd), or put an update point in it"
    );
    // -ERESTARTSYS the kernel did not restart (a handler without SA_RESTART) reached the
    // program as EINTR too.
    let unrestarted = Facts {
        calls: vec![ended(EPOLL_WAIT, 5, -512, false), open_call(EPOLL_WAIT, 6)],
        ..retried_facts()
    };
    assert_eq!(classify(&unrestarted), Cause::EintrRetried);
}

#[test]
fn a_restart_by_the_kernel_or_another_call_interrupted_is_no_eintr_retry() {
    let restarted = Facts {
        blocked: blocked(0, [3, 0, 1, 0, 0, 0]),
        calls: vec![ended(0, 5, -512, true), open_call(0, 6)],
        ..facts()
    };
    assert_eq!(classify(&restarted), Cause::IoRestarted);
    let other = Facts {
        calls: vec![ended(0, 5, -4, false), open_call(EPOLL_WAIT, 6)],
        ..retried_facts()
    };
    assert_eq!(classify(&other), Cause::IoBlocked);
    // The call still open at the end is not a retry of itself.
    let once = Facts {
        calls: vec![open_call(EPOLL_WAIT, 6)],
        ..retried_facts()
    };
    assert_eq!(classify(&once), Cause::IoBlocked);
    // A sleep keeps its own cause and fix; the evidence says it was cut short before.
    let sleep = Facts {
        blocked: blocked(230, [0, 0, 0x10, 0, 0, 0]),
        calls: vec![ended(230, 5, -4, false), open_call(230, 6)],
        sleep_ns: Some(1_000_000),
        ..facts()
    };
    assert_eq!(classify(&sleep), Cause::Sleeping);
    assert!(
        evidence(Cause::Sleeping, &sleep)
            .starts_with("asked to sleep 0.001 s; interrupted 1 time(s) and slept again; "),
        "{}",
        evidence(Cause::Sleeping, &sleep)
    );
}

/// The runtime's futex word, as the data symbol reads it in libqbench.
pub(super) const PENDING: &str = "_ZN6qbench5state7PENDING17h0123456789abcdefE+0";

#[test]
fn the_runtimes_waits_are_not_the_programs() {
    // qbench_usleep with no stack: the futex word is the runtime's, whatever the operation.
    let usleep = Facts {
        blocked: blocked(FUTEX, [0x7000, 128, 0, 0x10, 0, 0]),
        futex: Some(Futex {
            symbol: Some(PENDING.into()),
            ..Futex::default()
        }),
        ..facts()
    };
    assert_eq!(classify(&usleep), Cause::RuntimeWait);
    assert_eq!(Cause::RuntimeWait.code(), "runtime_wait");
    assert_eq!(runtime_wait(&usleep).as_deref(), Some(PENDING));
    // qbench_usleep with its stack: the runtime's outermost frame above libc names the wait.
    let sleep_stack = Facts {
        futex: None,
        frames: vec![
            frame(Some("syscall"), "libc.so.6"),
            frame(Some("qbench::sys::futex_wait"), "libqbench.so"),
            frame(Some("qbench::waits::sleep"), "libqbench.so"),
            frame(Some("qbench_usleep"), "libqbench.so"),
            frame(Some("lru_maintainer_thread"), "memcached"),
            frame(Some("qbench::threads::trampoline"), "libqbench.so"),
            frame(Some("start_thread"), "libc.so.6"),
        ],
        ..usleep.clone()
    };
    assert_eq!(classify(&sleep_stack), Cause::RuntimeWait);
    assert_eq!(
        evidence(Cause::RuntimeWait, &sleep_stack)
            .split("; ")
            .next(),
        Some(
            "in the runtime's interruptible wait qbench_usleep: it arrives when the runtime interrupts it"
        )
    );
    assert!(hint(Cause::RuntimeWait, &sleep_stack).starts_with(
        "nothing to change in the wait: qbench_usleep returns when the runtime interrupts the thread"
    ));
    // A wrapped condition wait: glibc's pthread_cond_wait under the runtime's.
    let wrapped = Facts {
        blocked: blocked(FUTEX, [0x1000, 393, 0, 0, 0, 0]),
        stack_functions: vec!["___pthread_cond_wait".into()],
        frames: vec![
            frame(Some("__futex_abstimed_wait_common"), "libc.so.6"),
            frame(Some("___pthread_cond_wait"), "libc.so.6"),
            frame(Some("qbench_pthread_cond_wait"), "libqbench.so"),
            frame(Some("logger_thread"), "memcached"),
        ],
        ..facts()
    };
    assert_eq!(classify(&wrapped), Cause::RuntimeWait);
    // The same condition wait, not wrapped, in a thread the runtime created stays the program's.
    let mut plain = wrapped.clone();
    plain
        .frames
        .retain(|f| f.function.as_deref() != Some("qbench_pthread_cond_wait"));
    plain
        .frames
        .push(frame(Some("qbench::threads::trampoline"), "libqbench.so"));
    assert_eq!(classify(&plain), Cause::CondWaitUnwrapped);
    for name in [
        "qbench_usleep",
        "qbench::park::wait",
        "<qbench::x as y>::z",
        "_RNvNtCs1_6qbench5state7PENDING",
    ] {
        assert!(is_runtime_symbol(name), "{name}");
    }
    for name in ["pthread_cond_wait", "qbenchmark", "_ZN4core3ptr"] {
        assert!(!is_runtime_symbol(name), "{name}");
    }
}

#[test]
fn a_wait_spans_its_reentries() {
    let b = Blocked {
        nr: EPOLL_WAIT,
        args: [0; 6],
        since_ns: Some(11),
    };
    let calls = retried_facts().calls;
    assert_eq!(
        wait_span(&b, &calls),
        WaitSpan {
            first_blocked_ns: Some(5),
            reentries: 3
        }
    );
    assert_eq!(
        wait_span(&b, &[]),
        WaitSpan {
            first_blocked_ns: Some(11),
            reentries: 0
        }
    );
}

#[test]
fn hints_name_the_runtimes_calls_and_what_the_caller_must_do() {
    let sleep = hint(Cause::Sleeping, &facts());
    assert!(
        sleep.contains("qbench_usleep") && sleep.contains("update point"),
        "{sleep}"
    );
    let cond = hint(Cause::CondWaitUnwrapped, &facts());
    assert!(
        cond.starts_with("use qbench_pthread_cond_wait ")
            && cond.contains("spurious wake-up, as POSIX allows")
            && cond.contains("re-check the predicate"),
        "{cond}"
    );
    // A timed wait gets the timed wrapper: by its stack, or by the futex call's timeout.
    let timed_stack = Facts {
        stack_functions: vec!["___pthread_cond_timedwait64".into()],
        ..facts()
    };
    let timed_call = Facts {
        blocked: blocked(FUTEX, [0x1000, 393, 0, 0x7ffd_0000, 0, u64::from(u32::MAX)]),
        ..facts()
    };
    for timed in [timed_stack, timed_call] {
        let cond = hint(Cause::CondWaitUnwrapped, &timed);
        assert!(
            cond.starts_with("use qbench_pthread_cond_timedwait "),
            "{cond}"
        );
    }
    assert_eq!(
        stack_not_read(true),
        "not read: the thread had arrived (it is at an update point now)"
    );
}
