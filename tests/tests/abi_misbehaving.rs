//! Misbehaving Rust plugins (issue 10, items 1–4): each fixture of
//! tests/fixtures/misbehaving-plugin plants one misbehaviour, and the host
//! must turn it into a clear error (or log line) and survive.

use block_core::ErrorKind;
use plugin_host::Host;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

/// `blk ARGS` with only `lib` (a file or directory) on the plugin path;
/// backtraces off, so stderr holds the messages only.
fn blk_with(lib: &Path, args: &[&str]) -> Output {
    blk_tests::run(
        Command::new(blk_tests::blk_bin())
            .args(args)
            .env("BLK_PLUGIN_PATH", lib)
            .env("RUST_BACKTRACE", "0")
            .env_remove("RUST_LOG"),
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the process ended by itself (not killed by a signal such as
/// SIGABRT) and returns its exit code.
fn exit_code(o: &Output) -> i32 {
    match o.status.code() {
        Some(c) => c,
        None => panic!(
            "blk was killed by signal {:?} (an abort in the host):\n{}",
            o.status.signal(),
            stderr(o)
        ),
    }
}

fn host_with(lib: &Path) -> block_core::Result<Host> {
    Host::builder()
        .env_plugin_path(false)
        .plugin_file(lib)
        .build()
}

/// A 1 MiB file that starts with the `panicfmt` magic, seeded after it.
fn panicfmt_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let p = dir.join("panicfmt.img");
    let mut bytes = blk_tests::random_bytes(10, 1 << 20);
    bytes[..8].copy_from_slice(b"PANICFMT");
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

/// Item 1: a probe that fails (panics, or returns an error) must not read
/// as "not mine": the open is refused naming the driver and its library,
/// and the write that would overwrite the format's header never happens.
fn failing_probe_refuses_the_open(fixture: &str) {
    let lib = blk_tests::fixture(fixture);
    let dir = tempfile::tempdir().unwrap();
    let (img, before) = panicfmt_image(dir.path());
    let o = blk_with(
        &lib,
        &["io", "-c", "write -P 0x55 0 512", blk_tests::s(&img)],
    );
    let err = stderr(&o);
    assert_ne!(exit_code(&o), 0, "the open must fail:\n{err}");
    assert!(err.contains("'panicfmt'"), "names the driver: {err}");
    assert!(
        err.contains(&format!("lib{fixture}.so")),
        "names the library: {err}"
    );
    assert!(err.contains("probe"), "says the probe failed: {err}");
    assert!(
        std::fs::read(&img).unwrap() == before,
        "the image was changed"
    );
    // In-process too: the open fails with the driver's error.
    let host = host_with(&lib).unwrap();
    let e = host
        .open(blk_tests::s(&img), &Default::default())
        .err()
        .expect("open refused");
    assert!(e.to_string().contains("'panicfmt'"), "{e}");
}

#[test]
fn a_panicking_probe_refuses_the_open() {
    failing_probe_refuses_the_open("misbehaving_probe_panic");
}

#[test]
fn a_failing_probe_refuses_the_open() {
    failing_probe_refuses_the_open("misbehaving_probe_error");
}

/// The driver with a failing probe does not get in the way of files that
/// are not its format.
#[test]
fn a_failing_probe_leaves_other_files_alone() {
    let lib = blk_tests::fixture("misbehaving_probe_panic");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("plain.img");
    std::fs::write(&img, blk_tests::random_bytes(11, 64 << 10)).unwrap();
    let o = blk_with(
        &lib,
        &["io", "-c", "write -P 0x55 512 512", blk_tests::s(&img)],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(&std::fs::read(&img).unwrap()[512..1024], &[0x55u8; 512][..]);
}

/// Item 2: a panic while a node is closed (dropped) is logged at error
/// level under the plugin's name, with the panic message.
#[test]
fn a_close_panic_is_logged() {
    let lib = blk_tests::fixture("misbehaving_close_panic");
    let o = blk_with(
        &lib,
        &["io", "-f", "panicky", "-c", "write 0 512", "panicky:close"],
    );
    let err = stderr(&o);
    exit_code(&o);
    assert!(
        err.lines().any(|l| l.contains("ERROR")
            && l.contains("plugin::misbehaving")
            && l.contains("close")
            && l.contains("close is broken on purpose")),
        "no error log line for the close panic:\n{err}"
    );
}

/// Item 2: a panic in `name()` or `kind()` is reported as a panic, with
/// its message, not as an empty name or an unknown kind.
#[test]
fn identity_panics_are_reported_with_their_message() {
    for (fixture, what, msg) in [
        (
            "misbehaving_name_panic",
            "name()",
            "name() is broken on purpose",
        ),
        (
            "misbehaving_kind_panic",
            "kind()",
            "kind() is broken on purpose",
        ),
    ] {
        let lib = blk_tests::fixture(fixture);
        let e = host_with(&lib).err().expect("plugin refused");
        let m = e.to_string();
        assert_eq!(e.kind, ErrorKind::AbiMismatch, "{m}");
        assert!(
            m.contains(&format!("lib{fixture}.so")),
            "names the file: {m}"
        );
        assert!(
            m.contains(&format!("{what} panicked")),
            "says it panicked: {m}"
        );
        assert!(m.contains(msg), "has the panic message: {m}");
        assert!(
            !m.contains("empty name") && !m.contains("unknown kind"),
            "{m}"
        );
    }
}

/// Item 2: a plugin whose entry point panics (a driver constructor) is an
/// error even when found by scanning a plugin directory: `blk` exits
/// non-zero naming the library and the panic.
#[test]
fn an_entry_panic_in_a_scanned_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let plugdir = dir.path().join("plugins");
    std::fs::create_dir(&plugdir).unwrap();
    let lib = plugdir.join("libbroken_entry.so");
    std::fs::copy(blk_tests::fixture("misbehaving_entry_panic"), &lib).unwrap();
    let img = dir.path().join("a.img");
    std::fs::write(&img, vec![0u8; 64 << 10]).unwrap();

    let o = blk_with(&plugdir, &["info", blk_tests::s(&img)]);
    let err = stderr(&o);
    assert_ne!(
        exit_code(&o),
        0,
        "a broken plugin in the path must fail:\n{err}"
    );
    assert!(
        err.contains("libbroken_entry.so"),
        "names the library: {err}"
    );
    assert!(
        err.contains("the panicky constructor is broken on purpose"),
        "has the panic message: {err}"
    );

    let e = Host::builder()
        .env_plugin_path(false)
        .plugin_dir(&plugdir)
        .build()
        .err()
        .expect("scanned broken plugin refused");
    assert!(e.to_string().contains("entry point panicked"), "{e}");
}

/// The other side of that decision: a file in a plugin directory that is
/// no blk plugin at all is skipped with a warning, as before.
#[test]
fn a_non_plugin_in_a_scanned_directory_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("libnotes.so"), b"not a library").unwrap();
    let host = Host::builder()
        .env_plugin_path(false)
        .plugin_dir(dir.path())
        .build()
        .expect("a non-plugin is skipped");
    assert_eq!(host.load_errors().len(), 1);
}

/// Item 3: a panic payload whose own `Drop` panics does not abort the
/// host: the call fails and the process ends normally.
#[test]
fn a_payload_whose_drop_panics_does_not_abort_the_host() {
    let lib = blk_tests::fixture("misbehaving_payload_drop");
    let o = blk_with(
        &lib,
        &[
            "io",
            "-f",
            "panicky",
            "-c",
            "flush",
            "-c",
            "read 0 512",
            "panicky:bomb",
        ],
    );
    let err = stderr(&o);
    exit_code(&o);
    assert!(err.contains("flush: driver panicked"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("read 512/512 bytes"),
        "later commands run:\n{out}\n{err}"
    );
}

/// Item 4: a plugin built with `panic = "abort"` is refused before any of
/// its code runs, naming the file, the cause and the fix.
#[test]
fn a_panic_abort_plugin_is_refused() {
    let lib = blk_tests::fixture("misbehaving_abort");
    let e = host_with(&lib).err().expect("abort plugin refused");
    let m = e.to_string();
    assert_eq!(e.kind, ErrorKind::AbiMismatch, "{m}");
    for want in [
        "libmisbehaving_abort.so",
        "panic=abort",
        "panic = \"unwind\"",
    ] {
        assert!(m.contains(want), "{want:?} missing: {m}");
    }
    // The command refuses it too, rather than abort at the first panic.
    let o = blk_with(
        &lib,
        &["io", "-f", "panicky", "-c", "flush", "panicky:abort"],
    );
    let err = stderr(&o);
    assert_ne!(exit_code(&o), 0, "{err}");
    assert!(err.contains("panic=abort"), "{err}");
    // The same plugin built unwinding (the default) loads.
    host_with(&blk_tests::fixture("misbehaving")).expect("unwinding plugin loads");
}
