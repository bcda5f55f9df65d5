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
