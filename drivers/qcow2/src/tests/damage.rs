//! Open-time damage tolerance (open/damage.rs).

use crate::layout::header::Header;
use crate::open::damage::*;

fn header(l1: u64, rt: u64) -> Header {
    let mut h = Header::parse(&sample_cluster0(), 1 << 20).unwrap();
    h.l1_table_offset = l1;
    h.refcount_table_offset = rt;
    h
}

fn sample_cluster0() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    crate::layout::header::put_u32(&mut b, 0, crate::layout::header::MAGIC);
    crate::layout::header::put_u32(&mut b, 4, 2);
    crate::layout::header::put_u32(&mut b, 20, 9);
    crate::layout::header::put_u64(&mut b, 24, 1 << 20);
    crate::layout::header::put_u32(&mut b, 36, 32);
    crate::layout::header::put_u64(&mut b, 40, 3 * 512);
    crate::layout::header::put_u64(&mut b, 48, 512);
    crate::layout::header::put_u32(&mut b, 56, 1);
    b
}

#[test]
fn tables_past_the_end_are_named() {
    assert_eq!(table_past_eof(&header(1536, 512), 4096, 0), None);
    assert!(table_past_eof(&header(1536, 8192), 4096, 0)
        .unwrap()
        .contains("refcount table"));
    assert!(table_past_eof(&header(8192, 512), 4096, 0)
        .unwrap()
        .contains("L1 table"));
    // The L1 table's last byte just past the end counts too.
    assert!(table_past_eof(&header(4096 - 64, 512), 4096, 0).is_some());
}
