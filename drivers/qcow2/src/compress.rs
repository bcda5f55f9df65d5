//! Cluster compression: raw deflate with a 4 KiB window (what QEMU calls
//! "zlib") and zstd.

use block_core::{BlockError, Result};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compression type 0: raw deflate.
pub const TYPE_ZLIB: u8 = 0;
/// Compression type 1: zstd.
pub const TYPE_ZSTD: u8 = 1;

/// The qemu-img name of a compression type.
pub fn type_name(t: u8) -> &'static str {
    if t == TYPE_ZSTD {
        "zstd"
    } else {
        "zlib"
    }
}

/// Compresses one cluster. Returns `None` when the result would not be
/// smaller than `max_out` bytes (the caller then writes it uncompressed).
pub fn compress(ty: u8, input: &[u8], max_out: usize) -> Result<Option<Vec<u8>>> {
    match ty {
        TYPE_ZLIB => {
            // windowBits -12 as QEMU, so that QEMU can decompress it.
            let mut c = Compress::new_with_window_bits(Compression::default(), false, 12);
            let mut out = Vec::with_capacity(max_out);
            let st = c
                .compress_vec(input, &mut out, FlushCompress::Finish)
                .map_err(|e| BlockError::io("compress", e.to_string()))?;
            if st != Status::StreamEnd || out.len() >= max_out {
                return Ok(None);
            }
            Ok(Some(out))
        }
        TYPE_ZSTD => {
            let out = zstd::bulk::compress(input, 0)
                .map_err(|e| BlockError::io("compress", e.to_string()))?;
            if out.len() >= max_out {
                return Ok(None);
            }
            Ok(Some(out))
        }
        t => Err(BlockError::invalid(
            "compress",
            format!("unknown compression type {t}"),
        )),
    }
}

/// Decompresses into `out` (one cluster). `input` may carry trailing bytes
/// that do not belong to the stream. Fails unless `out` is filled exactly.
pub fn decompress(ty: u8, input: &[u8], out: &mut [u8]) -> Result<()> {
    let bad = |m: &str| BlockError::corrupt("read compressed cluster", m.to_string());
    match ty {
        TYPE_ZLIB => {
            let mut d = Decompress::new(false);
            let st = d
                .decompress(input, out, FlushDecompress::Finish)
                .map_err(|e| bad(&format!("inflate failed: {e}")))?;
            // A full output buffer is success even without the stream end.
            if d.total_out() as usize != out.len() {
                return Err(bad(&format!(
                    "inflate produced {} of {} bytes ({st:?})",
                    d.total_out(),
                    out.len()
                )));
            }
            Ok(())
        }
        TYPE_ZSTD => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut dec = Decoder::new().map_err(|e| bad(&e.to_string()))?;
            let mut inb = InBuffer::around(input);
            let mut outb = OutBuffer::around(out);
            // Each round consumes input or produces output; bound the loop.
            for _ in 0..(input.len() + outb.capacity() + 16) {
                if outb.pos() == outb.capacity() {
                    return Ok(());
                }
                let before = (inb.pos(), outb.pos());
                let hint = dec
                    .run(&mut inb, &mut outb)
                    .map_err(|e| bad(&format!("zstd: {e}")))?;
                if outb.pos() == outb.capacity() {
                    return Ok(());
                }
                if hint == 0 || (inb.pos(), outb.pos()) == before {
                    break;
                }
            }
            Err(bad("zstd stream ended before the cluster was complete"))
        }
        t => Err(bad(&format!("unknown compression type {t}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both() {
        let mut data = vec![0u8; 65536];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 100) as u8;
        }
        for ty in [TYPE_ZLIB, TYPE_ZSTD] {
            let c = compress(ty, &data, data.len() - 1).unwrap().unwrap();
            let mut padded = c.clone();
            padded.extend_from_slice(&[0xaa; 700]);
            let mut out = vec![0u8; data.len()];
            decompress(ty, &padded, &mut out).unwrap();
            assert_eq!(out, data);
            let mut out = vec![0u8; data.len()];
            assert!(decompress(ty, &c[..c.len() / 2], &mut out).is_err());
        }
        // Incompressible data is refused.
        let mut x: u64 = 1;
        let rnd: Vec<u8> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect();
        assert!(compress(TYPE_ZLIB, &rnd, 4095).unwrap().is_none());
    }
}
