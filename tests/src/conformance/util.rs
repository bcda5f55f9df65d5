//! Helpers of the cases: checks, whole-image reads, comparisons, seeded
//! writes, and the refusal rule for calls that must fail.

use block_core::{BlockError, ErrorKind};
use plugin_host::Image;
use rand::Rng;

/// An error as text.
pub(super) fn e2s(e: BlockError) -> String {
    e.to_string()
}

/// An "unsupported" error skips the case; any other error fails it.
pub(super) fn skip_if_unsupported(e: BlockError) -> String {
    if e.kind == ErrorKind::Unsupported {
        format!("SKIP: {e}")
    } else {
        e.to_string()
    }
}

/// `Err(msg())` unless `cond`.
pub(super) fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// A call that must be refused: `Ok` fails with `what`, a driver panic
/// fails too (a panic is never a refusal), any other error passes.
pub(super) fn must_refuse(what: &str, r: block_core::Result<()>) -> Result<(), String> {
    match r {
        Ok(()) => Err(format!("{what} succeeded")),
        Err(e) if e.to_string().contains("panicked") => {
            Err(format!("{what}: the driver panicked: {e}"))
        }
        Err(_) => Ok(()),
    }
}

/// The whole image.
pub(super) fn read_all(img: &Image) -> Result<Vec<u8>, String> {
    let len = img.length().map_err(e2s)? as usize;
    let mut buf = vec![0u8; len];
    img.read(0, &mut buf).map_err(e2s)?;
    Ok(buf)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// `got` must equal `want`; the error names the first differing offset.
pub(super) fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    ensure(got.len() == want.len(), || {
        format!("{what}: length {} != {}", got.len(), want.len())
    })?;
    match first_difference(got, want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: content differs at offset {i} (got {:#04x}, want {:#04x})",
            got[i], want[i]
        )),
    }
}

/// Applies seeded random writes to `img` and `shadow`.
pub(super) fn random_writes(
    img: &Image,
    shadow: &mut [u8],
    seed: u64,
    count: usize,
) -> Result<(), String> {
    let mut r = crate::rng(seed);
    let len = shadow.len() as u64;
    for _ in 0..count {
        let size: u64 = match r.gen_range(0..4) {
            0 => r.gen_range(1..512),
            1 => 512 * r.gen_range(1..16),
            2 => 4096 * r.gen_range(1..32),
            _ => r.gen_range(1..300_000),
        };
        let size = size.min(len);
        let off = r.gen_range(0..=len - size);
        let mut data = vec![0u8; size as usize];
        r.fill(&mut data[..]);
        img.write(off, &data).map_err(e2s)?;
        shadow[off as usize..(off + size) as usize].copy_from_slice(&data);
    }
    Ok(())
}
