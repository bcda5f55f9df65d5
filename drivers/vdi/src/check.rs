//! `blk check`, as QEMU checks a vdi image: every map entry that names a
//! data block must name a block of the image, no two entries may name the
//! same block, and the header's count of allocated blocks must match the
//! entries that name blocks.
//!
//! Repair (`-r all`) rewrites a wrong count; the other corruptions are
//! reported only. The host runs a check with no guest I/O in flight.

use crate::format::VdiFormat;
use crate::header::{is_allocated, UNALLOCATED};
use crate::map::{allocator, Metadata};
use block_core::control::CheckControl;
use block_core::engine::check::Findings;
use block_core::{CheckMode, CheckReport, Result};

/// Checks the entries of `m`; returns how many name a block of the image.
fn check_entries(m: &Metadata, rep: &mut CheckReport) -> u64 {
    let blocks = m.header.blocks_in_image;
    // The first entry naming each block number (as large as the map,
    // whose size is already bounded).
    let mut owner = vec![UNALLOCATED; blocks as usize];
    let mut count = 0;
    for (i, &e) in m.map.iter().enumerate() {
        if !is_allocated(e) {
            continue;
        }
        if e >= blocks {
            rep.corruption(format!("block index {i} too large, is {e}"));
            continue;
        }
        // Counted like QEMU counts: every entry naming a block of the image.
        count += 1;
        match owner[e as usize] {
            UNALLOCATED => owner[e as usize] = i as u32,
            first => {
                log::debug!("vdi check: guest blocks {first} and {i} both name block {e}");
                // QEMU's words (it names the block number twice).
                rep.corruption(format!("block index {e} also used by {e}"))
            }
        }
    }
    count
}

impl CheckControl for VdiFormat {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        // Exclusive: a repair changes the header and the allocator.
        let mut m = self.meta_mut();
        let mut rep = CheckReport::default();
        let named = check_entries(&m, &mut rep);
        let stored = u64::from(m.header.blocks_allocated);
        if named != stored {
            // QEMU's words: "is" the count of the map, "should be" the header's.
            let what = format!("allocated blocks mismatch, is {named}, should be {stored}");
            if rep.repairable(mode.contains(CheckMode::FIX_ERRORS), what) {
                let mut h = m.header;
                h.blocks_allocated = named as u32;
                self.write_allocated_count(&h)?;
                self.file().flush()?;
                m.header = h;
                m.alloc = allocator(&h, &m.map)?;
                rep.corruptions_fixed += 1;
            }
        }
        Ok(rep)
    }
}
