//! Shared helpers of the blk integration tests: locations of built artifacts,
//! QEMU tool wrappers, seeded data.
#![warn(missing_docs)]

pub mod bochs;
pub mod conformance;
pub mod differential;
pub mod fuzz;

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The directory holding the driver plugin libraries (`cargo xtask plugins`).
pub fn plugin_dir() -> PathBuf {
    let d = std::env::var_os("BLK_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("plugins"));
    assert!(
        d.is_dir(),
        "plugin directory {} is missing: run `cargo xtask test` (it builds the plugins first)",
        d.display()
    );
    d
}

/// A test fixture library by name (`old_abi`, `future_abi`, `misbehaving`,
/// `buggy_none` and `buggy_<bug>` for each bug of tests/fixtures/buggy-plugin).
pub fn fixture(name: &str) -> PathBuf {
    let d = std::env::var_os("BLK_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("fixtures"));
    let p = d.join(format!("lib{name}.so"));
    assert!(
        p.is_file(),
        "fixture {} is missing: run `cargo xtask test` (it builds the fixtures first)",
        p.display()
    );
    p
}

/// The `blk` binary.
pub fn blk_bin() -> PathBuf {
    let p = std::env::var_os("BLK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join("blk"));
    assert!(
        p.is_file(),
        "blk binary {} is missing: run `cargo xtask test`",
        p.display()
    );
    p
}

/// Runs a command and returns its output (panics if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img ARGS`.
pub fn qemu_img(args: &[&str]) -> Output {
    run(Command::new("qemu-img").args(args))
}

/// `qemu-img ARGS`, which must succeed; returns stdout.
pub fn qemu_img_ok(args: &[&str]) -> String {
    run_ok(Command::new("qemu-img").args(args))
}

/// `qemu-io ARGS`, which must succeed; returns stdout.
pub fn qemu_io_ok(args: &[&str]) -> String {
    run_ok(Command::new("qemu-io").args(args))
}

/// `blk ARGS`.
pub fn blk(args: &[&str]) -> Output {
    run(Command::new(blk_bin()).args(args))
}

/// `blk ARGS`, which must succeed; returns stdout.
pub fn blk_ok(args: &[&str]) -> String {
    run_ok(Command::new(blk_bin()).args(args))
}

/// A deterministic generator for a test.
pub fn rng(seed: u64) -> rand::rngs::SmallRng {
    rand::rngs::SmallRng::seed_from_u64(seed)
}

/// `len` seeded random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = rng(seed);
    let mut v = vec![0u8; len];
    r.fill(&mut v[..]);
    v
}

/// A path string.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A background `qemu-io` that holds an image open (and locked) until dropped.
pub struct QemuHolder {
    child: std::process::Child,
}

/// The inode number of a file, as `/proc/locks` shows it.
fn inode_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// True when some process holds a lock on `path` (per `/proc/locks`).
pub fn is_locked(path: &Path) -> bool {
    let ino = format!(":{} ", inode_of(path));
    std::fs::read_to_string("/proc/locks")
        .map(|t| t.lines().any(|l| l.contains(&ino)))
        .unwrap_or(false)
}

impl QemuHolder {
    /// Starts `qemu-io ARGS -c 'sleep 60000' IMG` and waits until it holds a
    /// lock on the image (or `expect_lock` is false and it has had time to open).
    pub fn spawn(args: &[&str], img: &Path, expect_lock: bool) -> QemuHolder {
        let child = Command::new("qemu-io")
            .args(args)
            .args(["-c", "sleep 60000"])
            .arg(img)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start qemu-io");
        let start = std::time::Instant::now();
        while expect_lock && !is_locked(img) {
            assert!(
                start.elapsed().as_secs() < 20,
                "qemu-io did not lock {}",
                img.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !expect_lock {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        QemuHolder { child }
    }

    /// Stops the holder and waits for it to exit.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
