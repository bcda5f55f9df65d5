//! Bochs growing images for tests: made empty by `bximage` (which must be
//! installed), filled with data by a writer that follows the format
//! (bximage itself writes no data).

use crate::{run, s};
use std::path::Path;
use std::process::Command;

/// `bximage` creates an empty growing image of `mb` MiB at `p`.
pub fn bximage(p: &Path, mb: u32) {
    let out = run(Command::new("bximage").args([
        "-q",
        "-func=create",
        &format!("-hd={mb}M"),
        "-imgmode=growing",
        s(p),
    ]));
    assert!(out.status.success(), "bximage: {out:?}");
}

/// The little-endian u32 at `o` of `b`.
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// Writes `data` (whole sectors) at guest sector `sector` of the growing
/// image in `img` as Bochs does: an unallocated extent is appended (its
/// bitmap then its sectors, zeroed) and named in the catalog, each
/// written sector's bitmap bit is set.
pub fn write_sectors(img: &mut Vec<u8>, sector: u64, data: &[u8]) {
    let (hsize, catalog) = (le32(img, 68) as usize, le32(img, 72) as usize);
    let (bitmap, extent) = (le32(img, 76) as usize, le32(img, 80) as usize);
    let bsec = bitmap.div_ceil(512);
    let spe = extent / 512;
    let data_offset = hsize + catalog * 4;
    for (i, chunk) in data.chunks(512).enumerate() {
        let s = sector as usize + i;
        let (e, k) = (s / spe, s % spe);
        let at = hsize + e * 4;
        let mut n = le32(img, at);
        if n == u32::MAX {
            n = ((img.len() - data_offset) / (512 * (bsec + spe))) as u32;
            img.resize(img.len() + 512 * (bsec + spe), 0);
            img[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
        let x = data_offset + 512 * n as usize * (bsec + spe);
        img[x + k / 8] |= 1 << (k % 8);
        let d = x + 512 * (bsec + k);
        img[d..d + 512].copy_from_slice(chunk);
    }
}
