//! `blk check`, as `qemu-img check -f parallels`: the in-use field (an
//! image its writer did not close), BAT entries naming space outside the
//! data area or the file, entries naming the same cluster (duplicates),
//! and space after the last used cluster (leaks: what a crash between a
//! cluster's data write and its BAT entry leaves at the end of the file).
//!
//! Repairs: `-r leaks` truncates the file after the last used cluster;
//! `-r all` also clears the in-use field, unmaps entries outside the image
//! (their clusters then read as zeros, as after QEMU's repair) and gives
//! each duplicate its own copy of the cluster's data. The host runs a
//! check with no guest I/O in flight.

use crate::bat::{allocator, bat_bytes, Metadata};
use crate::format::ParallelsFormat;
use crate::header::{BAT_ENTRY_SIZE, HEADER_SIZE, SECTOR};
use block_core::control::CheckControl;
use block_core::engine::check::{note, ClusterStats, Findings};
use block_core::{
    BlockNode, BlockNodeExt, CheckMode, CheckReport, FindingKind, Preallocation, Result,
};
use std::sync::atomic::Ordering;

/// The largest piece a duplicate cluster is copied in.
const COPY_CHUNK: u64 = 1 << 20;

/// Writes BAT entry `i` of `m` to `file`.
fn store_entry(file: &dyn BlockNode, m: &mut Metadata, i: usize, value: u32) -> Result<()> {
    file.write_at(
        HEADER_SIZE + i as u64 * BAT_ENTRY_SIZE,
        &bat_bytes(&[value]),
    )?;
    m.bat[i] = value;
    Ok(())
}

/// Checks the entries against the file; returns the clusters they validly
/// name as `(file offset, entry index)`, sorted by offset, after the
/// repairs `fix` allows.
fn check_entries(
    file: &dyn BlockNode,
    m: &mut Metadata,
    file_len: u64,
    fix: bool,
    rep: &mut CheckReport,
) -> Result<Vec<(u64, usize)>> {
    let h = m.header;
    let cluster = h.cluster();
    let mut stats = ClusterStats::default();
    let mut named = Vec::new();
    for i in 0..m.bat.len() {
        let e = m.bat[i];
        if e == 0 {
            // As QEMU counts: a cluster after a hole is not fragmented.
            stats = ClusterStats::default();
            continue;
        }
        let at = m.entry_offset(e);
        if at < h.data_start() || at + cluster > file_len {
            if rep.repairable(fix, format!("cluster {i} is outside image")) {
                store_entry(file, m, i, 0)?;
                rep.corruptions_fixed += 1;
            }
            continue;
        }
        stats.data(rep, at, cluster);
        named.push((at, i));
    }
    named.sort_unstable();
    Ok(named)
}

/// Gives each entry naming a cluster an earlier entry also names its own
/// copy (with `fix`), else reports it. Returns the end of the last cluster
/// in use.
fn check_duplicates(
    file: &dyn BlockNode,
    m: &mut Metadata,
    named: &[(u64, usize)],
    fix: bool,
    rep: &mut CheckReport,
) -> Result<u64> {
    let cluster = m.header.cluster();
    let mut end = m.header.data_start();
    let mut prev_end = 0;
    let mut copies = Vec::new();
    for &(at, i) in named {
        if at < prev_end {
            if rep.repairable(fix, format!("duplicate offset in BAT entry {i}")) {
                copies.push((at, i));
            }
        } else {
            prev_end = at + cluster;
        }
        end = end.max(at + cluster);
    }
    if copies.is_empty() {
        return Ok(end);
    }
    m.alloc = allocator(&m.header, end)?;
    // Copied in pieces of at most COPY_CHUNK: clusters may be large.
    let mut buf = vec![0u8; cluster.min(COPY_CHUNK) as usize];
    for (at, i) in copies {
        let new = m.alloc.allocate(cluster)?.offset;
        for done in (0..cluster).step_by(buf.len()) {
            let piece = &mut buf[..(cluster - done).min(COPY_CHUNK) as usize];
            file.read_at(at + done, piece)?;
            file.write_at(new + done, piece)?;
        }
        // Data first, then the entry naming it.
        file.flush()?;
        let entry = (new / m.header.entry_unit()) as u32;
        store_entry(file, m, i, entry)?;
        rep.corruptions_fixed += 1;
        end = end.max(new + cluster);
    }
    Ok(end)
}

impl CheckControl for ParallelsFormat {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        let fix = mode.contains(CheckMode::FIX_ERRORS);
        let file = self.file().as_ref();
        // Exclusive: a repair changes the file and the allocator.
        let mut m = self.meta_mut();
        let h = m.header;
        let cluster = h.cluster();
        let file_len = file.length()?;
        let mut rep = CheckReport::counting_clusters(u64::from(h.bat_entries));
        if self.unclean.load(Ordering::SeqCst)
            && rep.repairable(fix, "image was not closed correctly".to_string())
        {
            self.unclean.store(false, Ordering::SeqCst);
            rep.corruptions_fixed += 1;
        }
        let named = check_entries(file, &mut m, file_len, fix, &mut rep)?;
        let mut end = check_duplicates(file, &mut m, &named, fix, &mut rep)?;
        if h.ext_off != 0 {
            // The format extension's cluster is metadata, when it is in the file.
            let ext_end = (h.ext_off.checked_mul(SECTOR)).and_then(|o| o.checked_add(cluster));
            match ext_end {
                Some(e) if e <= file_len => end = end.max(e),
                _ => rep.corruption(format!(
                    "format extension at sector {} is outside image",
                    h.ext_off
                )),
            }
        }
        let mut file_end = file.length()?;
        if file_end > end {
            let n = (file_end - end).div_ceil(cluster);
            let what = format!("space leaked at the end of the image {}", file_end - end);
            if mode.contains(CheckMode::FIX_LEAKS) {
                note(
                    &mut rep,
                    FindingKind::Repair,
                    Some(end),
                    format!("Repairing {what}"),
                );
                file.truncate(end, Preallocation::Off)?;
                file_end = end;
                rep.leaks_fixed += n;
            } else {
                note(
                    &mut rep,
                    FindingKind::Leak,
                    Some(end),
                    format!("ERROR {what}"),
                );
                rep.leaks += n;
            }
        }
        if fix || mode.contains(CheckMode::FIX_LEAKS) {
            file.flush()?;
            m.alloc = allocator(&m.header, file_end)?;
        }
        rep.image_end_offset = Some(end);
        Ok(rep)
    }
}
