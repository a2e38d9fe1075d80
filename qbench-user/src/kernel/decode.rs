//! Ring-buffer records to typed events: a length check for the kind, then field by field from
//! little-endian bytes in the layout of `qbench_common` (no transmutes, no unsafe).

use qbench_common as wire;
use qbench_common::{EventKind, Source};

/// One decoded event from the kernel: the header every record starts with, and what its kind
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The thread the event is about (for a request, the thread that ran the handler or was
    /// signalled).
    pub tid: u32,
    /// When it happened (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub payload: Payload,
}

#[cfg(test)]
impl Event {
    pub fn new(tid: u32, ts_ns: u64, payload: Payload) -> Self {
        Self {
            tid,
            ts_ns,
            payload,
        }
    }
}

/// What an event carries besides its header, one variant per [`EventKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A window opened: the update was requested.
    Request {
        window_seq: u64,
        runtime_seq: u64,
        source: RequestSource,
        signal: u32,
        code: i32,
        sender_tgid: u32,
    },
    /// A thread reached an update point.
    Arrive { seq: u64, source: ArriveSource },
    /// The runtime released a parked thread.
    Depart { seq: u64 },
    /// A thread entered a tracked syscall while the window was open.
    SysEnter { nr: i64, args: [u64; 6] },
    /// A thread left a tracked syscall while the window was open.
    SysExit { nr: i64, ret: i64 },
    /// A thread was created in the target.
    ThreadNew { parent: u32 },
    /// A thread of the target exited.
    ThreadExit,
    /// The runtime ends an update (on its helper thread), just before releasing its threads.
    Release {
        seq: u64,
        quiesced: bool,
        threads: u32,
    },
    /// The update of window `window_seq` is still pending `LATE_NS` after its request: sent
    /// only to wake the reader, which attaches syscall tracking.
    Late { window_seq: u64 },
    /// The update signal was delivered to the thread while the window was open, to `handler`
    /// (`SIG_DFL` 0, `SIG_IGN` 1, or a function) with `sa_flags` `flags`.
    Deliver {
        signal: u32,
        code: i32,
        handler: u64,
        flags: u64,
    },
}

/// What opened a window: the sources a request record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSource {
    Signal,
    Runtime,
}

/// Where a thread arrived: the sources an arrival record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArriveSource {
    /// The runtime's arrival anchor, as the thread parked.
    Runtime,
    /// A probed update point.
    Point,
    /// The runtime's participants table, read at its release ([`wire::ArrivalsEvent`]), which
    /// follows at once and says how the update ended.
    State,
}

/// Why a record could not be decoded. Counted and reported by the reader, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than an event header")]
    NoHeader { len: usize },
    #[error("unknown event kind {kind}")]
    UnknownKind { kind: u32 },
    #[error("event kind {kind} needs {need} bytes, record has {len}")]
    Short { kind: u32, need: usize, len: usize },
    #[error("event kind {kind} has unknown source {source_id}")]
    BadSource { kind: u32, source_id: u32 },
    #[error("event kind {kind} lists {count} entries, more than {most}")]
    TooMany { kind: u32, count: u32, most: usize },
}

/// Decodes one record into `out`: one event, or, for an [`wire::ArrivalsEvent`], one arrival
/// per parked thread it lists (stamped with the runtime's own arrival time).
pub fn decode_into(bytes: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
    let kind = bytes
        .get(..4)
        .map(|k| u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
    if kind != Some(wire::EVENT_ARRIVALS) {
        out.push(Event::try_from(bytes)?);
        return Ok(());
    }
    let need = size_of::<wire::ArrivalsEvent>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind: wire::EVENT_ARRIVALS,
            need,
            len: bytes.len(),
        });
    }
    let mut f = Fields { bytes, at: 8 };
    let _released_at = f.u64();
    let seq = f.u64();
    let _first = f.u32();
    let count = f.u32();
    if count as usize > wire::ARRIVALS_PER_EVENT {
        return Err(DecodeError::TooMany {
            kind: wire::EVENT_ARRIVALS,
            count,
            most: wire::ARRIVALS_PER_EVENT,
        });
    }
    let entries = &bytes[f.at..need];
    let arrivals = (0..count as usize).filter_map(|i| {
        match crate::runstate::entry(entries, i * wire::state::ENTRY_BYTES)? {
            (tid, Some(arrival_ns)) if arrival_ns != 0 => Some(Event {
                tid,
                ts_ns: arrival_ns,
                payload: Payload::Arrive {
                    seq,
                    source: ArriveSource::State,
                },
            }),
            _ => None,
        }
    });
    out.extend(arrivals);
    Ok(())
}

/// Reads fixed-width little-endian fields in order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
}

impl TryFrom<&[u8]> for Event {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let header = size_of::<wire::EventHeader>();
        if bytes.len() < header {
            return Err(DecodeError::NoHeader { len: bytes.len() });
        }
        let mut f = Fields { bytes, at: 0 };
        let number = f.u32();
        let kind = EventKind::try_from(number).map_err(|kind| DecodeError::UnknownKind { kind })?;
        let need = wire_size(kind);
        if bytes.len() < need {
            return Err(DecodeError::Short {
                kind: number,
                need,
                len: bytes.len(),
            });
        }
        let tid = f.u32();
        let ts_ns = f.u64();
        // A struct expression evaluates its fields in the order written: wire order here.
        let payload = match kind {
            EventKind::Request => request(&mut f)?,
            EventKind::Arrive => Payload::Arrive {
                seq: f.u64(),
                source: source(&mut f, kind, |source| match source {
                    Source::Runtime => Some(ArriveSource::Runtime),
                    Source::Point => Some(ArriveSource::Point),
                    Source::Signal => None,
                })?,
            },
            EventKind::Late => Payload::Late {
                window_seq: f.u64(),
            },
            // Many events in one record: [`decode_into`].
            EventKind::Arrivals => return Err(DecodeError::UnknownKind { kind: number }),
            EventKind::Depart => Payload::Depart { seq: f.u64() },
            EventKind::SysEnter => Payload::SysEnter {
                nr: f.i64(),
                args: [f.u64(), f.u64(), f.u64(), f.u64(), f.u64(), f.u64()],
            },
            EventKind::SysExit => Payload::SysExit {
                nr: f.i64(),
                ret: f.i64(),
            },
            EventKind::ThreadNew => Payload::ThreadNew { parent: f.u32() },
            EventKind::Release => Payload::Release {
                seq: f.u64(),
                quiesced: f.u32() != 0,
                threads: f.u32(),
            },
            EventKind::ThreadExit => Payload::ThreadExit,
            EventKind::Deliver => Payload::Deliver {
                signal: f.u32(),
                code: f.i32(),
                handler: f.u64(),
                flags: f.u64(),
            },
        };
        Ok(Event {
            tid,
            ts_ns,
            payload,
        })
    }
}

/// The size of a record of `kind` on the wire.
fn wire_size(kind: EventKind) -> usize {
    match kind {
        EventKind::Request => size_of::<wire::RequestEvent>(),
        EventKind::Arrive => size_of::<wire::ArriveEvent>(),
        EventKind::Depart => size_of::<wire::DepartEvent>(),
        EventKind::SysEnter => size_of::<wire::SysEnterEvent>(),
        EventKind::SysExit => size_of::<wire::SysExitEvent>(),
        EventKind::ThreadNew | EventKind::ThreadExit => size_of::<wire::ThreadEvent>(),
        EventKind::Release => size_of::<wire::ReleaseEvent>(),
        EventKind::Deliver => size_of::<wire::DeliverEvent>(),
        EventKind::Arrivals => size_of::<wire::ArrivalsEvent>(),
        EventKind::Late => size_of::<wire::LateEvent>(),
    }
}

/// The rest of a request record, after its header (fields in wire order).
fn request(f: &mut Fields<'_>) -> Result<Payload, DecodeError> {
    Ok(Payload::Request {
        window_seq: f.u64(),
        runtime_seq: f.u64(),
        source: source(f, EventKind::Request, |source| match source {
            Source::Signal => Some(RequestSource::Signal),
            Source::Runtime => Some(RequestSource::Runtime),
            Source::Point => None,
        })?,
        signal: f.u32(),
        code: f.i32(),
        sender_tgid: f.u32(),
    })
}

/// The source field of a `kind` record, as the sources that kind may carry (`pick`): an unknown
/// number, or a source of another kind, makes the record undecodable.
fn source<T>(
    f: &mut Fields<'_>,
    kind: EventKind,
    pick: impl FnOnce(Source) -> Option<T>,
) -> Result<T, DecodeError> {
    let source_id = f.u32();
    Source::try_from(source_id)
        .ok()
        .and_then(pick)
        .ok_or(DecodeError::BadSource {
            kind: kind as u32,
            source_id,
        })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The bytes of a wire struct, as the kernel writes them (for table-driven tests).
    pub fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
        // SAFETY: T is one of the repr(C) integer-only wire structs with explicit padding, so
        // all of its bytes are initialised.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
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
}
