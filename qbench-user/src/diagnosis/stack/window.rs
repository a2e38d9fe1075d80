//! A blocked thread's stack as the unwinder reads it: a page of `/proc/PID/mem` at a time, when
//! a word in it is first asked for. A wait a few frames deep touches one or two pages, so a
//! thousand stacks cost a thousand small reads rather than a thousand reads of the whole window.

use crate::diagnosis::memory::Memory;

const PAGE: u64 = 4096;

/// The stack from SP to the end of the window, read on demand.
pub(super) struct StackWindow<'m> {
    memory: Option<&'m Memory>,
    window: std::ops::Range<u64>,
    /// Pieces read so far: the range asked for and the bytes read (fewer where memory ends).
    pieces: Vec<(std::ops::Range<u64>, Vec<u8>)>,
}

impl<'m> StackWindow<'m> {
    /// The stack from `sp` up to `end`; its first page is read now.
    pub(super) fn new(memory: Option<&'m Memory>, sp: u64, end: u64) -> Self {
        let mut window = Self {
            memory,
            window: sp..end.max(sp),
            pieces: Vec::new(),
        };
        window.piece_at(sp);
        window
    }

    /// Whether anything at SP could be read.
    pub(super) fn readable(&self) -> bool {
        self.pieces
            .first()
            .is_some_and(|(_, bytes)| !bytes.is_empty())
    }

    /// The word at `address`: from the pieces read within the window, else read alone.
    pub(super) fn word(&mut self, address: u64) -> Option<u64> {
        if self.window.contains(&address)
            && let Some(word) = self
                .piece_at(address)
                .and_then(|bytes| word_in(bytes, address))
        {
            return Some(word);
        }
        self.memory?.read_u64(address)
    }

    /// The piece of the window holding `address` (read now if it was not), as its start and bytes.
    fn piece_at(&mut self, address: u64) -> Option<(u64, &[u8])> {
        let found = self
            .pieces
            .iter()
            .position(|(asked, _)| asked.contains(&address));
        let index = match found {
            Some(index) => index,
            None => {
                let memory = self.memory?;
                if !self.window.contains(&address) {
                    return None;
                }
                // From the address (SP, or the page a word is in) to the next page boundary.
                let start = if address == self.window.start {
                    address
                } else {
                    (address & !(PAGE - 1)).max(self.window.start)
                };
                let end = ((start | (PAGE - 1)) + 1).min(self.window.end);
                let len = usize::try_from(end - start).ok()?;
                self.pieces
                    .push((start..end, memory.read_prefix(start, len)));
                self.pieces.len() - 1
            }
        };
        let (asked, bytes) = &self.pieces[index];
        Some((asked.start, bytes.as_slice()))
    }
}

/// The native-endian word at `address` in the piece `(start, bytes)`, if it lies wholly inside.
fn word_in((start, bytes): (u64, &[u8]), address: u64) -> Option<u64> {
    let at = usize::try_from(address.checked_sub(start)?).ok()?;
    let word = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(word.try_into().ok()?))
}
