//! Records of every kind as the kernel writes them, and what they decode to.

use super::*;

/// The bytes of a wire struct, as the kernel writes them (for table-driven tests).
pub fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: T is one of the repr(C) integer-only wire structs with explicit padding, so
    // all of its bytes are initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn header(kind: u32, tid: u32, ts_ns: u64) -> wire::EventHeader {
    wire::EventHeader { kind, tid, ts_ns }
}

/// A request by the update signal (12, sent by process 55), opening window `window_seq`.
pub fn signal_request(tid: u32, ts_ns: u64, window_seq: u64) -> Event {
    let payload = Payload::Request {
        window_seq,
        runtime_seq: 0,
        source: RequestSource::Signal,
        signal: 12,
        code: 0,
        sender_tgid: 55,
    };
    Event::new(tid, ts_ns, payload)
}

/// The runtime's request anchor in thread `tid`: its update `runtime_seq`, in `window_seq`.
pub fn runtime_request(tid: u32, ts_ns: u64, window_seq: u64, runtime_seq: u64) -> Event {
    let payload = Payload::Request {
        window_seq,
        runtime_seq,
        source: RequestSource::Runtime,
        signal: 0,
        code: 0,
        sender_tgid: tid,
    };
    Event::new(tid, ts_ns, payload)
}

/// A thread parking at the runtime's update point in the runtime's update `seq`.
pub fn runtime_arrival(tid: u32, ts_ns: u64, seq: u64) -> Event {
    let source = ArriveSource::Runtime;
    Event::new(tid, ts_ns, Payload::Arrive { seq, source })
}

/// The runtime ending its update `seq` with `threads` participants.
pub fn release(tid: u32, ts_ns: u64, seq: u64, quiesced: bool, threads: u32) -> Event {
    let payload = Payload::Release {
        seq,
        quiesced,
        threads,
    };
    Event::new(tid, ts_ns, payload)
}

/// An arrivals record of update 4 listing `entries` (tid, parked, arrival_ns).
fn arrivals_record(entries: &[(i32, u32, u64)], count: u32) -> Vec<u8> {
    let mut record = wire::ArrivalsEvent {
        header: header(wire::EVENT_ARRIVALS, 103, 5000),
        seq: 4,
        first: 0,
        count,
        entries: [0; 1024],
    };
    for (i, &(tid, parked, arrival_ns)) in entries.iter().enumerate() {
        let e = &mut record.entries[i * wire::state::ENTRY_BYTES..][..16];
        e[..4].copy_from_slice(&tid.to_le_bytes());
        e[4..8].copy_from_slice(&parked.to_le_bytes());
        e[8..].copy_from_slice(&arrival_ns.to_le_bytes());
    }
    bytes_of(&record)
}

#[test]
fn an_arrivals_record_is_one_arrival_per_parked_thread_at_its_own_time() {
    let entries = [
        (11, 1, 1500),
        (0, 0, 0),     // a free entry
        (12, 0, 0),    // not parked
        (13, 1, 1200), // parked
        (14, 1, 0),    // parked, its time not yet written
        (15, 1, 1900), // past `count`: not the table's
    ];
    let mut out = Vec::new();
    decode_into(&arrivals_record(&entries, 5), &mut out).expect("decodes");
    let at = |tid, ts_ns| {
        let source = ArriveSource::State;
        Event::new(tid, ts_ns, Payload::Arrive { seq: 4, source })
    };
    assert_eq!(out, vec![at(11, 1500), at(13, 1200)]);
    // Other kinds decode to one event each, appended.
    let depart = wire::DepartEvent {
        header: header(wire::EVENT_DEPART, 11, 6000),
        seq: 4,
    };
    decode_into(&bytes_of(&depart), &mut out).expect("decodes");
    assert_eq!(out[2], Event::new(11, 6000, Payload::Depart { seq: 4 }));
}

#[test]
fn a_malformed_arrivals_record_is_an_error() {
    let mut out = Vec::new();
    let too_many = arrivals_record(&[], 65);
    assert_eq!(
        decode_into(&too_many, &mut out),
        Err(DecodeError::TooMany {
            kind: wire::EVENT_ARRIVALS,
            count: 65,
            most: 64
        })
    );
    let short = &arrivals_record(&[], 1)[..100];
    assert_eq!(
        decode_into(short, &mut out),
        Err(DecodeError::Short {
            kind: wire::EVENT_ARRIVALS,
            need: 1056,
            len: 100
        })
    );
    assert_eq!(out, vec![]);
}

/// A record of each kind, and what it decodes to.
fn cases() -> Vec<(Vec<u8>, Event)> {
    let request = wire::RequestEvent {
        header: header(wire::EVENT_REQUEST, 10, 100),
        window_seq: 1,
        source: wire::SOURCE_SIGNAL,
        signal: 12,
        sender_tgid: 55,
        ..Default::default()
    };
    let arrive = wire::ArriveEvent {
        header: header(wire::EVENT_ARRIVE, 11, 200),
        seq: 3,
        source: wire::SOURCE_RUNTIME,
        _pad: 0,
    };
    let depart = wire::DepartEvent {
        header: header(wire::EVENT_DEPART, 11, 300),
        seq: 3,
    };
    let release_record = wire::ReleaseEvent {
        header: header(wire::EVENT_RELEASE, 14, 800),
        seq: 4,
        quiesced: 1,
        threads: 6,
    };
    let enter = wire::SysEnterEvent {
        header: header(wire::EVENT_SYS_ENTER, 12, 400),
        nr: 0,
        args: [3, 4, 5, 6, 7, 8],
    };
    let exit = wire::SysExitEvent {
        header: header(wire::EVENT_SYS_EXIT, 12, 500),
        nr: 0,
        ret: -4,
    };
    let thread = |kind, ts_ns, other| wire::ThreadEvent {
        header: header(kind, 13, ts_ns),
        other,
        _pad: 0,
    };
    let deliver = wire::DeliverEvent {
        header: header(wire::EVENT_DELIVER, 15, 900),
        signal: 1,
        code: 0,
        handler: 0x5555_0000_1234,
        flags: 0x1400_0000,
    };
    let args = [3, 4, 5, 6, 7, 8];
    vec![
        (bytes_of(&request), signal_request(10, 100, 1)),
        (bytes_of(&arrive), runtime_arrival(11, 200, 3)),
        (
            bytes_of(&depart),
            Event::new(11, 300, Payload::Depart { seq: 3 }),
        ),
        (bytes_of(&release_record), release(14, 800, 4, true, 6)),
        (
            bytes_of(&enter),
            Event::new(12, 400, Payload::SysEnter { nr: 0, args }),
        ),
        (
            bytes_of(&exit),
            Event::new(12, 500, Payload::SysExit { nr: 0, ret: -4 }),
        ),
        (
            bytes_of(&thread(wire::EVENT_THREAD_NEW, 600, 10)),
            Event::new(13, 600, Payload::ThreadNew { parent: 10 }),
        ),
        (
            bytes_of(&thread(wire::EVENT_THREAD_EXIT, 700, 0)),
            Event::new(13, 700, Payload::ThreadExit),
        ),
        (
            bytes_of(&deliver),
            Event::new(
                15,
                900,
                Payload::Deliver {
                    signal: 1,
                    code: 0,
                    handler: 0x5555_0000_1234,
                    flags: 0x1400_0000,
                },
            ),
        ),
    ]
}

#[test]
fn every_kind_decodes() {
    for (bytes, want) in cases() {
        assert_eq!(Event::try_from(bytes.as_slice()), Ok(want));
    }
}

#[test]
fn short_unknown_and_malformed_records_are_errors() {
    let arrive = bytes_of(&wire::ArriveEvent {
        header: header(wire::EVENT_ARRIVE, 1, 2),
        seq: 1,
        source: wire::SOURCE_POINT,
        _pad: 0,
    });
    assert_eq!(
        Event::try_from(&arrive[..8]),
        Err(DecodeError::NoHeader { len: 8 })
    );
    assert_eq!(
        Event::try_from(&arrive[..20]),
        Err(DecodeError::Short {
            kind: wire::EVENT_ARRIVE,
            need: 32,
            len: 20
        })
    );
    let unknown = bytes_of(&header(99, 1, 2));
    assert_eq!(
        Event::try_from(unknown.as_slice()),
        Err(DecodeError::UnknownKind { kind: 99 })
    );
    let bad = bytes_of(&wire::ArriveEvent {
        header: header(wire::EVENT_ARRIVE, 1, 2),
        seq: 1,
        source: 7,
        _pad: 0,
    });
    assert_eq!(
        Event::try_from(bad.as_slice()),
        Err(DecodeError::BadSource {
            kind: wire::EVENT_ARRIVE,
            source_id: 7
        })
    );
    assert_eq!(
        Event::try_from(&[][..]),
        Err(DecodeError::NoHeader { len: 0 })
    );
}

#[test]
fn a_source_of_the_other_kind_is_no_default() {
    // A point never requests and a signal never arrives: the record is undecodable.
    let request = |source| wire::RequestEvent {
        header: header(wire::EVENT_REQUEST, 1, 2),
        source,
        ..Default::default()
    };
    let arrive = |source| wire::ArriveEvent {
        header: header(wire::EVENT_ARRIVE, 1, 2),
        source,
        ..Default::default()
    };
    for (kind, wrong) in [
        (wire::EVENT_REQUEST, wire::SOURCE_POINT),
        (wire::EVENT_ARRIVE, wire::SOURCE_SIGNAL),
    ] {
        for source_id in [wrong, 0, 9] {
            let bytes = match kind {
                wire::EVENT_REQUEST => bytes_of(&request(source_id)),
                _ => bytes_of(&arrive(source_id)),
            };
            assert_eq!(
                Event::try_from(bytes.as_slice()),
                Err(DecodeError::BadSource { kind, source_id })
            );
        }
    }
}

#[test]
fn longer_records_decode_from_their_prefix() {
    // The ring buffer rounds records up to 8 bytes; a longer record is not an error.
    let mut bytes = bytes_of(&wire::DepartEvent {
        header: header(wire::EVENT_DEPART, 5, 6),
        seq: 7,
    });
    bytes.extend_from_slice(&[0; 8]);
    assert_eq!(
        Event::try_from(bytes.as_slice()),
        Ok(Event::new(5, 6, Payload::Depart { seq: 7 }))
    );
}
