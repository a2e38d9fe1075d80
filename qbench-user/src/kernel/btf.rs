//! Where `pid` and `tgid` lie in the running kernel's `struct task_struct`, from its BTF
//! (`/sys/kernel/btf/vmlinux`), for the raw `signal_generate` program, which reads the
//! signalled task's tgid from the task itself. The layout of `task_struct` changes with every
//! kernel version and configuration, so the offsets are found at load time, and the raw
//! tracepoint's arguments are checked to be the ones the program reads; without BTF the loader
//! attaches the formatted tracepoint instead, whose record carries the pid.
//!
//! Only what this needs of the format (`Documentation/bpf/btf.rst`) is parsed: the header, the
//! type records (walked by kind, to index them by id) and the string section. The parse is pure
//! ([`task_offsets_in`]); [`task_offsets`] reads the file.

use std::{borrow::Cow, io};

/// The BTF of the running kernel.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `pid` and `tgid` in `struct task_struct`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
}

/// Why the offsets were not found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {VMLINUX} (the kernel's BTF; CONFIG_DEBUG_INFO_BTF)")]
    Read(#[source] io::Error),
    #[error("the BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("the BTF has no struct {0}")]
    NoStruct(String),
    #[error("the BTF's struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("the BTF's {strukt}.{member} is a bit field")]
    BitField { strukt: String, member: String },
    #[error("the BTF has no raw tracepoint {0}")]
    NoTracepoint(&'static str),
    #[error("the BTF's raw tracepoint {event} takes ({found}), not ({expected})")]
    Prototype {
        event: &'static str,
        found: String,
        expected: String,
    },
}

/// The raw tracepoint the offsets are for, and its arguments as the program reads them (after
/// the tracepoint's own `void *` data): `TP_PROTO(int sig, struct kernel_siginfo *info, struct
/// task_struct *task, int group, int result)`.
pub const SIGNAL_GENERATE: &str = "signal_generate";
const SIGNAL_GENERATE_ARGS: [&str; 6] = [
    "void *",
    "int",
    "struct kernel_siginfo *",
    "struct task_struct *",
    "int",
    "int",
];

/// The offsets in this kernel's BTF.
pub fn task_offsets() -> Result<TaskOffsets, BtfError> {
    let data = std::fs::read(VMLINUX).map_err(BtfError::Read)?;
    task_offsets_in(&data)
}

/// The offsets in the BTF `data`, once `signal_generate`'s arguments are found to be the ones
/// the program reads.
pub fn task_offsets_in(data: &[u8]) -> Result<TaskOffsets, BtfError> {
    let btf = Btf::parse(data)?;
    let found = btf.raw_tracepoint_args(SIGNAL_GENERATE)?;
    if found != SIGNAL_GENERATE_ARGS {
        return Err(BtfError::Prototype {
            event: SIGNAL_GENERATE,
            found: found.join(", "),
            expected: SIGNAL_GENERATE_ARGS.join(", "),
        });
    }
    Ok(TaskOffsets {
        pid: btf.member_offset("task_struct", "pid")?,
        tgid: btf.member_offset("task_struct", "tgid")?,
    })
}

const MAGIC: u16 = 0xeb9f;
const HEADER_BYTES: usize = 24;
/// `struct btf_type`: name_off, info, size or type.
const TYPE_BYTES: usize = 12;
/// `struct btf_member`: name_off, type, offset.
const MEMBER_BYTES: usize = 12;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_TYPE_TAG: u32 = 18;

/// How many bytes follow a type record of `kind` with `vlen` entries, or `None` for a kind this
/// parser does not know (a newer format).
fn trailing_bytes(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // INT: the encoding.
        1 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7..=12 | 16 | 18 => 0,
        // ARRAY: element type, index type, count.
        3 => 12,
        // STRUCT, UNION (members), DATASEC (variables), ENUM64 (name, value lo, hi).
        4 | 5 | 15 | 19 => vlen * 12,
        // ENUM (name, value), FUNC_PROTO (name, type).
        6 | 13 => vlen * 8,
        // VAR (linkage), DECL_TAG (component index).
        14 | 17 => 4,
        _ => return None,
    })
}

/// A parsed BTF blob: its type records by id (from 1) and its strings.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// The offset of each type's record in `types`; id `n` is at `starts[n - 1]`.
    starts: Vec<usize>,
}

/// One type record.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// Size (struct, union, int...) or referenced type (typedef, modifiers, pointer...).
    size_or_type: u32,
    /// Where its trailing entries start in `types`.
    entries: usize,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let truncated = BtfError::Malformed("shorter than its header says");
        let magic = data.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Malformed("no BTF magic (0xeb9f, little-endian)"));
        }
        let word = |at| {
            u32_at(data, at)
                .map(|v| v as usize)
                .ok_or(BtfError::Malformed("truncated header"))
        };
        let header_len = word(4)?;
        if header_len < HEADER_BYTES {
            return Err(BtfError::Malformed("header too short"));
        }
        let section = |off: usize, len: usize| {
            let start = header_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let types = section(word(8)?, word(12)?).ok_or(truncated)?;
        let strings = section(word(16)?, word(20)?)
            .ok_or(BtfError::Malformed("shorter than its header says"))?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4).ok_or(BtfError::Malformed("truncated type"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = trailing_bytes(kind, vlen).ok_or(BtfError::Malformed("unknown kind"))?;
            starts.push(at);
            at += TYPE_BYTES + extra;
        }
        if at != types.len() {
            return Err(BtfError::Malformed("truncated type"));
        }
        Ok(Self {
            types,
            strings,
            starts,
        })
    }

    fn get(&self, id: u32) -> Option<Type> {
        let at = *self.starts.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(self.types, at + 4)?;
        Some(Type {
            name_off: u32_at(self.types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(self.types, at + 8)?,
            entries: at + TYPE_BYTES,
        })
    }

    fn name(&self, name_off: u32) -> Cow<'a, str> {
        let rest = self.strings.get(name_off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end])
    }

    /// The byte offset of `member` in struct `strukt` (the first complete one of that name),
    /// looking into anonymous structs and unions as C does.
    fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = (1..=self.starts.len() as u32)
            .find(|&id| {
                self.get(id).is_some_and(|t| {
                    t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == strukt
                })
            })
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let (bits, field_bits) =
            self.member_bits(id, member, 0)
                .ok_or_else(|| BtfError::NoMember {
                    strukt: strukt.to_owned(),
                    member: member.to_owned(),
                })?;
        if bits % 8 != 0 || field_bits != 0 {
            return Err(BtfError::BitField {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            });
        }
        u32::try_from(bits / 8).map_err(|_| BtfError::Malformed("member offset out of range"))
    }

    /// The bit offset of `member` in the struct or union `id`, and its size if it is a bit
    /// field (else 0); `depth` bounds the descent into anonymous members (a malformed blob could
    /// loop).
    fn member_bits(&self, id: u32, member: &str, depth: u32) -> Option<(u64, u32)> {
        let t = self.get(self.strip_modifiers(id)?)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 16 {
            return None;
        }
        (0..t.vlen).find_map(|i| {
            let at = t.entries + i * MEMBER_BYTES;
            let (name_off, ty, offset) = (
                u32_at(self.types, at)?,
                u32_at(self.types, at + 4)?,
                u32_at(self.types, at + 8)?,
            );
            // With kind_flag, the low 24 bits are the offset and the high 8 a bit field's size.
            let (bits, field_bits) = if t.kind_flag {
                (u64::from(offset & 0xff_ffff), offset >> 24)
            } else {
                (u64::from(offset), 0)
            };
            let name = self.name(name_off);
            if name == member {
                Some((bits, field_bits))
            } else if name.is_empty() {
                let (inner, field_bits) = self.member_bits(ty, member, depth + 1)?;
                Some((bits + inner, field_bits))
            } else {
                None
            }
        })
    }

    /// The argument types of raw tracepoint `event`, as C writes them (typedefs resolved): the
    /// prototype of the kernel's `btf_trace_<event>` typedef, a pointer to a function.
    fn raw_tracepoint_args(&self, event: &'static str) -> Result<Vec<String>, BtfError> {
        let typedef = format!("btf_trace_{event}");
        let proto = (1..=self.starts.len() as u32)
            .filter_map(|id| self.get(id))
            .find(|t| t.kind == KIND_TYPEDEF && self.name(t.name_off) == typedef)
            .and_then(|t| self.get(t.size_or_type))
            .filter(|ptr| ptr.kind == KIND_PTR)
            .and_then(|ptr| self.get(ptr.size_or_type))
            .filter(|proto| proto.kind == KIND_FUNC_PROTO)
            .ok_or(BtfError::NoTracepoint(event))?;
        let args = (0..proto.vlen).map(|i| {
            let ty = u32_at(self.types, proto.entries + i * 8 + 4)?;
            self.c_type(ty, 0)
        });
        args.collect::<Option<_>>().ok_or(BtfError::Malformed(
            "a tracepoint argument of no known type",
        ))
    }

    /// Type `id` as C writes it, for the kinds tracepoint arguments have (`depth` bounds a
    /// malformed chain of pointers).
    fn c_type(&self, id: u32, depth: u32) -> Option<String> {
        if id == 0 {
            return Some("void".into());
        }
        let t = self.get(self.strip_modifiers(id)?)?;
        match t.kind {
            KIND_INT => Some(self.name(t.name_off).into_owned()),
            KIND_STRUCT => Some(format!("struct {}", self.name(t.name_off))),
            KIND_UNION => Some(format!("union {}", self.name(t.name_off))),
            KIND_PTR if depth < 8 => {
                let pointee = self.c_type(t.size_or_type, depth + 1)?;
                Some(if pointee.ends_with('*') {
                    format!("{pointee}*")
                } else {
                    format!("{pointee} *")
                })
            }
            _ => None,
        }
    }

    /// `id` with typedefs and qualifiers taken off (an anonymous member's type may be either).
    fn strip_modifiers(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(id),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob of `types` (records as 32-bit words) and `strings`.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_len = (types.len() * 4) as u32;
        let header = [
            u32::from(MAGIC) | (1 << 16),
            HEADER_BYTES as u32,
            0,
            type_len,
            type_len,
            strings.len() as u32,
        ];
        let mut data: Vec<u8> = header.iter().flat_map(|w| w.to_le_bytes()).collect();
        data.extend(types.iter().flat_map(|w| w.to_le_bytes()));
        data.extend_from_slice(strings);
        data
    }

    fn info(kind: u32, vlen: u32, kind_flag: bool) -> u32 {
        (u32::from(kind_flag) << 31) | (kind << 24) | vlen
    }

    /// `int` (1); an anonymous union (2) of `{ int pid; int tgid; }` (3) and `long x`; the
    /// typedef `ids_t` (4) of it; `struct task_struct { int state; <anonymous ids_t at 64 bits>;
    /// int flags:3 at 160 bits }` (5), behind a forward declaration (6) that must be skipped.
    /// Then `signal_generate`'s prototype: `kernel_siginfo` (10), pointers (7, 9, 11, 12), the
    /// prototype (8) and the typedef `btf_trace_signal_generate` (13).
    const STRINGS: &[u8] = b"\0int\0pid\0tgid\0x\0ids_t\0task_struct\0state\0flags\0\
kernel_siginfo\0btf_trace_signal_generate\0";
    /// The type id of `int`.
    const INT: u32 = 1;
    const PID: u32 = 5;
    const TGID: u32 = 9;
    const X: u32 = 14;
    const IDS_T: u32 = 16;
    const TASK_STRUCT: u32 = 22;
    const STATE: u32 = 34;
    const FLAGS: u32 = 40;
    const KERNEL_SIGINFO: u32 = 46;
    const BTF_TRACE: u32 = 61;

    #[rustfmt::skip]
    fn task_struct() -> Vec<u32> {
        vec![
            // 1: int (name "int" at 1; size 4; encoding: signed, 32 bits).
            1, info(1, 0, false), 4, (1 << 24) | 32,
            // 2: union { struct { int pid; int tgid; }; long x; } (size 8).
            0, info(KIND_UNION, 2, false), 8,
            0, 3, 0,
            X, INT, 0,
            // 3: struct { int pid; int tgid; }.
            0, info(KIND_STRUCT, 2, false), 8,
            PID, INT, 0,
            TGID, INT, 32,
            // 4: typedef ids_t.
            IDS_T, info(KIND_TYPEDEF, 0, false), 2,
            // 5: struct task_struct, bit-field offsets (kind_flag).
            TASK_STRUCT, info(KIND_STRUCT, 3, true), 24,
            STATE, INT, 0,
            0, 4, 64,
            FLAGS, INT, (3 << 24) | 160,
            // 6: struct task_struct; (forward, FWD)
            TASK_STRUCT, info(7, 0, false), 0,
            // 7: struct task_struct *.
            0, info(KIND_PTR, 0, false), 5,
            // 8: void (void *, int, struct kernel_siginfo *, struct task_struct *, int, int).
            0, info(KIND_FUNC_PROTO, 6, false), 0,
            0, 9, 0, INT, 0, 11, 0, 7, 0, INT, 0, INT,
            // 9: void *.
            0, info(KIND_PTR, 0, false), 0,
            // 10: struct kernel_siginfo (its members do not matter here).
            KERNEL_SIGINFO, info(KIND_STRUCT, 0, false), 128,
            // 11: struct kernel_siginfo *.
            0, info(KIND_PTR, 0, false), 10,
            // 12: a pointer to the prototype, 13: its typedef.
            0, info(KIND_PTR, 0, false), 8,
            BTF_TRACE, info(KIND_TYPEDEF, 0, false), 12,
        ]
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_typedefs() {
        let data = blob(&task_struct(), STRINGS);
        assert_eq!(
            task_offsets_in(&data).unwrap(),
            TaskOffsets { pid: 8, tgid: 12 }
        );
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("task_struct", "state").unwrap(), 0);
        assert_eq!(btf.member_offset("task_struct", "x").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("task_struct", "flags"),
            Err(BtfError::BitField { .. }),
        ));
    }

    #[test]
    fn a_raw_tracepoint_of_other_arguments_is_refused() {
        let mut types = task_struct();
        // The prototype's task argument (its 4th) made an int.
        let proto = types
            .iter()
            .position(|&w| w == info(KIND_FUNC_PROTO, 6, false))
            .unwrap();
        types[proto + 2 + 2 * 3 + 1] = INT;
        assert_eq!(
            task_offsets_in(&blob(&types, STRINGS))
                .unwrap_err()
                .to_string(),
            "the BTF's raw tracepoint signal_generate takes (void *, int, struct kernel_siginfo *, \
             int, int, int), not (void *, int, struct kernel_siginfo *, struct task_struct *, \
             int, int)"
        );
        // No typedef of that name.
        let typedef = types.len() - 3;
        types[typedef] = TASK_STRUCT;
        assert_eq!(
            task_offsets_in(&blob(&types, STRINGS))
                .unwrap_err()
                .to_string(),
            "the BTF has no raw tracepoint signal_generate"
        );
    }

    #[test]
    fn missing_structs_and_members_are_named() {
        let data = blob(&task_struct(), STRINGS);
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            btf.member_offset("task_struct", "comm")
                .unwrap_err()
                .to_string(),
            "the BTF's struct task_struct has no member comm"
        );
        assert_eq!(
            btf.member_offset("mm_struct", "pgd")
                .unwrap_err()
                .to_string(),
            "the BTF has no struct mm_struct"
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let good = blob(&task_struct(), STRINGS);
        let message = |data: &[u8]| Btf::parse(data).err().map(|e| e.to_string());
        let no_magic = "the BTF is malformed: no BTF magic (0xeb9f, little-endian)";
        assert_eq!(message(b"").as_deref(), Some(no_magic));
        assert_eq!(
            message(b"\x9f\xeb").as_deref(),
            Some("the BTF is malformed: truncated header")
        );
        assert_eq!(message(&good[1..]).as_deref(), Some(no_magic));
        let short = "the BTF is malformed: shorter than its header says";
        assert_eq!(message(&good[..good.len() - 1]).as_deref(), Some(short));
        // A type record cut in the middle: the type section ends inside it.
        let mut cut = task_struct();
        cut.truncate(cut.len() - 1);
        let cut = blob(&cut, STRINGS);
        assert_eq!(
            message(&cut).as_deref(),
            Some("the BTF is malformed: truncated type")
        );
        // A kind this parser does not know.
        let unknown = blob(&[INT, info(31, 0, false), 4], STRINGS);
        assert_eq!(
            message(&unknown).as_deref(),
            Some("the BTF is malformed: unknown kind")
        );
    }

    /// The running kernel's BTF: `tgid` right after `pid` (`pid_t pid; pid_t tgid;` in every
    /// kernel since 2.6), both inside the struct.
    #[test]
    fn finds_task_struct_tgid_in_this_kernels_btf() {
        let data = match std::fs::read(VMLINUX) {
            Ok(data) => data,
            Err(err) => {
                println!("skipped: {VMLINUX} cannot be read ({err})");
                return;
            }
        };
        let btf = Btf::parse(&data).unwrap();
        let offsets = task_offsets_in(&data).unwrap();
        assert_eq!(offsets.tgid, offsets.pid + 4, "{offsets:?}");
        let size = (1..=btf.starts.len() as u32)
            .filter_map(|id| btf.get(id))
            .find(|t| t.kind == KIND_STRUCT && t.vlen > 0 && btf.name(t.name_off) == "task_struct")
            .map(|t| t.size_or_type)
            .unwrap();
        assert!(offsets.tgid + 4 <= size, "{offsets:?} in {size} bytes");
        assert_eq!(
            btf.raw_tracepoint_args(SIGNAL_GENERATE).unwrap(),
            SIGNAL_GENERATE_ARGS
        );
        // A member nested in an anonymous struct or union is found too (the signal code of
        // `struct kernel_siginfo`, inside its anonymous `__SIGINFO` struct).
        assert_eq!(btf.member_offset("kernel_siginfo", "si_code").unwrap(), 8);
    }
}
