//! `blk convert --salvage`: a failed read of the source does not end the
//! conversion. As qemu-img, the failed range is read again sector by
//! sector; each sector that still fails is reported with a warning and
//! written as zeroes.

use crate::common::errno_of;
use crate::human::strerror;
use block_core::BlockError;
use plugin_host::Image;

const SECTOR: usize = 512;

/// Reads `buf.len()` bytes at `offset` of `src`; with `salvage`, sectors
/// that cannot be read are warned about and zero-filled instead of failing.
pub fn read(src: &Image, offset: u64, buf: &mut [u8], salvage: bool) -> Result<(), BlockError> {
    match src.read(offset, buf) {
        Ok(()) => Ok(()),
        Err(e) if !salvage => Err(e),
        Err(e) => {
            log::debug!("read failed, salvaging sector by sector: {e}");
            for (i, sector) in buf.chunks_mut(SECTOR).enumerate() {
                let at = offset + (i * SECTOR) as u64;
                if let Err(e) = src.read(at, sector) {
                    eprintln!(
                        "blk: warning: error while reading offset {at}: {}",
                        strerror(errno_of(&e))
                    );
                    sector.fill(0);
                }
            }
            Ok(())
        }
    }
}
