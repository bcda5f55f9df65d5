//! Unit tests of `abi::checks` (the C-side tests are in
//! tests/tests/abi_careless.rs).

use super::*;
use crate::abi::{BcDriverVtbl, BcNodeVtbl, BcStr, BLK_ABI_MAGIC};

fn iov(ptr: *mut u8, len: usize) -> BcIoVec {
    BcIoVec { ptr, len }
}

fn check(v: &[BcIoVec], disjoint: bool) -> Result<usize> {
    let p = v.as_ptr();
    unsafe { checked_iovecs("read", 0, &p, v.len(), disjoint) }.map(|s| s.len())
}

#[test]
fn overlapping_read_buffers_are_refused() {
    let mut buf = vec![0u8; 3 * 4096];
    let b = buf.as_mut_ptr();
    let v = [iov(b, 4096), unsafe { iov(b.add(2048), 4096) }];
    let e = check(&v, true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("iovecs 0 and 1 overlap (2048 bytes"),
        "{e}"
    );
    // Writes may repeat a buffer: nothing is written into it.
    assert_eq!(check(&v, false).unwrap(), 2);
    // Adjacent buffers and empty entries do not overlap.
    let v = [
        iov(b, 4096),
        iov(std::ptr::null_mut(), 0),
        unsafe { iov(b.add(4096), 4096) },
        iov(b, 0),
    ];
    assert_eq!(check(&v, true).unwrap(), 4);
}

#[test]
fn overlap_is_found_past_the_stack_buffer() {
    let mut buf = vec![0u8; 64 * 16];
    let b = buf.as_mut_ptr();
    // 40 disjoint 16-byte buffers in reverse order, then one sharing a byte.
    let mut v: Vec<BcIoVec> = (0..40)
        .rev()
        .map(|i| unsafe { iov(b.add(i * 16), 16) })
        .collect();
    assert_eq!(check(&v, true).unwrap(), 40);
    v.push(unsafe { iov(b.add(39 * 16 + 15), 4) });
    let e = check(&v, true).unwrap_err();
    assert!(
        e.to_string().contains("iovecs 0 and 40 overlap (1 bytes"),
        "{e}"
    );
}

#[test]
fn null_buffers_arrays_and_overflows_are_refused() {
    let mut buf = vec![0u8; 4096];
    let b = buf.as_mut_ptr();
    let e = check(&[iov(b, 4096), iov(std::ptr::null_mut(), 512)], false).unwrap_err();
    assert!(e.to_string().contains("iovec 1 has a NULL pointer"), "{e}");
    let null: *const BcIoVec = std::ptr::null();
    let e = unsafe { checked_iovecs("read", 0, &null, 3, true) }.unwrap_err();
    assert!(e.to_string().contains("NULL but niov is 3"), "{e}");
    assert!(unsafe { checked_iovecs("read", 0, &null, 0, true) }.is_ok());
    let big = usize::MAX / 2 + 1;
    let e = check(&[iov(b, big), iov(b, big)], false).unwrap_err();
    assert!(e.to_string().contains("overflow"), "{e}");
    let v = [iov(b, 4096)];
    let p = v.as_ptr();
    let e = unsafe { checked_iovecs("read", u64::MAX - 100, &p, 1, true) }.unwrap_err();
    assert!(e.to_string().contains("past 2^64"), "{e}");
    let e = unsafe { checked_iovecs("read", 0, &p, MAX_IOVECS + 1, true) }.unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
}

#[test]
fn table_sizes_are_bounded_by_the_declared_minor() {
    let node = BcNodeVtbl::size_at_minor as fn(u16) -> usize;
    // Every size a producer of minor <= 5 sends is accepted for minor 5.
    for m in 0..=5 {
        check_table_size("BcNodeVtbl", node(m), 5, node).unwrap();
    }
    let e = check_table_size("BcNodeVtbl", 224, 0, node).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AbiMismatch);
    let m = e.to_string();
    assert!(
        m.contains("BcNodeVtbl") && m.contains("expected 56, found 224"),
        "{m}"
    );
    let e = check_table_size("BcNodeVtbl", 120, 1, node).unwrap_err();
    assert!(
        e.to_string().contains("expected one of 56, 176, found 120"),
        "{e}"
    );
    // A minor this build does not know may have larger tables.
    check_table_size("BcNodeVtbl", 232, BLK_ABI_MINOR + 1, node).unwrap();
    let drv = BcDriverVtbl::size_at_minor as fn(u16) -> usize;
    let e = check_table_size("BcDriverVtbl", 104, 2, drv).unwrap_err();
    assert!(e.to_string().contains("expected 96, found 104"), "{e}");
}

/// A header as a later minor might define it: one appended field.
#[repr(C)]
#[derive(Clone, Copy)]
struct LaterHeader {
    base: BcPluginHeader,
    appended: u64,
}

fn header(size: u32) -> BcPluginHeader {
    BcPluginHeader {
        magic: BLK_ABI_MAGIC,
        abi_major: 1,
        abi_minor: 0,
        struct_size: size,
        name: BcStr::from_str("h"),
        version: BcStr::from_str("1"),
        n_drivers: 0,
        drivers: std::ptr::null(),
    }
}

#[test]
fn headers_are_copied_up_to_the_smaller_size() {
    // A host with a longer header reads an older plugin's: zero-filled.
    let h = header(64);
    let later: LaterHeader = unsafe { copy_prefix(&h as *const _ as *const LaterHeader, 64) };
    assert_eq!((later.base.magic, later.appended), (BLK_ABI_MAGIC, 0));
    // A newer plugin's longer header is read up to this host's size.
    let l = LaterHeader {
        base: header(72),
        appended: 7,
    };
    let h = unsafe { read_plugin_header(&l.base) }.unwrap();
    assert_eq!(h.struct_size, 72);
    let e = unsafe { read_plugin_header(&header(48)) }.unwrap_err();
    assert!(
        e.to_string().contains("expected at least 64 bytes") && e.to_string().contains("found 48"),
        "{e}"
    );
    assert!(unsafe { read_plugin_header(std::ptr::null()) }.is_err());
}

#[test]
fn null_outputs_and_contexts_are_refused() {
    let e = require_out::<u64>("length", "out", std::ptr::null()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.to_string().contains("`out` is NULL"), "{e}");
    require_out("length", "out", &0u64).unwrap();
    assert!(require_ctx::<u8>("read", std::ptr::null()).is_err());
}
