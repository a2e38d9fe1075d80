//! User stacks of a blocked thread, taken from outside without stopping it, and the names of the
//! data its futexes live in.
//!
//! Debian's glibc has no frame pointers, so the kernel's frame-pointer stacks lose the frames
//! between the syscall and its caller (Debian's glibc has no frame pointers). Instead: `/proc/PID/task/TID/syscall` gives a
//! blocked thread's user SP and PC, `/proc/PID/mem` its stack, and the framehop crate unwinds it
//! with the DWARF CFI of each mapped object's `.eh_frame`. blazesym then names every frame (ELF
//! symbols, and file:line from DWARF where debug info exists, the distribution's detached debug
//! files included), opening the objects through `/proc/PID/map_files` so that a target in a
//! container symbolizes with its own files.
//!
//! Nothing here fails: what could not be had is said in `Stack::degraded`.

mod symbolize;
mod window;

use std::{cell::RefCell, collections::HashMap, fs::File, path::Path};

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{Object as _, ObjectSection as _, ReadCache};

use self::symbolize::{Named, Symbols};
use self::window::StackWindow;
use crate::diagnosis::memory::Memory;
use crate::procfs::maps::{self, DataSymbols, MappedObject, Mapping};
use crate::procfs::parse_registers as registers;

/// How far above SP the stack is read page by page, as the unwinder needs it: enough for deep C
/// stacks; a frame beyond it is read word by word.
const STACK_BYTES: u64 = 64 * 1024;
/// A bound on the frames of one stack, against loops in corrupt stacks.
const MAX_FRAMES: usize = 128;

/// One frame of a user stack, innermost first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The PC for the innermost frame, the return address for the others.
    pub address: u64,
    pub function: Option<String>,
    /// From the start of the function to `address`.
    pub offset: Option<u64>,
    /// The source file, as the debug info names it (often a path).
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The file name of the mapped object (`libc.so.6`), or a pseudo name (`[vdso]`).
    pub object: Option<String>,
}

/// A thread's user stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack {
    pub frames: Vec<Frame>,
    /// One line saying why the stack is short or unsymbolized; `None` when it is complete.
    pub degraded: Option<String>,
}

/// The stacks of one process's threads: the objects' unwind info is read, and each code address
/// named, once for all of them. [`StackReader::refresh`] keeps all that for a later look at the
/// same process, as long as it maps the same files.
pub struct StackReader {
    pid: u32,
    mappings: Vec<Mapping>,
    objects: Vec<MappedObject>,
    unwinder: UnwinderX86_64<Vec<u8>>,
    /// framehop's cache of unwind rules by address, valid as long as the modules are.
    unwind_cache: CacheX86_64,
    memory: Option<Memory>,
    symbols: Symbols,
    /// Data symbols by object (read on first use) and the names found, by address.
    data: RefCell<DataCache>,
    /// Notes about the process that concern every stack (no maps, no memory).
    notes: Vec<String>,
}

#[derive(Debug, Default)]
struct DataCache {
    objects: HashMap<usize, Option<DataSymbols>>,
    named: HashMap<u64, Option<(String, u64)>>,
}

impl StackReader {
    /// Reads process `pid`'s memory map and the unwind info of the code it maps now (a library
    /// `dlopen`ed later is not known to this reader until [`refresh`](Self::refresh)).
    pub fn new(pid: u32) -> Self {
        let mappings = maps::mappings(pid);
        Self::with_mappings(pid, mappings)
    }

    fn with_mappings(pid: u32, mappings: Option<Vec<Mapping>>) -> Self {
        let mut notes = Vec::new();
        let mappings = mappings.unwrap_or_else(|| {
            notes.push(format!("/proc/{pid}/maps is not readable"));
            Vec::new()
        });
        let objects = maps::objects(&mappings);
        let mut unwinder = UnwinderX86_64::new();
        let mut no_cfi = Vec::new();
        for object in objects.iter().filter(|o| o.is_executable()) {
            match unwind_module(pid, object) {
                Some(module) => unwinder.add_module(module),
                None => no_cfi.push(object.name().to_owned()),
            }
        }
        if !no_cfi.is_empty() {
            notes.push(format!("no unwind info for {}", no_cfi.join(", ")));
        }
        let memory = Memory::open(pid);
        if memory.is_none() {
            notes.push(format!("/proc/{pid}/mem is not readable"));
        }
        Self {
            pid,
            mappings,
            objects,
            unwinder,
            unwind_cache: CacheX86_64::new(),
            memory,
            symbols: Symbols::new(pid),
            data: RefCell::default(),
            notes,
        }
    }

    /// Reads the memory map again, for stacks taken later. What was learnt about the code stays
    /// while the process maps the same files at the same places (threads come and go, the heap
    /// grows: none of that changes a name); otherwise the reader starts over.
    pub fn refresh(&mut self) {
        let mappings = maps::mappings(self.pid);
        // Opened again: a process with the pid of one gone (and the same map, without address
        // randomization) has its own memory.
        let memory = Memory::open(self.pid);
        match (mappings, memory) {
            (Some(mappings), Some(memory))
                if self.memory.is_some()
                    && !self.mappings.is_empty()
                    && same_code(&self.mappings, &mappings) =>
            {
                self.mappings = mappings;
                self.memory = Some(memory);
            }
            (mappings, _) => *self = Self::with_mappings(self.pid, mappings),
        }
    }

    /// The user stack of thread `tid`, as much of it as could be had.
    pub fn stack(&mut self, tid: u32) -> Stack {
        let path = format!("/proc/{}/task/{tid}/syscall", self.pid);
        self.stack_from(tid, std::fs::read_to_string(path))
    }

    /// The user stack of thread `tid` from its `/proc/PID/task/TID/syscall` as just read (for a
    /// caller that read it already).
    pub fn stack_from(&mut self, tid: u32, syscall: std::io::Result<String>) -> Stack {
        let registers = match syscall {
            Ok(text) => registers(&text),
            Err(err) => Err(format!("/proc/{}/task/{tid}/syscall: {err}", self.pid)),
        };
        self.stack_at(registers)
    }

    /// The user stack of a thread blocked with stack pointer `sp` and program counter `pc`
    /// (`registers`, or why they could not be had), as [`crate::procfs::ProcThread`] has them.
    pub fn stack_at(&mut self, registers: Result<(u64, u64), String>) -> Stack {
        let mut notes = self.notes.clone();
        let (sp, pc) = match registers {
            Ok(registers) => registers,
            Err(why) => {
                notes.insert(0, why);
                return Stack {
                    frames: Vec::new(),
                    degraded: Some(notes.join("; ")),
                };
            }
        };
        let mut frames = self.unwind(sp, pc, &mut notes);
        self.symbolize(&mut frames, &mut notes);
        Stack {
            frames,
            degraded: (!notes.is_empty()).then(|| notes.join("; ")),
        }
    }

    /// The return addresses from PC up, as frames with only their address and object.
    fn unwind(&mut self, sp: u64, pc: u64, notes: &mut Vec<String>) -> Vec<Frame> {
        let stack_end = maps::mapping_of(&self.mappings, sp)
            .map_or(sp + STACK_BYTES, |m| m.range.end.min(sp + STACK_BYTES));
        let mut stack = StackWindow::new(self.memory.as_ref(), sp, stack_end);
        if !stack.readable() {
            notes.push(format!("stack memory at SP {sp:#x} is not readable"));
        }
        let mut read_stack = |address: u64| stack.word(address).ok_or(());
        // RBP is not known from outside; CFI unwinding needs it only in functions that keep
        // their frame in RBP, and then after it was saved on the stack, where it is found.
        let regs = UnwindRegsX86_64::new(pc, sp, 0);
        let mut iter = self
            .unwinder
            .iter_frames(pc, regs, &mut self.unwind_cache, &mut read_stack);
        let mut frames = Vec::new();
        loop {
            let address = match iter.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => {
                    notes.push(format!(
                        "unwinding stopped after {} frames: {err}",
                        frames.len()
                    ));
                    break;
                }
            };
            let address = match address {
                FrameAddress::InstructionPointer(pc) => pc,
                FrameAddress::ReturnAddress(ra) => ra.get(),
            };
            let mapping = maps::mapping_of(&self.mappings, address);
            // A return address outside code is what the unwinder guessed after losing track.
            if !frames.is_empty() && !mapping.is_some_and(Mapping::is_executable) {
                notes.push(format!(
                    "unwinding stopped after {} frames: {address:#x} is not code",
                    frames.len()
                ));
                break;
            }
            if frames.len() == MAX_FRAMES {
                notes.push(format!("stack cut at {MAX_FRAMES} frames"));
                break;
            }
            frames.push(Frame {
                address,
                object: mapping.map(object_name),
                ..Frame::default()
            });
        }
        frames
    }

    /// Names the frames; says which objects left frames unnamed and why.
    fn symbolize(&mut self, frames: &mut [Frame], notes: &mut Vec<String>) {
        // A return address is the instruction after the call: the call itself is one byte back,
        // and that is the line to show (the next one may be another line, or another function).
        let lookups: Vec<u64> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| if i == 0 { f.address } else { f.address - 1 })
            .collect();
        if lookups.is_empty() {
            return;
        }
        let (symbols, failure) = self.symbols.lookup(&self.mappings, &lookups);
        if let Some(failure) = failure {
            notes.push(failure);
        }
        let mut unnamed: Vec<String> = Vec::new();
        for (i, (frame, symbol)) in frames.iter_mut().zip(symbols).enumerate() {
            match symbol {
                Named::Symbol {
                    function,
                    offset,
                    file,
                    line,
                } => {
                    frame.function = Some(function);
                    frame.offset = Some(offset + u64::from(i > 0));
                    if file.is_some() {
                        frame.file = file;
                        frame.line = line;
                    }
                }
                Named::Unknown(reason) => {
                    let object = frame.object.as_deref().unwrap_or("no object");
                    let why = format!("{object}: {reason}");
                    if !unnamed.contains(&why) {
                        unnamed.push(why);
                    }
                }
            }
        }
        if !unnamed.is_empty() {
            let count = frames.iter().filter(|f| f.function.is_none()).count();
            notes.push(format!(
                "{count} of {} frames unnamed ({})",
                frames.len(),
                unnamed.join(", ")
            ));
        }
    }

    /// The data symbol (a global `pthread_cond_t`, say) containing `address`, and the offset
    /// into it.
    pub fn data_symbol(&self, address: u64) -> Option<(String, u64)> {
        let mut data = self.data.borrow_mut();
        if let Some(named) = data.named.get(&address) {
            return named.clone();
        }
        let named = maps::data_object(&self.objects, address).and_then(|i| {
            data.objects
                .entry(i)
                .or_insert_with(|| DataSymbols::load(self.pid, &self.objects[i]))
                .as_ref()?
                .find(address)
        });
        data.named.insert(address, named.clone());
        named
    }

    /// The process's memory, when readable (for the diagnosis's other reads).
    pub fn memory(&self) -> Option<&Memory> {
        self.memory.as_ref()
    }
}

impl std::fmt::Debug for StackReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackReader")
            .field("pid", &self.pid)
            .field("objects", &self.objects.len())
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

/// The user stack of thread `tid` of process `pid` (see [`StackReader`] for several threads).
pub fn user_stack(pid: u32, tid: u32) -> Stack {
    StackReader::new(pid).stack(tid)
}

/// The data symbol containing `address` in process `pid`, and the offset into it:
/// `("queue_nonempty", 40)` for a futex inside a global `pthread_cond_t queue_nonempty`.
pub fn data_symbol(pid: u32, address: u64) -> Option<(String, u64)> {
    maps::data_symbol(pid, &maps::objects(&maps::mappings(pid)?), address)
}

/// A frame for people: `pthread_cond_wait+0x1a (libc.so.6)`, `wait_for_work (situations.c:88)`,
/// `0x7f12a3c4d5e6 (libc.so.6)`.
pub fn format_frame(frame: &Frame) -> String {
    let place = match (&frame.file, frame.line) {
        (Some(file), line) => {
            let name = Path::new(file)
                .file_name()
                .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
            match line {
                Some(line) => format!("{name}:{line}"),
                None => name,
            }
        }
        (None, _) => frame.object.clone().unwrap_or_default(),
    };
    let what = match (&frame.function, frame.offset) {
        // With a line, the offset says nothing more.
        (Some(function), _) if frame.line.is_some() => function.clone(),
        (Some(function), Some(offset)) if offset > 0 => format!("{function}+{offset:#x}"),
        (Some(function), _) => function.clone(),
        (None, _) => format!("{:#x}", frame.address),
    };
    if place.is_empty() {
        what
    } else {
        format!("{what} ({place})")
    }
}

/// Whether two memory maps of a process map the same files at the same places (and the same
/// vDSO): then every code address names the same function in both.
fn same_code(a: &[Mapping], b: &[Mapping]) -> bool {
    let code = |m: &&Mapping| m.is_file() || m.path == "[vdso]";
    a.iter().filter(code).eq(b.iter().filter(code))
}

/// The mapped file's name, or the mapping's pseudo name (`[vdso]`).
fn object_name(mapping: &Mapping) -> String {
    let name = mapping.path.rsplit('/').next().unwrap_or(&mapping.path);
    if name.is_empty() {
        "anonymous memory".to_owned()
    } else {
        name.to_owned()
    }
}

/// The unwinder's view of one object: where it is and its `.eh_frame`. Only the sections the
/// unwinder uses are read (through a read cache), not the whole file.
fn unwind_module(pid: u32, object: &MappedObject) -> Option<Module<Vec<u8>>> {
    let file: ReadCache<File> = ReadCache::new(object.open(pid)?);
    let elf = object::File::parse(&file).ok()?;
    let bias = object.bias(&elf)?;
    let range = |name: &str| {
        let s = elf.section_by_name(name)?;
        Some(s.address()..s.address() + s.size())
    };
    let data = |name: &str| Some(elf.section_by_name(name)?.data().ok()?.to_vec());
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: range(".text"),
        got_svma: range(".got"),
        eh_frame_svma: range(".eh_frame"),
        eh_frame: Some(data(".eh_frame")?),
        eh_frame_hdr_svma: range(".eh_frame_hdr"),
        eh_frame_hdr: data(".eh_frame_hdr"),
        ..ExplicitModuleSectionInfo::default()
    };
    Some(Module::new(object.path.clone(), object.range(), bias, info))
}

#[cfg(test)]
mod tests;
