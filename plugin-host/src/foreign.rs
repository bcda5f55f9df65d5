//! Image formats blk has no driver for, recognised by their magic.
//!
//! Probing picks raw when no format driver scores. For a file that carries
//! the signature of a format QEMU knows (VMDK version 3, LUKS, ...) that
//! would be wrong twice over: blk would describe
//! metadata as guest data (convert copies the header out), and a guest
//! write to the first sector would overwrite the header. The open is
//! refused instead; naming a format (`-f raw`) still opens it as raw.

use block_core::ProbeInput;

/// A format recognised by magic: the name QEMU gives it and a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignFormat {
    /// QEMU's driver name (`vmdk`, `vhdx`, ...).
    pub name: &'static str,
    /// What the signature says, for the error message.
    pub what: &'static str,
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.len() >= off + magic.len() && &buf[off..off + magic.len()] == magic
}

/// The format whose signature `input` carries, among those QEMU probes and
/// blk has no driver for; `None` when nothing matches.
pub fn detect(input: &ProbeInput<'_>) -> Option<ForeignFormat> {
    let h = input.head;
    let t = input.tail;
    let f = |name, what| Some(ForeignFormat { name, what });
    if at(h, 0, b"COWD") {
        return f("vmdk", "VMDK version 3 (COWD)");
    }
    if at(h, 0, b"LUKS\xba\xbe") {
        return f("luks", "LUKS");
    }
    if at(h, 0, b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop") {
        return f("cloop", "cloop");
    }
    if input.file_size >= 512 && at(t, t.len().saturating_sub(512), b"koly") {
        return f("dmg", "DMG");
    }
    None
}

/// The message of an open refused because of `fmt`.
pub fn refusal(fmt: &ForeignFormat) -> String {
    format!(
        "blk has no driver for {} images (QEMU's '{}' format); refusing to open it as raw (name the format with -f raw to read the file as raw data)",
        fmt.what, fmt.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(head: &[u8]) -> Option<&'static str> {
        detect(&ProbeInput {
            head,
            tail: &[],
            file_size: head.len() as u64,
            filename: "x",
        })
        .map(|f| f.name)
    }

    #[test]
    fn signatures() {
        // blk has qcow, qed, vmdk and vhdx drivers: their images are not
        // refused.
        assert_eq!(probe(b"QFI\xfb\0\0\0\x01rest"), None);
        assert_eq!(probe(b"QED\0rest"), None);
        assert_eq!(probe(b"KDMV\x01\0\0\0"), None);
        assert_eq!(probe(b"vhdxfile"), None);
        // VMDK version 3 and LUKS are.
        assert_eq!(probe(b"COWD\x01\0\0\0"), Some("vmdk"));
        assert_eq!(probe(b"LUKS\xba\xberest"), Some("luks"));
        // Nor vpc, vdi or parallels images.
        assert_eq!(probe(b"conectix"), None);
        assert_eq!(probe(&[0u8; 512]), None);
        assert_eq!(probe(b""), None);
    }
}
