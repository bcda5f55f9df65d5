//! `blk check`, as QEMU checks a sparse vmdk: every grain directory entry
//! must name a grain table inside the file, and every grain table entry
//! naming a grain must name one that ends inside the file. Corruptions
//! are reported, never repaired (QEMU's vmdk check repairs nothing either).

use crate::format::VmdkFormat;
use crate::header::{ENDIAN, SECTOR};
use block_core::control::CheckControl;
use block_core::engine::check::Findings;
use block_core::{BlockNodeExt, CheckMode, CheckReport, Result};

impl CheckControl for VmdkFormat {
    fn check(&self, _mode: CheckMode) -> Result<CheckReport> {
        let m = self.meta();
        let h = m.header;
        let file_len = self.file().length()?;
        let mut rep = CheckReport::default();
        let per = u64::from(h.num_gtes_per_gt);
        let grains = h.size().div_ceil(h.grain());
        let mut allocated = 0;
        let mut buf = vec![0u8; h.gt_bytes() as usize];
        for (i, &s) in m.gd.iter().enumerate() {
            if s == 0 {
                continue;
            }
            let off = u64::from(s) * SECTOR;
            if off + h.gt_bytes() > file_len {
                rep.corruption(format!(
                    "grain directory entry {i} points after end of file"
                ));
                continue;
            }
            self.file().read_at(off, &mut buf)?;
            let first = i as u64 * per;
            for k in 0..per.min(grains.saturating_sub(first)) {
                let e = ENDIAN.u32(&buf, k as usize * 4);
                if e == 0 || (e == 1 && h.zeroed_grain()) {
                    continue;
                }
                allocated += 1;
                let g = u64::from(e) * SECTOR;
                if g >= file_len {
                    rep.corruption(format!(
                        "cluster offset for sector {} points after end of file",
                        (first + k) * h.granularity
                    ));
                }
            }
        }
        rep.total_clusters = Some(grains);
        rep.allocated_clusters = Some(allocated);
        Ok(rep)
    }
}
