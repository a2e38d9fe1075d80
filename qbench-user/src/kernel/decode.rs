//! Ring-buffer records to typed events: a length check for the kind, then field by field from
//! little-endian bytes in the layout of `qbench_common` (no transmutes, no unsafe).

use qbench_common as wire;
use qbench_common::{EventKind, Source};

/// One decoded event from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A window opened: the update was requested.
    Request {
        tid: u32,
        ts_ns: u64,
        window_seq: u64,
        runtime_seq: u64,
        source: RequestSource,
        signal: u32,
        code: i32,
        sender_tgid: u32,
    },
    /// A thread reached an update point.
    Arrive {
        tid: u32,
        ts_ns: u64,
        seq: u64,
        source: ArriveSource,
    },
    /// The runtime released a parked thread.
    Depart { tid: u32, ts_ns: u64, seq: u64 },
    /// A thread entered a tracked syscall while the window was open.
    SysEnter {
        tid: u32,
        ts_ns: u64,
        nr: i64,
        args: [u64; 6],
    },
    /// A thread left a tracked syscall while the window was open.
    SysExit {
        tid: u32,
        ts_ns: u64,
        nr: i64,
        ret: i64,
    },
    /// A thread was created in the target.
    ThreadNew { tid: u32, ts_ns: u64, parent: u32 },
    /// A thread of the target exited.
    ThreadExit { tid: u32, ts_ns: u64 },
    /// The runtime ends an update (on its helper thread), just before releasing its threads.
    Release {
        tid: u32,
        ts_ns: u64,
        seq: u64,
        quiesced: bool,
        threads: u32,
    },
}

/// What opened a window: the sources a request record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSource {
    Signal,
    Runtime,
}

impl RequestSource {
    /// The request source numbered `number` on the wire; `None` for an unknown number and for
    /// a source that never requests.
    fn of(number: u32) -> Option<Self> {
        match Source::try_from(number).ok()? {
            Source::Signal => Some(Self::Signal),
            Source::Runtime => Some(Self::Runtime),
            Source::Point => None,
        }
    }
}

/// Where a thread arrived: the sources an arrival record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArriveSource {
    Runtime,
    Point,
}

impl ArriveSource {
    /// The arrival source numbered `number` on the wire; `None` for an unknown number and for
    /// a source that never arrives.
    fn of(number: u32) -> Option<Self> {
        match Source::try_from(number).ok()? {
            Source::Runtime => Some(Self::Runtime),
            Source::Point => Some(Self::Point),
            Source::Signal => None,
        }
    }
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
}

impl Event {
    pub fn tid(&self) -> u32 {
        match *self {
            Event::Request { tid, .. }
            | Event::Arrive { tid, .. }
            | Event::Depart { tid, .. }
            | Event::SysEnter { tid, .. }
            | Event::SysExit { tid, .. }
            | Event::ThreadNew { tid, .. }
            | Event::ThreadExit { tid, .. }
            | Event::Release { tid, .. } => tid,
        }
    }

    pub fn ts_ns(&self) -> u64 {
        match *self {
            Event::Request { ts_ns, .. }
            | Event::Arrive { ts_ns, .. }
            | Event::Depart { ts_ns, .. }
            | Event::SysEnter { ts_ns, .. }
            | Event::SysExit { ts_ns, .. }
            | Event::ThreadNew { ts_ns, .. }
            | Event::ThreadExit { ts_ns, .. }
            | Event::Release { ts_ns, .. } => ts_ns,
        }
    }
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
        Ok(match kind {
            EventKind::Request => request(&mut f, tid, ts_ns)?,
            EventKind::Arrive => arrive(&mut f, tid, ts_ns)?,
            EventKind::Depart => Event::Depart {
                tid,
                ts_ns,
                seq: f.u64(),
            },
            EventKind::SysEnter => {
                let nr = f.i64();
                let args = [f.u64(), f.u64(), f.u64(), f.u64(), f.u64(), f.u64()];
                Event::SysEnter {
                    tid,
                    ts_ns,
                    nr,
                    args,
                }
            }
            EventKind::SysExit => Event::SysExit {
                tid,
                ts_ns,
                nr: f.i64(),
                ret: f.i64(),
            },
            EventKind::ThreadNew => Event::ThreadNew {
                tid,
                ts_ns,
                parent: f.u32(),
            },
            EventKind::Release => {
                let seq = f.u64();
                let quiesced = f.u32() != 0;
                let threads = f.u32();
                Event::Release {
                    tid,
                    ts_ns,
                    seq,
                    quiesced,
                    threads,
                }
            }
            EventKind::ThreadExit => Event::ThreadExit { tid, ts_ns },
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
    }
}

/// The rest of a request record, after its header.
fn request(f: &mut Fields<'_>, tid: u32, ts_ns: u64) -> Result<Event, DecodeError> {
    let window_seq = f.u64();
    let runtime_seq = f.u64();
    let source_id = f.u32();
    let source = RequestSource::of(source_id).ok_or(DecodeError::BadSource {
        kind: wire::EVENT_REQUEST,
        source_id,
    })?;
    let signal = f.u32();
    let code = f.i32();
    let sender_tgid = f.u32();
    Ok(Event::Request {
        tid,
        ts_ns,
        window_seq,
        runtime_seq,
        source,
        signal,
        code,
        sender_tgid,
    })
}

/// The rest of an arrival record, after its header.
fn arrive(f: &mut Fields<'_>, tid: u32, ts_ns: u64) -> Result<Event, DecodeError> {
    let seq = f.u64();
    let source_id = f.u32();
    let source = ArriveSource::of(source_id).ok_or(DecodeError::BadSource {
        kind: wire::EVENT_ARRIVE,
        source_id,
    })?;
    Ok(Event::Arrive {
        tid,
        ts_ns,
        seq,
        source,
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

    /// Records of the update window's kinds, and what each decodes to.
    fn window_cases() -> Vec<(Vec<u8>, Event)> {
        vec![
            (
                bytes_of(&wire::RequestEvent {
                    header: header(wire::EVENT_REQUEST, 10, 100),
                    window_seq: 1,
                    runtime_seq: 0,
                    source: wire::SOURCE_SIGNAL,
                    signal: 12,
                    code: 0,
                    sender_tgid: 77,
                }),
                Event::Request {
                    tid: 10,
                    ts_ns: 100,
                    window_seq: 1,
                    runtime_seq: 0,
                    source: RequestSource::Signal,
                    signal: 12,
                    code: 0,
                    sender_tgid: 77,
                },
            ),
            (
                bytes_of(&wire::ArriveEvent {
                    header: header(wire::EVENT_ARRIVE, 11, 200),
                    seq: 3,
                    source: wire::SOURCE_RUNTIME,
                    _pad: 0,
                }),
                Event::Arrive {
                    tid: 11,
                    ts_ns: 200,
                    seq: 3,
                    source: ArriveSource::Runtime,
                },
            ),
            (
                bytes_of(&wire::DepartEvent {
                    header: header(wire::EVENT_DEPART, 11, 300),
                    seq: 3,
                }),
                Event::Depart {
                    tid: 11,
                    ts_ns: 300,
                    seq: 3,
                },
            ),
            (
                bytes_of(&wire::ReleaseEvent {
                    header: header(wire::EVENT_RELEASE, 14, 800),
                    seq: 4,
                    quiesced: 1,
                    threads: 6,
                }),
                Event::Release {
                    tid: 14,
                    ts_ns: 800,
                    seq: 4,
                    quiesced: true,
                    threads: 6,
                },
            ),
        ]
    }

    /// Records of the per-thread kinds (system calls, threads born and gone), and what each
    /// decodes to.
    fn thread_cases() -> Vec<(Vec<u8>, Event)> {
        vec![
            (
                bytes_of(&wire::SysEnterEvent {
                    header: header(wire::EVENT_SYS_ENTER, 12, 400),
                    nr: 0,
                    args: [3, 4, 5, 6, 7, 8],
                }),
                Event::SysEnter {
                    tid: 12,
                    ts_ns: 400,
                    nr: 0,
                    args: [3, 4, 5, 6, 7, 8],
                },
            ),
            (
                bytes_of(&wire::SysExitEvent {
                    header: header(wire::EVENT_SYS_EXIT, 12, 500),
                    nr: 0,
                    ret: -4,
                }),
                Event::SysExit {
                    tid: 12,
                    ts_ns: 500,
                    nr: 0,
                    ret: -4,
                },
            ),
            (
                bytes_of(&wire::ThreadEvent {
                    header: header(wire::EVENT_THREAD_NEW, 13, 600),
                    other: 10,
                    _pad: 0,
                }),
                Event::ThreadNew {
                    tid: 13,
                    ts_ns: 600,
                    parent: 10,
                },
            ),
            (
                bytes_of(&wire::ThreadEvent {
                    header: header(wire::EVENT_THREAD_EXIT, 13, 700),
                    other: 0,
                    _pad: 0,
                }),
                Event::ThreadExit {
                    tid: 13,
                    ts_ns: 700,
                },
            ),
        ]
    }

    #[test]
    fn every_kind_decodes() {
        for (bytes, want) in window_cases().into_iter().chain(thread_cases()) {
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
            Ok(Event::Depart {
                tid: 5,
                ts_ns: 6,
                seq: 7
            })
        );
    }
}
