//! Unit tests: create, write, read back, zeroed grains, hostile headers.

use crate::VmdkDriver;
use block_core::testutil::{create_image, open_image, pattern};
use block_core::{BlockNodeExt, OpenFlags};

#[test]
fn writes_read_back_after_reopen() {
    let d = VmdkDriver::new();
    let (host, _f) = create_image(&d, "a.vmdk", &[("size", "3M"), ("zeroed_grain", "on")]);
    let n = open_image(&d, &host, "a.vmdk", OpenFlags::NONE).unwrap();
    let data = pattern(100_000, 3);
    n.write_at(70_000, &data).unwrap();
    n.flush().unwrap();
    drop(n);
    let n = open_image(&d, &host, "a.vmdk", OpenFlags::READ_ONLY).unwrap();
    let mut b = vec![0u8; 100_000];
    n.read_at(70_000, &mut b).unwrap();
    assert_eq!(b, data);
    let mut z = vec![1u8; 1000];
    n.read_at(0, &mut z).unwrap();
    assert!(z.iter().all(|&x| x == 0));
    let info = n.info().unwrap();
    assert_eq!(info.virtual_size, 3 << 20);
    assert_eq!(
        info.format_specific.unwrap()["data"]["create-type"],
        "monolithicSparse"
    );
}

#[test]
fn hostile_headers_fail_cleanly() {
    let d = VmdkDriver::new();
    for (off, val) in [
        (20usize, 0u64),
        (20, 100),
        (44, 1 << 30),
        (56, 1 << 40),
        (12, u64::MAX / 2),
        (36, 1 << 30),
    ] {
        let (host, f) = create_image(&d, "h.vmdk", &[("size", "1M")]);
        if off == 44 {
            f.poke(off as u64, &(val as u32).to_le_bytes());
        } else {
            f.poke(off as u64, &val.to_le_bytes());
        }
        let Err(e) = open_image(&d, &host, "h.vmdk", OpenFlags::READ_ONLY) else {
            panic!("{off}: opened");
        };
        assert!(e.to_string().contains("h.vmdk"), "{off}: {e}");
    }
}

#[test]
fn the_first_write_changes_the_cid() {
    let d = VmdkDriver::new();
    let (host, _f) = create_image(&d, "c.vmdk", &[("size", "1M")]);
    let cid = |n: &dyn block_core::BlockNode| {
        n.info().unwrap().format_specific.unwrap()["data"]["cid"].clone()
    };
    let n = open_image(&d, &host, "c.vmdk", OpenFlags::NONE).unwrap();
    let before = cid(n.as_ref());
    n.write_at(0, &[1u8; 512]).unwrap();
    drop(n);
    let n = open_image(&d, &host, "c.vmdk", OpenFlags::READ_ONLY).unwrap();
    assert_ne!(cid(n.as_ref()), before);
}
