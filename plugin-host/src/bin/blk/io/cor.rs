//! Copy-on-read (`blk io -C`, `open -C`): after a read, the clusters of the
//! range that the top image does not allocate are read through the backing
//! chain and written into the top image, as QEMU's copy-on-read path does
//! (whole clusters; all-zero clusters written as zeroes).

use block_core::{ExtentFlags, ZeroFlags};
use plugin_host::Image;

/// The largest piece copied at once.
const MAX_PIECE: u64 = 1 << 20;

/// Copy-on-read after a successful read of `[offset, offset + len)` when
/// the session asked for it; the errno of a failure.
pub(super) fn after_read(ctx: &super::Ctx<'_>, offset: u64, len: u64) -> Result<(), i32> {
    if !ctx.copy_on_read {
        return Ok(());
    }
    populate(ctx.img, offset, len).map_err(|e| super::cmds::errno_of(ctx, &e))
}

/// Copies the unallocated clusters of `[offset, offset + len)` into the top
/// image of `img`.
pub fn populate(img: &Image, offset: u64, len: u64) -> block_core::Result<()> {
    let size = img.length()?;
    if len == 0 || offset >= size {
        return Ok(());
    }
    let cluster = img
        .info()
        .ok()
        .and_then(|i| i.node.cluster_size)
        .filter(|c| c.is_power_of_two())
        .unwrap_or(65536);
    let start = offset / cluster * cluster;
    let end = (offset + len)
        .div_ceil(cluster)
        .saturating_mul(cluster)
        .min(size);
    let mut pos = start;
    while pos < end {
        let st = img.block_status(pos, end - pos)?;
        let n = st.length.clamp(1, end - pos);
        if !st.flags.contains(ExtentFlags::ALLOCATED) {
            let mut at = pos;
            while at < pos + n {
                let piece = (pos + n - at).min(MAX_PIECE);
                let mut buf = vec![0u8; piece as usize];
                img.read(at, &mut buf)?;
                if buf.iter().all(|&b| b == 0) {
                    img.write_zeroes(at, piece, ZeroFlags::NONE)?;
                } else {
                    img.write(at, &buf)?;
                }
                at += piece;
            }
        }
        pos += n;
    }
    Ok(())
}
