//! Just enough ELF reading to check the things the build cares about: the Xen PVH entry
//! note QEMU needs to boot a `vmlinux` with `-kernel`, and whether the daemon binary needs
//! a dynamic loader (it cannot, as `/init` of an initramfs holding nothing else).
//!
//! Only the file header and program headers are read; every access is bounds-checked, so
//! any input gives an answer rather than a panic.

/// ELF magic.
pub const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// A program header, reduced to what is used here.
#[derive(Debug, Clone, Copy)]
struct ProgramHeader {
    kind: u32,
    offset: u64,
    file_size: u64,
    align: u64,
}

/// Whether `elf` carries the Xen PVH entry note (`XEN_ELFNOTE_PHYS32_ENTRY`, owner `"Xen"`)
/// in a `PT_NOTE` segment, which is where QEMU looks for it. Anything that is not a
/// well-formed little-endian ELF file gives `false`.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    program_headers(elf)
        .into_iter()
        .flatten()
        .filter(|ph| ph.kind == PT_NOTE)
        .any(|ph| segment_has_note(elf, &ph, b"Xen", XEN_ELFNOTE_PHYS32_ENTRY))
}

/// Whether `elf` names a program interpreter (`PT_INTERP`), i.e. is dynamically linked.
/// `None` when `elf` is not a little-endian ELF file. Static and static-pie binaries give
/// `Some(false)`.
pub fn needs_interpreter(elf: &[u8]) -> Option<bool> {
    program_headers(elf).map(|phs| phs.iter().any(|ph| ph.kind == PT_INTERP))
}

/// Reads the program header table; `None` if `elf` is not a little-endian ELF file or the
/// table lies outside it. Only the bytes present are needed: a prefix of the file is
/// enough when it contains the header table.
fn program_headers(elf: &[u8]) -> Option<Vec<ProgramHeader>> {
    if elf.get(..4)? != ELF_MAGIC || *elf.get(5)? != 1 {
        return None;
    }
    let is_64 = match *elf.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (phoff, entsize, count) = if is_64 {
        (
            read_u64(elf, 0x20)?,
            read_u16(elf, 0x36)?,
            read_u16(elf, 0x38)?,
        )
    } else {
        (
            u64::from(read_u32(elf, 0x1c)?),
            read_u16(elf, 0x2a)?,
            read_u16(elf, 0x2c)?,
        )
    };
    let min_entsize = if is_64 { 56 } else { 32 };
    if usize::from(entsize) < min_entsize {
        return None;
    }
    let mut headers = Vec::with_capacity(usize::from(count));
    for i in 0..usize::from(count) {
        let base = usize::try_from(phoff)
            .ok()?
            .checked_add(i.checked_mul(usize::from(entsize))?)?;
        let header = if is_64 {
            ProgramHeader {
                kind: read_u32(elf, base)?,
                offset: read_u64(elf, base + 8)?,
                file_size: read_u64(elf, base + 32)?,
                align: read_u64(elf, base + 48)?,
            }
        } else {
            ProgramHeader {
                kind: read_u32(elf, base)?,
                offset: u64::from(read_u32(elf, base + 4)?),
                file_size: u64::from(read_u32(elf, base + 16)?),
                align: u64::from(read_u32(elf, base + 28)?),
            }
        };
        headers.push(header);
    }
    Some(headers)
}

/// Walks the notes of one `PT_NOTE` segment looking for owner `name` and type `kind`.
fn segment_has_note(elf: &[u8], ph: &ProgramHeader, name: &[u8], kind: u32) -> bool {
    let Some(segment) = usize::try_from(ph.offset)
        .ok()
        .zip(usize::try_from(ph.file_size).ok())
        .and_then(|(start, len)| elf.get(start..start.checked_add(len)?))
    else {
        return false;
    };
    let align = if ph.align == 8 { 8 } else { 4 };
    let mut pos = 0usize;
    while let (Some(name_size), Some(desc_size), Some(note_type)) = (
        read_u32(segment, pos),
        read_u32(segment, pos + 4),
        read_u32(segment, pos + 8),
    ) {
        let name_start = pos + 12;
        let Some(name_end) = name_start.checked_add(name_size as usize) else {
            return false;
        };
        let owner = match segment.get(name_start..name_end) {
            Some(owner) => owner.strip_suffix(b"\0").unwrap_or(owner),
            None => return false,
        };
        if note_type == kind && owner == name {
            return true;
        }
        let Some(next) = align_up(name_end, align)
            .checked_add(desc_size as usize)
            .map(|end| align_up(end, align))
        else {
            return false;
        };
        if next <= pos {
            return false;
        }
        pos = next;
    }
    false
}

fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align).saturating_mul(align)
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        elf[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        elf[ph + 8..ph + 16].copy_from_slice(&(120u64).to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf[ph + 48..ph + 56].copy_from_slice(&4u64.to_le_bytes());
        elf.extend_from_slice(notes);
        elf
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.push(0);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n.extend_from_slice(desc);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n
    }

    #[test]
    fn finds_the_pvh_note_after_others() {
        let mut notes = note(b"GNU", 3, &[1, 2, 3, 4, 5]);
        notes.extend(note(b"Xen", 6, b"linux\0"));
        assert!(!has_pvh_note(&elf_with_notes(&notes)));
        notes.extend(note(b"Xen", 18, &0x0100_0000u32.to_le_bytes()));
        assert!(has_pvh_note(&elf_with_notes(&notes)));
        assert_eq!(needs_interpreter(&elf_with_notes(&notes)), Some(false));
    }

    #[test]
    fn garbage_is_not_pvh() {
        assert!(!has_pvh_note(b""));
        assert!(!has_pvh_note(b"\x7fELF\x02\x01"));
        let mut elf = elf_with_notes(&note(b"Xen", 18, &[0; 4]));
        // Point the segment past the end of the file.
        elf[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!has_pvh_note(&elf));
        assert_eq!(needs_interpreter(b"#!/bin/sh\n"), None);
    }
}
