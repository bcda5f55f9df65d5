//! Data safety (docs/data-safety.md): a command that creates, truncates or
//! overwrites an image takes its locks, and checks that its target is none
//! of its sources, before it changes a byte; when it fails, every file is
//! byte-identical to before. Each case runs against holders of every kind
//! (qemu-nbd, qemu-io, qemu-io -r, blk io, blk io -r), and where qemu-img
//! refuses too, blk's message and exit code are qemu-img's.

use blk_tests::{blk_bin, is_locked, qemu_img_ok, qemu_io_ok, s};
use block_core::ErrorKind;
use plugin_host::Host;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Who holds the image open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    QemuNbd,
    QemuIo,
    QemuIoReadOnly,
    BlkIo,
    BlkIoReadOnly,
}

/// A process holding an image open; killed (and reaped) when dropped, so a
/// failing test leaves no process behind.
struct Holder {
    child: Child,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a holder of `img` (format `fmt`) and waits until it holds its
/// locks.
fn hold(kind: Kind, fmt: &str, img: &Path) -> Holder {
    let dir = img.parent().unwrap();
    let mut cmd = match kind {
        Kind::QemuNbd => {
            let sock = dir.join(format!(
                "{}.sock",
                img.file_name().unwrap().to_string_lossy()
            ));
            let mut c = Command::new("qemu-nbd");
            c.args(["-f", fmt, "-k", s(&sock)]);
            c
        }
        Kind::QemuIo | Kind::QemuIoReadOnly => {
            let mut c = Command::new("qemu-io");
            if kind == Kind::QemuIoReadOnly {
                c.arg("-r");
            }
            c.args(["-f", fmt, "-c", "sleep 60000"]);
            c
        }
        Kind::BlkIo | Kind::BlkIoReadOnly => {
            let mut c = Command::new(blk_bin());
            c.arg("io");
            if kind == Kind::BlkIoReadOnly {
                c.arg("-r");
            }
            c.args(["-f", fmt, "-c", "sleep 60000"]);
            c
        }
    };
    let child = cmd
        .arg(img)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
    let mut h = Holder { child };
    // Until its locks are on the file and have stopped changing (QEMU
    // takes its bytes one by one, and a format may change them after its
    // open).
    let start = Instant::now();
    let mut last = String::new();
    let mut stable = 0;
    while stable < 3 {
        if let Ok(Some(st)) = h.child.try_wait() {
            panic!("{kind:?} holder of {} exited: {st}", img.display());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{kind:?} did not lock {}",
            img.display()
        );
        std::thread::sleep(Duration::from_millis(15));
        let now = lock_lines(img);
        if is_locked(img) && now == last {
            stable += 1;
        } else {
            stable = 0;
        }
        last = now;
    }
    h
}

/// The `/proc/locks` lines about `img`'s inode, without their numbers.
fn lock_lines(img: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(img).map(|m| m.ino()).unwrap_or(0);
    let key = format!(":{ino} ");
    let mut v: Vec<String> = std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&key))
        .map(|l| l.split_once(':').map_or(l, |(_, r)| r).trim().to_string())
        .collect();
    v.sort();
    v.join("\n")
}

/// An image with seeded data in its first 64k, so that emptying or
/// re-creating it changes its bytes.
fn image(dir: &Path, name: &str, fmt: &str, pattern: u8) -> PathBuf {
    let p = dir.join(name);
    qemu_img_ok(&["create", "-q", "-f", fmt, s(&p), "4M"]);
    let w = format!("write -P {pattern} 0 64k");
    qemu_io_ok(&["-f", fmt, "-c", &w, s(&p)]);
    p
}

/// The bytes of each file (`None`: absent).
fn contents(dir: &Path, files: &[&str]) -> Vec<Option<Vec<u8>>> {
    files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).ok())
        .collect()
}

fn run_in(dir: &Path, prog: &Path, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", prog.display()))
}

/// stderr with qemu-img's program prefix spelt as blk's.
fn stderr_as_blk(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| match l.strip_prefix("qemu-img: ") {
            Some(r) => format!("blk: {r}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a refused command printed, and whether qemu-img refused too.
struct Refusal {
    stderr: String,
    qemu_refused: bool,
}

/// Runs `blk ARGS` in `dir`, which must fail with exit code 1 and leave
/// every one of `files` byte-identical. Returns its output and the files'
/// bytes from before.
fn blk_refuses(dir: &Path, args: &[&str], files: &[&str]) -> (Output, Vec<Option<Vec<u8>>>) {
    let before = contents(dir, files);
    let b = run_in(dir, &blk_bin(), args);
    let b_err = String::from_utf8_lossy(&b.stderr).trim_end().to_string();
    assert!(
        !b.status.success(),
        "blk {args:?} succeeded; stderr: {b_err}"
    );
    assert_eq!(b.status.code(), Some(1), "blk {args:?}: {b_err}");
    for (f, (was, now)) in files.iter().zip(before.iter().zip(contents(dir, files))) {
        assert!(*was == now, "blk {args:?} failed ({b_err}) but changed {f}");
    }
    (b, before)
}

/// [`blk_refuses`], then `qemu-img ARGS`: where it fails too, blk's exit
/// code, stdout and stderr must be its. Files qemu-img changed (it does
/// where it does not refuse) are put back as they were.
fn refused(dir: &Path, args: &[&str], files: &[&str]) -> Refusal {
    let (b, before) = blk_refuses(dir, args, files);
    let b_err = String::from_utf8_lossy(&b.stderr).trim_end().to_string();
    let q = run_in(dir, Path::new("qemu-img"), args);
    let qemu_refused = !q.status.success();
    if qemu_refused {
        assert_eq!(b.status.code(), q.status.code(), "exit code of {args:?}");
        assert_eq!(b_err, stderr_as_blk(&q).trim_end(), "stderr of {args:?}");
        assert_eq!(
            String::from_utf8_lossy(&b.stdout),
            String::from_utf8_lossy(&q.stdout),
            "stdout of {args:?}"
        );
    }
    for ((f, was), now) in files.iter().zip(&before).zip(contents(dir, files)) {
        if let Some(bytes) = was.as_ref().filter(|w| now.as_ref() != Some(*w)) {
            std::fs::write(dir.join(f), bytes).unwrap();
        }
    }
    Refusal {
        stderr: b_err,
        qemu_refused,
    }
}

/// Every command that creates over, overwrites or truncates `t.FMT` must
/// fail and leave it as it was while `kind` holds it.
fn check_held(kind: Kind) {
    for fmt in ["qcow2", "raw"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let target = format!("t.{fmt}");
        let t = image(d, &target, fmt, 0x5a);
        image(d, "a.qcow2", "qcow2", 0x11);
        let mut holder = hold(kind, fmt, &t);
        let of = format!("of={target}");
        let cmds: Vec<Vec<&str>> = vec![
            vec!["create", "-f", fmt, &target, "4M"],
            vec!["create", "-f", "qcow2", &target, "4M"],
            vec!["convert", "-O", fmt, "a.qcow2", &target],
            vec!["convert", "-O", "raw", "a.qcow2", &target],
            vec!["convert", "-n", "-O", fmt, "a.qcow2", &target],
            vec!["dd", "-O", fmt, "if=a.qcow2", &of],
            vec!["resize", "-f", fmt, &target, "8M"],
            vec!["resize", "-f", fmt, "--shrink", &target, "1M"],
        ];
        for args in &cmds {
            let r = refused(d, args, &[&target, "a.qcow2"]);
            assert!(
                r.stderr.contains("Failed to get")
                    && r.stderr
                        .ends_with(&format!("Is another process using the image [{target}]?")),
                "{kind:?} {args:?}: {}",
                r.stderr
            );
            // qcow2 holders unshare write: QEMU refuses every case too.
            if fmt == "qcow2" {
                assert!(r.qemu_refused, "{kind:?} {args:?}");
            }
            // Where qemu-img went on, it may have deleted the held file (a
            // failed qcow2 create over a raw image does): hold a new one.
            if !is_locked(&t) {
                drop(holder);
                let _ = std::fs::remove_file(&t);
                image(d, &target, fmt, 0x5a);
                holder = hold(kind, fmt, &t);
            }
        }
        // Other names of the held file: a symlink and a hard link.
        let sym = format!("l.{fmt}");
        let hard = format!("h.{fmt}");
        std::os::unix::fs::symlink(&target, d.join(&sym)).unwrap();
        std::fs::hard_link(&t, d.join(&hard)).unwrap();
        for name in [&sym, &hard] {
            for args in [
                vec!["create", "-f", fmt, name.as_str(), "4M"],
                vec!["convert", "-O", fmt, "a.qcow2", name.as_str()],
            ] {
                let r = refused(d, &args, &[&target]);
                assert!(
                    r.stderr
                        .ends_with(&format!("Is another process using the image [{name}]?")),
                    "{kind:?} {args:?}: {}",
                    r.stderr
                );
                assert!(
                    is_locked(&t),
                    "{kind:?} {args:?}: qemu-img replaced the file"
                );
            }
        }
        drop(holder);
        // The control: once nobody holds it, the same create succeeds.
        let out = run_in(d, &blk_bin(), &["create", "-q", "-f", fmt, &target, "4M"]);
        assert!(out.status.success(), "{kind:?} {fmt}: {out:?}");
        if fmt == "qcow2" {
            qemu_img_ok(&["check", s(&t)]);
        }
    }
}

#[test]
fn held_by_qemu_nbd() {
    check_held(Kind::QemuNbd);
}

#[test]
fn held_by_qemu_io() {
    check_held(Kind::QemuIo);
}

#[test]
fn held_by_qemu_io_read_only() {
    check_held(Kind::QemuIoReadOnly);
}

#[test]
fn held_by_blk_io() {
    check_held(Kind::BlkIo);
}

#[test]
fn held_by_blk_io_read_only() {
    check_held(Kind::BlkIoReadOnly);
}

/// Issue case 4: qemu-img refuses with the resize lock that qemu-nbd keeps;
/// blk must too, and say so in QEMU's words.
#[test]
fn create_raw_over_raw_held_by_qemu_nbd_is_qemus_resize_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = image(d, "t.raw", "raw", 0x5a);
    let _h = hold(Kind::QemuNbd, "raw", &t);
    let r = refused(d, &["create", "-f", "raw", "t.raw", "4M"], &["t.raw"]);
    assert!(r.qemu_refused);
    assert!(
        r.stderr
            .starts_with("blk: t.raw: Failed to get \"resize\" lock"),
        "{}",
        r.stderr
    );
}

/// Safer than QEMU: a raw image that `qemu-io` holds open while sharing
/// write and resize is zeroed by `qemu-img create`; blk refuses.
#[test]
fn raw_held_by_sharing_qemu_io_is_refused_where_qemu_zeroes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = image(d, "t.raw", "raw", 0x5a);
    let _h = hold(Kind::QemuIo, "raw", &t);
    let r = refused(d, &["create", "-f", "raw", "t.raw", "4M"], &["t.raw"]);
    assert!(!r.qemu_refused, "qemu-img now refuses: update the docs");
    assert_eq!(
        r.stderr,
        "blk: t.raw: Failed to get shared \"write\" lock\n\
         Is another process using the image [t.raw]?"
    );
}

/// A lock that is not one of QEMU's bytes (here: byte 0, held by this test
/// process through its own open file description) refuses too.
#[test]
fn foreign_lock_on_any_byte_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = image(d, "t.raw", "raw", 0x5a);
    let f = std::fs::File::open(&t).unwrap();
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = 0;
    fl.l_len = 1;
    // SAFETY: a valid fd and an initialised flock.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let r = refused(d, &["create", "-f", "raw", "t.raw", "4M"], &["t.raw"]);
    assert!(!r.qemu_refused);
    assert_eq!(
        r.stderr,
        "blk: t.raw: Failed to get \"write\" lock\nIs another process using the image [t.raw]?"
    );
    drop(f);
    let out = run_in(d, &blk_bin(), &["create", "-q", "-f", "raw", "t.raw", "4M"]);
    assert!(out.status.success(), "{out:?}");
}

/// The embedding API refuses at the bottom too (the file protocol's create).
#[test]
fn library_create_over_held_image_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for fmt in ["raw", "qcow2"] {
        let t = image(d, &format!("lib.{fmt}"), fmt, 0x5a);
        let before = std::fs::read(&t).unwrap();
        let _h = hold(Kind::QemuIoReadOnly, fmt, &t);
        let host = Host::builder().env_plugin_path(false).build().unwrap();
        let e = host
            .create(fmt, s(&t), "", Some(1 << 20), None)
            .expect_err("create over a held image");
        assert_eq!(e.kind, ErrorKind::Busy, "{e}");
        assert_eq!(std::fs::read(&t).unwrap(), before, "{fmt} changed");
    }
}

/// Builds the same-file fixture: a.qcow2 (+ ./, symlink, hard link), a.raw,
/// base.qcow2 <- top.qcow2, d.qcow2 with data file d.raw.
fn same_file_fixture(d: &Path) {
    for f in std::fs::read_dir(d).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let a = image(d, "a.qcow2", "qcow2", 0x11);
    qemu_img_ok(&["snapshot", "-c", "s1", s(&a)]);
    image(d, "a.raw", "raw", 0x22);
    std::os::unix::fs::symlink("a.qcow2", d.join("sl.qcow2")).unwrap();
    std::fs::hard_link(d.join("a.qcow2"), d.join("hl.qcow2")).unwrap();
    image(d, "base.qcow2", "qcow2", 0x33);
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&d.join("top.qcow2")),
    ]);
    // qemu-img takes data file names relative to its working directory.
    let create = [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "data_file=d.raw",
        "d.qcow2",
        "4M",
    ];
    assert!(run_in(d, Path::new("qemu-img"), &create).status.success());
    let w = ["-c", "write -P 0x44 0 64k", "d.qcow2"];
    assert!(run_in(d, Path::new("qemu-io"), &w).status.success());
}

const ALL_FILES: &[&str] = &[
    "a.qcow2",
    "a.raw",
    "base.qcow2",
    "top.qcow2",
    "d.qcow2",
    "d.raw",
];

/// Issue case 3 and its relatives: the target is a source, by another name,
/// or a file of a source's backing chain or data file.
#[test]
fn target_that_is_a_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[&[&str]] = &[
        &["convert", "-O", "qcow2", "a.qcow2", "a.qcow2"],
        &["convert", "-O", "qcow2", "a.qcow2", "./a.qcow2"],
        &["convert", "-O", "qcow2", "a.qcow2", "sl.qcow2"],
        &["convert", "-O", "qcow2", "a.qcow2", "hl.qcow2"],
        &["convert", "-f", "raw", "-O", "raw", "a.raw", "a.raw"],
        &["convert", "-O", "raw", "a.raw", "a.qcow2", "sl.qcow2"],
        &["convert", "-n", "-O", "qcow2", "a.qcow2", "a.qcow2"],
        &["convert", "-l", "s1", "-O", "qcow2", "a.qcow2", "./a.qcow2"],
        &["convert", "-O", "qcow2", "top.qcow2", "base.qcow2"],
        &["convert", "-n", "-O", "qcow2", "top.qcow2", "base.qcow2"],
        &["convert", "-O", "raw", "d.qcow2", "d.raw"],
        &["dd", "-O", "qcow2", "if=a.qcow2", "of=./a.qcow2"],
        &["dd", "-O", "raw", "if=top.qcow2", "of=base.qcow2"],
    ];
    for args in cases {
        same_file_fixture(d);
        let r = refused(d, args, ALL_FILES);
        // Without -U the source's locks make qemu-img refuse as well.
        assert!(r.qemu_refused, "{args:?}");
        assert!(
            r.stderr.contains("Failed to get \"write\" lock"),
            "{args:?}"
        );
    }
}

/// Where qemu-img does not refuse (the sources opened with -U, or dd over a
/// raw input) and destroys the source, blk refuses with a clear message.
#[test]
fn target_that_is_a_source_is_refused_where_qemu_destroys_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &["convert", "-U", "-O", "qcow2", "a.qcow2", "a.qcow2"],
            "blk: The target 'a.qcow2' is the same file as the source image 'a.qcow2'; it would destroy the source",
        ),
        (
            &["convert", "-U", "-n", "-O", "qcow2", "a.qcow2", "hl.qcow2"],
            "blk: The target 'hl.qcow2' is the same file as the source image 'a.qcow2'; it would destroy the source",
        ),
        (
            &["convert", "-U", "-l", "s1", "-O", "qcow2", "a.qcow2", "./a.qcow2"],
            "blk: The target './a.qcow2' is the same file as the source image 'a.qcow2'; it would destroy the source",
        ),
        (
            &["convert", "-U", "-O", "qcow2", "top.qcow2", "base.qcow2"],
            "blk: The target 'base.qcow2' is the same file as 'base.qcow2' in the backing chain of the source image 'top.qcow2'; it would destroy the source",
        ),
        (
            &["convert", "-U", "-O", "raw", "d.qcow2", "d.raw"],
            "blk: The target 'd.raw' is the same file as 'd.raw', a data file of the source image 'd.qcow2'; it would destroy the source",
        ),
        (
            &["convert", "-U", "-f", "raw", "-O", "qcow2", "-o", "data_file=a.raw", "a.raw", "x.qcow2"],
            "blk: The target's data file 'a.raw' is the same file as the source image 'a.raw'; it would destroy the source",
        ),
        (
            &["dd", "-f", "raw", "-O", "raw", "if=a.raw", "of=a.raw"],
            "blk: The target 'a.raw' is the same file as the source image 'a.raw'; it would destroy the source",
        ),
        (
            &["dd", "-U", "-f", "qcow2", "-O", "raw", "if=a.qcow2", "of=sl.qcow2"],
            "blk: The target 'sl.qcow2' is the same file as the source image 'a.qcow2'; it would destroy the source",
        ),
    ];
    for (args, msg) in cases {
        same_file_fixture(d);
        let r = refused(d, args, ALL_FILES);
        assert!(!r.qemu_refused, "qemu-img now refuses {args:?}");
        assert_eq!(r.stderr, *msg, "{args:?}");
    }
    // A target that is its own -B backing file: qemu-img creates it (the
    // old image is gone) and then fails to open it; blk refuses first.
    for backing in ["a.qcow2", "./a.qcow2"] {
        same_file_fixture(d);
        let args = [
            "convert", "-f", "raw", "-O", "qcow2", "-B", backing, "-F", "qcow2", "a.raw", "a.qcow2",
        ];
        let (out, _) = blk_refuses(d, &args, ALL_FILES);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "blk: a.qcow2: error while converting qcow2: Error: Trying to create an image with the same filename as the backing file\n"
        );
    }
    same_file_fixture(d);
    // The target's data file is a source; qemu-img refuses by its lock.
    let r = refused(
        d,
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "data_file=a.raw",
            "a.raw",
            "x.qcow2",
        ],
        ALL_FILES,
    );
    assert!(r.qemu_refused);
    assert!(!d.join("x.qcow2").exists(), "x.qcow2 left behind");
}

/// `create -b X X`: QEMU compares names only and destroys `./X`; blk
/// compares files and gives QEMU's message for every spelling.
#[test]
fn create_over_its_own_backing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (backing, target, qemu_refuses) in [
        ("a.qcow2", "a.qcow2", true),
        ("./a.qcow2", "a.qcow2", false),
        ("sl.qcow2", "a.qcow2", false),
        ("a.qcow2", "hl.qcow2", false),
    ] {
        same_file_fixture(d);
        let args = [
            "create", "-f", "qcow2", "-b", backing, "-F", "qcow2", target,
        ];
        let r = refused(d, &args, ALL_FILES);
        assert_eq!(r.qemu_refused, qemu_refuses, "{args:?}");
        assert_eq!(
            r.stderr,
            format!(
                "blk: {target}: Error: Trying to create an image with the same filename as the backing file"
            )
        );
    }
    // An image that is its own data file: qemu-img fails only after it has
    // deleted the file; blk refuses first.
    same_file_fixture(d);
    let (out, _) = blk_refuses(
        d,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "data_file=a.qcow2",
            "a.qcow2",
            "4M",
        ],
        ALL_FILES,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "blk: a.qcow2: The data file 'a.qcow2' is the same file as the image\n"
    );
}

/// A qcow2 create with a data file checks both files before it empties
/// either: a held data file leaves the (free) image untouched and the other
/// way round.
#[test]
fn qcow2_create_with_data_file_checks_both_files_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = image(d, "t.qcow2", "qcow2", 0x5a);
    let data = image(d, "t.raw", "raw", 0x6b);
    let args = [
        "create",
        "-f",
        "qcow2",
        "-o",
        "data_file=t.raw",
        "t.qcow2",
        "4M",
    ];
    for held in [&data, &img] {
        let fmt = if held == &data { "raw" } else { "qcow2" };
        for kind in [Kind::QemuIoReadOnly, Kind::BlkIo] {
            let h = hold(kind, fmt, held);
            // qemu-img, where it does not refuse, empties both files: blk
            // only is run here.
            let (out, _) = blk_refuses(d, &args, &["t.qcow2", "t.raw"]);
            let err = String::from_utf8_lossy(&out.stderr);
            let name = held.file_name().unwrap().to_string_lossy();
            assert!(
                err.starts_with("blk: t.qcow2: Failed to get")
                    && err.ends_with(&format!("Is another process using the image [{name}]?\n")),
                "{kind:?} holding {name}: {err}"
            );
            drop(h);
        }
    }
    // Free: the create goes through and QEMU accepts the result.
    let out = run_in(d, &blk_bin(), &args);
    assert!(out.status.success(), "{out:?}");
    let check = run_in(d, Path::new("qemu-img"), &["check", "t.qcow2"]);
    assert!(check.status.success(), "{check:?}");
}

/// The same protocol when the file driver is a plugin library (the
/// linked-in drivers left out).
#[test]
fn plugin_file_protocol_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = image(d, "t.raw", "raw", 0x5a);
    image(d, "a.qcow2", "qcow2", 0x11);
    let _h = hold(Kind::QemuIo, "raw", &t);
    let before = std::fs::read(&t).unwrap();
    for args in [
        &["create", "-f", "raw", "t.raw", "4M"][..],
        &["convert", "-n", "-O", "raw", "a.qcow2", "t.raw"],
        &["resize", "-f", "raw", "t.raw", "8M"],
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "data_file=t.raw",
            "x.qcow2",
            "4M",
        ],
    ] {
        let out = Command::new(blk_bin())
            .args(args)
            .current_dir(d)
            .env("BLK_BUILTIN_DRIVERS", "0")
            .env("BLK_PLUGIN_PATH", blk_tests::plugin_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.ends_with("Is another process using the image [t.raw]?\n"),
            "{args:?}: {err}"
        );
        assert_eq!(std::fs::read(&t).unwrap(), before, "{args:?}");
    }
    // It was the plugin that served: `blk plugins` names its library.
    let out = Command::new(blk_bin())
        .arg("plugins")
        .env("BLK_BUILTIN_DRIVERS", "0")
        .env("BLK_PLUGIN_PATH", blk_tests::plugin_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("libblk_file.so"));
}

/// `commit` overwrites (and may grow) the base: a base that any process
/// holds open refuses before either file changes.
#[test]
fn commit_into_a_held_base_changes_nothing() {
    for kind in [
        Kind::QemuNbd,
        Kind::QemuIo,
        Kind::QemuIoReadOnly,
        Kind::BlkIo,
        Kind::BlkIoReadOnly,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = image(d, "base.raw", "raw", 0x5a);
        let top = [
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "top.qcow2",
            "8M",
        ];
        assert!(run_in(d, Path::new("qemu-img"), &top).status.success());
        let w = ["-c", "write -P 0x6b 0 64k", "top.qcow2"];
        assert!(run_in(d, Path::new("qemu-io"), &w).status.success());
        let _h = hold(kind, "raw", &base);
        let r = refused(d, &["commit", "top.qcow2"], &["base.raw", "top.qcow2"]);
        assert!(
            r.stderr
                .ends_with("Is another process using the image [base.raw]?"),
            "{kind:?}: {}",
            r.stderr
        );
        if kind == Kind::QemuNbd {
            assert!(r.qemu_refused, "qemu-nbd unshares resize");
        }
    }
}

/// A size the image cannot have fails before an existing file is emptied
/// (qemu-img empties it first), in qemu-img's words.
#[test]
fn create_with_a_size_too_large_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image(d, "e.raw", "raw", 0x5a);
    // 128 GiB is the most a 512-byte-cluster qcow2 L1 table (32 MiB) maps;
    // one sector more is refused.
    let r = refused(
        d,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=512",
            "e.raw",
            "137438953984",
        ],
        &["e.raw"],
    );
    assert!(r.qemu_refused);
    assert!(r.stderr.ends_with(
        "The image size is too large for file format 'qcow2' (try using a larger cluster size)"
    ));
    // Whether a raw file of 4 EiB fits depends on the filesystem: where it
    // does not, blk must refuse as qemu-img does, without emptying the file.
    let args = ["create", "-f", "raw", "e.raw", "4E"];
    let before = std::fs::read(d.join("e.raw")).unwrap();
    let b = run_in(d, &blk_bin(), &args);
    if b.status.success() {
        std::fs::write(d.join("e.raw"), &before).unwrap();
        let q = run_in(d, Path::new("qemu-img"), &args);
        assert!(q.status.success(), "blk took 4E, qemu-img did not: {q:?}");
    } else {
        assert_eq!(std::fs::read(d.join("e.raw")).unwrap(), before);
        let r = refused(d, &args, &["e.raw"]);
        assert!(r.qemu_refused);
    }
}
