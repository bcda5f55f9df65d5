//! The conformance suite catches broken drivers: `blk-conformance` fails
//! each deliberately buggy build of tests/fixtures/buggy-plugin, naming the
//! cases that caught the bug, and passes the correct build and the real
//! drivers (also when the library is given relative to the caller's
//! directory).

use std::path::Path;
use std::process::{Command, Output};

/// The `blk-conformance` binary.
fn conformance() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blk-conformance"))
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr (tail):\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The failed case names (`driver/case`) of a run's report.
fn failed_cases(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap_or(l).to_string())
        .collect()
}

/// Runs the suite on the buggy build `bug`: it must exit 1, fail exactly
/// `cases`, give `reason` in the first one's message and name every failed
/// case in the summary.
fn must_catch(bug: &str, cases: &[&str], reason: &str) {
    let lib = blk_tests::fixture(&format!("buggy_{bug}"));
    let out = blk_tests::run(conformance().arg("--plugin").arg(&lib));
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{bug} must fail conformance\n{all}"
    );
    let want: Vec<String> = cases.iter().map(|c| format!("buggyfmt/{c}")).collect();
    assert_eq!(failed_cases(&out), want, "{bug}: the failed cases\n{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout
        .lines()
        .find(|l| l.starts_with(&format!("FAIL {}:", want[0])))
        .unwrap_or_default();
    assert!(
        first.contains(reason),
        "{bug}: '{reason}' in '{first}'\n{all}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("conformance: failed cases: "))
        .unwrap_or_default();
    for w in &want {
        assert!(
            summary.contains(w.as_str()),
            "{bug}: summary names {w}\n{all}"
        );
    }
}

#[test]
fn catches_a_probe_that_claims_every_file() {
    must_catch(
        "probe_claims_all",
        &["probe_claims_only_its_own"],
        "probe claims a raw file of zeros with score 100",
    );
}

#[test]
fn catches_a_fresh_image_that_is_not_zeros() {
    must_catch("dirty_create", &["fresh_image_reads_zeros"], "not zeros");
}

#[test]
fn catches_a_flush_that_does_nothing() {
    must_catch(
        "noop_flush",
        &["flush_visible_to_second_open"],
        "a second open after write and flush",
    );
}

#[test]
fn catches_panics_in_driver_slots() {
    must_catch(
        "panics",
        &["open_and_info", "node_queries", "block_status_covers"],
        "driver panicked",
    );
}

/// Panics the ABI swallows (a query slot answers a default and logs) are
/// seen by the panic watch of `blk-conformance`.
#[test]
fn catches_panics_the_abi_swallows() {
    must_catch(
        "query_panics",
        &["node_queries"],
        "the driver panicked 2 time(s)",
    );
}

#[test]
fn catches_writes_past_the_virtual_size() {
    must_catch(
        "write_past_end",
        &["driver_refuses_writes_past_end"],
        "a driver write of 4096 bytes at 8388598 (virtual size 8388608) succeeded",
    );
}

#[test]
fn catches_a_data_race_between_threads() {
    must_catch("racy_cursor", &["concurrent_writers"], "thread");
}

#[test]
fn catches_an_invalidate_cache_that_keeps_stale_data() {
    must_catch(
        "stale_cache",
        &["invalidate_sees_outside_change", "shared_storage_handoff"],
        "after another open wrote and invalidate_cache",
    );
}

#[test]
fn catches_writes_accepted_while_inactive() {
    must_catch(
        "ignore_inactive",
        &["inactive_refuses_writes"],
        "write while inactive succeeded",
    );
}

/// The correct build passes, given as a path relative to the caller's
/// directory (the binary resolves it against its current directory).
#[test]
fn passes_the_correct_build_given_relative_to_the_cwd() {
    let lib = blk_tests::fixture("buggy_none");
    let dir = lib.parent().expect("fixture dir");
    let name = lib.file_name().expect("file name");
    let out = blk_tests::run(conformance().current_dir(dir).arg("--plugin").arg(name));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(failed_cases(&out).is_empty(), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS buggyfmt/concurrent_writers"),
        "{all}"
    );
}

/// A missing library is a setup error (exit 2) naming the path.
#[test]
fn a_missing_library_is_a_clear_error() {
    let out = blk_tests::run(conformance().args(["--plugin", "no/such/libx.so"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/libx.so"), "{err}");
}

/// The real drivers pass through the binary, as plugin libraries.
#[test]
fn passes_the_real_driver_plugins() {
    let dir = blk_tests::plugin_dir();
    for lib in [
        "libblk_file.so",
        "libblk_raw.so",
        "libblk_null.so",
        "libblk_qcow2.so",
    ] {
        let out = blk_tests::run(conformance().arg("--plugin").arg(Path::new(&dir).join(lib)));
        let all = text(&out);
        assert!(out.status.success(), "{lib}\n{all}");
        assert!(failed_cases(&out).is_empty(), "{lib}\n{all}");
    }
}
