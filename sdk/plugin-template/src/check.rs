//! `blk check`: the BAT against the file. An entry must name a block
//! inside the file that is not metadata, no two entries may name the same
//! block, and every block of the file is either metadata or named by an
//! entry; blocks no entry names are leaks (what a crash between a block's
//! data write and its BAT entry leaves at the end of the file).
//!
//! Repair (`-r leaks`) drops leaked blocks at the end of the file by
//! truncating it; leaks elsewhere and corruptions are reported only. The
//! host runs a check with no guest I/O in flight.

use crate::bat::{file_limit, Metadata};
use crate::format::BatFormat;
use block_core::control::CheckControl;
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::check::{note, ClusterStats, Findings};
use block_core::{CheckMode, CheckReport, FindingKind, Preallocation, Result};

/// The blocks `[start, end)` of the file.
type Blocks = (u64, u64);

/// Checks the entries; returns the blocks they validly name (sorted) and
/// records what is wrong with the others.
fn check_entries(m: &Metadata, file_len: u64, rep: &mut CheckReport) -> Vec<Blocks> {
    let h = &m.header;
    let bs = h.block();
    let mut stats = ClusterStats::default();
    let mut named: Vec<(u64, usize)> = Vec::new();
    for (i, &e) in m.bat.iter().enumerate() {
        if e == 0 {
            continue;
        }
        let at = u64::from(e) * bs;
        let guest_len = bs.min(h.size - i as u64 * bs);
        if at < h.bat_reserved_end() && h.bat_offset < at + bs {
            rep.corruption(format!(
                "BAT entry {i} names block {e}, which overlaps the BAT"
            ));
        } else if at + guest_len > file_len {
            rep.corruption(format!(
                "BAT entry {i} names block {e}, past the end of the file"
            ));
        } else {
            stats.data(rep, at, bs);
            named.push((u64::from(e), i));
        }
    }
    named.sort_unstable();
    for w in named.windows(2) {
        if w[0].0 == w[1].0 {
            rep.corruption(format!(
                "BAT entries {} and {} both name block {}",
                w[0].1, w[1].1, w[0].0
            ));
        }
    }
    named.into_iter().map(|(b, _)| (b, b + 1)).collect()
}

/// The runs of file blocks below `file_blocks` that `used` does not cover.
fn gaps(mut used: Vec<Blocks>, file_blocks: u64) -> Vec<Blocks> {
    used.sort_unstable();
    let mut out = Vec::new();
    let mut pos = 0;
    for (s, e) in used {
        if s > pos && pos < file_blocks {
            out.push((pos, s.min(file_blocks)));
        }
        pos = pos.max(e);
    }
    if pos < file_blocks {
        out.push((pos, file_blocks));
    }
    out
}

impl CheckControl for BatFormat {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        // Exclusive: a repair changes the file and the allocator.
        let mut m = self.meta_mut();
        let h = m.header;
        let bs = h.block();
        let mut file_len = self.file().length()?;
        let mut rep = CheckReport {
            total_clusters: Some(u64::from(h.bat_entries)),
            ..CheckReport::default()
        };
        let mut used = check_entries(&m, file_len, &mut rep);
        // The header's block and the BAT's are metadata.
        used.push((0, 1));
        used.push((h.bat_offset / bs, h.bat_reserved_end() / bs));
        let file_blocks = file_len.div_ceil(bs);
        for (s, e) in gaps(used, file_blocks) {
            let n = e - s;
            rep.leaks += n;
            let what = format!("{n} leaked block(s) at offset {:#x}", s * bs);
            if e == file_blocks && mode.contains(CheckMode::FIX_LEAKS) {
                note(
                    &mut rep,
                    FindingKind::Repair,
                    Some(s * bs),
                    format!("Repairing {what}"),
                );
                self.file().truncate(s * bs, Preallocation::Off)?;
                file_len = s * bs;
                // New blocks go where the leaked ones were.
                let end = file_len.max(h.bat_reserved_end());
                m.alloc = AppendAllocator::new(end, 0, bs, file_limit(bs))?;
                rep.leaks -= n;
                rep.leaks_fixed += n;
            } else {
                note(
                    &mut rep,
                    FindingKind::Leak,
                    Some(s * bs),
                    format!("Leaked: {what}"),
                );
            }
        }
        rep.image_end_offset = Some(file_len);
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn gaps_are_the_uncovered_runs_below_the_end() {
        let used = vec![(5, 6), (0, 1), (1, 3), (2, 4)];
        assert_eq!(gaps(used.clone(), 8), vec![(4, 5), (6, 8)]);
        assert_eq!(gaps(used.clone(), 5), vec![(4, 5)]);
        assert_eq!(gaps(used, 3), vec![]);
        assert_eq!(gaps(vec![], 2), vec![(0, 2)]);
    }
}
