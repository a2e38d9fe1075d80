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
pub mod tests;
