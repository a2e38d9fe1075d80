//! Every cause, from the facts that produce it; precedence between rules.

use super::*;

const FUTEX: i64 = 202;

fn blocked(nr: i64, args: [u64; 6]) -> Option<Blocked> {
    Some(Blocked {
        nr,
        args,
        since_ns: Some(10),
    })
}

fn facts() -> Facts {
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
    let cause = classify(&deadlock);
    assert_eq!(
        hint(cause, &deadlock),
        "release big_lock before the update point: thread 77 (holder) is parked holding it"
    );
    assert_eq!(
        evidence(cause, &deadlock),
        "futex(uaddr=0x2000, op=FUTEX_WAIT_PRIVATE, val=2, timeout=NULL); futex in big_lock; owner thread 77 (holder), parked at an update point"
    );
    let io = Facts {
        blocked: blocked(0, [5, 0, 1, 0, 0, 0]),
        fd: Some("pipe".into()),
        ..facts()
    };
    assert_eq!(
        evidence(classify(&io), &io),
        "read(fd=5, buf=NULL, count=1); fd is pipe"
    );
    let d = Facts {
        state: Some('D'),
        wchan: Some("io_schedule".into()),
        ..facts()
    };
    assert_eq!(
        hint(classify(&d), &d),
        "nothing can wake it: it waits in the kernel in io_schedule"
    );
    let sleeping = Facts {
        blocked: blocked(230, [0, 0, 0x10, 0, 0, 0]),
        sleep_ns: Some(1_500_000_000),
        ..facts()
    };
    assert!(
        evidence(classify(&sleeping), &sleeping)
            .starts_with("asked to sleep 1.500 s; clock_nanosleep(")
    );
}
