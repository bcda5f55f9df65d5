//! Encrypted qcow2 images: described, never decrypted.
//!
//! blk has no LUKS or AES implementation. `info` describes an encrypted
//! image as `qemu-img info` does (it needs no secret: everything comes
//! from the header and the LUKS header the crypto extension points at);
//! opening it writable or for check, and any read or write, are refused
//! with QEMU's message for a missing secret.

use crate::header::{get_u32, get_u64, Header, EXT_CRYPTO};
use block_core::{BlockError, BlockNode, BlockNodeExt, ErrorKind, Result};
use serde_json::{json, Value};
use std::sync::Arc;

/// Legacy AES-CBC encryption (`crypt_method` 1).
pub const CRYPT_AES: u32 = 1;
/// LUKS encryption (`crypt_method` 2).
pub const CRYPT_LUKS: u32 = 2;

const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
const LUKS_HEADER_LEN: usize = 592;
const SLOT_ACTIVE: u32 = 0x00ac_71f3;

/// The error of any data access to an encrypted image.
pub(crate) fn no_secret(op: &str) -> BlockError {
    BlockError::new(
        ErrorKind::InvalidInput,
        op,
        "Parameter 'encrypt.key-secret' is required for cipher",
    )
}

/// The (offset, length) of the LUKS header from the crypto extension.
fn crypto_area(h: &Header) -> Option<(u64, u64)> {
    let (_, d) = h.other_extensions.iter().find(|(t, _)| *t == EXT_CRYPTO)?;
    (d.len() >= 16).then(|| (get_u64(d, 0), get_u64(d, 8)))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// QEMU's name of a LUKS cipher with its key size in bytes.
fn cipher_alg(name: &str, key_bytes: u32) -> String {
    match name {
        "cast5" => "cast5-128".into(),
        "sm4" => "sm4".into(),
        "des3_ede" | "des3-ede" => "3des".into(),
        n => format!("{n}-{}", key_bytes * 8),
    }
}

/// The `encrypt` member of the format-specific info.
pub(crate) fn describe(file: &Arc<dyn BlockNode>, h: &Header) -> Result<Value> {
    if h.crypt_method == CRYPT_AES {
        return Ok(json!({"format": "aes"}));
    }
    let bad = |m: &str| BlockError::corrupt("info", format!("LUKS header: {m}"));
    let (off, len) = crypto_area(h).ok_or_else(|| bad("missing crypto header extension"))?;
    if len < LUKS_HEADER_LEN as u64 {
        return Err(bad("crypto header area too small"));
    }
    let mut b = vec![0u8; LUKS_HEADER_LEN];
    file.read_at(off, &mut b)?;
    if &b[..6] != LUKS_MAGIC {
        return Err(bad("Volume is not in LUKS format"));
    }
    let cipher = cstr(&b[8..40]);
    let mode_spec = cstr(&b[40..72]);
    let hash = cstr(&b[72..104]);
    let payload = u64::from(get_u32(&b, 104)) * 512;
    let mut key_bytes = get_u32(&b, 108);
    let mk_iters = get_u32(&b, 164);
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
            let active = get_u32(&b, o) == SLOT_ACTIVE;
            let key_offset = u64::from(get_u32(&b, o + 40)) * 512;
            if active {
                json!({
                    "active": true,
                    "iters": get_u32(&b, o + 4),
                    "key-offset": key_offset,
                    "stripes": get_u32(&b, o + 44),
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

    #[test]
    fn cipher_names() {
        assert_eq!(cipher_alg("aes", 32), "aes-256");
        assert_eq!(cipher_alg("twofish", 16), "twofish-128");
        assert_eq!(cipher_alg("cast5", 16), "cast5-128");
    }
}
