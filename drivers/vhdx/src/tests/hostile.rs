//! Hostile images: every bad field gives a clean error at open, with no
//! panic and no allocation sized by the file.

use super::*;
use crate::header::seal;
use crate::region::REGION_TABLE_OFFSETS;

fn good_image() -> Vec<u8> {
    let (_host, file) = create(&[("size", "8M"), ("block_size", "1M")]);
    file.contents()
}

fn open_error(img: &[u8]) -> String {
    let (host, file) = host_with(img);
    let e = match open(&host, OpenFlags::NONE) {
        Ok(_) => panic!("a bad image opened"),
        Err(e) => e,
    };
    assert_eq!(file.contents(), img, "a failed open changes nothing");
    e.to_string()
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_headers_and_tables_are_named() {
    let good = good_image();
    let rt = REGION_TABLE_OFFSETS[0] as usize;
    let md = u64::from_le_bytes(good[rt + 64..rt + 72].try_into().unwrap()) as usize;
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut b = good.clone();
    b[0] = b'X';
    cases.push((b, "vhdxfile"));
    let mut b = good.clone();
    b[(64 << 10) + 20] ^= 1;
    b[(128 << 10) + 20] ^= 1;
    cases.push((b, "No valid VHDX header"));
    for v in [0, 3 << 20, 512 << 20] {
        let mut b = good.clone();
        put32(&mut b, md + (64 << 10), v);
        cases.push((b, "block size"));
    }
    let mut b = good.clone();
    put32(&mut b, rt + 8, 100_000);
    seal(&mut b[rt..rt + (64 << 10)], 4);
    cases.push((b, "entries"));
    let mut b = good.clone();
    b[rt + 100] ^= 1;
    cases.push((b, "checksum"));
    let mut b = good.clone();
    put32(&mut b, md + 32 + 16, 1 << 30);
    cases.push((b, "outside the metadata region"));
    let mut b = good.clone();
    put32(&mut b, md + 10, 3000);
    cases.push((b, "entries"));
    let mut b = good.clone();
    b[md + (64 << 10) + 8..md + (64 << 10) + 16].copy_from_slice(&(64u64 << 40).to_le_bytes());
    cases.push((b, "too small"));
    let mut b = good.clone();
    put32(&mut b, md + (64 << 10) + 4, 2);
    cases.push((b, "parent"));
    for h in [64 << 10, 128 << 10] {
        let mut b = good.clone();
        put32(&mut b, h + 68, 0xfff0_0000);
        seal(&mut b[h..h + 4096], 4);
        // Both headers' log lengths, so that whichever is current is bad.
        put32(&mut b, (192 << 10) - h + 68, 0xfff0_0000);
        let o = (192 << 10) - h;
        seal(&mut b[o..o + 4096], 4);
        cases.push((b, "log"));
    }
    for (img, words) in cases {
        let e = open_error(&img);
        assert!(e.contains(words), "{words}: {e}");
    }
}

#[test]
fn the_header_with_the_higher_sequence_number_wins() {
    let good = good_image();
    let (h1, h2) = (64usize << 10, 128usize << 10);
    let seq = |b: &[u8], h: usize| u64::from_le_bytes(b[h + 8..h + 16].try_into().unwrap());
    // The current header's log points past the file; the older one is fine.
    let cur = if seq(&good, h1) > seq(&good, h2) {
        h1
    } else {
        h2
    };
    let old = h1 + h2 - cur;
    let mut b = good.clone();
    put32(&mut b, cur + 68, 0xfff0_0000);
    seal(&mut b[cur..cur + 4096], 4);
    assert!(open_error(&b).contains("log"));
    // The same damage without a valid checksum: the older header is used.
    b[cur + 4] ^= 1;
    let (host, _file) = host_with(&b);
    open(&host, OpenFlags::READ_ONLY).unwrap();
    // Equal sequence numbers: accepted for identical headers (as some
    // tools write them), refused for different ones.
    let mut b = good.clone();
    let same = b[cur..cur + 4096].to_vec();
    b[old..old + 4096].copy_from_slice(&same);
    let (host, _file) = host_with(&b);
    open(&host, OpenFlags::READ_ONLY).unwrap();
    let s = seq(&b, cur);
    b[old + 8..old + 16].copy_from_slice(&s.to_le_bytes());
    b[old + 32] ^= 1;
    seal(&mut b[old..old + 4096], 4);
    assert!(open_error(&b).contains("same sequence number"));
}

#[test]
fn bat_states_map_as_qemu_reads_them() {
    use crate::bat::{UNDEFINED, UNMAPPED};
    use block_core::BlockNodeExt;
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[4; 4096]).unwrap();
    drop(n);
    let rt = REGION_TABLE_OFFSETS[0];
    let bat = u64::from_le_bytes(file.peek(rt + 32, 8).try_into().unwrap());
    let data = u64::from_le_bytes(file.peek(bat, 8).try_into().unwrap()) & !0xfffff;
    // Undefined and unmapped blocks read as zeros even with an offset.
    file.poke(bat + 8, &(data | UNDEFINED).to_le_bytes());
    file.poke(bat + 16, &(data | UNMAPPED).to_le_bytes());
    // Partially present needs a parent: an error on read, not a panic.
    file.poke(bat + 24, &(data | 7).to_le_bytes());
    let n = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut b = [9u8; 4096];
    for blk in [1u64, 2] {
        n.read_at(blk << 20, &mut b).unwrap();
        assert_eq!(b, [0; 4096], "block {blk}");
    }
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [4; 4096]);
    let e = n.read_at(3 << 20, &mut b).unwrap_err();
    assert!(e.to_string().contains("partially present"), "{e}");
    // A present entry pointing into the header section is refused at open.
    file.poke(bat + 24, &(6u64).to_le_bytes());
    assert!(open_error(&file.contents()).contains("overlaps image metadata"));
}
