//! The driver descriptor: name, probe, create options, create and open.

use crate::format::{ParallelsFormat, ParallelsNode};
use crate::header::{Header, DEFAULT_CLUSTER_SIZE, HEADER_SIZE, MAGIC_CLUSTERS, MAGIC_SECTORS};
use crate::header::{ENDIAN, VERSION};
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, CheckMode, ChildRequest, ChildRole,
    DriverCaps, DriverKind, HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues,
    Preallocation, ProbeInput, Result,
};
use std::sync::Arc;

/// The format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct ParallelsDriver;

impl ParallelsDriver {
    /// A new driver instance.
    pub const fn new() -> ParallelsDriver {
        ParallelsDriver
    }
}

impl BlockDriver for ParallelsDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images, checks them, and re-reads its metadata when the
    /// host hands the image over between processes (migration). Like
    /// QEMU's driver it cannot resize.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "Parallels expandable image: a header, a block allocation table, data clusters appended"
    }

    /// Certain when the file starts with either magic and version 2 (as
    /// QEMU probes); otherwise not this format.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        let h = input.head;
        let magic = h.len() >= HEADER_SIZE as usize
            && (h[..16] == MAGIC_SECTORS || h[..16] == MAGIC_CLUSTERS);
        if magic && ENDIAN.u32(h, 16) == VERSION {
            100
        } else {
            0
        }
    }

    /// `cluster_size` and `size`, named and defaulted as qemu-img's.
    fn create_options(&self) -> Vec<OptDesc> {
        let default_cluster = DEFAULT_CLUSTER_SIZE.to_string();
        vec![
            OptDesc::new(
                "cluster_size",
                OptKind::Size,
                Some(&default_cluster),
                "Parallels image cluster size",
            ),
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
        ]
    }

    /// Asks the host for a file as long as the header and the BAT rounded
    /// up to a cluster (its holes read as zeros: every cluster
    /// unallocated), as QEMU makes it, and writes the header.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let header = header_from_options(options).map_err(|e| e.in_file(filename))?;
        host.create_file(filename, header.data_start(), Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &header.encode())?;
        file.flush()?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {} sectors in {} clusters of {} sectors",
            header.nb_sectors,
            header.bat_entries,
            header.tracks
        );
        Ok(())
    }

    /// Opens the `file` child with the request's flags, reads the metadata
    /// and wraps the format in the engine's node. An image opened for
    /// writing gets its in-use field set; one whose field was already set
    /// (its writer did not close it) is repaired first, as QEMU does,
    /// unless it is opened for a check.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let read_only = req.flags.contains(OpenFlags::READ_ONLY);
        let inactive = req.flags.contains(OpenFlags::INACTIVE);
        let format = ParallelsFormat::open(file, req.filename.clone(), !read_only)?;
        if !read_only && !inactive {
            if format.unclean.load(std::sync::atomic::Ordering::SeqCst)
                && !req.flags.contains(OpenFlags::CHECK)
            {
                log::warn!(
                    "{DRIVER_NAME}: {}: image was not closed correctly; repairing it",
                    req.filename
                );
                format.check(CheckMode::FIX_ALL)?;
            }
            format.mark_in_use()?;
        }
        Ok(Box::new(ParallelsNode::new(format, read_only, inactive)))
    }
}

/// The header a create request describes, validated.
fn header_from_options(options: &OptionValues) -> Result<Header> {
    let size = options
        .get_size("size")?
        .ok_or_else(|| BlockError::invalid("create", "the image size must be given"))?;
    let cluster = options
        .get_size("cluster_size")?
        .unwrap_or(DEFAULT_CLUSTER_SIZE);
    Header::new("create", size, cluster)
}
