//! The driver descriptor: name, probe, create options, create and open.

use crate::format::{VdiFormat, VdiNode};
use crate::header::{Header, SIGNATURE, TYPE_DYNAMIC, TYPE_STATIC};
use crate::map::map_bytes;
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues,
    Preallocation, ProbeInput, Result,
};
use std::sync::Arc;

/// The vdi format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct VdiDriver;

impl VdiDriver {
    /// A new driver instance.
    pub const fn new() -> VdiDriver {
        VdiDriver
    }
}

impl BlockDriver for VdiDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates and checks images, and re-reads its metadata when the host
    /// hands the image over between processes (migration). No resize:
    /// QEMU's vdi driver has none either.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "VirtualBox Disk Image (VDI), dynamic or static"
    }

    /// Certain when the signature is at byte 0x40; otherwise not vdi.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        match input.head.get(0x40..0x44) {
            Some(s) if s == SIGNATURE.to_le_bytes() => 100,
            _ => 0,
        }
    }

    /// `size` (required) and `static`, named as qemu-img names them.
    fn create_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "static",
                OptKind::Bool,
                Some("off"),
                "VDI static (pre-allocated) image",
            ),
        ]
    }

    /// Asks the host for a file holding the header and the block map
    /// (every block unallocated, or for a static image every block
    /// numbered in order with the file sized to hold them all).
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let ctx = |e: BlockError| e.in_file(filename);
        let size = options.get_size("size").map_err(ctx)?.ok_or_else(|| {
            ctx(BlockError::invalid(
                "create",
                "the image size must be given",
            ))
        })?;
        let fixed = options.get_bool("static");
        let image_type = if fixed { TYPE_STATIC } else { TYPE_DYNAMIC };
        let header = Header::new("create", size, image_type).map_err(ctx)?;
        let blocks = header.blocks_in_image;
        let map: Vec<u32> = if fixed {
            (0..blocks).collect()
        } else {
            vec![crate::header::UNALLOCATED; blocks as usize]
        };
        let len = if fixed {
            header.block_at(blocks)
        } else {
            u64::from(header.offset_data)
        };
        host.create_file(filename, len, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &header.encode())?;
        file.write_at(u64::from(header.offset_bmap), &map_bytes(&map))?;
        file.flush()?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {} bytes in {blocks} blocks{}",
            header.disk_size,
            if fixed { ", static" } else { "" }
        );
        Ok(())
    }

    /// Opens the `file` child with the request's flags, reads the metadata
    /// and wraps the format in the engine's node.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let format = VdiFormat::open(file, req.filename.clone())?;
        let read_only = req.flags.contains(OpenFlags::READ_ONLY);
        let inactive = req.flags.contains(OpenFlags::INACTIVE);
        Ok(Box::new(VdiNode::new(format, read_only, inactive)))
    }
}
