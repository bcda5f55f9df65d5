//! The data path: info, queries, reads and writes, zeroing, discard and
//! block status.

use super::util::{compare, e2s, ensure, random_writes, read_all};
use super::{Target, IMAGE_SIZE, MIN_SIZE, SINK_DRIVERS};
use block_core::{DriverKind, ExtentFlags, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};

pub(super) fn open_and_info(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let len = img.length().map_err(e2s)?;
    ensure(len >= MIN_SIZE, || {
        format!("the suite needs images of at least {MIN_SIZE} bytes; got {len}")
    })?;
    if t.created {
        ensure(len == IMAGE_SIZE, || {
            format!("length {len}, created with {IMAGE_SIZE}")
        })?;
    }
    let info = img.info().map_err(e2s)?;
    ensure(info.node.virtual_size == len, || {
        format!(
            "info virtual-size {} != length {len}",
            info.node.virtual_size
        )
    })?;
    if t.kind == DriverKind::Format {
        ensure(info.node.format == t.driver, || {
            format!(
                "info format '{}' != driver '{}'",
                info.node.format, t.driver
            )
        })?;
    }
    Ok(())
}

/// The root node's queries answer sensibly: limits (a power-of-two
/// alignment), capabilities, zero-init, allocated size (or an error) and an
/// info that agrees with the length. A panic in any of them fails the case
/// (returned as an error, or seen by the panic watch when the ABI
/// swallowed it).
pub(super) fn node_queries(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let node = img.node();
    let limits = node.limits();
    ensure(limits.request_alignment.is_power_of_two(), || {
        format!(
            "limits: request alignment {} is not a power of two",
            limits.request_alignment
        )
    })?;
    let _ = node.capabilities();
    let _ = node.has_zero_init();
    if let Err(e) = node.allocated_size() {
        ensure(!e.to_string().contains("panicked"), || {
            format!("allocated_size: {e}")
        })?;
    }
    let len = node.length().map_err(e2s)?;
    let info = node.info().map_err(|e| format!("info: {e}"))?;
    ensure(info.virtual_size == len, || {
        format!("info virtual-size {} != length {len}", info.virtual_size)
    })
}

pub(super) fn sink_reads_zeros(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    img.write(0, &[0xaa; 4096]).map_err(e2s)?;
    let mut buf = vec![0xffu8; 4096];
    img.read(0, &mut buf).map_err(e2s)?;
    ensure(buf.iter().all(|&b| b == 0), || {
        "a sink must read zeros".into()
    })
}

pub(super) fn random_write_read(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 64)?;
    compare("read after writes", &read_all(&img)?, &shadow)
}

pub(super) fn vectored_io(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let a = crate::random_bytes(t.seed, 1000);
    let b = crate::random_bytes(t.seed + 1, 5000);
    let c = crate::random_bytes(t.seed + 2, 3);
    let off = 65536 - 700;
    img.write_vectored(
        off,
        &[IoSlice::new(&a), IoSlice::new(&b), IoSlice::new(&c)],
        ReqFlags::NONE,
    )
    .map_err(e2s)?;
    let mut x = vec![0u8; 4003];
    let mut y = vec![0u8; 2000];
    img.read_vectored(off, &mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)])
        .map_err(e2s)?;
    let mut want = a.clone();
    want.extend_from_slice(&b);
    want.extend_from_slice(&c);
    let mut got = x;
    got.extend_from_slice(&y);
    compare("vectored read", &got, &want)?;
    // FUA writes are durable and readable like any other.
    img.write_vectored(0, &[IoSlice::new(&c)], ReqFlags::FUA)
        .map_err(e2s)?;
    let mut z = [0u8; 3];
    img.read(0, &mut z).map_err(e2s)?;
    compare("FUA write", &z, &c)
}

pub(super) fn write_zeroes(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 16)?;
    let fill = crate::random_bytes(t.seed + 7, 1 << 20);
    img.write(1 << 20, &fill).map_err(e2s)?;
    shadow[1 << 20..2 << 20].copy_from_slice(&fill);
    // (images are at least 4 MiB: see MIN_SIZE)
    for (off, len, flags) in [
        ((1 << 20) + 512, 4096u64, ZeroFlags::NONE),
        ((1 << 20) + 65536, 131072, ZeroFlags::MAY_UNMAP),
        ((1 << 20) + 300_001, 77, ZeroFlags::MAY_UNMAP),
    ] {
        img.write_zeroes(off, len, flags).map_err(e2s)?;
        shadow[off as usize..(off + len) as usize].fill(0);
    }
    compare("read after write_zeroes", &read_all(&img)?, &shadow)
}

pub(super) fn discard_stable(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let fill = crate::random_bytes(t.seed, 2 << 20);
    img.write(0, &fill).map_err(e2s)?;
    img.discard(65536, 1 << 20).map_err(e2s)?;
    let first = read_all(&img)?;
    let second = read_all(&img)?;
    compare("two reads after discard", &second, &first)?;
    compare(
        "data before the discarded range",
        &first[..65536],
        &fill[..65536],
    )?;
    compare(
        "data after the discarded range",
        &first[65536 + (1 << 20)..2 << 20],
        &fill[65536 + (1 << 20)..],
    )
}

pub(super) fn block_status_covers(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    if !SINK_DRIVERS.contains(&t.driver.as_str()) {
        img.write(3 << 20, &crate::random_bytes(t.seed, 100_000))
            .map_err(e2s)?;
    }
    let len = img.length().map_err(e2s)?;
    let mut off = 0u64;
    let mut n = 0u32;
    while off < len {
        let e = img.block_status(off, len - off).map_err(e2s)?;
        ensure(e.length > 0 && e.length <= len - off, || {
            format!("extent at {off} has bad length {}", e.length)
        })?;
        if e.flags.contains(ExtentFlags::ZERO) {
            let probe = e.length.min(65536) as usize;
            let mut buf = vec![0xffu8; probe];
            img.read(off, &mut buf).map_err(e2s)?;
            ensure(buf.iter().all(|&b| b == 0), || {
                format!("extent at {off} claims ZERO but reads data")
            })?;
        }
        off += e.length;
        n += 1;
        ensure(n < 1_000_000, || {
            "block status does not make progress".into()
        })?;
    }
    Ok(())
}
