//! The migration handoff: cache invalidation, the inactive gate and the
//! handoff over shared storage.

use super::util::{
    compare, e2s, ensure, must_refuse, random_writes, read_all, skip_if_unsupported,
};
use super::Target;
use block_core::{BlockNodeExt, ZeroFlags};

/// Data written and flushed survives `invalidate_cache`, and writes after it work.
pub(super) fn invalidate_keeps_data(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 16)?;
    img.flush().map_err(e2s)?;
    img.invalidate_cache().map_err(skip_if_unsupported)?;
    compare("after invalidate_cache", &read_all(&img)?, &shadow)?;
    random_writes(&img, &mut shadow, t.seed + 1, 16)?;
    compare("writes after invalidate_cache", &read_all(&img)?, &shadow)
}

/// An open that has read (warm caches) sees, after `invalidate_cache`, what
/// another open wrote and flushed meanwhile: invalidation must drop cached
/// data, not only metadata.
pub(super) fn invalidate_sees_outside_change(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: a second open needs a file-backed image".into());
    }
    // Inactive: takes no locks, so that the writer below may open.
    let a = t.open_inactive()?;
    let mut shadow = read_all(&a)?;
    {
        let b = t.open(false)?;
        random_writes(&b, &mut shadow, t.seed, 24)?;
        b.flush().map_err(e2s)?;
    }
    a.invalidate_cache().map_err(skip_if_unsupported)?;
    compare(
        "after another open wrote and invalidate_cache",
        &read_all(&a)?,
        &shadow,
    )
}

/// After `inactivate` the driver itself (below the host's gate) refuses
/// writes and zeroing and the file stays as it was; after `activate` writes
/// work again.
pub(super) fn inactive_refuses_writes(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let node = img.node();
    if node.migration().is_none() {
        // Without the capability the host only flushes, and its own gate
        // refuses writes (the driver is never told).
        return Err("SKIP: the driver does not offer migration control".into());
    }
    let first = crate::random_bytes(t.seed, 8192);
    img.write(0, &first).map_err(e2s)?;
    img.flush().map_err(e2s)?;
    img.inactivate().map_err(skip_if_unsupported)?;
    let before = if t.created {
        Some(t.file_bytes()?)
    } else {
        None
    };
    let second = crate::random_bytes(t.seed + 1, 8192);
    must_refuse(
        "a driver write while inactive",
        node.write_at(65536, &second),
    )?;
    must_refuse(
        "a driver write_zeroes while inactive",
        node.write_zeroes(0, 4096, ZeroFlags::NONE),
    )?;
    if let Some(before) = before {
        ensure(t.file_bytes()? == before, || {
            "refused writes while inactive changed the file".into()
        })?;
    }
    img.activate().map_err(e2s)?;
    node.write_at(65536, &second)
        .map_err(|e| format!("write after activate: {e}"))?;
    let mut back = vec![0u8; 8192];
    img.read(65536, &mut back).map_err(e2s)?;
    compare("write after activate", &back, &second)?;
    img.read(0, &mut back).map_err(e2s)?;
    compare("data written before inactivate", &back, &first)
}

/// The migration handoff over shared storage: B holds the image open
/// inactive with warm caches while A allocates, writes and flushes new data
/// and gives the image up; B activates and must read exactly A's data.
pub(super) fn shared_storage_handoff(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: the handoff needs a file-backed image".into());
    }
    let b = t.open_inactive()?;
    let stale = read_all(&b)?; // warm every cache B has
    let mut shadow = stale.clone();
    {
        let a = t.open(false)?;
        random_writes(&a, &mut shadow, t.seed, 48)?;
        a.write_zeroes(2 << 20, 100_000, ZeroFlags::MAY_UNMAP)
            .map_err(e2s)?;
        shadow[2 << 20..(2 << 20) + 100_000].fill(0);
        a.flush().map_err(e2s)?;
        a.inactivate().map_err(skip_if_unsupported)?;
    }
    b.activate().map_err(skip_if_unsupported)?;
    compare("destination after activate", &read_all(&b)?, &shadow)?;
    // The destination now owns the image and can write.
    b.write(0, &[0x77; 4096]).map_err(e2s)?;
    b.flush().map_err(e2s)
}
