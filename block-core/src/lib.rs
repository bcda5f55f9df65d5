//! # block-core
//!
//! The driver interface of the blk block layer: the [`BlockDriver`]
//! descriptor and the [`BlockNode`] an open image or protocol instance
//! implements, the [`HostServices`] a host hands to drivers, the shared
//! types and the one error type, typed create options, the driver
//! [`Registry`], and the stable C plugin ABI ([`abi`]) with which a driver
//! crate becomes a loadable plugin library.
//!
//! This crate depends on no other workspace crate.
#![warn(missing_docs)]

pub mod abi;
pub mod control;
pub mod diag;
pub mod driver;
pub mod engine;
pub mod error;
pub mod host;
pub mod info;
pub mod limits;
pub mod node;
pub mod open_options;
pub mod operation;
pub mod options;
pub mod registry;
pub mod testutil;
pub mod types;

pub use control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
pub use driver::{BlockDriver, OpenRequest, ProbeInput, PROBE_HEAD_SIZE, PROBE_TAIL_SIZE};
pub use error::{BlockError, ErrorKind, Operation, Result, ResultExt};
pub use host::{resolve_relative, ChildRequest, ChildRole, HostServices};
pub use info::{
    CheckFinding, CheckReport, CheckStopped, FindingKind, MeasureBitmap, MeasureRequest,
    MeasureResult, NodeInfo, SnapshotInfo,
};
pub use limits::{IoLimits, NodeCapabilities, ThreadModel};
pub use node::{iov_len, iov_len_mut, BlockNode, BlockNodeExt};
pub use open_options::read_open_options;
pub use options::{declare, parse_size, OptDesc, OptKind, OptType, OptionValues};
pub use registry::{DriverOrigin, RegisteredDriver, Registry};
pub use types::{
    CheckMode, DriverCaps, DriverKind, Extent, ExtentFlags, OpenFlags, Preallocation, ReqFlags,
    ZeroFlags,
};

#[doc(hidden)]
pub use inventory;

/// The traits a driver or host calls methods through, for a glob import.
pub mod prelude {
    pub use crate::control::{
        AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl,
        SnapshotControl,
    };
    pub use crate::driver::BlockDriver;
    pub use crate::host::HostServices;
    pub use crate::node::{BlockNode, BlockNodeExt};
}
