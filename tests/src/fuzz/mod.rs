//! A deterministic mutation fuzzer for image parsers: takes a valid image
//! of each format made by a real tool, flips bytes in its metadata, and
//! drives the result through the host (open read-write and read-only,
//! read everything, walk block status, check, write, flush). Any panic is
//! a failure, and so is an iteration that does not end (a hang: the
//! watchdog names it); errors are expected. `cargo xtask fuzz` runs it
//! long; the test suite runs it short.

mod targets;

pub use targets::{target, FuzzTarget, TARGETS};

use block_core::{CheckMode, ZeroFlags};
use plugin_host::{Host, OpenOptions};
use rand::Rng;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The result of a fuzz run of one format.
#[derive(Debug, Default)]
pub struct FuzzReport {
    /// The format fuzzed.
    pub format: String,
    /// Iterations run.
    pub iterations: u64,
    /// Mutated images some open accepted.
    pub opened: u64,
    /// Operations that ended in a clean error.
    pub errors: u64,
    /// Descriptions of panics (each one a bug).
    pub panics: Vec<String>,
}

/// How long one iteration may take before the watchdog calls it a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The seed image of `format`, for tests that want one (the qcow2 seed
/// takes the options the fuzzer uses).
pub fn seed_image(dir: &Path, format: &str) -> std::path::PathBuf {
    let t = target(format).unwrap_or_else(|| panic!("the fuzzer has no {format} target"));
    (t.seed)(dir)
}

fn exercise(host: &Host, t: &FuzzTarget, path: &str, read_only: bool, errors: &mut u64) -> bool {
    let opts = OpenOptions {
        format: Some(t.format.into()),
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
        if 8192 * 2 <= len && img.write_zeroes(8192, 8192, ZeroFlags::MAY_UNMAP).is_err() {
            *errors += 1;
        }
        if img.flush().is_err() {
            *errors += 1;
        }
    }
    true
}

/// Flips 1 to 7 bytes, biased toward the header and the trailer (where
/// the parser starts) and the first 32 KiB (where tables usually are),
/// but reaching the whole file.
fn mutate(t: &FuzzTarget, bytes: &mut [u8], r: &mut impl Rng) {
    let len = bytes.len();
    for _ in 0..r.gen_range(1..8) {
        let pos = match r.gen_range(0..5) {
            0 => r.gen_range(0..t.header_bytes.min(len)),
            1 if t.trailer_bytes > 0 => len - 1 - r.gen_range(0..t.trailer_bytes.min(len)),
            2 if !t.regions.is_empty() => {
                let (at, n) = t.regions[r.gen_range(0..t.regions.len())];
                (at + r.gen_range(0..n)).min(len - 1)
            }
            1 | 2 => r.gen_range(0..len.min(8 * 4096)),
            _ => r.gen_range(0..len),
        };
        bytes[pos] = match r.gen_range(0..4) {
            0 => 0,
            1 => 0xff,
            2 => bytes[pos] ^ (1 << r.gen_range(0..8)),
            _ => r.gen(),
        };
    }
}

thread_local! {
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that keeps quiet about panics the fuzzer catches
/// and reports itself (inside its guards), and prints every other one as
/// the default hook does (a seed image that cannot be made, say).
pub fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_GUARD.with(|g| g.get()) {
            default(info);
        }
    }));
}

/// Calls `f`, turning a panic into a message in `panics`.
fn guarded<T>(panics: &mut Vec<String>, what: String, f: impl FnOnce() -> T) -> Option<T> {
    IN_GUARD.with(|g| g.set(true));
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(false));
    match res {
        Ok(v) => Some(v),
        Err(p) => {
            panics.push(format!(
                "{what}: {}",
                block_core::abi::export::panic_message(&*p)
            ));
            None
        }
    }
}

/// A thread that ends the process when the iteration counter stops
/// moving for `HANG_LIMIT`: a hang is a bug the run must not hide by
/// never finishing. Dropping the guard stops the watchdog.
struct Watchdog {
    tick: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
}

impl Watchdog {
    fn start(format: &'static str) -> Watchdog {
        let tick = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicU64::new(0));
        let (t, s) = (tick.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = u64::MAX;
            loop {
                std::thread::sleep(HANG_LIMIT);
                if s.load(Ordering::SeqCst) != 0 {
                    return;
                }
                let now = t.load(Ordering::SeqCst);
                if now == last {
                    eprintln!(
                        "blk-fuzz: {format}: iteration {now} hangs (no progress in {HANG_LIMIT:?})"
                    );
                    std::process::exit(3);
                }
                last = now;
            }
        });
        Watchdog { tick, stop }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
    }
}

/// Runs `iterations` mutations of `t`'s seed image in `dir`.
pub fn run_target(t: &'static FuzzTarget, dir: &Path, seed: u64, iterations: u64) -> FuzzReport {
    let base = (t.seed)(dir);
    run_image(t, &base, seed, iterations)
}

/// Runs `iterations` mutations of `base`, an image of format `fmt` (one
/// the fuzzer covers), made by the caller; mutants are written beside it.
pub fn run_on(base: &Path, fmt: &str, seed: u64, iterations: u64) -> FuzzReport {
    let t = target(fmt).unwrap_or_else(|| panic!("the fuzzer has no {fmt} target"));
    run_image(t, base, seed, iterations)
}

fn run_image(t: &'static FuzzTarget, base: &Path, seed: u64, iterations: u64) -> FuzzReport {
    let host = Host::builder()
        .env_plugin_path(false)
        .build()
        .expect("host");
    let pristine = std::fs::read(base).expect("seed image");
    let work = base.with_extension(format!("mutant.{}", t.format));
    let path = work.to_str().expect("utf-8").to_string();
    let mut r = crate::rng(seed);
    let mut rep = FuzzReport {
        format: t.format.to_string(),
        ..FuzzReport::default()
    };
    let dog = Watchdog::start(t.format);
    for it in 0..iterations {
        dog.tick.store(it, Ordering::SeqCst);
        let mut bytes = pristine.clone();
        mutate(t, &mut bytes, &mut r);
        std::fs::write(&work, &bytes).expect("write mutant");
        rep.iterations += 1;
        let modes: &[bool] = if t.writable { &[true, false] } else { &[true] };
        for &read_only in modes {
            let what = format!("{} iteration {it} (read_only={read_only})", t.format);
            let res = guarded(&mut rep.panics, what, || {
                let mut errors = 0;
                let opened = exercise(&host, t, &path, read_only, &mut errors);
                (opened, errors)
            });
            if let Some((opened, errors)) = res {
                rep.opened += opened as u64;
                rep.errors += errors;
            }
        }
        // check must also survive the mutant (an unsupported check is an
        // answer, not a failure).
        let what = format!("{} iteration {it} (check)", t.format);
        guarded(&mut rep.panics, what, || {
            let opts = OpenOptions {
                format: Some(t.format.into()),
                read_only: true,
                for_check: true,
                ..Default::default()
            };
            if let Ok(i) = host.open(&path, &opts) {
                let _ = i.check(CheckMode::REPORT);
            }
        });
    }
    rep
}

/// Runs `iterations` mutations of the qcow2 seed image (the first and
/// best-known target).
pub fn run(dir: &Path, seed: u64, iterations: u64) -> FuzzReport {
    run_target(&TARGETS[0], dir, seed, iterations)
}
