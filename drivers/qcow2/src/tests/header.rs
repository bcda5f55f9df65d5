//! Header parsing and serialization (layout/header.rs).

use crate::layout::header::*;

fn sample() -> Header {
    Header {
        version: 3,
        backing_file_offset: 0,
        backing_file_size: 0,
        cluster_bits: 16,
        size: 1 << 30,
        crypt_method: 0,
        l1_size: 2,
        l1_table_offset: 0x30000,
        refcount_table_offset: 0x10000,
        refcount_table_clusters: 1,
        nb_snapshots: 0,
        snapshots_offset: 0,
        incompatible_features: 0,
        compatible_features: 0,
        autoclear_features: 0,
        refcount_order: 4,
        header_length: 112,
        compression_type: 0,
        backing_file: Some("base.raw".into()),
        backing_format: Some("raw".into()),
        data_file: None,
        feature_names: Vec::new(),
        other_extensions: vec![(EXT_BITMAPS, vec![1, 2, 3])],
    }
}

#[test]
fn round_trip() {
    let mut h = sample();
    let buf = h.serialize().unwrap();
    let mut p = Header::parse(&buf, 0x40000).unwrap();
    p.feature_names.clear();
    assert_eq!(p, h);
}

#[test]
fn hostile_fields_refused() {
    let mut h = sample();
    let good = h.serialize().unwrap();
    let cases: Vec<(usize, Vec<u8>)> = vec![
        (20, 8u32.to_be_bytes().to_vec()),  // cluster_bits too small
        (20, 22u32.to_be_bytes().to_vec()), // cluster_bits too big
        (20, 0xffff_ffffu32.to_be_bytes().to_vec()),
        (4, 4u32.to_be_bytes().to_vec()),            // version
        (36, 0x7fff_ffffu32.to_be_bytes().to_vec()), // L1 too large
        (36, 0u32.to_be_bytes().to_vec()),           // L1 too small for size
        (40, 0x30001u64.to_be_bytes().to_vec()),     // misaligned L1
        (40, u64::MAX.to_be_bytes().to_vec()),
        (48, 0x10200u64.to_be_bytes().to_vec()), // misaligned reftable
        (56, 0xffff_ffffu32.to_be_bytes().to_vec()), // reftable too large
        (56, 0u32.to_be_bytes().to_vec()),
        (60, 0x7fff_ffffu32.to_be_bytes().to_vec()), // too many snapshots
        (96, 7u32.to_be_bytes().to_vec()),           // refcount_order
        (100, 8u32.to_be_bytes().to_vec()),          // header_length
        (100, 0x20000u32.to_be_bytes().to_vec()),
        (72, (1u64 << 20).to_be_bytes().to_vec()), // unknown incompat bit
        (24, u64::MAX.to_be_bytes().to_vec()),     // size
        (32, 3u32.to_be_bytes().to_vec()),         // encryption method
        (16, 5000u32.to_be_bytes().to_vec()),      // backing name length
    ];
    for (off, bytes) in cases {
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(&bytes);
        assert!(
            Header::parse(&b, 0x40000).is_err(),
            "field at {off} = {bytes:?} accepted"
        );
    }
    assert!(Header::parse(&good[..50], 0x40000).is_err());
    // Extension running past cluster 0.
    let mut b = good.clone();
    put_u32(&mut b, 116, 0xffff);
    assert!(Header::parse(&b, 0x40000).is_err());
}

#[test]
fn unknown_feature_named_from_table() {
    let mut h = sample();
    h.incompatible_features = 1 << 9;
    let mut buf = h.serialize().unwrap();
    // Patch the feature table: rename the entry for incompat bit 0 to bit 9.
    let pos = buf
        .windows(5)
        .position(|w| w == b"dirty")
        .expect("feature table");
    buf[pos - 1] = 9;
    buf[pos..pos + 5].copy_from_slice(b"shiny");
    let err = Header::parse(&buf, 0x40000).unwrap_err();
    assert!(err.message.contains("shiny"), "{}", err.message);
}
