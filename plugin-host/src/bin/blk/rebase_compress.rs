//! `blk rebase -c`: the data a safe rebase copies into the image is written
//! as compressed clusters, as qemu-img's rebase does with `-c` (whole
//! clusters of the image; a cluster the image already allocates is left
//! alone, so only unallocated ranges reach here).

use crate::common::{CliError, CliResult};
use block_core::{DriverCaps, ReqFlags};
use plugin_host::Image;
use std::io::IoSlice;

/// Refuses `-c` for a format without compressed writes, with qemu-img's
/// message.
pub fn check_supported(host: &plugin_host::Host, img: &Image) -> CliResult {
    let supported = host
        .registry()
        .get(img.format())
        .is_some_and(|d| d.driver.caps().contains(DriverCaps::COMPRESSION));
    if !supported {
        return Err(CliError::new(
            "Compression not supported for this file format",
        ));
    }
    Ok(())
}

/// The unit a compressed rebase copies in: the image's cluster size.
pub fn piece_size(img: &Image) -> u64 {
    img.info()
        .ok()
        .and_then(|i| i.node.cluster_size)
        .filter(|c| *c >= 512)
        .unwrap_or(65536)
}

/// Writes `buf` at `offset` (one cluster, or the image's last partial one)
/// as a compressed cluster.
pub fn write(img: &Image, offset: u64, buf: &[u8]) -> CliResult {
    img.write_vectored(offset, &[IoSlice::new(buf)], ReqFlags::COMPRESSED)?;
    Ok(())
}
