//! The plugin SDK end to end: `cargo xtask new-plugin` makes a plugin crate
//! outside the workspace from `sdk/plugin-template`, the crate's own unit
//! tests pass, it builds as a plugin library in its own directory, the
//! conformance binary passes it (run from the plugin's directory with a
//! relative library path, as a plugin author runs it), and `blk` creates,
//! writes, reads and describes an image of the new format with the library
//! shipped to a directory named in `BLK_PLUGIN_PATH`.
//!
//! It runs cargo: one build of block-core and the plugin (tens of seconds).

use blk_tests::{blk_bin, run_ok, s, workspace_root};
use std::path::Path;
use std::process::Command;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo ARGS` in the plugin's directory, building into its own `target/`.
fn cargo_in(dir: &Path, args: &[&str]) -> String {
    let mut c = cargo();
    c.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", dir.join("target"));
    run_ok(&mut c)
}

#[test]
fn a_new_plugin_builds_passes_conformance_and_serves_blk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batfmt");

    let mut c = cargo();
    c.current_dir(workspace_root()).args([
        "run",
        "-q",
        "-p",
        "xtask",
        "--",
        "new-plugin",
        "batfmt",
        s(&dir),
    ]);
    let made = run_ok(&mut c);
    assert!(made.contains("plugin 'batfmt' made in"), "{made}");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"batfmt\""), "{manifest}");
    let core = std::fs::canonicalize(workspace_root().join("block-core")).unwrap();
    assert!(
        manifest.contains(&format!("block-core = {{ path = \"{}\" }}", core.display())),
        "{manifest}"
    );

    // A second run into the same directory is refused and changes nothing.
    let mut again = cargo();
    again.current_dir(workspace_root()).args([
        "run",
        "-q",
        "-p",
        "xtask",
        "--",
        "new-plugin",
        "batfmt",
        s(&dir),
    ]);
    let out = blk_tests::run(&mut again);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest
    );

    // The template's unit tests, renamed, pass in the new crate.
    let tests = cargo_in(&dir, &["test"]);
    let passed: u64 = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        passed >= 10,
        "the template's unit tests did not run:\n{tests}"
    );
    assert!(!tests.contains("FAILED"), "{tests}");

    cargo_in(&dir, &["build", "--features", "plugin"]);
    let lib = dir.join("target/debug/libbatfmt.so");
    assert!(lib.is_file(), "{} was not built", lib.display());

    // Conformance from the plugin's own directory, with a relative path.
    let mut conf = Command::new(env!("CARGO_BIN_EXE_blk-conformance"));
    conf.current_dir(&dir)
        .args(["--plugin", "target/debug/libbatfmt.so"]);
    let report = run_ok(&mut conf);
    for case in [
        "open_and_info",
        "random_write_read",
        "vectored_io",
        "write_zeroes",
        "discard_is_stable",
        "flush_and_reopen",
        "out_of_range",
        "block_status_covers",
        "concurrent_writers",
        "invalidate_keeps_data",
        "read_only_refuses_writes",
        "truncate_grow",
        "shared_storage_handoff",
    ] {
        assert!(
            report.contains(&format!("PASS batfmt/{case}\n")),
            "{case} did not pass:\n{report}"
        );
    }
    assert!(!report.contains("FAIL"), "{report}");

    // Shipping: the library alone in a directory BLK_PLUGIN_PATH names.
    let shipped = tmp.path().join("plugins");
    std::fs::create_dir(&shipped).unwrap();
    std::fs::copy(&lib, shipped.join("libbatfmt.so")).unwrap();
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let blk = |args: &[&str]| {
        let mut c = Command::new(blk_bin());
        c.current_dir(&work)
            .env("BLK_PLUGIN_PATH", &shipped)
            .env_remove("BLK_BUILTIN_DRIVERS")
            .args(args);
        run_ok(&mut c)
    };
    let plugins = blk(&["plugins"]);
    assert!(plugins.contains("batfmt"), "{plugins}");
    let created = blk(&["create", "-f", "batfmt", "x.img", "1M"]);
    assert!(
        created.contains("Formatting 'x.img', fmt=batfmt size=1048576"),
        "{created}"
    );
    // A new image is its header and a zero BAT (16 entries: 1 MiB in
    // 64 KiB blocks), no data blocks.
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let file = std::fs::read(work.join("x.img")).unwrap();
    assert_eq!(&file[..8], b"BLKBAT\0\0");
    assert_eq!(
        (le64(&file, 16), le32(&file, 24), le32(&file, 28)),
        (1 << 20, 65536, 16)
    );
    let bat = le64(&file, 32) as usize;
    assert!(
        file.len() < 65536,
        "no data block yet: {} bytes",
        file.len()
    );
    let wrote = blk(&["io", "-c", "write -P 7 0 4k", "x.img"]);
    assert!(
        wrote.contains("wrote 4096/4096 bytes at offset 0"),
        "{wrote}"
    );
    // The write appended one block after the BAT's reserved space (block 1
    // of the file) and BAT entry 0 names it; the rest of the block is zero
    // fill, and every other entry is still unallocated.
    let file = std::fs::read(work.join("x.img")).unwrap();
    assert_eq!(file.len(), 2 * 65536);
    assert_eq!(le32(&file, bat), 1);
    assert!((1..16).all(|i| le32(&file, bat + 4 * i) == 0));
    assert!(file[65536..65536 + 4096].iter().all(|&b| b == 7));
    assert!(file[65536 + 4096..].iter().all(|&b| b == 0));
    let read = blk(&[
        "io",
        "-f",
        "batfmt",
        "-c",
        "read -P 7 0 4k",
        "-c",
        "read -P 0 4k 4k",
        "x.img",
    ]);
    assert!(read.contains("read 4096/4096 bytes at offset 0"), "{read}");
    assert!(
        read.contains("read 4096/4096 bytes at offset 4096"),
        "{read}"
    );
    assert!(!read.contains("verification failed"), "{read}");
    // info probes the format (the magic) and prints the format's own block.
    let info = blk(&["info", "x.img"]);
    assert!(info.contains("file format: batfmt"), "{info}");
    assert!(
        info.contains("virtual size: 1 MiB (1048576 bytes)"),
        "{info}"
    );
    assert!(info.contains("cluster_size: 65536"), "{info}");
    for line in ["\n    bat entries: 16\n", "\n    allocated blocks: 1\n"] {
        assert!(info.contains(line), "{line:?} missing:\n{info}");
    }
    // check walks the BAT through the node's check capability.
    let check = blk(&["check", "x.img"]);
    assert!(
        check.contains("No errors were found on the image."),
        "{check}"
    );
    assert!(check.contains("Image end offset: 131072"), "{check}");
}

/// A plugin outside the workspace depends on block-core alone, and
/// block-core is to be published: its manifest inherits nothing from the
/// workspace (a packaged crate has no workspace to inherit from) and has the
/// fields `cargo publish` needs, its README among them.
#[test]
fn block_core_stands_alone_as_a_package() {
    let dir = workspace_root().join("block-core");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for (n, line) in manifest.lines().enumerate() {
        let code = line.split('#').next().unwrap();
        assert!(
            !code.contains("workspace"),
            "block-core/Cargo.toml line {} inherits from the workspace: {line}",
            n + 1
        );
    }
    for field in [
        "name = \"block-core\"",
        "version = \"",
        "edition = \"",
        "description = \"",
        "license = \"",
        "readme = \"README.md\"",
    ] {
        assert!(
            manifest.lines().any(|l| l.starts_with(field)),
            "block-core/Cargo.toml lacks {field}"
        );
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.starts_with("# block-core"), "{readme}");
}
