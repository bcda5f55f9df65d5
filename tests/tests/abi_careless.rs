//! Careless hosts and C plugins (issue 10, items 5 to 9). The fixtures are
//! C sources under tests/fixtures/c/, written against the C header
//! `blk_abi.h` and compiled here with `cc` into a temporary directory (no
//! binaries are committed; a missing `cc` fails these tests). C host
//! harnesses load a Rust plugin library and call its slots with bad
//! arguments, one case per process; C plugins are loaded by the `blk`
//! binary and do one careless thing each. Each case runs in its own
//! process, so a crash shows as a signal, not as a dead test binary.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn c_dir() -> PathBuf {
    blk_tests::workspace_root().join("tests/fixtures/c")
}

/// A compiled fixture and the directory that holds it.
struct Built {
    _dir: TempDir,
    path: PathBuf,
}

/// Compiles `src` (in tests/fixtures/c) with `defines`: a shared library
/// (`lib<name>.so`) or a host program. Warnings are errors, so the header's
/// static layout assertions and prototypes are checked too.
fn cc(src: &str, name: &str, shared: bool, defines: &[&str]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let path = if shared {
        dir.path().join(format!("lib{name}.so"))
    } else {
        dir.path().join(name)
    };
    let mut c = Command::new("cc");
    c.args(["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"])
        .arg("-Wno-missing-field-initializers")
        .arg("-I")
        .arg(c_dir());
    if shared {
        c.args(["-shared", "-fPIC", "-fvisibility=hidden"]);
    }
    for d in defines {
        c.arg(format!("-D{d}"));
    }
    c.arg("-o").arg(&path).arg(c_dir().join(src));
    c.args(if shared { ["-lpthread"] } else { ["-ldl"] });
    let out = c.output().unwrap_or_else(|e| {
        panic!("cannot run the C compiler `cc` ({e}): install gcc or clang to run these tests")
    });
    assert!(
        out.status.success(),
        "cc {src} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Built { _dir: dir, path }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Panics unless the process exited by itself (not by a signal).
fn exited(what: &str, out: &Output) -> i32 {
    match out.status.code() {
        Some(c) => c,
        None => panic!(
            "{what} was killed by signal {:?}\nstdout: {}\nstderr: {}",
            out.status.signal(),
            text(&out.stdout),
            text(&out.stderr)
        ),
    }
}

/// Runs one case of a C host harness against the null plugin: (rc, message).
fn harness(bin: &Path, case: &str) -> (i32, String) {
    let lib = blk_tests::plugin_dir().join("libblk_null.so");
    let out = Command::new(bin)
        .arg(&lib)
        .arg("null-co")
        .arg(case)
        .output()
        .unwrap();
    let code = exited(&format!("harness case {case}"), &out);
    let stdout = text(&out.stdout);
    assert_eq!(code, 0, "case {case}: {stdout} {}", text(&out.stderr));
    let line = stdout.lines().last().unwrap_or("");
    let (rc, msg) = line
        .strip_prefix("rc=")
        .and_then(|l| l.split_once(" msg="))
        .unwrap_or_else(|| panic!("case {case}: unexpected output {stdout:?}"));
    (rc.parse().unwrap(), msg.to_string())
}

/// Runs `blk` with only the C plugin `lib` loaded (no linked-in drivers).
/// Freed memory is poisoned (no tcache, MALLOC_PERTURB_), so that a
/// use-after-free in the host shows instead of passing by luck.
fn blk_with(lib: &Path, args: &[&str]) -> Output {
    Command::new(blk_tests::blk_bin())
        .args(args)
        .env("BLK_BUILTIN_DRIVERS", "0")
        .env("BLK_PLUGIN_PATH", lib)
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
        .env("MALLOC_PERTURB_", "165")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Writes a pattern to `file` through the plugin and reads it back.
fn write_read(lib: &Path, file: &str) -> Output {
    blk_with(
        lib,
        &[
            "io",
            "-c",
            "write -P 0x5a 4096 8192",
            "-c",
            "read -P 0x5a 4096 8192",
            file,
        ],
    )
}

fn assert_io_works(what: &str, out: &Output) {
    let code = exited(what, out);
    let stdout = text(&out.stdout);
    assert!(
        code == 0 && stdout.contains("read 8192/8192 bytes") && !stdout.contains("failed"),
        "{what}: exit {code}\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
}

/// Item 5: overlapping read iovecs would become aliasing `&mut [u8]`; an
/// iovec with a NULL pointer was read as empty (a short read reported as
/// success); lengths that overflow were turned into slices. All are
/// refused with EINVAL and a message; repeated write buffers stay allowed.
#[test]
fn overlapping_null_and_overflowing_iovecs_are_refused() {
    let h = cc("host_iovec.c", "host_iovec", false, &[]);
    let einval = -libc::EINVAL;
    for (case, words) in [
        (
            "overlap_read",
            "iovecs 0 and 1 overlap (2048 bytes in common)",
        ),
        ("null_ptr_read", "iovec 1 has a NULL pointer"),
        ("null_ptr_write", "iovec 1 has a NULL pointer"),
        ("null_array", "the iovec array is NULL but niov is 2"),
        ("len_overflow", "the iovec lengths overflow"),
        ("end_overflow", "ends past 2^64"),
    ] {
        let (rc, msg) = harness(&h.path, case);
        assert_eq!(rc, einval, "{case}: {msg}");
        assert!(msg.contains(words), "{case}: {msg}");
    }
    assert_eq!(harness(&h.path, "overlap_write"), (0, String::new()));
    assert_eq!(harness(&h.path, "ok_read"), (0, String::new()));
}

/// Item 6: NULL output pointers (and a NULL node context) were written
/// through (the host aborted) or silently skipped (a result sink: success
/// with no result). Every exported driver and node slot refuses them.
#[test]
fn null_outputs_are_refused_by_every_slot() {
    let h = cc("host_null_out.c", "host_null_out", false, &[]);
    for case in [
        "open_out",
        "length",
        "allocated_size",
        "block_status",
        "info_sink",
        "check_sink",
        "snapshot_list_sink",
        "bitmap_sink",
        "measure_sink",
    ] {
        let (rc, msg) = harness(&h.path, case);
        assert_eq!(rc, -libc::EINVAL, "{case}: {msg}");
        assert!(
            msg.contains("the output pointer `out` is NULL"),
            "{case}: {msg}"
        );
    }
    // Slots without an error sink: -EINVAL (and an error log).
    for case in [
        "limits",
        "capabilities",
        "create_options_sink",
        "open_options_sink",
    ] {
        assert_eq!(harness(&h.path, case).0, -libc::EINVAL, "{case}");
    }
    let (rc, msg) = harness(&h.path, "null_ctx");
    assert_eq!(rc, -libc::EINVAL);
    assert!(msg.contains("`ctx` is NULL"), "{msg}");
    assert_eq!(harness(&h.path, "ok_length").0, 0);
}

/// Item 6, host side: a plugin asking the host for a child with a NULL
/// output pointer gets EINVAL and a message (the host wrote through NULL).
#[test]
fn a_null_child_output_is_refused_by_the_host() {
    let p = cc("plugin_null_out.c", "null_out", true, &[]);
    let out = blk_with(&p.path, &["io", "-c", "read 0 4096", "cmem:top"]);
    let code = exited("blk with plugin_null_out", &out);
    let stderr = text(&out.stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the output pointer `out` is NULL"),
        "{stderr}"
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
}

/// Item 7: an ABI 1.0 plugin whose tables state the 1.5 sizes (holding
/// only the 1.0 slots, then junk) made the host call the junk (SIGSEGV).
/// The host bounds struct_size by the plugin's declared minor and refuses
/// the table, naming it and both sizes; truthful tables keep working.
#[test]
fn tables_larger_than_the_declared_minor_are_refused() {
    let ok = cc("plugin_oversized_vtbl.c", "oversized", true, &[]);
    assert_io_works("truthful 1.0 tables", &write_read(&ok.path, "cmem:a"));

    let node = cc(
        "plugin_oversized_vtbl.c",
        "oversized",
        true,
        &["OVERSIZE_NODE"],
    );
    let out = write_read(&node.path, "cmem:a");
    let code = exited("oversized node vtable", &out);
    let stderr = text(&out.stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("node vtable (BcNodeVtbl)")
            && stderr.contains("ABI 1.0")
            && stderr.contains("expected 56, found 224"),
        "{stderr}"
    );

    let drv = cc(
        "plugin_oversized_vtbl.c",
        "oversized",
        true,
        &["OVERSIZE_DRIVER"],
    );
    let out = write_read(&drv.path, "cmem:a");
    let code = exited("oversized driver vtable", &out);
    let stderr = text(&out.stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("driver vtable (BcDriverVtbl)")
            && stderr.contains("expected 64, found 104")
            && stderr.contains("liboversized.so"),
        "{stderr}"
    );
}

/// Item 8: a plugin that releases the host services handle it was lent
/// (never retained) freed it under the host, which freed it again when the
/// call returned, and the plugin's next call through it used freed memory.
/// Now the release is logged and ignored, and the handle works until the
/// call returns (here: to open a child through it).
#[test]
fn releasing_a_lent_handle_is_logged_and_harmless() {
    for defines in [&[][..], &["USE_AFTER_RELEASE"][..]] {
        let p = cc("plugin_release_lent.c", "release_lent", true, defines);
        let out = write_read(&p.path, "cmem:top");
        let what = format!("plugin_release_lent {defines:?}");
        assert_io_works(&what, &out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "released the host services handle lent to its call without having retained it"
            ),
            "{what}: {stderr}"
        );
    }
}

/// Item 9: a plugin header is copied up to the smaller of its size and the
/// host's (zero-filled), like every table: a longer one (a later minor's)
/// loads; one too short for the 1.0 fields is refused naming both sizes
/// (it was "bad header").
#[test]
fn plugin_headers_are_copied_like_tables() {
    let p = cc("plugin_header_size.c", "header_size", true, &[]);
    assert_io_works("64-byte header", &write_read(&p.path, "cmem:h"));
    let p = cc(
        "plugin_header_size.c",
        "header_size",
        true,
        &["HEADER_SIZE=72"],
    );
    assert_io_works("72-byte header", &write_read(&p.path, "cmem:h"));

    let p = cc(
        "plugin_header_size.c",
        "header_size",
        true,
        &["HEADER_SIZE=48"],
    );
    let out = write_read(&p.path, "cmem:h");
    let code = exited("48-byte header", &out);
    let stderr = text(&out.stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("libheader_size.so")
            && stderr.contains("expected at least 64 bytes")
            && stderr.contains("found 48"),
        "{stderr}"
    );
}
