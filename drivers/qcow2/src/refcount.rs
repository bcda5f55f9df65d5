//! Refcounts (widths 1..64 bits), cluster allocation, refcount-block and
//! refcount-table growth, and deferred frees.
//!
//! Everything here runs with the allocation mutex held (`&mut WState`).

use crate::header::{MAX_HOST_OFFSET, MAX_REFTABLE_BYTES};
use crate::mapping::{ClusterType, L2E_OFFSET_MASK, REFT_OFFSET_MASK};
use crate::node::{Deferred, Qcow2Node, WState};
use crate::overlap::kind;
use block_core::{BlockError, ErrorKind, Result};

/// Reads refcount entry `idx` of a refcount block of width 2^`order` bits.
pub fn rc_get(d: &[u8], idx: u64, order: u32) -> u64 {
    let bits = 1u64 << order;
    if bits < 8 {
        let bit = idx * bits;
        let byte = d[(bit / 8) as usize];
        (u64::from(byte) >> (bit % 8)) & ((1 << bits) - 1)
    } else {
        let n = (bits / 8) as usize;
        let o = idx as usize * n;
        d[o..o + n]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b))
    }
}

/// Writes refcount entry `idx` of a refcount block of width 2^`order` bits.
pub fn rc_set(d: &mut [u8], idx: u64, order: u32, v: u64) {
    let bits = 1u64 << order;
    if bits < 8 {
        let bit = idx * bits;
        let mask = ((1u64 << bits) - 1) as u8;
        let shift = (bit % 8) as u32;
        let b = &mut d[(bit / 8) as usize];
        *b = (*b & !(mask << shift)) | (((v as u8) & mask) << shift);
    } else {
        let n = (bits / 8) as usize;
        let o = idx as usize * n;
        for i in 0..n {
            d[o + i] = (v >> (8 * (n - 1 - i))) as u8;
        }
    }
}

impl Qcow2Node {
    /// The refcount of cluster `ci` (0 when no refcount block covers it).
    pub(crate) fn get_refcount(&self, ws: &WState, ci: u64) -> Result<u64> {
        let e = self.geo().rb_entries();
        let t = (ci / e) as usize;
        let Some(&rte) = ws.reftable.get(t) else {
            return Ok(0);
        };
        let off = rte & REFT_OFFSET_MASK;
        if off == 0 {
            return Ok(0);
        }
        let tab = self.rc_table(off)?;
        let d = tab.read();
        Ok(rc_get(&d, ci % e, self.geo().refcount_order))
    }

    fn is_reserved(ws: &WState, ci: u64) -> bool {
        ws.reserved.iter().any(|&(s, n)| ci >= s && ci < s + n)
    }

    /// Finds `n` contiguous free clusters (refcount 0) from the hint on.
    fn find_free_run(&self, ws: &WState, n: u64) -> Result<u64> {
        let cs = self.geo().cs();
        let max = MAX_HOST_OFFSET / cs;
        let mut ci = ws.free_hint.max(1);
        let mut start = ci;
        let mut run = 0u64;
        while ci < max {
            if self.get_refcount(ws, ci)? == 0 && !Self::is_reserved(ws, ci) {
                if run == 0 {
                    start = ci;
                }
                run += 1;
                if run == n {
                    return Ok(start);
                }
            } else {
                run = 0;
            }
            ci += 1;
        }
        Err(self.ctx(BlockError::new(
            ErrorKind::NoSpace,
            "allocate",
            "no free cluster below the host offset limit",
        )))
    }

    /// Makes sure a refcount block covers cluster `ci`. Returns true when
    /// it had to allocate something (callers re-plan their allocation).
    fn ensure_refblock(&self, ws: &mut WState, ci: u64) -> Result<bool> {
        let e = self.geo().rb_entries();
        let t = ci / e;
        if t as usize >= ws.reftable.len() {
            self.grow_reftable(ws, t + 1)?;
            return Ok(true);
        }
        if ws.reftable[t as usize] & REFT_OFFSET_MASK != 0 {
            return Ok(false);
        }
        // The block is missing, so every cluster it covers is free: place
        // it inside its own range so that it describes itself, unless that
        // range is reserved for the allocation in progress. (This holds
        // only while the refcounts in memory are the truth: the repair in
        // check, which fixes them, never allocates through here.)
        let map = self
            .overlap
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cs = self.geo().cs();
        let mut place = None;
        for c in (t * e).max(1)..(t + 1) * e {
            if !Self::is_reserved(ws, c) && map.check(c * cs, cs, 0).is_none() {
                place = Some(c);
                break;
            }
        }
        let off = match place {
            Some(c) => {
                let off = c * cs;
                let tab = self.rc.insert(off, vec![0u8; cs as usize], true);
                rc_set(&mut tab.write(), c % e, self.geo().refcount_order, 1);
                off
            }
            None => {
                // Somewhere else, counted in the block covering that place.
                let mut c = 0;
                for _ in 0..16 {
                    c = self.find_free_run(ws, 1)?;
                    if !self.ensure_refblock(ws, c)? {
                        break;
                    }
                    c = 0;
                }
                if c == 0 {
                    return Err(self.ctx(BlockError::new(
                        ErrorKind::NoSpace,
                        "allocate",
                        "cannot place a refcount block",
                    )));
                }
                let off = c * cs;
                self.rc.insert(off, vec![0u8; cs as usize], true);
                self.change_refcount(ws, c, 1)?;
                off
            }
        };
        ws.reftable[t as usize] = off;
        ws.reftable_dirty = true;
        let m = self.meta_read();
        self.refresh_overlap(&m, ws);
        Ok(true)
    }

    /// Grows the refcount table to at least `min_entries` entries, moving
    /// it to new clusters. The old table is freed after the next header
    /// write.
    fn grow_reftable(&self, ws: &mut WState, min_entries: u64) -> Result<()> {
        let cs = self.geo().cs();
        let e = self.geo().rb_entries();
        let mut entries = min_entries.max(ws.reftable.len() as u64 * 2).max(cs / 8);
        let (loc, k) = {
            let mut tries = 0;
            loop {
                tries += 1;
                if tries > 64 {
                    return Err(self.ctx(BlockError::new(
                        ErrorKind::NoSpace,
                        "allocate",
                        "cannot place a new refcount table",
                    )));
                }
                let k = (entries * 8).div_ceil(cs);
                if k * cs > MAX_REFTABLE_BYTES {
                    return Err(self.ctx(BlockError::new(
                        ErrorKind::NoSpace,
                        "allocate",
                        "refcount table would exceed its size limit",
                    )));
                }
                let loc = self.find_free_run(ws, k)?;
                let need = (loc + k) / e + 1;
                if need > entries {
                    entries = need + need / 2;
                    continue;
                }
                entries = k * cs / 8;
                break (loc, k);
            }
        };
        let old_off;
        let old_clusters;
        {
            let mut m = self.meta_write();
            old_off = m.h.refcount_table_offset;
            old_clusters = u64::from(m.h.refcount_table_clusters);
            m.h.refcount_table_offset = loc * cs;
            m.h.refcount_table_clusters = k as u32;
            m.header_dirty = true;
        }
        ws.reftable.resize(entries as usize, 0);
        ws.reftable_dirty = true;
        ws.reserved.push((loc, k));
        let r = (|| {
            for c in loc..loc + k {
                self.ensure_refblock(ws, c)?;
                self.change_refcount(ws, c, 1)?;
            }
            Ok(())
        })();
        ws.reserved.pop();
        r?;
        {
            let m = self.meta_read();
            self.refresh_overlap(&m, ws);
        }
        ws.deferred.push(Deferred {
            offset: old_off,
            clusters: old_clusters,
            punch: false,
        });
        Ok(())
    }

    /// Adds `delta` to the refcount of cluster `ci`, whose refcount block
    /// must exist for increments. Returns the new value.
    pub(crate) fn change_refcount(&self, ws: &mut WState, ci: u64, delta: i64) -> Result<u64> {
        let e = self.geo().rb_entries();
        let t = (ci / e) as usize;
        let off = ws
            .reftable
            .get(t)
            .map(|x| x & REFT_OFFSET_MASK)
            .unwrap_or(0);
        if off == 0 {
            return Err(self.corruption(
                ci * self.geo().cs(),
                "refcount update for a cluster without refcount block",
            ));
        }
        let tab = self.rc_table(off)?;
        let mut d = tab.write();
        let cur = rc_get(&d, ci % e, self.geo().refcount_order);
        let new = if delta >= 0 {
            cur.checked_add(delta as u64)
                .filter(|v| *v <= self.geo().max_refcount())
        } else {
            cur.checked_sub(delta.unsigned_abs())
        };
        let Some(new) = new else {
            drop(d);
            return Err(self.corruption(
                ci * self.geo().cs(),
                &format!("refcount of cluster {ci} would leave its range ({cur} {delta:+})"),
            ));
        };
        rc_set(&mut d, ci % e, self.geo().refcount_order, new);
        drop(d);
        if new == 0 {
            ws.free_hint = ws.free_hint.min(ci);
            self.l2.remove(ci * self.geo().cs());
        }
        Ok(new)
    }

    /// Allocates `n` contiguous clusters with refcount 1; returns the
    /// offset of the first.
    pub(crate) fn alloc_clusters(&self, ws: &mut WState, n: u64) -> Result<u64> {
        let cs = self.geo().cs();
        let e = self.geo().rb_entries();
        for _ in 0..64 {
            let start = self.find_free_run(ws, n)?;
            ws.reserved.push((start, n));
            let r = (|| {
                let mut c = start;
                while c < start + n {
                    self.ensure_refblock(ws, c)?;
                    c = (c / e + 1) * e;
                }
                Ok::<(), BlockError>(())
            })();
            ws.reserved.pop();
            r?;
            // Refcount blocks went elsewhere; unless the table grew into
            // the run, it is still free and fully covered.
            let mut ok = true;
            for c in start..start + n {
                let t = (c / e) as usize;
                let covered = ws
                    .reftable
                    .get(t)
                    .is_some_and(|x| x & REFT_OFFSET_MASK != 0);
                if !covered || self.get_refcount(ws, c)? != 0 {
                    ok = false;
                    break;
                }
            }
            if !ok {
                continue;
            }
            for c in start..start + n {
                self.change_refcount(ws, c, 1)?;
            }
            ws.free_hint = start + n;
            return Ok(start * cs);
        }
        Err(self.ctx(BlockError::new(
            ErrorKind::NoSpace,
            "allocate",
            "cluster allocation did not converge",
        )))
    }

    /// Allocates `len` (< cluster size) bytes for compressed data, packing
    /// several compressed clusters into one host cluster.
    pub(crate) fn alloc_bytes(&self, ws: &mut WState, len: u64) -> Result<u64> {
        let cs = self.geo().cs();
        let fbo = ws.free_byte_offset;
        if fbo != 0 && self.geo().in_cluster(fbo) != 0 && cs - self.geo().in_cluster(fbo) >= len {
            let ci = fbo / cs;
            let rc = self.get_refcount(ws, ci)?;
            if rc > 0 && rc < self.geo().max_refcount() {
                self.change_refcount(ws, ci, 1)?;
                ws.free_byte_offset = fbo + len;
                return Ok(fbo);
            }
        }
        let off = self.alloc_clusters(ws, 1)?;
        ws.free_byte_offset = off + len;
        Ok(off)
    }

    /// Queues the release of whatever host storage an L2 entry references.
    pub(crate) fn defer_free_entry(&self, ws: &mut WState, entry: u64, punch: bool) {
        match self.geo().cluster_type(entry) {
            ClusterType::Compressed => {
                let (first, n) = self.geo().compressed_clusters(entry);
                ws.deferred.push(Deferred {
                    offset: first,
                    clusters: n,
                    punch,
                });
            }
            ClusterType::Normal | ClusterType::ZeroAlloc => {
                if self.data_file.is_some() {
                    return;
                }
                let off = entry & L2E_OFFSET_MASK;
                if off != 0 {
                    ws.deferred.push(Deferred {
                        offset: off,
                        clusters: 1,
                        punch,
                    });
                }
            }
            _ => {}
        }
    }

    /// Applies the queued decrements (the metadata that dropped the
    /// references is already on disk). Waits for in-flight readers and
    /// in-place writers first so none of them still uses a freed cluster.
    pub(crate) fn apply_deferred(&self, ws: &mut WState) -> Result<()> {
        if ws.deferred.is_empty() {
            return Ok(());
        }
        drop(self.meta_write());
        let list = std::mem::take(&mut ws.deferred);
        let cs = self.geo().cs();
        for d in list {
            for c in 0..d.clusters {
                let off = d.offset + c * cs;
                let new = self.change_refcount(ws, off / cs, -1)?;
                if new == 0 && d.punch {
                    let _ = self.file.discard(off, cs);
                }
            }
        }
        ws.free_byte_offset = 0;
        Ok(())
    }

    /// Overlap-checked write of a metadata table.
    pub(crate) fn write_meta(&self, off: u64, buf: &[u8], ignore: u32) -> Result<()> {
        self.pre_write_check(off, buf.len() as u64, ignore)?;
        block_core::BlockNodeExt::write_at(&*self.file, off, buf)
    }
}

/// Ignore masks for metadata writes of each kind.
pub(crate) mod ign {
    use super::kind;
    /// Writing an L2 table.
    pub const L2: u32 = kind::ACTIVE_L2;
    /// Writing a refcount block.
    pub const REFBLOCK: u32 = kind::REFBLOCK;
    /// Writing the active L1 table.
    pub const L1: u32 = kind::ACTIVE_L1;
    /// Writing the refcount table.
    pub const REFTABLE: u32 = kind::REFTABLE;
    /// Writing the header.
    pub const HEADER: u32 = kind::HEADER;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let mut d = vec![0u8; 512];
            let n = 512 * 8 / bits as u64;
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for i in 0..n {
                rc_set(&mut d, i, order, (i * 7919) & max);
            }
            for i in 0..n {
                assert_eq!(
                    rc_get(&d, i, order),
                    (i * 7919) & max,
                    "order {order} i {i}"
                );
            }
        }
        // QEMU layout: 1-bit refcounts are LSB first.
        let mut d = vec![0u8; 1];
        rc_set(&mut d, 0, 0, 1);
        assert_eq!(d[0], 1);
        let mut d = vec![0u8; 2];
        rc_set(&mut d, 0, 4, 1);
        assert_eq!(d, [0, 1]);
    }
}
