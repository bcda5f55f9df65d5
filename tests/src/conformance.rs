//! The driver conformance suite: the behaviour every blk driver must show,
//! whatever its form (linked in or plugin library) and whoever wrote it.
//!
//! A driver is exercised through the host front end ([`plugin_host::Image`]).
//! Format drivers that can create images get a fresh image; protocol drivers
//! without `create` are opened as `PREFIX:conformance`. Drivers that drop
//! writes by design (`null-co`) are "sinks" and run the sink subset. Where
//! QEMU knows the format, the image a driver wrote is also judged by
//! `qemu-img check` and `qemu-img compare` against the shadow copy.

use block_core::{BlockError, DriverCaps, DriverKind, ErrorKind, ExtentFlags, ReqFlags, ZeroFlags};
use plugin_host::{Host, Image, OpenOptions};
use rand::Rng;
use std::io::{IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The driver behaved as required.
    Pass,
    /// The case does not apply (an optional operation reported "unsupported").
    Skip(String),
    /// The driver misbehaved.
    Fail(String),
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case name.
    pub name: &'static str,
    /// The outcome.
    pub outcome: Outcome,
}

/// Drivers known to drop writes by design.
pub const SINK_DRIVERS: &[&str] = &["null-co"];
/// Formats `qemu-img` can judge.
const QEMU_FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "vmdk",
    "vhdx",
    "vpc",
    "vdi",
    "qed",
    "parallels",
];
/// The size of test images.
pub const IMAGE_SIZE: u64 = 8 << 20;
/// The smallest image the suite works with.
pub const MIN_SIZE: u64 = 4 << 20;

type CaseFn = fn(&Target) -> Result<(), String>;

/// What the suite runs against.
pub struct Target<'a> {
    host: &'a Host,
    driver: String,
    kind: DriverKind,
    caps: DriverCaps,
    filename: String,
    created: bool,
    seed: u64,
}

impl Target<'_> {
    fn open(&self, read_only: bool) -> Result<Image, String> {
        self.host
            .open(
                &self.filename,
                &OpenOptions {
                    format: Some(self.driver.clone()),
                    read_only,
                    ..Default::default()
                },
            )
            .map_err(|e| format!("open: {e}"))
    }
}

fn e2s(e: BlockError) -> String {
    e.to_string()
}

/// Prepares the target for `driver` in `workdir`.
fn prepare<'a>(
    host: &'a Host,
    driver: &str,
    workdir: &Path,
    seed: u64,
) -> Result<Target<'a>, String> {
    let reg = host
        .registry()
        .get(driver)
        .ok_or_else(|| format!("driver '{driver}' is not registered"))?;
    let d = &reg.driver;
    let kind = d.kind();
    let caps = d.caps();
    let (filename, created) = if caps.contains(DriverCaps::CREATE) {
        let path: PathBuf = workdir.join(format!("conformance-{seed}.{driver}"));
        let name = path.to_string_lossy().into_owned();
        host.create(driver, &name, "", Some(IMAGE_SIZE), None)
            .map_err(|e| format!("create: {e}"))?;
        (name, true)
    } else if kind == DriverKind::Protocol {
        let prefix = d
            .protocol_prefixes()
            .into_iter()
            .next()
            .ok_or_else(|| format!("protocol '{driver}' has neither create nor a prefix"))?;
        let sep = if prefix == "null-co" { "://" } else { ":" };
        (format!("{prefix}{sep}conformance-{seed}"), false)
    } else {
        return Err(format!(
            "format '{driver}' cannot create images; the suite needs create"
        ));
    };
    Ok(Target {
        host,
        driver: driver.to_string(),
        kind,
        caps,
        filename,
        created,
        seed,
    })
}

/// Runs every applicable case against `driver` registered in `host`,
/// creating images in `workdir`.
pub fn run_suite(host: &Host, driver: &str, workdir: &Path) -> Vec<CaseResult> {
    let sink = SINK_DRIVERS.contains(&driver);
    let cases: &[(&'static str, CaseFn)] = if sink {
        &[
            ("open_and_info", case_open_and_info),
            ("sink_reads_zeros", case_sink_reads_zeros),
            ("out_of_range", case_out_of_range),
            ("block_status_covers", case_block_status_covers),
        ]
    } else {
        &[
            ("open_and_info", case_open_and_info),
            ("random_write_read", case_random_write_read),
            ("vectored_io", case_vectored_io),
            ("write_zeroes", case_write_zeroes),
            ("discard_is_stable", case_discard_stable),
            ("flush_and_reopen", case_flush_and_reopen),
            ("out_of_range", case_out_of_range),
            ("block_status_covers", case_block_status_covers),
            ("concurrent_writers", case_concurrent_writers),
            ("invalidate_keeps_data", case_invalidate_keeps_data),
            ("read_only_refuses_writes", case_read_only),
            ("truncate_grow", case_truncate_grow),
            ("qemu_agrees", case_qemu_agrees),
            ("shared_storage_handoff", case_shared_storage_handoff),
        ]
    };
    let mut out = Vec::new();
    for (i, (name, f)) in cases.iter().enumerate() {
        let outcome = match prepare(host, driver, workdir, 1000 + i as u64) {
            Err(e) => Outcome::Fail(e),
            Ok(t) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&t))) {
                Ok(Ok(())) => Outcome::Pass,
                Ok(Err(e)) if e.starts_with("SKIP: ") => Outcome::Skip(e[6..].to_string()),
                Ok(Err(e)) => Outcome::Fail(e),
                Err(_) => Outcome::Fail("the case panicked".to_string()),
            },
        };
        out.push(CaseResult { name, outcome });
    }
    out
}

fn skip_if_unsupported(e: BlockError) -> String {
    if e.kind == ErrorKind::Unsupported {
        format!("SKIP: {e}")
    } else {
        e.to_string()
    }
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn read_all(img: &Image) -> Result<Vec<u8>, String> {
    let len = img.length().map_err(e2s)? as usize;
    let mut buf = vec![0u8; len];
    img.read(0, &mut buf).map_err(e2s)?;
    Ok(buf)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    ensure(got.len() == want.len(), || {
        format!("{what}: length {} != {}", got.len(), want.len())
    })?;
    match first_difference(got, want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: content differs at offset {i} (got {:#04x}, want {:#04x})",
            got[i], want[i]
        )),
    }
}

/// Applies seeded random writes to `img` and `shadow`.
fn random_writes(img: &Image, shadow: &mut [u8], seed: u64, count: usize) -> Result<(), String> {
    let mut r = crate::rng(seed);
    let len = shadow.len() as u64;
    for _ in 0..count {
        let size: u64 = match r.gen_range(0..4) {
            0 => r.gen_range(1..512),
            1 => 512 * r.gen_range(1..16),
            2 => 4096 * r.gen_range(1..32),
            _ => r.gen_range(1..300_000),
        };
        let size = size.min(len);
        let off = r.gen_range(0..=len - size);
        let mut data = vec![0u8; size as usize];
        r.fill(&mut data[..]);
        img.write(off, &data).map_err(e2s)?;
        shadow[off as usize..(off + size) as usize].copy_from_slice(&data);
    }
    Ok(())
}

fn case_open_and_info(t: &Target) -> Result<(), String> {
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

fn case_sink_reads_zeros(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    img.write(0, &[0xaa; 4096]).map_err(e2s)?;
    let mut buf = vec![0xffu8; 4096];
    img.read(0, &mut buf).map_err(e2s)?;
    ensure(buf.iter().all(|&b| b == 0), || {
        "a sink must read zeros".into()
    })
}

fn case_random_write_read(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 64)?;
    compare("read after writes", &read_all(&img)?, &shadow)
}

fn case_vectored_io(t: &Target) -> Result<(), String> {
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

fn case_write_zeroes(t: &Target) -> Result<(), String> {
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

fn case_discard_stable(t: &Target) -> Result<(), String> {
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

fn case_flush_and_reopen(t: &Target) -> Result<(), String> {
    let shadow = {
        let img = t.open(false)?;
        let mut shadow = read_all(&img)?;
        random_writes(&img, &mut shadow, t.seed, 32)?;
        img.flush().map_err(e2s)?;
        shadow
    };
    let img = t.open(true)?;
    compare("after reopen", &read_all(&img)?, &shadow)
}

fn case_out_of_range(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let len = img.length().map_err(e2s)?;
    let mut buf = vec![0u8; 4096];
    for off in [len, len - 100, u64::MAX - 10] {
        match img.read(off, &mut buf) {
            Err(e) if e.kind == ErrorKind::OutOfRange => {}
            Err(e) => return Err(format!("read at {off}: wrong error kind: {e}")),
            Ok(()) => return Err(format!("read past the end at {off} succeeded")),
        }
    }
    match img.write(len - 10, &buf) {
        Err(e) if e.kind == ErrorKind::OutOfRange => Ok(()),
        Err(e) => Err(format!("write past the end: wrong error kind: {e}")),
        Ok(()) => Err("write past the end succeeded".into()),
    }
}

fn case_block_status_covers(t: &Target) -> Result<(), String> {
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

fn case_concurrent_writers(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let len = img.length().map_err(e2s)?;
    let threads = 4u64;
    let region = len / threads;
    let results: Vec<Result<Vec<u8>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let img = &img;
                sc.spawn(move || -> Result<Vec<u8>, String> {
                    let mut shadow = vec![0u8; region as usize];
                    let base = i * region;
                    img.read(base, &mut shadow).map_err(e2s)?;
                    let mut r = crate::rng(t.seed * 10 + i);
                    for _ in 0..32 {
                        let size = r.gen_range(1..70_000u64).min(region);
                        let off = r.gen_range(0..=region - size);
                        let mut data = vec![0u8; size as usize];
                        r.fill(&mut data[..]);
                        img.write(base + off, &data).map_err(e2s)?;
                        shadow[off as usize..(off + size) as usize].copy_from_slice(&data);
                        // Readers run concurrently with the other writers.
                        let mut back = vec![0u8; size as usize];
                        img.read(base + off, &mut back).map_err(e2s)?;
                        compare("concurrent read-back", &back, &data)?;
                    }
                    Ok(shadow)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("writer thread panicked".into()))
            })
            .collect()
    });
    let all = read_all(&img)?;
    for (i, r) in results.into_iter().enumerate() {
        let shadow = r?;
        let base = i * region as usize;
        compare(
            "after concurrent writers",
            &all[base..base + region as usize],
            &shadow,
        )?;
    }
    Ok(())
}

fn case_invalidate_keeps_data(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 16)?;
    img.flush().map_err(e2s)?;
    img.invalidate_cache().map_err(skip_if_unsupported)?;
    compare("after invalidate_cache", &read_all(&img)?, &shadow)?;
    random_writes(&img, &mut shadow, t.seed + 1, 16)?;
    compare("writes after invalidate_cache", &read_all(&img)?, &shadow)
}

fn case_read_only(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: read-only open needs a file-backed image".into());
    }
    {
        let img = t.open(false)?;
        img.write(0, &[0x5a; 4096]).map_err(e2s)?;
        img.flush().map_err(e2s)?;
    }
    let before = std::fs::read(&t.filename).map_err(|e| e.to_string())?;
    let img = t.open(true)?;
    match img.write(0, &[1; 512]) {
        Err(e) if e.kind == ErrorKind::ReadOnly => {}
        Err(e) => return Err(format!("wrong error kind for a read-only write: {e}")),
        Ok(()) => return Err("write to a read-only image succeeded".into()),
    }
    drop(img);
    let after = std::fs::read(&t.filename).map_err(|e| e.to_string())?;
    ensure(before == after, || {
        "a refused write changed the file".into()
    })
}

fn case_truncate_grow(t: &Target) -> Result<(), String> {
    if !t.caps.contains(DriverCaps::RESIZE) {
        return Err("SKIP: driver does not resize".into());
    }
    let img = t.open(false)?;
    let mut shadow = read_all(&img)?;
    random_writes(&img, &mut shadow, t.seed, 8)?;
    let len = img.length().map_err(e2s)?;
    img.truncate(len + (1 << 20), block_core::Preallocation::Off)
        .map_err(skip_if_unsupported)?;
    shadow.resize((len + (1 << 20)) as usize, 0);
    compare("after growing", &read_all(&img)?, &shadow)
}

fn case_qemu_agrees(t: &Target) -> Result<(), String> {
    if !t.created || !QEMU_FORMATS.contains(&t.driver.as_str()) {
        return Err("SKIP: qemu-img does not know this format".into());
    }
    let shadow = {
        let img = t.open(false)?;
        let mut shadow = read_all(&img)?;
        random_writes(&img, &mut shadow, t.seed, 48)?;
        img.write_zeroes(1 << 20, 200_000, ZeroFlags::MAY_UNMAP)
            .map_err(e2s)?;
        shadow[1 << 20..(1 << 20) + 200_000].fill(0);
        img.flush().map_err(e2s)?;
        shadow
    };
    let raw = format!("{}.shadow.raw", t.filename);
    std::fs::write(&raw, &shadow).map_err(|e| e.to_string())?;
    if t.driver != "raw" {
        let out = Command::new("qemu-img")
            .args(["check", "-f", &t.driver, &t.filename])
            .output()
            .map_err(|e| format!("cannot run qemu-img: {e}"))?;
        ensure(out.status.success(), || {
            format!(
                "qemu-img check failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    }
    let out = Command::new("qemu-img")
        .args(["compare", "-f", &t.driver, "-F", "raw", &t.filename, &raw])
        .output()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    let _ = std::fs::remove_file(&raw);
    ensure(out.status.success(), || {
        format!(
            "qemu-img compare: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The migration handoff over shared storage: B holds the image open
/// inactive with warm caches while A allocates, writes and flushes new data
/// and gives the image up; B activates and must read exactly A's data.
fn case_shared_storage_handoff(t: &Target) -> Result<(), String> {
    if !t.created {
        return Err("SKIP: the handoff needs a file-backed image".into());
    }
    let inactive = OpenOptions {
        format: Some(t.driver.clone()),
        inactive: true,
        ..Default::default()
    };
    let b = t
        .host
        .open(&t.filename, &inactive)
        .map_err(|e| format!("open inactive: {e}"))?;
    let stale = read_all(&b)?; // warm every cache B has
    let mut shadow = stale.clone();
    {
        let a = t.open(false)?;
        random_writes(&a, &mut shadow, t.seed, 48)?;
        a.write_zeroes(2 << 20, 100_000, ZeroFlags::MAY_UNMAP)
            .map_err(e2s)?;
        shadow[2 << 20..(2 << 20) + 100_000].fill(0);
        a.flush().map_err(e2s)?;
        a.inactivate().map_err(skip_if_unsupported)?;
    }
    b.activate().map_err(skip_if_unsupported)?;
    compare("destination after activate", &read_all(&b)?, &shadow)?;
    // The destination now owns the image and can write.
    b.write(0, &[0x77; 4096]).map_err(e2s)?;
    b.flush().map_err(e2s)
}

/// Formats results as lines `PASS name`, `SKIP name: why`, `FAIL name: why`.
pub fn report(driver: &str, results: &[CaseResult]) -> String {
    let mut s = String::new();
    for r in results {
        match &r.outcome {
            Outcome::Pass => s.push_str(&format!("PASS {driver}/{}\n", r.name)),
            Outcome::Skip(w) => s.push_str(&format!("SKIP {driver}/{}: {w}\n", r.name)),
            Outcome::Fail(w) => s.push_str(&format!("FAIL {driver}/{}: {w}\n", r.name)),
        }
    }
    s
}

/// True when no case failed.
pub fn all_passed(results: &[CaseResult]) -> bool {
    results
        .iter()
        .all(|r| !matches!(r.outcome, Outcome::Fail(_)))
}
