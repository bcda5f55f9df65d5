//! `blk convert --bitmaps [--skip-broken-bitmaps]`: copies the persistent
//! dirty bitmaps of the source into the target after the data, as
//! qemu-img convert does (name, granularity, enabled state and bits),
//! through the bitmap control call (`list`, `get`, `add`, `merge`).
//!
//! QEMU walks the source's bitmaps newest first (reverse directory order):
//! its messages name them in that order, and the target stores the ones
//! created in one session newest first, so the directory order survives.

use crate::common::{CliError, CliResult};
use plugin_host::Image;
use serde_json::{json, Value};

/// The source's bitmaps to copy, in QEMU's walk order (reverse directory
/// order). Refuses a source without bitmap support and, unless
/// `skip_broken`, inconsistent bitmaps (skipped with a warning otherwise).
pub fn source_bitmaps(src: &Image, skip_broken: bool) -> CliResult<Vec<Value>> {
    let list = src
        .bitmap(r#"{"op":"list"}"#)
        .map_err(|_| CliError::new("Source lacks bitmap support"))?;
    let v: Value =
        serde_json::from_str(&list).map_err(|e| CliError::new(format!("bad bitmap list: {e}")))?;
    let mut out = Vec::new();
    for b in v.as_array().into_iter().flatten().rev() {
        let name = b["name"].as_str().unwrap_or("");
        if b["inconsistent"].as_bool() == Some(true) {
            if skip_broken {
                eprintln!("blk: warning: Skipping inconsistent bitmap '{name}'");
                continue;
            }
            return Err(CliError::new(format!(
                "Cannot copy inconsistent bitmap '{name}'\nTry --skip-broken-bitmaps, or use 'blk bitmap --remove' to delete it"
            )));
        }
        out.push(b.clone());
    }
    Ok(out)
}

/// Refuses a target whose format cannot store bitmaps.
pub fn check_target(target: &Image, out_format: &str) -> CliResult {
    target.bitmap(r#"{"op":"list"}"#).map(|_| ()).map_err(|_| {
        CliError::new(format!(
            "Format driver '{out_format}' does not support bitmaps"
        ))
    })
}

/// Creates each bitmap in the target and merges the source's bits into it.
pub fn copy(src: &Image, target: &Image, list: &[Value]) -> CliResult {
    for b in list {
        let name = b["name"].as_str().unwrap_or("");
        let add = json!({
            "op": "add",
            "name": name,
            "granularity": b["granularity"],
            "disabled": b["enabled"].as_bool() == Some(false),
        });
        target
            .bitmap(&add.to_string())
            .map_err(|e| CliError::new(format!("Failed to create bitmap {name}: {}", e.message)))?;
        let populate = || -> Result<(), block_core::BlockError> {
            let got = src.bitmap(&json!({"op": "get", "name": name}).to_string())?;
            let v: Value = serde_json::from_str(&got)
                .map_err(|e| block_core::BlockError::invalid("bitmap", e.to_string()))?;
            let merge = json!({"op": "merge", "name": name, "ranges": v["ranges"]});
            target.bitmap(&merge.to_string())?;
            Ok(())
        };
        populate().map_err(|e| {
            CliError::new(format!("Failed to populate bitmap {name}: {}", e.message))
        })?;
    }
    Ok(())
}
