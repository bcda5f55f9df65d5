//! The driver descriptor: name, probe, create options, create and open.

use crate::format::{BatFormat, BatNode};
use crate::header::{Header, DEFAULT_BLOCK_SIZE, HEADER_SIZE, MAGIC};
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues,
    Preallocation, ProbeInput, Result,
};
use std::sync::Arc;

/// The format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatDriver;

impl BatDriver {
    /// A new driver instance.
    pub const fn new() -> BatDriver {
        BatDriver
    }
}

impl BlockDriver for BatDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images, grows them, checks them, and re-reads its metadata
    /// when the host hands the image over between processes (migration).
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::RESIZE)
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "example format: a header, a block allocation table, data blocks appended"
    }

    /// Certain when the file starts with the magic; otherwise not this format.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if input.head.len() >= MAGIC.len() && input.head[..MAGIC.len()] == MAGIC {
            100
        } else {
            0
        }
    }

    /// `size` (required) and `cluster_size`, named as qemu-img names them.
    fn create_options(&self) -> Vec<OptDesc> {
        let default_block = DEFAULT_BLOCK_SIZE.to_string();
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "cluster_size",
                OptKind::Size,
                Some(&default_block),
                "Block size (a power of two, 4 KiB to 2 MiB)",
            ),
        ]
    }

    /// Asks the host for a file holding the header and an all-zero BAT
    /// (its holes read as zeros: every block unallocated) and writes the
    /// header.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let header = header_from_options(options).map_err(|e| e.in_file(filename))?;
        let len = HEADER_SIZE + header.bat_bytes();
        host.create_file(filename, len, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &header.encode())?;
        file.flush()?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {} bytes in {} blocks of {}",
            header.size,
            header.bat_entries,
            header.block_size
        );
        Ok(())
    }

    /// Opens the `file` child with the request's flags, reads the metadata
    /// and wraps the format in the engine's node.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        // No open options are declared: any `-o key=value` is refused here,
        // in the words every driver uses.
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let format = BatFormat::open(file, req.filename.clone())?;
        let read_only = req.flags.contains(OpenFlags::READ_ONLY);
        let inactive = req.flags.contains(OpenFlags::INACTIVE);
        Ok(Box::new(BatNode::new(format, read_only, inactive)))
    }
}

/// The header a create request describes, validated.
fn header_from_options(options: &OptionValues) -> Result<Header> {
    let size = options
        .get_size("size")?
        .ok_or_else(|| BlockError::invalid("create", "the image size must be given"))?;
    let block = options
        .get_size("cluster_size")?
        .unwrap_or(DEFAULT_BLOCK_SIZE);
    Header::new("create", size, block)
}
