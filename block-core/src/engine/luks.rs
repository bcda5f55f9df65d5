//! The LUKS (version 1) header, described as `qemu-img info` does.
//!
//! blk has no LUKS implementation: encrypted images are described, never
//! decrypted. The header is the same wherever it lives: in a qcow2 image
//! (the crypto header extension names its place) and at the start of a
//! raw LUKS image (QEMU's `luks` format), so both print the same
//! `encrypt` / format-specific description from [`describe_luks_header`].
//! Any data access without the secret fails with [`no_secret`], QEMU's
//! message.

use crate::engine::codec::get_be32;
use crate::error::{BlockError, ErrorKind, Result};
use crate::node::{BlockNode, BlockNodeExt};
use serde_json::{json, Value};

const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
/// Length of a LUKS version 1 header (key slots included).
pub const LUKS_HEADER_LEN: u64 = 592;
const SLOT_ACTIVE: u32 = 0x00ac_71f3;

/// The error of any data access to an encrypted image without its secret
/// (QEMU's message).
pub fn no_secret(op: &str) -> BlockError {
    BlockError::new(
        ErrorKind::InvalidInput,
        op,
        "Parameter 'encrypt.key-secret' is required for cipher",
    )
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// QEMU's name of a LUKS cipher with its key size in bytes.
pub fn cipher_alg(name: &str, key_bytes: u32) -> String {
    match name {
        "cast5" => "cast5-128".into(),
        "sm4" => "sm4".into(),
        "des3_ede" | "des3-ede" => "3des".into(),
        n => format!("{n}-{}", key_bytes * 8),
    }
}

/// Describes the LUKS header at `offset` of `file` (in an area of `len`
/// bytes) as qemu-img's info does: format, cipher, mode, hashes, payload
/// offset, master key iterations, UUID and the eight key slots. A short
/// area or a missing magic is a corruption error for operation `op`.
pub fn describe_luks_header(
    file: &dyn BlockNode,
    offset: u64,
    len: u64,
    op: &'static str,
) -> Result<Value> {
    let bad = |m: &str| BlockError::corrupt(op, format!("LUKS header: {m}"));
    if len < LUKS_HEADER_LEN {
        return Err(bad("crypto header area too small"));
    }
    let mut b = vec![0u8; LUKS_HEADER_LEN as usize];
    file.read_at(offset, &mut b)?;
    if &b[..6] != LUKS_MAGIC {
        return Err(bad("Volume is not in LUKS format"));
    }
    let cipher = cstr(&b[8..40]);
    let mode_spec = cstr(&b[40..72]);
    let hash = cstr(&b[72..104]);
    let payload = u64::from(get_be32(&b, 104)) * 512;
    let mut key_bytes = get_be32(&b, 108);
    let mk_iters = get_be32(&b, 164);
    let uuid = cstr(&b[168..208]);
    let (mode, ivgen) = mode_spec
        .split_once('-')
        .map_or((mode_spec.clone(), String::new()), |(m, i)| {
            (m.to_string(), i.to_string())
        });
    if mode == "xts" {
        key_bytes /= 2;
    }
    let mut e = json!({
        "format": "luks",
        "cipher-alg": cipher_alg(&cipher, key_bytes),
        "cipher-mode": mode,
        "hash-alg": hash,
        "detached-header": false,
        "payload-offset": payload,
        "master-key-iters": mk_iters,
        "uuid": uuid,
    });
    match ivgen.split_once(':') {
        Some((alg, ivhash)) => {
            e["ivgen-alg"] = json!(alg);
            e["ivgen-hash-alg"] = json!(ivhash);
        }
        None => e["ivgen-alg"] = json!(ivgen),
    }
    let slots: Vec<Value> = (0..8)
        .map(|i| {
            let o = 208 + i * 48;
            let active = get_be32(&b, o) == SLOT_ACTIVE;
            let key_offset = u64::from(get_be32(&b, o + 40)) * 512;
            if active {
                json!({
                    "active": true,
                    "iters": get_be32(&b, o + 4),
                    "key-offset": key_offset,
                    "stripes": get_be32(&b, o + 44),
                })
            } else {
                json!({"active": false, "key-offset": key_offset})
            }
        })
        .collect();
    e["slots"] = Value::Array(slots);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::codec::put_be32;
    use crate::testutil::MemFile;

    #[test]
    fn cipher_names() {
        assert_eq!(cipher_alg("aes", 32), "aes-256");
        assert_eq!(cipher_alg("twofish", 16), "twofish-128");
        assert_eq!(cipher_alg("cast5", 16), "cast5-128");
    }

    #[test]
    fn a_header_is_described() {
        let mut b = vec![0u8; 4096];
        b[512..518].copy_from_slice(LUKS_MAGIC);
        let h = &mut b[512..];
        h[8..11].copy_from_slice(b"aes");
        h[40..55].copy_from_slice(b"xts-plain64:sha");
        h[72..78].copy_from_slice(b"sha256");
        put_be32(h, 104, 4096);
        put_be32(h, 108, 64);
        put_be32(h, 164, 1000);
        h[168..172].copy_from_slice(b"uuid");
        put_be32(h, 208, SLOT_ACTIVE);
        put_be32(h, 212, 77);
        put_be32(h, 248, 8);
        put_be32(h, 252, 4000);
        let file = MemFile::with_data(&b);
        let e = describe_luks_header(&file, 512, 1024, "info").unwrap();
        assert_eq!(e["cipher-alg"], "aes-256");
        assert_eq!(e["cipher-mode"], "xts");
        assert_eq!(e["ivgen-alg"], "plain64");
        assert_eq!(e["ivgen-hash-alg"], "sha");
        assert_eq!(e["payload-offset"], 4096 * 512);
        assert_eq!(e["master-key-iters"], 1000);
        assert_eq!(e["uuid"], "uuid");
        assert_eq!(e["slots"][0]["iters"], 77);
        assert_eq!(e["slots"][0]["key-offset"], 8 * 512);
        assert_eq!(e["slots"][0]["stripes"], 4000);
        assert_eq!(e["slots"][1]["active"], false);
        let e = describe_luks_header(&file, 0, 1024, "info").unwrap_err();
        assert!(e.message.contains("not in LUKS format"), "{}", e.message);
        assert!(describe_luks_header(&file, 512, 100, "info").is_err());
    }
}
