//! The target's address space as `/proc/PID/maps` shows it, grouped into the ELF objects it
//! maps, with each object's load bias (what turns a file address into a process address). The
//! unwinder registers these objects and `stack::data_symbol` names addresses with them.
//!
//! An object's file is opened through `/proc/PID/map_files/RANGE` (the very file mapped, even
//! when deleted or in another mount namespace), else through `/proc/PID/root/PATH`.

use std::{fs::File, ops::Range, os::unix::ffi::OsStringExt as _, path::PathBuf};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, ReadCache, SymbolKind};

/// One line of `/proc/PID/maps`: `start-end perms offset major:minor inode path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub range: Range<u64>,
    /// `r-xp` and the like.
    pub perms: String,
    /// Offset in the file of the first mapped byte.
    pub offset: u64,
    /// The device of the file, `(major << 32) | minor`.
    pub dev: u64,
    pub inode: u64,
    /// The file mapped (without the kernel's " (deleted)" mark), or a pseudo name such as
    /// `[stack]`, or empty for anonymous memory; for messages ([`crate::procfs::decode`]d).
    pub path: String,
    /// The same path as the process knows it, byte for byte (the kernel writes a newline in it
    /// as `\012`), to open the file by.
    pub file: PathBuf,
    /// The file was deleted (or replaced) after it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// Parses one line; `None` for a malformed one. The path is padded with spaces and may
    /// itself contain spaces, newlines (as `\012`) and bytes that are not UTF-8.
    pub fn parse(line: &[u8]) -> Option<Self> {
        let mut fields = line.splitn(6, |&b| b == b' ');
        let mut text = || std::str::from_utf8(fields.next()?).ok();
        let (start, end) = text()?.split_once('-')?;
        let perms = text()?.to_owned();
        let offset = u64::from_str_radix(text()?, 16).ok()?;
        let (major, minor) = text()?.split_once(':')?;
        let inode = text()?.parse().ok()?;
        let raw = fields.next().unwrap_or(b"");
        let raw = &raw[raw.iter().position(|&b| b != b' ').unwrap_or(raw.len())..];
        let (raw, deleted) = match raw.strip_suffix(b" (deleted)") {
            Some(raw) => (raw, true),
            None => (raw, false),
        };
        let dev =
            (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?;
        Some(Self {
            range: u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?,
            perms,
            offset,
            dev,
            inode,
            path: crate::procfs::decode(raw),
            file: PathBuf::from(std::ffi::OsString::from_vec(unescape_newlines(raw))),
            deleted,
        })
    }

    /// The name of this mapping under `/proc/PID/map_files/`.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.range.start, self.range.end)
    }

    /// Where to open the mapped file: through map_files for a deleted one (the very file), else
    /// by its path under the process's root (its own mount namespace).
    pub fn open_path(&self, pid: u32) -> PathBuf {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if self.deleted {
            proc.join("map_files").join(self.map_files_name())
        } else {
            let relative = self.file.strip_prefix("/").unwrap_or(&self.file);
            proc.join("root").join(relative)
        }
    }

    /// Whether a file backs this mapping (not the heap, the stack, the vDSO or anonymous memory).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// `\012` back to the newline the kernel escaped (the only character it escapes in a mapped path).
fn unescape_newlines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"\\012") {
            out.push(b'\n');
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// Every mapping of process `pid`, in address order.
pub fn read(pid: u32) -> std::io::Result<Vec<Mapping>> {
    let bytes = std::fs::read(format!("/proc/{pid}/maps"))?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .filter_map(Mapping::parse)
        .collect())
}

/// [`read`], or `None` when the maps cannot be read.
pub fn mappings(pid: u32) -> Option<Vec<Mapping>> {
    read(pid).ok()
}

/// The mapping that contains `address`.
pub fn mapping_of(mappings: &[Mapping], address: u64) -> Option<&Mapping> {
    // The kernel lists mappings in address order, without overlaps: a binary search, since a
    // process with thousands of threads has thousands of stacks mapped.
    let after = mappings.partition_point(|m| m.range.start <= address);
    after
        .checked_sub(1)
        .map(|i| &mappings[i])
        .filter(|m| m.range.contains(&address))
}

/// One file mapped by the process, with all its mappings.
#[derive(Debug, Clone)]
pub struct MappedObject {
    /// The path the process mapped it from (as seen in its own mount namespace).
    pub path: String,
    pub deleted: bool,
    /// Its file-backed mappings, in address order.
    pub mappings: Vec<Mapping>,
}

impl MappedObject {
    /// The file name, for frames and messages (`libc.so.6`).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// From the lowest to the highest address it maps.
    pub fn range(&self) -> Range<u64> {
        let start = self.mappings.first().map_or(0, |m| m.range.start);
        let end = self.mappings.last().map_or(0, |m| m.range.end);
        start..end
    }

    pub fn is_executable(&self) -> bool {
        self.mappings.iter().any(Mapping::is_executable)
    }

    /// Opens the mapped file: through map_files first (the exact file, deleted or in another
    /// mount namespace; needs CAP_SYS_ADMIN), else by its path under the process's root.
    pub fn open(&self, pid: u32) -> Option<File> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let mut candidates = Vec::with_capacity(2);
        if let Some(first) = self.mappings.first() {
            let range = format!("{:x}-{:x}", first.range.start, first.range.end);
            candidates.push(proc.join("map_files").join(range));
        }
        if let Some(first) = self.mappings.first().filter(|_| !self.deleted) {
            candidates.push(first.open_path(pid));
        }
        candidates
            .into_iter()
            .find_map(|path| File::open(path).ok())
    }

    /// The load bias: process address = file (virtual) address + bias. Found from a mapping
    /// whose file offset is where a PT_LOAD segment starts (page-aligned), so that PIE
    /// executables and shared libraries (bias = where they were loaded) and fixed-address
    /// executables (bias 0) are all handled alike.
    pub fn bias<'data>(&self, elf: &object::File<'data, &'data ReadCache<File>>) -> Option<u64> {
        const PAGE: u64 = 4096;
        let loads: Vec<(u64, u64)> = elf
            .segments()
            .map(|s| (s.file_range().0 & !(PAGE - 1), s.address() & !(PAGE - 1)))
            .collect();
        self.mappings.iter().find_map(|m| {
            let (_, vaddr) = loads.iter().find(|(offset, _)| *offset == m.offset)?;
            m.range.start.checked_sub(*vaddr)
        })
    }

    /// The highest process address of the object's memory image, its `.bss` included (which
    /// lies in anonymous memory after the file-backed mappings).
    pub fn image_end<'data>(
        &self,
        elf: &object::File<'data, &'data ReadCache<File>>,
        bias: u64,
    ) -> u64 {
        let end = elf
            .segments()
            .map(|s| s.address().saturating_add(s.size()))
            .max()
            .unwrap_or(0);
        bias.saturating_add(end).max(self.range().end)
    }
}

/// The file-backed objects in the mappings, each once, in address order. Mappings of one file
/// are grouped while they are adjacent in the map; a file mapped twice apart (rare: a data file
/// opened again) gives two objects, each with its own bias.
pub fn objects(mappings: &[Mapping]) -> Vec<MappedObject> {
    let mut objects: Vec<MappedObject> = Vec::new();
    for m in mappings.iter().filter(|m| m.is_file()) {
        match objects.last_mut() {
            // A new object starts at offset 0 even when it is the same file again.
            Some(last) if last.path == m.path && m.offset != 0 => last.mappings.push(m.clone()),
            _ => objects.push(MappedObject {
                path: m.path.clone(),
                deleted: m.deleted,
                mappings: vec![m.clone()],
            }),
        }
    }
    objects
}

/// The data symbol containing `address` among the objects of process `pid`, and the offset into
/// it (see `stack::data_symbol`).
pub fn data_symbol(pid: u32, objects: &[MappedObject], address: u64) -> Option<(String, u64)> {
    let object = data_object(objects, address)?;
    DataSymbols::load(pid, &objects[object])?.find(address)
}

/// The index of the object whose image starts last at or below `address`: the one whose data
/// holds it, if any does (its .bss may lie past its file-backed mappings, in anonymous memory).
pub fn data_object(objects: &[MappedObject], address: u64) -> Option<usize> {
    objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.range().start <= address)
        .max_by_key(|(_, o)| o.range().start)
        .map(|(i, _)| i)
}

/// The data symbols of one mapped object, read once to name many addresses.
#[derive(Debug, Clone)]
pub struct DataSymbols {
    bias: u64,
    image_end: u64,
    /// `.symtab` (which has the static, file-local data too) then `.dynsym` (which survives
    /// stripping): file address, size and name (None when not readable).
    symbols: Vec<(u64, u64, Option<String>)>,
}

impl DataSymbols {
    /// Reads the data symbols of `object`; None when its file cannot be read or is not ELF.
    pub fn load(pid: u32, object: &MappedObject) -> Option<Self> {
        let file = ReadCache::new(object.open(pid)?);
        let elf = object::File::parse(&file).ok()?;
        let bias = object.bias(&elf)?;
        let symbols = elf
            .symbols()
            .chain(elf.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Data && s.is_definition())
            .map(|s| (s.address(), s.size(), s.name().ok().map(str::to_owned)))
            .collect();
        Some(Self {
            bias,
            image_end: object.image_end(&elf, bias),
            symbols,
        })
    }

    /// The symbol containing process address `address`, and the offset into it.
    pub fn find(&self, address: u64) -> Option<(String, u64)> {
        if address >= self.image_end {
            return None;
        }
        let vaddr = address.checked_sub(self.bias)?;
        let (start, _, name) = self
            .symbols
            .iter()
            .find(|(start, size, _)| (*start..start.saturating_add(*size)).contains(&vaddr))?;
        Some((name.clone()?, vaddr - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0a0000000-55d0a0001000 r--p 00000000 fe:01 100                        /opt/app/target
55d0a0001000-55d0a0002000 r-xp 00001000 fe:01 100                        /opt/app/target
55d0a0003000-55d0a0004000 rw-p 00002000 fe:01 100                        /opt/app/target
55d0a0004000-55d0a0025000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000028000 r--p 00000000 fe:01 200                        /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000028000-7f000019d000 r-xp 00028000 fe:01 200                        /usr/lib/x86_64-linux-gnu/libc.so.6
7f00001a0000-7f00001a1000 rw-p 00000000 00:00 0 
7f00001b0000-7f00001b1000 r-xp 00001000 00:2a 7 /tmp/my lib.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]";

    /// The mappings of [`MAPS`].
    fn sample() -> Vec<Mapping> {
        MAPS.lines()
            .filter_map(|l| Mapping::parse(l.as_bytes()))
            .collect()
    }

    #[test]
    fn lines_with_files_pseudo_names_and_nothing() {
        let maps = sample();
        assert_eq!(maps.len(), 9);
        assert_eq!(
            maps[1],
            Mapping {
                range: 0x55d0_a000_1000..0x55d0_a000_2000,
                perms: "r-xp".into(),
                offset: 0x1000,
                dev: (0xfe << 32) | 1,
                inode: 100,
                path: "/opt/app/target".into(),
                file: "/opt/app/target".into(),
                deleted: false,
            }
        );
        assert!(maps[1].is_file() && maps[1].is_executable());
        assert!(!maps[0].is_executable());
        assert!(!maps[3].is_file(), "[heap]");
        assert_eq!(maps[6].path, "");
        assert!(!maps[6].is_file());
        assert_eq!(
            (maps[7].path.as_str(), maps[7].deleted),
            ("/tmp/my lib.so", true)
        );
        assert_eq!(
            mapping_of(&maps, 0x7ffd_0000_0010).map(|m| m.path.as_str()),
            Some("[stack]")
        );
        assert_eq!(mapping_of(&maps, 0x10), None);
        assert_eq!(Mapping::parse(b"garbage"), None);
        assert_eq!(Mapping::parse(b"zz-10 r--p 0 0:0 0"), None);
    }

    #[test]
    fn paths_with_newlines_spaces_and_bytes_that_are_not_utf8() {
        let line = b"400000-401000 r-xp 00000000 fe:01 77                         /tmp/a b\\012c/\xfflib.so (deleted)";
        let m = Mapping::parse(line).unwrap();
        assert_eq!(m.path, "/tmp/a b\\\\012c/\\xfflib.so");
        assert_eq!(
            m.file.as_os_str().as_encoded_bytes(),
            b"/tmp/a b\nc/\xfflib.so"
        );
        assert!(m.deleted && m.is_file());
        assert_eq!(m.map_files_name(), "400000-401000");
        assert_eq!(
            m.open_path(7),
            PathBuf::from("/proc/7/map_files/400000-401000")
        );
        let kept = Mapping {
            deleted: false,
            ..m
        };
        assert_eq!(
            kept.open_path(7).as_os_str().as_encoded_bytes(),
            b"/proc/7/root/tmp/a b\nc/\xfflib.so"
        );
    }

    #[test]
    fn objects_group_the_mappings_of_each_file() {
        let maps = sample();
        let objects = objects(&maps);
        let names: Vec<&str> = objects.iter().map(MappedObject::name).collect();
        assert_eq!(names, ["target", "libc.so.6", "my lib.so"]);
        assert_eq!(objects[0].mappings.len(), 3);
        assert_eq!(objects[0].range(), 0x55d0_a000_0000..0x55d0_a000_4000);
        assert!(objects[1].is_executable());
        assert!(objects[2].deleted);
    }

    #[test]
    fn bias_of_this_test_executable() {
        // This test binary is a PIE: its bias is where it was loaded, and a function's file
        // address plus the bias is the function's address.
        let maps = mappings(std::process::id()).expect("own maps");
        let here = bias_of_this_test_executable as *const () as u64;
        let object = objects(&maps)
            .into_iter()
            .find(|o| o.range().contains(&here))
            .expect("the test binary is mapped");
        let file = ReadCache::new(object.open(std::process::id()).expect("open own binary"));
        let elf = object::File::parse(&file).expect("ELF");
        let bias = object.bias(&elf).expect("bias");
        assert_eq!(bias % 4096, 0);
        assert!(object.range().start >= bias);
        assert!(object.image_end(&elf, bias) >= object.range().end);
    }
}
