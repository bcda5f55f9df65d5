//! `blk rebase -c`: the data a safe rebase copies into the image is written
//! as compressed clusters, as qemu-img's rebase does with `-c`
//! (`plugin_host::ops::RebaseRequest::compress`); here the check that the
//! format can.

use crate::common::{CliError, CliResult};
use block_core::DriverCaps;
use plugin_host::Image;

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
