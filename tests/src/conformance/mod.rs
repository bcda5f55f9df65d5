//! The driver conformance suite: the behaviour every blk driver must show,
//! whatever its form (linked in or plugin library) and whoever wrote it.
//!
//! A driver is exercised through the host front end ([`plugin_host::Image`])
//! and, where the host would hide a driver's mistake (bounds, the inactive
//! gate), through the driver's node directly. Format drivers that can create
//! images get a fresh image per case; protocol drivers without `create` are
//! opened as `PREFIX:conformance`. Drivers that drop writes by design
//! (`null-co`) are "sinks" and run the sink subset. Where QEMU knows the
//! format, the image a driver wrote is also judged by `qemu-img check` and
//! `qemu-img compare` against the shadow copy.
//!
//! A driver panic is a failure wherever it happens: a case that panics, an
//! error saying "driver panicked", or (with [`panic_watch::install`]) a
//! panic the ABI swallowed and logged in a query slot.
//!
//! The cases, grouped by concern: `cases_io` (data path), `cases_bounds`
//! (ranges, read-only), `cases_durability` (flush, fresh images, QEMU),
//! `cases_concurrency`, `cases_migration` (invalidate, inactive gate,
//! handoff), `cases_probe`. Formats that cannot create images (bochs) run
//! the read-only path instead ([`run_read_only_suite`]) on an image the
//! caller makes, with the bytes it must read as.

mod cases_bounds;
mod cases_concurrency;
mod cases_durability;
mod cases_io;
mod cases_migration;
mod cases_probe;
pub mod panic_watch;
mod read_only;
mod target;
mod util;

use plugin_host::Host;
pub use read_only::run_read_only_suite;
use std::path::Path;
pub use target::Target;

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
/// Formats that are the probing fallback: they may score 1 on any file
/// (so that every real format wins), never more.
pub const FALLBACK_FORMATS: &[&str] = &["raw"];
/// Formats `qemu-img` can judge.
pub(super) const QEMU_FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "vmdk",
    "vhdx",
    "vpc",
    "vdi",
    "qed",
    "parallels",
    "qcow",
];
/// Create options the suite passes to a format, where its defaults would
/// not make an image of exactly [`IMAGE_SIZE`] bytes (vpc rounds sizes to a
/// CHS geometry unless told not to).
pub(super) const CREATE_OPTIONS: &[(&str, &str)] = &[("vpc", "force_size=on")];
/// The size of test images.
pub const IMAGE_SIZE: u64 = 8 << 20;
/// The smallest image the suite works with.
pub const MIN_SIZE: u64 = 4 << 20;

/// A case: `Ok` passes, `Err("SKIP: why")` skips, any other `Err` fails.
type CaseFn = fn(&Target) -> Result<(), String>;

/// The cases a sink driver runs.
const SINK_CASES: &[(&str, CaseFn)] = &[
    ("open_and_info", cases_io::open_and_info),
    ("node_queries", cases_io::node_queries),
    ("sink_reads_zeros", cases_io::sink_reads_zeros),
    ("out_of_range", cases_bounds::out_of_range),
    ("block_status_covers", cases_io::block_status_covers),
];

/// The cases every storing driver runs.
const CASES: &[(&str, CaseFn)] = &[
    ("open_and_info", cases_io::open_and_info),
    ("node_queries", cases_io::node_queries),
    (
        "probe_claims_only_its_own",
        cases_probe::probe_claims_only_its_own,
    ),
    (
        "fresh_image_reads_zeros",
        cases_durability::fresh_image_reads_zeros,
    ),
    ("random_write_read", cases_io::random_write_read),
    ("vectored_io", cases_io::vectored_io),
    ("write_zeroes", cases_io::write_zeroes),
    ("discard_is_stable", cases_io::discard_stable),
    ("flush_and_reopen", cases_durability::flush_and_reopen),
    (
        "flush_visible_to_second_open",
        cases_durability::flush_visible_to_second_open,
    ),
    ("out_of_range", cases_bounds::out_of_range),
    (
        "driver_refuses_writes_past_end",
        cases_bounds::driver_refuses_writes_past_end,
    ),
    ("block_status_covers", cases_io::block_status_covers),
    ("concurrent_writers", cases_concurrency::concurrent_writers),
    (
        "invalidate_keeps_data",
        cases_migration::invalidate_keeps_data,
    ),
    (
        "invalidate_sees_outside_change",
        cases_migration::invalidate_sees_outside_change,
    ),
    (
        "inactive_refuses_writes",
        cases_migration::inactive_refuses_writes,
    ),
    ("read_only_refuses_writes", cases_bounds::read_only),
    ("truncate_grow", cases_durability::truncate_grow),
    ("qemu_agrees", cases_durability::qemu_agrees),
    (
        "shared_storage_handoff",
        cases_migration::shared_storage_handoff,
    ),
];

/// The names of the cases [`run_suite`] runs for `driver`, in order.
pub fn case_names(driver: &str) -> Vec<&'static str> {
    cases_for(driver).iter().map(|(n, _)| *n).collect()
}

fn cases_for(driver: &str) -> &'static [(&'static str, CaseFn)] {
    if SINK_DRIVERS.contains(&driver) {
        SINK_CASES
    } else {
        CASES
    }
}

/// Runs every applicable case against `driver` registered in `host`,
/// creating images in `workdir`.
pub fn run_suite(host: &Host, driver: &str, workdir: &Path) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for (i, (name, f)) in cases_for(driver).iter().enumerate() {
        let panics_before = panic_watch::count();
        let outcome = match target::prepare(host, driver, workdir, 1000 + i as u64) {
            Err(e) => Outcome::Fail(e),
            Ok(t) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&t))) {
                Ok(Ok(())) => Outcome::Pass,
                Ok(Err(e)) => match e.strip_prefix("SKIP: ") {
                    Some(why) => Outcome::Skip(why.to_string()),
                    None => Outcome::Fail(e),
                },
                Err(p) => Outcome::Fail(format!(
                    "the case panicked: {}",
                    panic_watch::payload_text(&*p)
                )),
            },
        };
        out.push(CaseResult {
            name,
            outcome: judge_panics(outcome, panics_before),
        });
    }
    out
}

/// A case during which the driver panicked fails, whatever it concluded:
/// a skip or pass whose reason mentions a driver panic, or any panic the
/// watcher saw (a query slot's panic the ABI swallows and logs).
fn judge_panics(outcome: Outcome, panics_before: u64) -> Outcome {
    let seen = panic_watch::count() - panics_before;
    match outcome {
        Outcome::Skip(why) if why.contains("panicked") => Outcome::Fail(why),
        Outcome::Fail(why) if why.contains("panicked") => Outcome::Fail(why),
        Outcome::Fail(why) if seen > 0 => Outcome::Fail(format!(
            "{why}; the driver panicked {seen} time(s): {}",
            panic_watch::last().unwrap_or_default()
        )),
        _ if seen > 0 => Outcome::Fail(format!(
            "the driver panicked {seen} time(s): {}",
            panic_watch::last().unwrap_or_default()
        )),
        o => o,
    }
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
