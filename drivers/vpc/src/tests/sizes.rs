//! Sizes and geometry as qemu-img computes them, and the create options.

use super::*;
use crate::footer::{create_size, geometry, geometry_sectors};

/// `qemu-img create -f vpc` sizes and the virtual sizes QEMU 10 gives them
/// (from `qemu-img info`).
const QEMU_SIZES: &[(u64, u64)] = &[
    (0, 0),
    (1, 34816),
    (512, 34816),
    (1 << 20, 1_079_296),
    (8 << 20, 8_390_656),
    (100 << 20, 104_865_792),
    (1 << 30, 1_073_995_776),
    (3 << 30, 3_221_471_232),
    (40 << 30, 42_951_106_560),
    (127 << 30, 136_365_219_840),
    (200 << 30, 214_748_364_800),
    (2000 << 30, 2_147_483_648_000),
];

#[test]
fn create_sizes_match_qemu_img() {
    for &(asked, got) in QEMU_SIZES {
        let (size, geo) = create_size(asked, false).unwrap();
        assert_eq!(size, got, "{asked}: geometry {geo:?}");
    }
    // force_size keeps the size, rounded up to sectors; the geometry is
    // the largest, so that readers use the footer's size.
    let (size, geo) = create_size(1_000_001, true).unwrap();
    assert_eq!((size, geo), (1_000_448, (65535, 16, 255)));
    let e = create_size(2041 << 30, false).unwrap_err();
    assert!(e.message.contains("2040 GiB"), "{e}");
    assert!(create_size(u64::MAX, true).is_err());
}

#[test]
fn geometry_follows_the_specification() {
    let (size, geo) = create_size(100 << 20, false).unwrap();
    assert_eq!(geometry_sectors(geo) * 512, size);
    assert_eq!(geo.2, 17);
    assert_eq!(geometry(u64::MAX), (65535, 16, 255));
    let (c, h, s) = geometry(65535 * 16 * 63);
    assert_eq!((h, s), (16, 255));
    assert!(geometry_sectors((c, h, s)) <= 65535 * 16 * 63);
}

#[test]
fn created_images_open_at_the_rounded_size_in_both_subformats() {
    for sub in ["dynamic", "fixed"] {
        let (host, file) = create(&[("size", "100M"), ("subformat", sub)]);
        let node = open(&host, OpenFlags::NONE).unwrap();
        assert_eq!(node.length().unwrap(), 104_865_792, "{sub}");
        let info = node.info().unwrap();
        assert_eq!(info.format, "vpc");
        let dynamic = sub == "dynamic";
        assert_eq!(info.cluster_size, dynamic.then_some(BLOCK), "{sub}");
        let at = if dynamic { 0 } else { 104_865_792 };
        let f = stored_footer(&file, at);
        assert_eq!(&f.creator_app(), b"qemu");
        assert_eq!(f.fields.current_size, 104_865_792);
        assert_eq!(f.is_dynamic(), dynamic);
    }
    let (host, file) = create(&[("size", "1000001"), ("force_size", "on")]);
    assert_eq!(&stored_footer(&file, 0).creator_app(), b"qem2");
    assert_eq!(
        open(&host, OpenFlags::NONE).unwrap().length().unwrap(),
        1_000_448
    );
}

#[test]
fn a_new_dynamic_image_has_qemus_layout() {
    let (_host, file) = create(&[("size", "100M")]);
    // Footer, header, a one-sector BAT of 51 entries, footer.
    assert_eq!(file.length().unwrap(), 2560);
    assert_eq!(file.peek(0, 512), file.peek(2048, 512));
    let h = stored_header(&file);
    assert_eq!(
        (h.table_offset, h.max_table_entries, h.block()),
        (1536, 51, BLOCK)
    );
    assert!(file.peek(1536, 512).iter().all(|&b| b == 0xff));
}

#[test]
fn bad_create_options_are_refused() {
    assert!(create_options(&[("size", "1M"), ("subformat", "streamed")]).is_err());
    let host = Arc::new(TestHost::new());
    let e = VpcDriver
        .create(NAME, &create_options(&[]).unwrap(), host.clone())
        .unwrap_err();
    assert!(e.message.contains("size"), "{e}");
    assert!(host.created_file(NAME).is_none());
}

#[test]
fn the_size_is_read_by_creator_unless_force_size_calc_says() {
    use crate::footer::checksum;
    let (_host, file) = create(&[("size", "8M")]);
    let chs = 8_390_656u64;
    for app in [*b"qemu", *b"win "] {
        let mut img = file.contents();
        // Current size 8 MiB, smaller than the geometry's; creator `app`.
        let end = img.len() - 512;
        for at in [0, end] {
            img[at + 28..at + 32].copy_from_slice(&app);
            img[at + 48..at + 56].copy_from_slice(&(8u64 << 20).to_be_bytes());
            let c = checksum(&img[at..at + 512], 64);
            img[at + 64..at + 68].copy_from_slice(&c.to_be_bytes());
        }
        let by_creator = if &app == b"qemu" { chs } else { 8 << 20 };
        for (calc, want) in [
            (None, by_creator),
            (Some("chs"), chs),
            (Some("current_size"), 8 << 20),
        ] {
            let (host, _f) = host_with(&img);
            let mut req = OpenRequest::new(NAME, OpenFlags::READ_ONLY);
            if let Some(c) = calc {
                req.options = vec![("force_size_calc".into(), c.into())];
            }
            let node = VpcDriver.open(&req, host).unwrap();
            assert_eq!(node.length().unwrap(), want, "{app:?} {calc:?}");
        }
    }
    let (host, _f) = host_with(&file.contents());
    let mut req = OpenRequest::new(NAME, OpenFlags::READ_ONLY);
    req.options = vec![("force_size_calc".into(), "lba".into())];
    assert!(VpcDriver.open(&req, host).is_err());
}
