//! Ranges and permissions: requests past the end, writes to read-only
//! images, at the host front end and at the driver itself.

use super::util::{e2s, ensure, must_refuse};
use super::Target;
use block_core::{BlockNodeExt, DriverKind, ErrorKind, ZeroFlags};

/// The host front end refuses reads and writes past the end with OutOfRange.
pub(super) fn out_of_range(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let len = img.length().map_err(e2s)?;
    let mut buf = vec![0u8; 4096];
    for off in [len, len - 100, u64::MAX - 10] {
        match img.read(off, &mut buf) {
            Err(e) if e.kind == ErrorKind::OutOfRange => {}
            Err(e) => return Err(format!("read at {off}: wrong error kind: {e}")),
            Ok(()) => return Err(format!("read past the end at {off} succeeded")),
        }
    }
    match img.write(len - 10, &buf) {
        Err(e) if e.kind == ErrorKind::OutOfRange => Ok(()),
        Err(e) => Err(format!("write past the end: wrong error kind: {e}")),
        Ok(()) => Err("write past the end succeeded".into()),
    }
}

/// The driver itself (below the host's range check) refuses writes that
/// reach past the virtual size, and the file neither grows nor changes.
/// Protocol drivers are exempt: a protocol grows on writes past its end,
/// and formats rely on that to allocate.
pub(super) fn driver_refuses_writes_past_end(t: &Target) -> Result<(), String> {
    if t.kind != DriverKind::Format {
        return Err("SKIP: a protocol grows on writes past its end".into());
    }
    let img = t.open(false)?;
    let node = img.node();
    let len = img.length().map_err(e2s)?;
    img.flush().map_err(e2s)?;
    let before = if t.created {
        Some(t.file_bytes()?)
    } else {
        None
    };
    let data = crate::random_bytes(t.seed, 4096);
    for off in [len - 10, len, len + (1 << 20), u64::MAX - 10] {
        must_refuse(
            &format!("a driver write of 4096 bytes at {off} (virtual size {len})"),
            node.write_at(off, &data),
        )?;
    }
    must_refuse(
        &format!(
            "a driver write_zeroes of 4096 bytes at {} (virtual size {len})",
            len - 10
        ),
        node.write_zeroes(len - 10, 4096, ZeroFlags::NONE),
    )?;
    let mut buf = vec![0u8; 4096];
    for off in [len - 100, len, u64::MAX - 10] {
        must_refuse(
            &format!("a driver read of 4096 bytes at {off} (virtual size {len})"),
            node.read_at(off, &mut buf),
        )?;
    }
    ensure(node.length().map_err(e2s)? == len, || {
        "the refused writes changed the virtual size".into()
    })?;
    img.flush().map_err(e2s)?;
    if let Some(before) = before {
        let after = t.file_bytes()?;
        ensure(after.len() == before.len(), || {
            format!(
                "refused writes past the end changed the file size from {} to {}",
                before.len(),
                after.len()
            )
        })?;
        ensure(after == before, || {
            "refused writes past the end changed the file".into()
        })?;
    }
    Ok(())
}

/// A read-only open refuses writes with ReadOnly and leaves the file alone.
pub(super) fn read_only(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: read-only open needs a file-backed image".into());
    }
    {
        let img = t.open(false)?;
        img.write(0, &[0x5a; 4096]).map_err(e2s)?;
        img.flush().map_err(e2s)?;
    }
    let before = std::fs::read(&t.filename).map_err(|e| e.to_string())?;
    let img = t.open(true)?;
    match img.write(0, &[1; 512]) {
        Err(e) if e.kind == ErrorKind::ReadOnly => {}
        Err(e) => return Err(format!("wrong error kind for a read-only write: {e}")),
        Ok(()) => return Err("write to a read-only image succeeded".into()),
    }
    drop(img);
    let after = std::fs::read(&t.filename).map_err(|e| e.to_string())?;
    ensure(before == after, || {
        "a refused write changed the file".into()
    })
}
