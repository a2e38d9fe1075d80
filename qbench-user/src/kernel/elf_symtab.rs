//! Whether an ELF file defines a symbol, reading only what that takes: the ELF header, the
//! section headers, `.dynsym` with its strings (unless the Bloom filter of `.gnu.hash` rules the
//! symbol out, from one word of it) and, only when the symbol is not there, `.symtab` with its
//! strings. `--watch --all` asks this of every new executable and library a process
//! maps, so a 150 MB library costs the reads of its symbol tables, not of the whole file.
//!
//! The runtime's anchors are exported by libqbench.so (`.dynsym`); a program that links the
//! runtime statically, or the Rust crate, has them in `.symtab` only (an executable exports
//! nothing unless linked with `-rdynamic`). Both tables are searched as
//! [`super::symbols::TargetObjects`] searches them, so a file found here resolves there.

use std::{fs::File, os::unix::fs::OpenOptionsExt as _, path::Path};

use object::elf::{
    FileHeader32, FileHeader64, GnuHashHeader, SHT_DYNSYM, SHT_GNU_HASH, SHT_SYMTAB, gnu_hash,
};
use object::read::elf::{FileHeader, SectionHeader as _, SectionTable, Sym as _};
use object::read::{ReadCache, ReadRef, StringTable};
use object::{Endianness, SectionIndex, U32, U64};

/// Whether the ELF file at `path` defines `symbol`; false, silently, when it cannot be read or
/// is not ELF (a truncated file, a script, a device), as a file without it.
pub fn defines(path: &Path, symbol: &str) -> bool {
    // Non-blocking: a FIFO put where a mapped file was must not hang the rescan.
    let Ok(file) = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    // Reads each range asked for once, with one read: the file is never read whole.
    let cache = ReadCache::new(file);
    let symbol = symbol.as_bytes();
    defines_in::<FileHeader64<Endianness>, _>(&cache, symbol)
        .or_else(|_| defines_in::<FileHeader32<Endianness>, _>(&cache, symbol))
        .unwrap_or(false)
}

/// Whether the ELF `data` of class `Elf` defines `symbol`: in `.dynsym`, else in `.symtab`.
fn defines_in<'data, Elf, R>(data: R, symbol: &[u8]) -> object::read::Result<bool>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let exported = !ruled_out_by_gnu_hash(&sections, endian, data, symbol)
        && table_defines(&sections, endian, data, SHT_DYNSYM, symbol)?;
    Ok(exported || table_defines(&sections, endian, data, SHT_SYMTAB, symbol)?)
}

/// Whether `.gnu.hash` says `.dynsym` has no `symbol`: a bit of its Bloom filter for the
/// symbol's hash is clear (the test the dynamic linker makes first). Reads the table's header
/// and one word of the filter; false when there is no such table or it cannot be read.
fn ruled_out_by_gnu_hash<'data, Elf, R>(
    sections: &SectionTable<'data, Elf, R>,
    endian: Endianness,
    data: R,
    symbol: &[u8],
) -> bool
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let Some((offset, size)) = sections
        .iter()
        .find(|s| s.sh_type(endian) == SHT_GNU_HASH)
        .and_then(|table| table.file_range(endian))
    else {
        return false;
    };
    let Ok(header) = data.read_at::<GnuHashHeader<Endianness>>(offset) else {
        return false;
    };
    let word = std::mem::size_of::<Elf::Word>() as u64;
    let (bits, hash) = (word * 8, u64::from(gnu_hash(symbol)));
    // A power of two, as the linker makes it; a table otherwise is not trusted.
    let count = u64::from(header.bloom_count.get(endian));
    if !count.is_power_of_two() {
        return false;
    }
    let at = std::mem::size_of::<GnuHashHeader<Endianness>>() as u64
        + ((hash / bits) & (count - 1)) * word;
    if at + word > size {
        return false;
    }
    let filter = if word == 8 {
        data.read_at::<U64<Endianness>>(offset + at)
            .map(|w| w.get(endian))
    } else {
        data.read_at::<U32<Endianness>>(offset + at)
            .map(|w| u64::from(w.get(endian)))
    };
    let shift = u64::from(header.bloom_shift.get(endian));
    filter.is_ok_and(|f| f & (1 << (hash % bits)) == 0 || f & (1 << ((hash >> shift) % bits)) == 0)
}

/// Whether the symbol table of type `kind` (`SHT_DYNSYM` or `SHT_SYMTAB`; none is a table
/// without it) defines `symbol`. Reads the table and its string table, each with one read.
fn table_defines<'data, Elf, R>(
    sections: &SectionTable<'data, Elf, R>,
    endian: Elf::Endian,
    data: R,
    kind: u32,
    symbol: &[u8],
) -> object::read::Result<bool>
where
    Elf: FileHeader,
    R: ReadRef<'data>,
{
    let Some(table) = sections.iter().find(|s| s.sh_type(endian) == kind) else {
        return Ok(false);
    };
    let symbols: &[Elf::Sym] = table.data_as_array(endian, data)?;
    let link = SectionIndex(table.sh_link(endian).try_into().unwrap_or(usize::MAX));
    // The names whole, with one read, rather than one read each as a lazy table would.
    let names = sections.section(link)?.data(endian, data)?;
    // The name compared where it starts, without first finding where each name ends: most
    // differ at their first byte (half the time of a check of .symtab otherwise).
    let is_named = |sym: &Elf::Sym| {
        let start = usize::try_from(sym.st_name(endian)).unwrap_or(usize::MAX);
        names
            .get(start..)
            .and_then(|name| name.strip_prefix(symbol))
            .is_some_and(|rest| rest.first() == Some(&0))
    };
    let strings = StringTable::new(names, 0, names.len() as u64);
    Ok(symbols
        .iter()
        .any(|sym| is_named(sym) && sym.is_definition(endian, strings)))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A file in a fresh temporary directory, with these bytes.
    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("object");
        File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write the file");
        (dir, path)
    }

    /// The libc this test process maps.
    fn libc() -> std::path::PathBuf {
        crate::procfs::maps::mappings(std::process::id())
            .expect("own maps")
            .into_iter()
            .find(|m| m.path.contains("/libc.so"))
            .expect("libc mapped")
            .file
    }

    #[test]
    fn libc_defines_what_it_exports_and_an_importer_does_not() {
        assert!(defines(&libc(), "__errno_location"));
        assert!(!defines(&libc(), "qbench_probe_request"));
        // /bin/true imports `__errno_location` from libc: an import is not a definition.
        assert!(!defines(Path::new("/bin/true"), "__errno_location"));
    }

    #[test]
    fn the_bloom_filter_rules_out_no_exported_symbol_and_most_others() {
        use object::{Object as _, ObjectSymbol as _};
        let whole = std::fs::read(libc()).expect("read libc");
        let parsed = object::File::parse(&*whole).expect("libc is ELF");
        let header = FileHeader64::<Endianness>::parse(&*whole).expect("ELF header");
        let endian = header.endian().expect("endianness");
        let sections = header.sections(endian, &*whole).expect("section headers");
        let ruled_out = |name: &[u8]| ruled_out_by_gnu_hash(&sections, endian, &*whole, name);
        let exported: Vec<&[u8]> = parsed
            .dynamic_symbols()
            .filter(|sym| sym.is_definition())
            .filter_map(|sym| sym.name_bytes().ok())
            .collect();
        assert!(exported.len() > 1000, "{}", exported.len());
        assert!(exported.iter().all(|name| !ruled_out(name)));
        let made_up = (0..1000)
            .filter(|i| ruled_out(format!("no_such_function_{i}").as_bytes()))
            .count();
        assert!(made_up > 800, "{made_up} of 1000 ruled out");
    }

    #[test]
    fn a_file_that_is_not_whole_elf_defines_nothing() {
        let whole = std::fs::read(libc()).expect("read libc");
        // Cut through the section headers (at the end of the file), through the ELF header.
        for len in [whole.len() / 2, whole.len() - 100, 40, 0] {
            let (_dir, cut) = file_with(&whole[..len]);
            assert!(!defines(&cut, "read"), "cut at {len}");
        }
        let (_dir, script) = file_with(b"#!/bin/sh\nexit 0\n");
        assert!(!defines(&script, "read"));
        assert!(!defines(Path::new("/dev/null"), "read"));
        assert!(!defines(Path::new("/no/such/file"), "read"));
        assert!(!defines(Path::new("/proc/self"), "read"));
    }
}
