//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file handed out by test host services, no file system involved.

mod hostile;
mod io;
mod log;

use crate::format::{VhdxFormat, VhdxNode};
use crate::header::{Header, HEADER_OFFSETS};
use crate::image::Access;
use crate::VhdxDriver;
use block_core::testutil::{self, MemFile, TestHost};
use block_core::{BlockDriver, BlockNode, ChildRequest, ChildRole, HostServices, OpenFlags};
use std::sync::Arc;

/// The image's name in the test host.
const NAME: &str = "disk.vhdx";

/// Creates an image through the driver; returns the host and its file.
fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&VhdxDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&VhdxDriver, host, NAME, flags)
}

/// A host serving `img` as the image file.
fn host_with(img: &[u8]) -> (Arc<TestHost>, Arc<MemFile>) {
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::with_data(img));
    (host, file)
}

/// The format node itself (for the test hooks), opened read-write.
fn open_format(host: &Arc<TestHost>) -> VhdxNode {
    let file = host
        .open_child(&ChildRequest::new(ChildRole::File, NAME))
        .unwrap();
    let access = Access {
        writable: true,
        read_only: false,
        check: false,
    };
    VhdxNode::new(
        VhdxFormat::open(file, NAME.into(), access).unwrap(),
        false,
        false,
    )
}

/// The current header as stored in `file`.
fn current_header(file: &MemFile) -> Header {
    let h: Vec<Header> = HEADER_OFFSETS
        .iter()
        .filter_map(|&at| Header::decode(&file.peek(at, 4096)).unwrap())
        .collect();
    *h.iter().max_by_key(|h| h.sequence).unwrap()
}

#[test]
fn probe_and_options_are_qemus() {
    use block_core::ProbeInput;
    let p = |head: &[u8]| {
        VhdxDriver.probe(&ProbeInput {
            head,
            tail: &[],
            file_size: 1 << 20,
            filename: "x",
        })
    };
    assert_eq!(p(b"vhdxfile\0\0"), 100);
    assert_eq!(p(b"vhdxfilx"), 0);
    let names: Vec<String> = VhdxDriver
        .create_options()
        .into_iter()
        .map(|o| o.name)
        .collect();
    for n in [
        "size",
        "log_size",
        "block_size",
        "subformat",
        "block_state_zero",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
}
