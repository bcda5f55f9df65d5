//! Cache mode arguments (`-t`, `-T`) checked as QEMU's
//! `bdrv_parse_cache_mode` checks them. blk has no O_DIRECT path, so a
//! valid mode changes nothing; an invalid one is refused before any image
//! is opened, with the tool's message.

use crate::common::{CliError, CliResult};

/// True when QEMU knows the cache mode.
pub fn is_valid(mode: &str) -> bool {
    matches!(
        mode,
        "none" | "off" | "writeback" | "writethrough" | "directsync" | "unsafe"
    )
}

/// Refuses an invalid target/image cache mode (`-t`): "Invalid cache option: M".
pub fn check(mode: Option<&str>) -> CliResult {
    match mode {
        Some(m) if !is_valid(m) => Err(CliError::new(format!("Invalid cache option: {m}"))),
        _ => Ok(()),
    }
}

/// Refuses an invalid source cache mode (`-T`): "Invalid source cache option: M".
pub fn check_source(mode: Option<&str>) -> CliResult {
    match mode {
        Some(m) if !is_valid(m) => Err(CliError::new(format!("Invalid source cache option: {m}"))),
        _ => Ok(()),
    }
}
