//! Helpers shared by the qcow2 bitmap test files.
#![allow(dead_code)]

use blk_tests::{qemu_img_ok, s};
use std::path::Path;
use std::process::Command;

/// The `bitmaps` list of `qemu-img info --output=json` (empty when none).
pub fn qemu_bitmaps(img: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", "-U", s(img)])).unwrap();
    v["format-specific"]["data"]["bitmaps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Stdout+stderr with the program names and the image names made equal,
/// and the exit code.
pub fn outcome(o: &std::process::Output, name: &str) -> (String, i32) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (
        text.replace("qemu-img", "X")
            .replace("blk", "X")
            .replace(name, "IMG"),
        o.status.code().unwrap_or(-1),
    )
}

/// `blk` with every driver from the plugin libraries (the C ABI).
pub fn blk_plugins(args: &[&str]) -> std::process::Output {
    let pd = blk_tests::plugin_dir();
    blk_tests::run(
        Command::new(blk_tests::blk_bin())
            .env("BLK_BUILTIN_DRIVERS", "0")
            .arg("--plugin-dir")
            .arg(&pd)
            .args(args),
    )
}
