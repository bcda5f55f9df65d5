//! Damaged and hostile images: every bad field gives a clear error at open,
//! with no panic, no hang and no allocation sized by the file.

use super::*;
use crate::footer::checksum;
use block_core::ErrorKind;

/// A dynamic 8 MiB image as the driver creates it.
fn good_image() -> Vec<u8> {
    let (_host, file) = create(&[("size", "8M")]);
    file.contents()
}

/// Sets a big-endian u32 at `at` in `img`, fixing the checksum of the
/// structure at `base` (`len` bytes, checksum at `sum_at` inside it).
fn poke32(img: &mut [u8], at: usize, v: u32, base: usize, len: usize, sum_at: usize) {
    img[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let c = checksum(&img[base..base + len], sum_at);
    img[base + sum_at..base + sum_at + 4].copy_from_slice(&c.to_be_bytes());
}

/// Sets a field of the dynamic header (at 512) and fixes its checksum.
fn poke_header(img: &mut [u8], at: usize, v: u32) {
    poke32(img, 512 + at, v, 512, 1024, 36);
}

fn open_error(img: &[u8]) -> block_core::BlockError {
    let (host, file) = host_with(img);
    let e = match open(&host, OpenFlags::NONE) {
        Ok(_) => panic!("a bad image opened"),
        Err(e) => e,
    };
    assert_eq!(file.contents(), img, "a failed open changes nothing");
    e
}

#[test]
fn bad_footers_are_named() {
    let good = good_image();
    let mut img = good.clone();
    img[0] = b'x';
    let end = img.len() - 512;
    img[end] = b'x';
    assert!(open_error(&img).message.contains("invalid VPC image"));
    let mut img = good.clone();
    img[48] ^= 1;
    assert!(open_error(&img).message.contains("checksum"));
    let mut img = good.clone();
    poke32(&mut img, 60, 4, 0, 512, 64);
    assert_eq!(open_error(&img).kind, ErrorKind::Unsupported);
    let mut img = good.clone();
    poke32(&mut img, 60, 9, 0, 512, 64);
    assert!(open_error(&img).message.contains("disk type 9"));
    assert!(open_error(&good[..100]).message.contains("shorter"));
    // A huge current size (creator not qemu): refused, not used.
    let mut img = good.clone();
    img[28..32].copy_from_slice(b"win ");
    poke32(&mut img, 48, 0xffff_ffff, 0, 512, 64);
    assert_eq!(open_error(&img).kind, ErrorKind::OutOfRange);
}

#[test]
fn hostile_dynamic_headers_are_refused_before_allocating() {
    let good = good_image();
    // Block size 0 (a division by zero), not a power of two, too large.
    for bs in [0, 3 << 20, 64 << 20, 1 << 31] {
        let mut img = good.clone();
        poke_header(&mut img, 32, bs);
        assert!(
            open_error(&img).message.contains("Invalid block size"),
            "{bs}"
        );
    }
    // 2^32 - 1 entries: 16 GiB of BAT, refused by size alone.
    let mut img = good.clone();
    poke_header(&mut img, 28, u32::MAX);
    assert!(open_error(&img).message.contains("BAT too large"));
    // Too few entries for the disk.
    let mut img = good.clone();
    poke_header(&mut img, 28, 1);
    assert!(open_error(&img).message.contains("Page table too small"));
    // The BAT outside the file, or unaligned.
    for (v, words) in [(0x7fff_0000u32, "BAT"), (1537, "aligned")] {
        let mut img = good.clone();
        poke_header(&mut img, 20, v);
        let e = open_error(&img);
        assert!(e.message.contains(words), "{v}: {e}");
    }
    // The header's offset past the end of the file.
    let mut img = good.clone();
    poke32(&mut img, 20, 0x7000_0000, 0, 512, 64);
    assert!(open_error(&img).message.contains("dynamic header"));
    // A broken header checksum.
    let mut img = good.clone();
    img[512 + 33] ^= 1;
    assert!(open_error(&img).message.contains("checksum"));
}

#[test]
fn bat_entries_naming_metadata_or_space_past_the_file_are_refused() {
    let good = good_image();
    for (entry, words) in [
        (0u32, "metadata"),
        (3, "metadata"),
        (0x00ff_ffff, "truncated"),
    ] {
        let mut img = good.clone();
        img[1536..1540].copy_from_slice(&entry.to_be_bytes());
        let e = open_error(&img);
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.message.contains(words), "{entry}: {e}");
    }
}

#[test]
fn a_fixed_image_shorter_than_its_size_is_refused() {
    let (_host, file) = create(&[("size", "1M"), ("subformat", "fixed")]);
    let img = file.contents();
    // Keep only the footer, moved to a short file.
    let mut short = vec![0u8; 4096];
    short[4096 - 512..].copy_from_slice(&img[img.len() - 512..]);
    assert!(open_error(&short).message.contains("truncated"));
}
