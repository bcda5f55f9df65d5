//! Create, write, reopen.

use crate::VhdxDriver;
use block_core::testutil::{create_image, open_image, pattern};
use block_core::{BlockNodeExt, OpenFlags};

#[test]
fn create_write_reopen() {
    let (host, _file) = create_image(
        &VhdxDriver,
        "d.vhdx",
        &[("size", "20M"), ("block_size", "1M")],
    );
    let n = open_image(&VhdxDriver, &host, "d.vhdx", OpenFlags::NONE).unwrap();
    let data = pattern(3 << 20, 3);
    n.write_at(1 << 19, &data).unwrap();
    n.flush().unwrap();
    drop(n);
    let n = open_image(&VhdxDriver, &host, "d.vhdx", OpenFlags::READ_ONLY).unwrap();
    let mut back = vec![0u8; 3 << 20];
    n.read_at(1 << 19, &mut back).unwrap();
    assert_eq!(back, data);
}
