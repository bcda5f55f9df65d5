//! The driver descriptor: name, probe, create options, create and open.

use crate::create::CreateParams;
use crate::format::{VhdxFormat, VhdxNode};
use crate::header::{FILE_SIGNATURE, MIB};
use crate::image::Access;
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, ChildRequest, ChildRole, DriverCaps, DriverKind,
    HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues, Preallocation,
    ProbeInput, Result,
};
use std::sync::Arc;

/// The vhdx format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct VhdxDriver;

impl VhdxDriver {
    /// A new driver instance.
    pub const fn new() -> VhdxDriver {
        VhdxDriver
    }
}

impl BlockDriver for VhdxDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates and checks images, and re-reads its metadata when the host
    /// hands the image over between processes. No resize: QEMU's vhdx
    /// driver has none either.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "Hyper-V VHDX, dynamic or fixed"
    }

    /// Certain when the file starts with "vhdxfile", as QEMU probes.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if input.head.starts_with(FILE_SIGNATURE) {
            100
        } else {
            0
        }
    }

    /// qemu-img's vhdx options, with its defaults.
    fn create_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::new(
                "size",
                OptKind::Size,
                None,
                "Virtual disk size; max of 64TB.",
            ),
            OptDesc::new("log_size", OptKind::Size, Some("1M"), "Log size; min 1MB."),
            OptDesc::new(
                "block_size",
                OptKind::Size,
                Some("0"),
                "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.",
            ),
            OptDesc::choice(
                "subformat",
                &["dynamic", "fixed"],
                Some("dynamic"),
                "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.",
            ),
            OptDesc::new(
                "block_state_zero",
                OptKind::Bool,
                Some("on"),
                "Force use of payload blocks of type 'ZERO'. Non-standard, but default.",
            ),
        ]
    }

    /// Lays the image out as qemu-img does and writes it.
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
        let p = CreateParams {
            size,
            log_size: options.get_size("log_size").map_err(ctx)?.unwrap_or(MIB),
            block_size: options.get_size("block_size").map_err(ctx)?.unwrap_or(0),
            block_state_zero: options.get_flag("block_state_zero").unwrap_or(true),
            fixed: options.get("subformat") == Some("fixed"),
        };
        let layout = p.layout().map_err(ctx)?;
        host.create_file(filename, 0, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        layout
            .write(file.as_ref(), p.fixed, p.block_state_zero)
            .map_err(ctx)?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {} bytes in {}-byte blocks{}",
            layout.params.disk_size,
            layout.params.block_size,
            if p.fixed { ", fixed" } else { "" }
        );
        Ok(())
    }

    /// Opens the `file` child with the request's flags, reads the metadata
    /// (replaying a dirty log when writable) and wraps the format in the
    /// engine's node.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let read_only = req.flags.contains(OpenFlags::READ_ONLY);
        let inactive = req.flags.contains(OpenFlags::INACTIVE);
        let access = Access {
            writable: !read_only && !inactive,
            read_only,
            check: req.flags.contains(OpenFlags::CHECK),
        };
        let format = VhdxFormat::open(file, req.filename.clone(), access)?;
        Ok(Box::new(VhdxNode::new(format, read_only, inactive)))
    }
}
