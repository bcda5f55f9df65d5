//! The `file` protocol descriptor: create and open.

use crate::node::FileNode;
use block_core::{
    BlockDriver, BlockError, BlockNode, DriverCaps, DriverKind, HostServices, OpenRequest, OptDesc,
    OptKind, OptionValues, Preallocation, Result,
};
use std::sync::Arc;

/// The `file` protocol driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileDriver;

impl FileDriver {
    /// A new driver instance.
    pub const fn new() -> FileDriver {
        FileDriver
    }
}

impl BlockDriver for FileDriver {
    fn name(&self) -> &str {
        "file"
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Protocol
    }

    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::RESIZE)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "regular files and block devices"
    }

    fn protocol_prefixes(&self) -> Vec<String> {
        vec!["file".to_string()]
    }

    fn create_options(&self) -> Vec<OptDesc> {
        let mut o = block_core::options::plain_create_options();
        // QEMU's file protocol options, in its order after size.
        o.insert(
            1,
            OptDesc::new(
                "nocow",
                OptKind::Bool,
                Some("off"),
                "Turn off copy-on-write (valid only on btrfs)",
            ),
        );
        o.push(OptDesc::new(
            "extent_size_hint",
            OptKind::Size,
            None,
            "Extent size hint for the image file, 0 to disable",
        ));
        o
    }

    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        _host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let size = options.get_size("size")?.unwrap_or(0);
        let prealloc = options
            .get("preallocation")
            .and_then(Preallocation::parse)
            .unwrap_or_default();
        let attrs = crate::node::CreateAttrs {
            nocow: options.get_bool("nocow"),
            extent_size_hint: options.get_size("extent_size_hint")?,
        };
        if attrs
            .extent_size_hint
            .is_some_and(|h| h > u64::from(u32::MAX))
        {
            return Err(
                BlockError::invalid("create", "Extent size hint is too large").in_file(filename),
            );
        }
        FileNode::create(strip_prefix(filename), size, prealloc, &attrs)
    }

    /// The options `open` reads: how the file is locked and QEMU's aio
    /// modes (accepted; blk's I/O is synchronous on any of them).
    fn open_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::choice(
                "locking",
                &["on", "off", "auto"],
                Some("auto"),
                "File locking (on, off, auto: on)",
            ),
            OptDesc::choice(
                "aio",
                &["threads", "native", "io_uring"],
                Some("threads"),
                "Host AIO implementation (accepted for QEMU compatibility)",
            ),
        ]
    }

    fn open(&self, req: &OpenRequest, _host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let o = block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let locking = o.get("locking") != Some("off");
        Ok(Box::new(FileNode::open(
            strip_prefix(&req.filename),
            req.flags,
            locking,
        )?))
    }
}

fn strip_prefix(name: &str) -> &str {
    name.strip_prefix("file:").unwrap_or(name)
}
