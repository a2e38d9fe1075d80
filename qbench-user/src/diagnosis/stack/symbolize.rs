//! Names for code addresses of one process, from the memory map its [`StackReader`] already
//! read: each address goes to the ELF object mapped there, by file offset, so blazesym never
//! reads `/proc/PID/maps` again (it would for every stack, and a process with 10,000 threads
//! maps 20,000 regions). Each address is named once per reader: the threads of a process wait in
//! the same few places, so the stacks after the first cost lookups in a table.
//!
//! [`StackReader`]: super::StackReader

use std::collections::HashMap;

use blazesym::symbolize::{
    Input, Reason, Symbolized, Symbolizer,
    source::{Elf, Process, Source},
};

use crate::procfs::maps::{self, Mapping};

/// What one address is named, owned (blazesym's answer borrows the symbolizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Named {
    Symbol {
        function: String,
        /// From the start of the function to the address looked up.
        offset: u64,
        file: Option<String>,
        line: Option<u32>,
    },
    Unknown(Reason),
}

/// One address's name, and the error of the first way tried when that way failed.
#[derive(Debug, Clone)]
struct Lookup {
    named: Named,
    failure: Option<String>,
}

/// A symbolizer for one process and the names it gave.
pub(super) struct Symbols {
    pid: u32,
    symbolizer: Symbolizer,
    known: HashMap<u64, Lookup>,
}

impl Symbols {
    pub(super) fn new(pid: u32) -> Self {
        let symbolizer = Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(false)
            .enable_demangling(true)
            .build();
        Self {
            pid,
            symbolizer,
            known: HashMap::new(),
        }
    }

    /// One name per address (addresses of `mappings`, the process's map as read with them).
    /// One bad file (a debug file it cannot decompress, an object it may not open) must not cost
    /// the other frames their names, so each address that failed is retried by path instead of
    /// map_files (which needs CAP_SYS_ADMIN), then without debug info. Also says what failed,
    /// when something did and a frame stayed unnamed.
    pub(super) fn lookup(
        &mut self,
        mappings: &[Mapping],
        addresses: &[u64],
    ) -> (Vec<Named>, Option<String>) {
        let mut failure = None;
        let named: Vec<Named> = addresses
            .iter()
            .map(|&address| {
                let lookup = match self.known.get(&address) {
                    Some(lookup) => lookup,
                    None => {
                        let lookup = self.name(mappings, address);
                        self.known.entry(address).or_insert(lookup)
                    }
                };
                if failure.is_none() {
                    failure.clone_from(&lookup.failure);
                }
                lookup.named.clone()
            })
            .collect();
        // Without map_files, a target outside containers symbolizes all the same: no note then.
        let unnamed = named.iter().any(|n| matches!(n, Named::Unknown(_)));
        let note = failure
            .filter(|_| unnamed)
            .map(|err| format!("symbolizer: {err}"));
        (named, note)
    }

    /// Names `address` as blazesym names an address of a process, by what is mapped there.
    fn name(&self, mappings: &[Mapping], address: u64) -> Lookup {
        let unknown = |reason| Lookup {
            named: Named::Unknown(reason),
            failure: None,
        };
        let Some(mapping) = maps::mapping_of(mappings, address) else {
            return unknown(Reason::Unmapped);
        };
        let perms = mapping.perms.as_bytes();
        // blazesym looks only at readable or executable regions.
        if perms.first() != Some(&b'r') && perms.get(2) != Some(&b'x') {
            return unknown(Reason::Unmapped);
        }
        if mapping.path.starts_with('/') {
            return self.in_file(mapping, address);
        }
        match mapping.path.as_str() {
            "" => unknown(Reason::UnknownAddr),
            "[vdso]" => self.in_vdso(address),
            _ => unknown(Reason::Unsupported),
        }
    }

    /// An address in a mapped file: its file offset, looked up in the file through map_files
    /// with debug info; when that fails, by path, then without debug info.
    fn in_file(&self, mapping: &Mapping, address: u64) -> Lookup {
        let offset = address - mapping.range.start + mapping.offset;
        let map_files = format!("/proc/{}/map_files/{}", self.pid, mapping.map_files_name());
        let source = |path: &std::path::Path, debug_syms: bool| {
            let mut elf = Elf::new(path);
            elf.debug_syms = debug_syms;
            Source::Elf(elf)
        };
        let first = source(map_files.as_ref(), true);
        let err = match self
            .symbolizer
            .symbolize(&first, Input::FileOffset(&[offset]))
        {
            Ok(mut symbols) if symbols.len() == 1 => {
                return Lookup {
                    named: owned(symbols.remove(0)),
                    failure: None,
                };
            }
            Ok(_) => "no symbol returned".to_owned(),
            Err(err) => err.to_string(),
        };
        let retries = [
            source(map_files.as_ref(), true),
            source(&mapping.file, true),
            source(map_files.as_ref(), false),
            source(&mapping.file, false),
        ];
        let named = retries
            .iter()
            .find_map(|source| {
                self.symbolizer
                    .symbolize_single(source, Input::FileOffset(offset))
                    .ok()
            })
            .map_or(Named::Unknown(Reason::IgnoredError), owned);
        Lookup {
            named,
            failure: Some(err),
        }
    }

    /// An address in the vDSO, which only the process's memory holds: blazesym reads it there.
    fn in_vdso(&self, address: u64) -> Lookup {
        let mut process = Process::new(self.pid.into());
        process.perf_map = false;
        match self
            .symbolizer
            .symbolize_single(&Source::Process(process), Input::AbsAddr(address))
        {
            Ok(symbol) => Lookup {
                named: owned(symbol),
                failure: None,
            },
            Err(err) => Lookup {
                named: Named::Unknown(Reason::IgnoredError),
                failure: Some(err.to_string()),
            },
        }
    }
}

fn owned(symbol: Symbolized<'_>) -> Named {
    match symbol {
        Symbolized::Sym(sym) => Named::Symbol {
            function: sym.name.into_owned(),
            offset: sym.offset as u64,
            file: sym
                .code_info
                .as_ref()
                .map(|code| code.to_path().display().to_string()),
            line: sym.code_info.and_then(|code| code.line),
        },
        Symbolized::Unknown(reason) => Named::Unknown(reason),
    }
}
