//! Changing the stored backing file (`blk rebase -u`, the end of `blk
//! commit`): the name goes right after the fixed header fields, inside the
//! header area; a raw backing format is stored as the no-probe feature.

use crate::format::QedFormat;
use crate::header::{F_BACKING_FILE, F_BACKING_FORMAT_NO_PROBE, HEADER_LEN};
use block_core::control::BackingControl;
use block_core::{BlockError, BlockNodeExt, Result};

impl BackingControl for QedFormat {
    fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()> {
        let mut m = self.meta_mut();
        let mut h = m.header;
        let name = filename.filter(|n| !n.is_empty());
        h.features &= !(F_BACKING_FILE | F_BACKING_FORMAT_NO_PROBE);
        // The name's place stays right after the fields, as QEMU keeps it.
        h.backing_filename_offset = HEADER_LEN as u32;
        h.backing_filename_size = 0;
        let mut bytes = h.encode().to_vec();
        if let Some(n) = name {
            if (HEADER_LEN + n.len()) as u64 > h.data_start() {
                return Err(BlockError::invalid(
                    "change backing file",
                    "backing file name too long for the QED header",
                )
                .in_file(&self.filename));
            }
            h.features |= F_BACKING_FILE;
            if format == Some("raw") {
                h.features |= F_BACKING_FORMAT_NO_PROBE;
            }
            h.backing_filename_size = n.len() as u32;
            bytes = h.encode().to_vec();
            bytes.extend_from_slice(n.as_bytes());
        }
        self.file.write_at(0, &bytes)?;
        self.file.flush()?;
        m.header = h;
        m.backing_name = name.map(str::to_string);
        Ok(())
    }
}
