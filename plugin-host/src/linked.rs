//! The one place that names every linked-in driver crate, so the linker keeps
//! their `inventory` registrations.

use blk_bochs as _;
use blk_file as _;
use blk_null as _;
use blk_parallels as _;
use blk_qcow as _;
use blk_qcow2 as _;
use blk_qed as _;
use blk_raw as _;
use blk_vdi as _;
use blk_vhdx as _;
use blk_vmdk as _;
use blk_vpc as _;

/// Forces this module (and with it the driver crates) to be linked.
pub(crate) fn ensure_linked() {}
