//! Compression codecs for compressed clusters and grains: raw deflate
//! with QEMU's parameters (what qcow2 and qemu-img call "zlib") and zstd.
//!
//! Output is limited per call: a cluster that does not compress below a
//! given size is reported as such and stored uncompressed by the caller.
//! Decompression fills exactly one output buffer and tolerates trailing
//! input bytes (a compressed cluster's stored length is rounded up to
//! sectors and may include the next cluster's bytes).

use crate::error::{BlockError, Result};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Raw deflate (no zlib header) with a 4 KiB window (windowBits -12)
    /// and the default level, as QEMU writes it.
    Deflate,
    /// A zstd frame at the default level.
    Zstd,
}

impl Codec {
    /// The name qemu-img prints for the codec ("zlib" or "zstd").
    pub fn qemu_name(self) -> &'static str {
        match self {
            Codec::Deflate => "zlib",
            Codec::Zstd => "zstd",
        }
    }

    /// Compresses `input`. Returns `None` when the result would not be
    /// smaller than `max_out` bytes (the caller then stores it plain).
    pub fn compress(self, input: &[u8], max_out: usize) -> Result<Option<Vec<u8>>> {
        let out = match self {
            Codec::Deflate => {
                // windowBits -12, as QEMU, so that QEMU can inflate it.
                let mut c = Compress::new_with_window_bits(Compression::default(), false, 12);
                let mut out = Vec::with_capacity(max_out);
                let st = c
                    .compress_vec(input, &mut out, FlushCompress::Finish)
                    .map_err(|e| BlockError::io("compress", e.to_string()))?;
                if st != Status::StreamEnd {
                    return Ok(None);
                }
                out
            }
            Codec::Zstd => zstd::bulk::compress(input, 0)
                .map_err(|e| BlockError::io("compress", e.to_string()))?,
        };
        Ok((out.len() < max_out).then_some(out))
    }

    /// Decompresses into `out`, which must be filled exactly; `input` may
    /// carry trailing bytes that do not belong to the stream.
    pub fn decompress(self, input: &[u8], out: &mut [u8]) -> Result<()> {
        let bad = |m: String| BlockError::corrupt("read compressed cluster", m);
        match self {
            Codec::Deflate => {
                let mut d = Decompress::new(false);
                let st = d
                    .decompress(input, out, FlushDecompress::Finish)
                    .map_err(|e| bad(format!("inflate failed: {e}")))?;
                // A full output buffer is success even without the stream end.
                if d.total_out() as usize != out.len() {
                    return Err(bad(format!(
                        "inflate produced {} of {} bytes ({st:?})",
                        d.total_out(),
                        out.len()
                    )));
                }
                Ok(())
            }
            Codec::Zstd => {
                use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
                let mut dec = Decoder::new().map_err(|e| bad(e.to_string()))?;
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
                        .map_err(|e| bad(format!("zstd: {e}")))?;
                    if outb.pos() == outb.capacity() {
                        return Ok(());
                    }
                    if hint == 0 || (inb.pos(), outb.pos()) == before {
                        break;
                    }
                }
                Err(bad(
                    "zstd stream ended before the cluster was complete".into()
                ))
            }
        }
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
        for c in [Codec::Deflate, Codec::Zstd] {
            let z = c.compress(&data, data.len() - 1).unwrap().unwrap();
            let mut padded = z.clone();
            padded.extend_from_slice(&[0xaa; 700]);
            let mut out = vec![0u8; data.len()];
            c.decompress(&padded, &mut out).unwrap();
            assert_eq!(out, data);
            let mut out = vec![0u8; data.len()];
            assert!(c.decompress(&z[..z.len() / 2], &mut out).is_err());
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
        assert!(Codec::Deflate.compress(&rnd, 4095).unwrap().is_none());
        assert!(Codec::Zstd.compress(&rnd, 4095).unwrap().is_none());
    }

    /// The deflate stream is raw (no zlib header) with a 4 KiB window:
    /// a zlib-wrapped or larger-window inflater setting must not be
    /// needed to read it back.
    #[test]
    fn deflate_is_raw_with_small_window() {
        let data = vec![7u8; 8192];
        let z = Codec::Deflate.compress(&data, 8191).unwrap().unwrap();
        // A zlib header would start with 0x78.
        assert_ne!(z[0], 0x78);
        let mut d = Decompress::new_with_window_bits(false, 12);
        let mut out = vec![0u8; 8192];
        d.decompress(&z, &mut out, FlushDecompress::Finish).unwrap();
        assert_eq!(out, data);
    }
}
