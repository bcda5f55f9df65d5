//! Image formats blk has no driver for, recognised by their magic.
//!
//! Probing picks raw when no format driver scores. For a file that carries
//! the signature of a format QEMU knows (qcow version 1, VMDK,
//! VHDX, ...) that would be wrong twice over: blk would describe
//! metadata as guest data (convert copies the header out), and a guest
//! write to the first sector would overwrite the header. The open is
//! refused instead; naming a format (`-f raw`) still opens it as raw.

use block_core::ProbeInput;

/// A format recognised by magic: the name QEMU gives it and a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignFormat {
    /// QEMU's driver name (`qcow`, `vmdk`, ...).
    pub name: &'static str,
    /// What the signature says, for the error message.
    pub what: &'static str,
}

const QCOW_MAGIC: &[u8] = b"QFI\xfb";

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.len() >= off + magic.len() && &buf[off..off + magic.len()] == magic
}

/// The format whose signature `input` carries, among those QEMU probes and
/// blk has no driver for; `None` when nothing matches.
pub fn detect(input: &ProbeInput<'_>) -> Option<ForeignFormat> {
    let h = input.head;
    let t = input.tail;
    let f = |name, what| Some(ForeignFormat { name, what });
    if at(h, 0, QCOW_MAGIC) && h.len() >= 8 {
        let version = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if version == 1 {
            return f("qcow", "qcow (version 1)");
        }
        return None;
    }
    if at(h, 0, b"COWD") {
        return f("vmdk", "VMDK version 3 (COWD)");
    }
    if at(h, 0, b"vhdxfile") {
        return f("vhdx", "VHDX");
    }
    if at(h, 0, b"LUKS\xba\xbe") {
        return f("luks", "LUKS");
    }
    if at(h, 0, b"Bochs Virtual HD Image") {
        return f("bochs", "Bochs");
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
        assert_eq!(probe(b"QFI\xfb\0\0\0\x01rest"), Some("qcow"));
        assert_eq!(probe(b"QFI\xfb\0\0\0\x03rest"), None);
        // blk has a qed driver: its images are not refused.
        assert_eq!(probe(b"QED\0rest"), None);
        assert_eq!(probe(b"KDMV\x01\0\0\0"), None);
        assert_eq!(probe(b"vhdxfile"), Some("vhdx"));
        // Nor vpc, vdi or parallels images.
        assert_eq!(probe(b"conectix"), None);
        assert_eq!(probe(&[0u8; 512]), None);
        assert_eq!(probe(b""), None);
    }
}
