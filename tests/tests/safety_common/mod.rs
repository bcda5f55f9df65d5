//! Helpers shared by the data-safety tests: bounded runs, directory
//! snapshots and immutable files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `prog args` in `dir`, killed after 20 s: a command that blocks (a
/// FIFO opened for writing without a reader) fails the test, never hangs it.
pub fn run_bounded(dir: &Path, prog: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {prog:?}: {e}"));
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{prog:?} {args:?} hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Every entry under `dir` with its kind and, for a regular file, its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let t = std::fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                todo.push(p.clone());
            }
            let bytes = t.is_file().then(|| std::fs::read(&p).unwrap());
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), bytes);
        }
    }
    out
}

/// Clears the immutable flag of the files it names when dropped, so that
/// a failing test can still remove its directory.
pub struct Immutable(pub Vec<PathBuf>);

impl Immutable {
    /// Makes `p` immutable (`chattr +i`): not even root may open it for
    /// writing. The filesystem of the test directories (ext4 here) supports
    /// it; where it does not, the test fails saying so rather than skip.
    pub fn set(&mut self, p: &Path) {
        let out = Command::new("chattr").arg("+i").arg(p).output().unwrap();
        assert!(
            out.status.success(),
            "chattr +i {} (needs root and a filesystem with the immutable flag): {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push(p.to_path_buf());
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

/// blk's exit code and stderr are qemu-img's (program name aside).
pub fn assert_same_failure(q: &Output, b: &Output, case: &str) {
    let qerr = String::from_utf8_lossy(&q.stderr).replace("qemu-img: ", "blk: ");
    let berr = String::from_utf8_lossy(&b.stderr);
    assert_eq!(q.status.code(), Some(1), "{case}: qemu-img {qerr}");
    assert_eq!(b.status.code(), q.status.code(), "{case}: {berr}");
    assert_eq!(berr, qerr, "{case}");
}

/// A tiny tmpfs mounted on a fresh directory, unmounted when dropped: a
/// filesystem that runs out of space. Mounting needs root (the tests run
/// as root here); where it fails the test fails saying so, never skips.
pub struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    /// Mounts `size` bytes of tmpfs.
    pub fn mount(size: &str) -> TinyFs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a {size} tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TinyFs { dir }
    }

    /// Its mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
