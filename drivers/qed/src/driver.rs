//! The driver descriptor: name, probe, create options, create and open.

use crate::format::QedFormat;
use crate::header::{Header, DEFAULT_CLUSTER_SIZE, DEFAULT_TABLE_SIZE, HEADER_LEN, MAGIC};
use crate::mapping::QedNode;
use crate::DRIVER_NAME;
use block_core::engine::backing_child::backing_request;
use block_core::engine::create::{backing_options, virtual_size};
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps, DriverKind,
    HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues, Preallocation,
    ProbeInput, Result, ResultExt,
};
use std::sync::Arc;

/// The qed format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct QedDriver;

impl QedDriver {
    /// A new driver instance.
    pub const fn new() -> QedDriver {
        QedDriver
    }
}

impl BlockDriver for QedDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images (with backing files), grows them, checks them, and
    /// re-reads its metadata on a handoff between processes.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::BACKING)
            .with(DriverCaps::RESIZE)
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "QEMU Enhanced Disk: two-level tables, clusters appended, backing files"
    }

    /// Certain when the file starts with `QED\0`.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if input.head.len() >= MAGIC.len() && input.head[..MAGIC.len()] == MAGIC {
            100
        } else {
            0
        }
    }

    /// The options of `qemu-img create -f qed -o help`, defaulted as QEMU's.
    fn create_options(&self) -> Vec<OptDesc> {
        let cs = DEFAULT_CLUSTER_SIZE.to_string();
        let ts = DEFAULT_TABLE_SIZE.to_string();
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "backing_file",
                OptKind::String,
                None,
                "File name of a base image",
            ),
            OptDesc::new(
                "backing_fmt",
                OptKind::String,
                None,
                "Image format of the base image",
            ),
            OptDesc::new(
                "cluster_size",
                OptKind::Size,
                Some(&cs),
                "Cluster size (in bytes)",
            ),
            OptDesc::new(
                "table_size",
                OptKind::Size,
                Some(&ts),
                "L1/L2 table size (in clusters)",
            ),
        ]
    }

    /// Writes the header cluster (with the backing name) and an all-zero
    /// L1 table: every cluster unallocated.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let (bf, bfmt) = backing_options(filename, options)?;
        let size = virtual_size(filename, options, bf.as_deref(), bfmt.as_deref(), &*host)?;
        let cs = options.get_size("cluster_size").in_file(filename)?;
        let ts = options.get_size("table_size").in_file(filename)?;
        let raw = bfmt.as_deref() == Some("raw");
        let h = Header::new(
            size,
            cs.unwrap_or(DEFAULT_CLUSTER_SIZE),
            ts.unwrap_or(DEFAULT_TABLE_SIZE),
            bf.as_deref().map(|n| (n, raw)),
        )
        .in_file(filename)?;
        host.create_file(
            filename,
            h.data_start() + h.table_bytes(),
            Preallocation::Off,
        )?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        let mut head = h.encode().to_vec();
        if let Some(n) = &bf {
            head.truncate(HEADER_LEN);
            head.extend_from_slice(n.as_bytes());
        }
        file.write_at(0, &head)?;
        file.flush()?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {size} bytes, clusters of {}",
            h.cluster()
        );
        Ok(())
    }

    /// Opens the `file` child and the backing file, reads the metadata,
    /// and, on a writable open of an image whose need-check flag is set,
    /// runs the check with repair first.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let meta = crate::tables::Metadata::load(file.as_ref()).in_file(&req.filename)?;
        let backing = match &meta.backing_name {
            Some(b) if !req.flags.contains(OpenFlags::NO_BACKING) => {
                let r = backing_request(&req.filename, b, meta.backing_format(), req.flags);
                Some(host.open_child(&r)?)
            }
            _ => None,
        };
        let writable = !req.flags.contains(OpenFlags::READ_ONLY)
            && !req.flags.contains(OpenFlags::INACTIVE)
            && !req.flags.contains(OpenFlags::CHECK);
        let format = QedFormat::open(file, req.filename.clone(), backing)?;
        if writable {
            prepare_for_writing(&format).in_file(&req.filename)?;
        }
        Ok(Box::new(QedNode::for_request(format, req)))
    }
}

/// A writable open: clears auto-clear features this driver does not know
/// (none are defined), and checks and repairs an image left with the
/// need-check flag set.
fn prepare_for_writing(f: &QedFormat) -> Result<()> {
    let (autoclear, need_check) = {
        let m = f.meta();
        (m.header.autoclear_features, m.header.need_check())
    };
    if autoclear != 0 {
        let mut m = f.meta_mut();
        let mut h = m.header;
        h.autoclear_features = 0;
        f.write_header(&h)?;
        f.file().flush()?;
        m.header = h;
    }
    if need_check {
        log::info!("{DRIVER_NAME}: image was not closed cleanly; checking it");
        let rep = f.run_check(true)?;
        if rep.corruptions > 0 {
            return Err(block_core::BlockError::corrupt(
                "open",
                format!(
                    "image is corrupt: {} corruption(s) remain after repair",
                    rep.corruptions
                ),
            ));
        }
    }
    Ok(())
}
