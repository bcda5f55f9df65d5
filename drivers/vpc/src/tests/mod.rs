//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]).

mod hostile;
mod io;
mod sizes;

use crate::dyn_header::DynHeader;
use crate::footer::{Footer, ENDIAN, FOOTER_SIZE};
use crate::VpcDriver;
use block_core::testutil::{self, pattern, MemFile, TestHost};
use block_core::{BlockDriver, BlockNode, OpenFlags, OpenRequest, OptionValues};
use std::sync::Arc;

/// The image's name in the test host.
const NAME: &str = "disk.vhd";
/// The block size of images the driver creates.
const BLOCK: u64 = 2 << 20;

fn create_options(pairs: &[(&str, &str)]) -> block_core::Result<OptionValues> {
    testutil::create_options(&VpcDriver, pairs)
}

/// Creates an image through the driver; returns the host and its file.
fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&VpcDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&VpcDriver, host, NAME, flags)
}

/// A host holding `data` as the image file.
fn host_with(data: &[u8]) -> (Arc<TestHost>, Arc<MemFile>) {
    let host = Arc::new(TestHost::new());
    let file = host.add_file(block_core::ChildRole::File, NAME, MemFile::with_data(data));
    (host, file)
}

/// The footer stored at `at`.
fn stored_footer(file: &MemFile, at: u64) -> Footer {
    Footer::decode(&file.peek(at, FOOTER_SIZE as usize)).unwrap()
}

/// The dynamic header stored at 512.
fn stored_header(file: &MemFile) -> DynHeader {
    DynHeader::decode(&file.peek(512, 1024)).unwrap()
}

/// BAT entry `i` as stored.
fn stored_entry(file: &MemFile, i: u64) -> u32 {
    let h = stored_header(file);
    ENDIAN.u32(&file.peek(h.table_offset + 4 * i, 4), 0)
}
