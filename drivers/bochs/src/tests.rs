//! Unit tests over an in-memory growing image built here from the format
//! description (bximage's layout: 512-byte header, catalog, extents of a
//! bitmap sector then the data sectors).

use crate::header::{GROWING_TYPE, MAGIC, REDOLOG_TYPE, UNALLOCATED, VERSION, VERSION_1};
use crate::BochsDriver;
use block_core::testutil::{self, pattern, MemFile, TestHost};
use block_core::{BlockDriver, BlockNodeExt, ChildRole, ErrorKind, OpenFlags, ProbeInput};
use std::sync::Arc;

const NAME: &str = "disk.img";
const EXTENT: usize = 16 << 10;

/// A growing image of `disk` bytes whose sectors in `data` (guest sector
/// numbers) hold `pattern`, extents numbered in the order first written.
fn image(version: u32, disk: u64, data: &[u64]) -> (Vec<u8>, Vec<u8>) {
    let catalog = (disk as usize).div_ceil(EXTENT);
    let mut h = vec![0u8; 512];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    h[32..32 + REDOLOG_TYPE.len()].copy_from_slice(REDOLOG_TYPE);
    h[48..48 + GROWING_TYPE.len()].copy_from_slice(GROWING_TYPE);
    h[64..68].copy_from_slice(&version.to_le_bytes());
    h[68..72].copy_from_slice(&512u32.to_le_bytes());
    h[72..76].copy_from_slice(&(catalog as u32).to_le_bytes());
    h[76..80].copy_from_slice(&512u32.to_le_bytes());
    h[80..84].copy_from_slice(&(EXTENT as u32).to_le_bytes());
    let at = if version == VERSION_1 { 84 } else { 88 };
    h[at..at + 8].copy_from_slice(&disk.to_le_bytes());
    let mut cat = vec![UNALLOCATED; catalog];
    let mut extents: Vec<Vec<u8>> = Vec::new();
    let mut guest = vec![0u8; disk as usize];
    let spe = (EXTENT / 512) as u64;
    for &s in data {
        let e = (s / spe) as usize;
        if cat[e] == UNALLOCATED {
            cat[e] = extents.len() as u32;
            extents.push(vec![0u8; 512 + EXTENT]);
        }
        let x = &mut extents[cat[e] as usize];
        let k = (s % spe) as usize;
        x[k / 8] |= 1 << (k % 8);
        let bytes = pattern(512, s as u8);
        x[512 + k * 512..512 + (k + 1) * 512].copy_from_slice(&bytes);
        guest[s as usize * 512..(s as usize + 1) * 512].copy_from_slice(&bytes);
    }
    let mut file = h;
    cat.iter()
        .for_each(|c| file.extend_from_slice(&c.to_le_bytes()));
    extents.iter().for_each(|x| file.extend_from_slice(x));
    (file, guest)
}

fn open(bytes: &[u8], flags: OpenFlags) -> block_core::Result<Box<dyn block_core::BlockNode>> {
    let host = Arc::new(TestHost::new());
    host.add_file(ChildRole::File, NAME, MemFile::with_data(bytes));
    testutil::open_image(&BochsDriver, &host, NAME, flags)
}

#[test]
fn reads_the_sectors_the_bitmaps_name() {
    for version in [VERSION, VERSION_1] {
        let disk = 1 << 20;
        let sectors = [0u64, 1, 5, 31, 32, 100, 101, 102, 2047];
        let (file, guest) = image(version, disk, &sectors);
        let probe = ProbeInput {
            filename: NAME,
            head: &file[..512],
            tail: &[],
            file_size: file.len() as u64,
        };
        assert_eq!(BochsDriver.probe(&probe), 100);
        let node = open(&file, OpenFlags::READ_ONLY).unwrap();
        assert_eq!(node.length().unwrap(), disk);
        let mut back = vec![0xaau8; disk as usize];
        node.read_at(0, &mut back).unwrap();
        assert!(back == guest, "version {version:#x}");
        // Unaligned reads inside and across runs.
        let mut b = vec![0u8; 1000];
        node.read_at(100 * 512 + 77, &mut b).unwrap();
        assert_eq!(&b[..], &guest[100 * 512 + 77..100 * 512 + 1077]);
        assert!(node.write_at(0, &[1]).is_err(), "read-only");
    }
}

#[test]
fn writable_opens_are_refused() {
    let (file, _) = image(VERSION, 1 << 20, &[3]);
    let e = open(&file, OpenFlags::NONE).err().unwrap();
    assert_eq!(e.kind, ErrorKind::ReadOnly);
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let (good, _) = image(VERSION, 1 << 20, &[3, 40]);
    let cases: &[(usize, u32, &str)] = &[
        (72, 0x10_0001, "Catalog size is too large"),
        (72, 10, "Catalog size is too small"),
        (80, 0, "Extent size must be at least 512"),
        (80, 3000, "not a power of two"),
        (80, 16 << 20, "too large"),
        (68, 1 << 30, "catalog"),
        (68, u32::MAX, "catalog"),
        (76, 0, "Bitmap size"),
        (64, 3, "not in Bochs format"),
    ];
    for &(off, v, words) in cases {
        let mut b = good.clone();
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        let e = open(&b, OpenFlags::READ_ONLY).err().expect(words);
        assert!(e.message.contains(words), "{words}: {e}");
    }
    // A huge disk size with a small catalog; a catalog entry far away.
    let mut b = good.clone();
    b[88..96].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(open(&b, OpenFlags::READ_ONLY).is_err());
    let mut b = good.clone();
    b[512..516].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let node = open(&b, OpenFlags::READ_ONLY).unwrap();
    let mut s = vec![0u8; 512];
    // Past the end of the file: its bitmap reads as zeros, the sector too.
    node.read_at(0, &mut s).unwrap();
    assert!(s.iter().all(|&x| x == 0));
    assert!(open(&good[..300], OpenFlags::READ_ONLY).is_err());
}
