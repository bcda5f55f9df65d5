//! The read-only conformance path: for format drivers that cannot create
//! images (bochs, like QEMU's read-only formats). The caller supplies an
//! image made by other means and the guest bytes it must read as; the
//! cases open it read-only only, and check reads, bounds, the refusal of
//! writes, block status, cache invalidation, concurrent readers and probe.

use super::util::{compare, e2s, ensure};
use super::{judge_panics, panic_watch, CaseResult, Outcome};
use block_core::{BlockNodeExt, ErrorKind, ExtentFlags, ProbeInput};
use plugin_host::{Host, Image, OpenOptions};
use rand::Rng;
use std::path::Path;

/// What a read-only case runs against.
struct RoTarget<'a> {
    host: &'a Host,
    driver: &'a str,
    filename: String,
    expected: &'a [u8],
}

impl RoTarget<'_> {
    fn open(&self) -> Result<Image, String> {
        let opts = OpenOptions {
            format: Some(self.driver.to_string()),
            read_only: true,
            ..Default::default()
        };
        self.host
            .open(&self.filename, &opts)
            .map_err(|e| format!("read-only open: {e}"))
    }
}

type RoCase = fn(&RoTarget) -> Result<(), String>;

/// The cases of the read-only path, in order.
const RO_CASES: &[(&str, RoCase)] = &[
    ("ro_open_and_info", open_and_info),
    ("ro_reads_expected_bytes", reads_expected),
    ("ro_out_of_range", out_of_range),
    ("ro_refuses_writes", refuses_writes),
    ("ro_block_status_covers", block_status_covers),
    ("ro_invalidate_keeps_data", invalidate_keeps_data),
    ("ro_concurrent_readers", concurrent_readers),
    ("ro_probe_claims_its_image", probe),
];

/// Runs the read-only cases against `driver` on `image`, which must read
/// as `expected`.
pub fn run_read_only_suite(
    host: &Host,
    driver: &str,
    image: &Path,
    expected: &[u8],
) -> Vec<CaseResult> {
    let t = RoTarget {
        host,
        driver,
        filename: image.to_string_lossy().into_owned(),
        expected,
    };
    let before = std::fs::read(image).ok();
    let mut out = Vec::new();
    for (name, f) in RO_CASES {
        let panics_before = panic_watch::count();
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&t))) {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(e)) => Outcome::Fail(e),
            Err(p) => Outcome::Fail(format!(
                "the case panicked: {}",
                panic_watch::payload_text(&*p)
            )),
        };
        let outcome = match (&outcome, std::fs::read(image).ok() == before) {
            (Outcome::Pass, false) => Outcome::Fail("the image file changed".into()),
            _ => outcome,
        };
        out.push(CaseResult {
            name,
            outcome: judge_panics(outcome, panics_before),
        });
    }
    out
}

fn open_and_info(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    let len = img.length().map_err(e2s)?;
    ensure(len == t.expected.len() as u64, || {
        format!("length {len}, expected {}", t.expected.len())
    })?;
    let info = img.info().map_err(e2s)?;
    ensure(info.node.format == t.driver, || {
        format!("info names format {}", info.node.format)
    })
}

fn reads_expected(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    let mut all = vec![0xa5u8; t.expected.len()];
    img.read(0, &mut all).map_err(e2s)?;
    compare("whole image", &all, t.expected)?;
    let mut r = crate::rng(7);
    for _ in 0..64 {
        let len = r.gen_range(1..=70_000usize).min(t.expected.len());
        let off = r.gen_range(0..=t.expected.len() - len);
        let mut b = vec![0xa5u8; len];
        img.read(off as u64, &mut b).map_err(e2s)?;
        compare(
            &format!("read {off}+{len}"),
            &b,
            &t.expected[off..off + len],
        )?;
    }
    Ok(())
}

fn out_of_range(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    let len = img.length().map_err(e2s)?;
    let mut buf = vec![0u8; 4096];
    for off in [len, len - 100, u64::MAX - 10] {
        match img.read(off, &mut buf) {
            Err(e) if e.kind == ErrorKind::OutOfRange => {}
            Err(e) => return Err(format!("read at {off}: wrong error kind: {e}")),
            Ok(()) => return Err(format!("read past the end at {off} succeeded")),
        }
    }
    Ok(())
}

/// A writable open is refused, or its writes are; the driver's node
/// refuses writes below the host's gate too.
fn refuses_writes(t: &RoTarget) -> Result<(), String> {
    let opts = OpenOptions {
        format: Some(t.driver.to_string()),
        ..Default::default()
    };
    if let Ok(img) = t.host.open(&t.filename, &opts) {
        ensure(img.write(0, &[1u8; 512]).is_err(), || {
            "a write to a read-only format succeeded".into()
        })?;
    }
    let img = t.open()?;
    ensure(img.write(0, &[1u8; 512]).is_err(), || {
        "a write to a read-only open succeeded".into()
    })?;
    ensure(img.node().write_at(0, &[1u8; 512]).is_err(), || {
        "the driver's node accepted a write".into()
    })
}

fn block_status_covers(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    let len = img.length().map_err(e2s)?;
    let (mut off, mut n) = (0u64, 0u32);
    while off < len {
        let e = img.block_status(off, len - off).map_err(e2s)?;
        ensure(e.length > 0 && e.length <= len - off, || {
            format!("extent at {off} has bad length {}", e.length)
        })?;
        if e.flags.contains(ExtentFlags::ZERO) {
            let end = (off + e.length) as usize;
            ensure(
                t.expected[off as usize..end].iter().all(|&b| b == 0),
                || format!("extent at {off} claims ZERO but the image has data there"),
            )?;
        }
        off += e.length;
        n += 1;
        ensure(n < 1_000_000, || {
            "block status does not make progress".into()
        })?;
    }
    Ok(())
}

fn invalidate_keeps_data(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    let Some(m) = img.node().migration() else {
        return Ok(());
    };
    m.invalidate_cache().map_err(e2s)?;
    let mut all = vec![0u8; t.expected.len()];
    img.read(0, &mut all).map_err(e2s)?;
    compare("after invalidate", &all, t.expected)
}

fn concurrent_readers(t: &RoTarget) -> Result<(), String> {
    let img = t.open()?;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|k| {
                let img = &img;
                s.spawn(move || -> Result<(), String> {
                    let mut r = crate::rng(100 + k);
                    for _ in 0..32 {
                        let len = r.gen_range(1..=40_000usize).min(t.expected.len());
                        let off = r.gen_range(0..=t.expected.len() - len);
                        let mut b = vec![0u8; len];
                        img.read(off as u64, &mut b).map_err(e2s)?;
                        compare("concurrent read", &b, &t.expected[off..off + len])?;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a reader panicked".to_string())?)
    })
}

fn probe(t: &RoTarget) -> Result<(), String> {
    let reg = t
        .host
        .registry()
        .get(t.driver)
        .ok_or("driver not registered")?;
    let bytes = std::fs::read(&t.filename).map_err(|e| e.to_string())?;
    let score_of = |head: &[u8]| {
        reg.driver.probe(&ProbeInput {
            head,
            tail: &[],
            file_size: bytes.len() as u64,
            filename: &t.filename,
        })
    };
    let score = score_of(&bytes[..bytes.len().min(2048)]);
    ensure(score > 0, || {
        "the driver does not claim its own image".into()
    })?;
    let score = score_of(&[0u8; 2048]);
    ensure(score == 0, || format!("the driver claims zeros ({score})"))
}
