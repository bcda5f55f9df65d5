//! Encrypted qcow2 images: described, never decrypted.
//!
//! blk has no LUKS or AES implementation. `info` describes an encrypted
//! image as `qemu-img info` does (it needs no secret: everything comes
//! from the header and the LUKS header the crypto extension points at);
//! opening it writable or for check, and any read or write, are refused
//! with QEMU's message for a missing secret.

use crate::layout::header::{get_u64, Header, CRYPT_AES, EXT_CRYPTO};
use block_core::engine::luks::describe_luks_header;
use block_core::{BlockError, BlockNode, Result};
use serde_json::{json, Value};
use std::sync::Arc;

/// The error of any data access to an encrypted image.
pub(crate) use block_core::engine::luks::no_secret;

/// The (offset, length) of the LUKS header from the crypto extension.
fn crypto_area(h: &Header) -> Option<(u64, u64)> {
    let (_, d) = h.other_extensions.iter().find(|(t, _)| *t == EXT_CRYPTO)?;
    (d.len() >= 16).then(|| (get_u64(d, 0), get_u64(d, 8)))
}

/// The `encrypt` member of the format-specific info (the LUKS header
/// described by the engine's `describe_luks_header`).
pub(crate) fn describe(file: &Arc<dyn BlockNode>, h: &Header) -> Result<Value> {
    if h.crypt_method == CRYPT_AES {
        return Ok(json!({"format": "aes"}));
    }
    let missing = || BlockError::corrupt("info", "LUKS header: missing crypto header extension");
    let (off, len) = crypto_area(h).ok_or_else(missing)?;
    describe_luks_header(&**file, off, len, "info")
}
