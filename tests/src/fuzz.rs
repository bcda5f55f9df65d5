//! A deterministic mutation fuzzer for image parsers: takes a valid image
//! made by qemu-img, flips bytes in its metadata, and drives the result
//! through the host (open read-write and read-only, read everything, walk
//! block status, check, write, flush). Any panic is a failure; errors are
//! expected. `cargo xtask fuzz` runs it long; the test suite runs it short.

use block_core::{CheckMode, ErrorKind};
use plugin_host::{Host, OpenOptions};
use rand::Rng;
use std::path::Path;

/// The result of a fuzz run.
#[derive(Debug, Default)]
pub struct FuzzReport {
    /// Iterations run.
    pub iterations: u64,
    /// Mutated images some open accepted.
    pub opened: u64,
    /// Operations that ended in a clean error.
    pub errors: u64,
    /// Descriptions of panics (each one a bug).
    pub panics: Vec<String>,
}

/// Builds the seed image: a qcow2 with data, zero clusters, a compressed
/// cluster, a snapshot and two persistent bitmaps (one with dirty bits),
/// 4 KiB clusters so metadata is dense.
pub fn seed_image(dir: &Path, format_opts: &str) -> std::path::PathBuf {
    let img = dir.join("seed.qcow2");
    let p = img.to_str().expect("utf-8");
    crate::qemu_img_ok(&["create", "-f", "qcow2", "-o", format_opts, p, "1M"]);
    crate::qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0x11 0 64k",
        "-c",
        "write -z 64k 16k",
        "-c",
        "write -c -P 0x22 256k 4k",
        "-c",
        "write -P 0x33 900k 20k",
        p,
    ]);
    crate::qemu_img_ok(&["snapshot", "-c", "s1", p]);
    crate::qemu_img_ok(&["bitmap", "--add", "-g", "512", p, "fine"]);
    crate::qemu_img_ok(&["bitmap", "--add", "--disable", p, "off"]);
    crate::qemu_io_ok(&["-f", "qcow2", "-c", "write -P 0x44 0 8k", p]);
    img
}

fn exercise(host: &Host, fmt: &str, path: &str, read_only: bool, errors: &mut u64) -> bool {
    let opts = OpenOptions {
        format: Some(fmt.into()),
        read_only,
        ..Default::default()
    };
    let img = match host.open(path, &opts) {
        Ok(i) => i,
        Err(_) => {
            *errors += 1;
            return false;
        }
    };
    let len = img.length().unwrap_or(0).min(4 << 20);
    let mut buf = vec![0u8; 65536];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        if img.read(off, &mut buf[..n]).is_err() {
            *errors += 1;
        }
        match img.block_status(off, len - off) {
            Ok(e) if e.length > 0 => {}
            _ => *errors += 1,
        }
        off += n as u64;
    }
    let _ = img.snapshot_list();
    let _ = img.info();
    let _ = img.bitmap(r#"{"op":"get","name":"fine"}"#);
    if !read_only {
        for (o, l) in [
            (0u64, 4096usize),
            (300 << 10, 70_000),
            (len.saturating_sub(5000), 5000),
        ] {
            if o + l as u64 <= len && img.write(o, &vec![0x5a; l]).is_err() {
                *errors += 1;
            }
        }
        if img.flush().is_err() {
            *errors += 1;
        }
    }
    true
}

/// Runs `iterations` mutations of the qcow2 seed image in `dir`.
pub fn run(dir: &Path, seed: u64, iterations: u64) -> FuzzReport {
    let base = seed_image(dir, "cluster_size=4k");
    run_on(&base, "qcow2", seed, iterations)
}

/// Runs `iterations` mutations of `base`, an image of format `fmt`
/// (mutants are written beside it).
pub fn run_on(base: &Path, fmt: &str, seed: u64, iterations: u64) -> FuzzReport {
    let host = Host::builder()
        .env_plugin_path(false)
        .build()
        .expect("host");
    let pristine = std::fs::read(base).expect("seed image");
    let work = base.with_extension(format!("mutant.{fmt}"));
    let path = work.to_str().expect("utf-8").to_string();
    let mut r = crate::rng(seed);
    let mut rep = FuzzReport::default();
    // Metadata lives in the first clusters and in scattered L2/refcount blocks:
    // bias mutations toward the header but reach the whole file.
    for it in 0..iterations {
        let mut bytes = pristine.clone();
        let n = r.gen_range(1..8);
        for _ in 0..n {
            let pos = match r.gen_range(0..4) {
                0 => r.gen_range(0..112),
                1 => r.gen_range(0..bytes.len().min(8 * 4096)),
                _ => r.gen_range(0..bytes.len()),
            };
            bytes[pos] = match r.gen_range(0..4) {
                0 => 0,
                1 => 0xff,
                2 => bytes[pos] ^ (1 << r.gen_range(0..8)),
                _ => r.gen(),
            };
        }
        std::fs::write(&work, &bytes).expect("write mutant");
        rep.iterations += 1;
        for read_only in [true, false] {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut errors = 0;
                let opened = exercise(&host, fmt, &path, read_only, &mut errors);
                (opened, errors)
            }));
            match res {
                Ok((opened, errors)) => {
                    rep.opened += opened as u64;
                    rep.errors += errors;
                }
                Err(p) => rep.panics.push(format!(
                    "iteration {it} (read_only={read_only}): {}",
                    block_core::abi::export::panic_message(&*p)
                )),
            }
        }
        // check must also survive the mutant.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let opts = OpenOptions {
                format: Some(fmt.into()),
                read_only: true,
                for_check: true,
                ..Default::default()
            };
            if let Ok(i) = host.open(&path, &opts) {
                match i.check(CheckMode::REPORT) {
                    Err(e) if e.kind == ErrorKind::Unsupported => {}
                    _ => {}
                }
            }
        }));
        if let Err(p) = res {
            rep.panics.push(format!(
                "iteration {it} (check): {}",
                block_core::abi::export::panic_message(&*p)
            ));
        }
    }
    rep
}
