//! qcow2's compression types (header field `compression_type`) mapped to
//! the engine's codecs (block_core::engine::compression).

use block_core::engine::compression::Codec;
use block_core::{BlockError, Result};

/// Compression type 0: raw deflate.
pub const TYPE_ZLIB: u8 = 0;
/// Compression type 1: zstd.
pub const TYPE_ZSTD: u8 = 1;

/// The codec of a compression type.
fn codec(ty: u8) -> Option<Codec> {
    match ty {
        TYPE_ZLIB => Some(Codec::Deflate),
        TYPE_ZSTD => Some(Codec::Zstd),
        _ => None,
    }
}

fn unknown(ty: u8) -> String {
    format!("unknown compression type {ty}")
}

/// The qemu-img name of a compression type.
pub fn type_name(t: u8) -> &'static str {
    codec(t).unwrap_or(Codec::Deflate).qemu_name()
}

/// Compresses one cluster. Returns `None` when the result would not be
/// smaller than `max_out` bytes (the caller then writes it uncompressed).
pub fn compress(ty: u8, input: &[u8], max_out: usize) -> Result<Option<Vec<u8>>> {
    codec(ty)
        .ok_or_else(|| BlockError::invalid("compress", unknown(ty)))?
        .compress(input, max_out)
}

/// Decompresses into `out` (one cluster). `input` may carry trailing bytes
/// that do not belong to the stream. Fails unless `out` is filled exactly.
pub fn decompress(ty: u8, input: &[u8], out: &mut [u8]) -> Result<()> {
    codec(ty)
        .ok_or_else(|| BlockError::corrupt("read compressed cluster", unknown(ty)))?
        .decompress(input, out)
}
