//! Durability and fresh images: what a fresh image reads, what a flush
//! makes visible to another open, growing, and QEMU's view of the result.

use super::util::{compare, e2s, ensure, random_writes, read_all, skip_if_unsupported};
use super::{Target, QEMU_FORMATS};
use block_core::{DriverCaps, ZeroFlags};
use std::process::Command;

/// A freshly created image reads as zeros, unless its node declares
/// otherwise (`has_zero_init` false).
pub(super) fn fresh_image_reads_zeros(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: only a created image is fresh".into());
    }
    let img = t.open(true)?;
    if !img.node().has_zero_init() {
        return Err("SKIP: the driver declares fresh images need not read as zeros".into());
    }
    let len = img.length().map_err(e2s)?;
    let mut buf = vec![0xffu8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        img.read(off, &mut buf[..n]).map_err(e2s)?;
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Err(format!(
                "a fresh image reads {:#04x} at offset {}, not zeros",
                buf[i],
                off + i as u64
            ));
        }
        off += n as u64;
    }
    Ok(())
}

/// Written and flushed data survives closing and reopening.
pub(super) fn flush_and_reopen(t: &Target) -> Result<(), String> {
    let shadow = {
        let img = t.open(false)?;
        let mut shadow = read_all(&img)?;
        random_writes(&img, &mut shadow, t.seed, 32)?;
        img.flush().map_err(e2s)?;
        shadow
    };
    let img = t.open(true)?;
    compare("after reopen", &read_all(&img)?, &shadow)
}

/// After write and flush, a second open of the same file (sharing it with
/// the first, which stays open) reads the data: flush must put it where
/// others see it, not only in the first open's memory.
pub(super) fn flush_visible_to_second_open(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: a second open needs a file-backed image".into());
    }
    let a = t.open(false)?;
    let mut shadow = read_all(&a)?;
    random_writes(&a, &mut shadow, t.seed, 24)?;
    a.flush().map_err(e2s)?;
    let b = t.open_shared()?;
    compare(
        "a second open after write and flush",
        &read_all(&b)?,
        &shadow,
    )?;
    drop(b);
    // The first open still reads its own data.
    compare("the first open after flush", &read_all(&a)?, &shadow)
}

/// Growing keeps the data and the new tail reads as zeros.
pub(super) fn truncate_grow(t: &Target) -> Result<(), String> {
    if !t.caps.contains(DriverCaps::RESIZE) {
        return Err("SKIP: driver does not resize".into());
    }
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 8)?;
    let len = img.length().map_err(e2s)?;
    img.truncate(len + (1 << 20), block_core::Preallocation::Off)
        .map_err(skip_if_unsupported)?;
    shadow.resize((len + (1 << 20)) as usize, 0);
    compare("after growing", &read_all(&img)?, &shadow)
}

/// qemu-img checks the image and compares it equal to the shadow copy.
pub(super) fn qemu_agrees(t: &Target) -> Result<(), String> {
    if !t.created || !QEMU_FORMATS.contains(&t.driver.as_str()) {
        return Err("SKIP: qemu-img does not know this format".into());
    }
    let shadow = {
        let img = t.open(false)?;
        let mut shadow = read_all(&img)?;
        random_writes(&img, &mut shadow, t.seed, 48)?;
        img.write_zeroes(1 << 20, 200_000, ZeroFlags::MAY_UNMAP)
            .map_err(e2s)?;
        shadow[1 << 20..(1 << 20) + 200_000].fill(0);
        img.flush().map_err(e2s)?;
        shadow
    };
    let raw = format!("{}.shadow.raw", t.filename);
    std::fs::write(&raw, &shadow).map_err(|e| e.to_string())?;
    if t.driver != "raw" {
        let out = Command::new("qemu-img")
            .args(["check", "-f", &t.driver, &t.filename])
            .output()
            .map_err(|e| format!("cannot run qemu-img: {e}"))?;
        // Formats QEMU has no check for (vpc) are judged by compare alone.
        let no_check = String::from_utf8_lossy(&out.stderr).contains("does not support checks");
        ensure(out.status.success() || no_check, || {
            format!(
                "qemu-img check failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    }
    let out = Command::new("qemu-img")
        .args(["compare", "-f", &t.driver, "-F", "raw", &t.filename, &raw])
        .output()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    let _ = std::fs::remove_file(&raw);
    ensure(out.status.success(), || {
        format!(
            "qemu-img compare: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
