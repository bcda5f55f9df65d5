//! `blk check`, as QEMU checks a vhdx image: a log replayed by the open
//! counts as a repaired corruption, and every present BAT entry must name
//! a block inside the file and off the metadata (the lines QEMU prints).
//! Nothing else is repaired: a read-write open has replayed the log.

use crate::format::VhdxFormat;
use crate::image::bat_problems;
use block_core::control::CheckControl;
use block_core::engine::check::Findings;
use block_core::{CheckMode, CheckReport, Result};

impl CheckControl for VhdxFormat {
    fn check(&self, _mode: CheckMode) -> Result<CheckReport> {
        let m = self.meta();
        let mut rep = CheckReport::default();
        if m.replayed {
            rep.corruptions_fixed += 1;
        }
        let file_len = self.file().length()?;
        for p in bat_problems(&m.bat, m.params.disk_size, file_len, &m.metadata_regions()) {
            rep.corruption(p);
        }
        Ok(rep)
    }
}
