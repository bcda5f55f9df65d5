//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]), so no file system and no host are involved.

mod check;
mod io;
mod open;

use crate::header::{Header, ENDIAN, HEADER_SIZE};
use crate::VdiDriver;
use block_core::testutil::{self, pattern, MemFile, TestHost};
use block_core::{BlockDriver, BlockNode, OpenFlags, OptionValues};
use std::sync::Arc;

/// The image's name in the test host.
const NAME: &str = "disk.vdi";
/// The block size.
const BLOCK: u64 = 1 << 20;

fn create_options(pairs: &[(&str, &str)]) -> block_core::Result<OptionValues> {
    testutil::create_options(&VdiDriver, pairs)
}

/// Creates an image through the driver; returns the host and its file.
fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&VdiDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&VdiDriver, host, NAME, flags)
}

/// The header as stored in `file`.
fn stored_header(file: &MemFile) -> Header {
    Header::decode(&file.peek(0, HEADER_SIZE as usize)).unwrap()
}

/// Block map entry `i` as stored in `file`.
fn stored_entry(file: &MemFile, i: u64) -> u32 {
    let h = stored_header(file);
    ENDIAN.u32(&file.peek(u64::from(h.offset_bmap) + 4 * i, 4), 0)
}

/// Overwrites block map entry `i` in `file` (a damaged or hostile image).
fn poke_entry(file: &MemFile, i: u64, value: u32) {
    let h = stored_header(file);
    file.poke(u64::from(h.offset_bmap) + 4 * i, &value.to_le_bytes());
}
