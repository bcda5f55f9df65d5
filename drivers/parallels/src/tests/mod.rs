//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]), so no file system and no host are involved.

mod check;
mod io;
mod open;

use crate::header::{Header, ENDIAN, HEADER_SIZE};
use crate::ParallelsDriver;
use block_core::testutil::{self, pattern, MemFile, TestHost};
use block_core::{BlockDriver, BlockNode, OpenFlags, OptionValues};
use std::sync::Arc;

/// The image's name in the test host.
const NAME: &str = "disk.img";

fn create_options(pairs: &[(&str, &str)]) -> block_core::Result<OptionValues> {
    testutil::create_options(&ParallelsDriver, pairs)
}

/// Creates an image through the driver; returns the host and its file.
fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&ParallelsDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&ParallelsDriver, host, NAME, flags)
}

/// The header as stored in `file`.
fn stored_header(file: &MemFile) -> Header {
    Header::decode(&file.peek(0, HEADER_SIZE as usize)).unwrap()
}

/// BAT entry `i` as stored in `file`.
fn stored_entry(file: &MemFile, i: u64) -> u32 {
    ENDIAN.u32(&file.peek(HEADER_SIZE + 4 * i, 4), 0)
}

/// Overwrites BAT entry `i` in `file` (a damaged or hostile image).
fn poke_entry(file: &MemFile, i: u64, value: u32) {
    file.poke(HEADER_SIZE + 4 * i, &value.to_le_bytes());
}
