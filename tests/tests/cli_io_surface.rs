//! qemu-io command-line surface against `qemu-io` 10: the interactive mode
//! (prompt, commands from a pipe), the `open` and `close` commands, `-s`
//! (temporary overlay), `-C` (copy-on-read), `-V`, `--image-opts`, and
//! refusing invalid `-t`/`-d` modes. Each case runs both tools in their own
//! directory on identical images and compares output, exit status and the
//! images left behind.

use blk_tests::{blk_bin, qemu_img_ok, run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Two directories with the same images: one for qemu-io, one for blk.
struct Pair {
    _tmp: tempfile::TempDir,
    q: PathBuf,
    b: PathBuf,
    /// Per-tool `TMPDIR` (for `-s` overlays).
    qt: PathBuf,
    bt: PathBuf,
}

impl Pair {
    fn new() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |n: &str| {
            let d = tmp.path().join(n);
            std::fs::create_dir(&d).unwrap();
            d
        };
        let (q, b, qt, bt) = (mk("q"), mk("b"), mk("qt"), mk("bt"));
        let p = Pair {
            q,
            b,
            qt,
            bt,
            _tmp: tmp,
        };
        // a.qcow2 <- t.qcow2, and a raw image.
        p.setup(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", "a.qcow2", "1M"],
        );
        p.setup(
            "qemu-io",
            &[
                "-c",
                "write -P 0x5a 0 64k",
                "-c",
                "write -P 0x33 512k 64k",
                "a.qcow2",
            ],
        );
        p.setup(
            "qemu-img",
            &[
                "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "t.qcow2",
            ],
        );
        p.setup("qemu-io", &["-c", "write -P 0x07 64k 64k", "t.qcow2"]);
        p.setup("qemu-img", &["create", "-q", "-f", "raw", "r.raw", "1M"]);
        p
    }

    fn setup(&self, tool: &str, args: &[&str]) {
        for d in [&self.q, &self.b] {
            let out = run(Command::new(tool).args(args).current_dir(d));
            assert!(out.status.success(), "setup {tool} {args:?}: {out:?}");
        }
    }

    /// Runs `qemu-io ARGS` and `blk io ARGS` (stdin fed from `input`, if
    /// any); normalised (stdout, stderr, status) must agree. Returns blk's.
    fn same(&self, args: &[&str], input: Option<&str>) -> (String, String, i32) {
        let go = |mut c: Command, dir: &Path, tmp: &Path| {
            c.current_dir(dir).env("TMPDIR", tmp);
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("spawn");
            let mut stdin = child.stdin.take().unwrap();
            if let Some(i) = input {
                stdin.write_all(i.as_bytes()).unwrap();
            }
            drop(stdin);
            norm(&child.wait_with_output().unwrap())
        };
        let mut qc = Command::new("qemu-io");
        qc.args(args);
        let mut bc = Command::new(blk_bin());
        bc.arg("io").args(args);
        let q = go(qc, &self.q, &self.qt);
        let b = go(bc, &self.b, &self.bt);
        assert_eq!(q, b, "qemu-io vs blk io {args:?} input {input:?}");
        b
    }

    fn same_file(&self, name: &str) {
        let q = std::fs::read(self.q.join(name)).unwrap();
        let b = std::fs::read(self.b.join(name)).unwrap();
        assert!(q == b, "{name} differs");
    }

    fn same_content_and_map(&self, name: &str) {
        let q = self.q.join(name);
        let b = self.b.join(name);
        qemu_img_ok(&["compare", "-U", q.to_str().unwrap(), b.to_str().unwrap()]);
        let map = |p: &Path| qemu_img_ok(&["map", "-U", "--output=json", p.to_str().unwrap()]);
        assert_eq!(map(&q), map(&b), "map of {name}");
        qemu_img_ok(&["check", b.to_str().unwrap()]);
    }
}

/// Stdout without timing lines, stderr, both with the program names made
/// equal; the exit status.
fn norm(o: &std::process::Output) -> (String, String, i32) {
    let fix = |t: &[u8]| -> String {
        String::from_utf8_lossy(t)
            .replace("qemu-io", "blk io")
            .replace("blk: ", "blk io: ")
            .lines()
            .filter(|l| !(l.contains(" ops; ") && l.contains("/sec and ")))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    (
        fix(&o.stdout),
        fix(&o.stderr),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn interactive_commands_from_a_pipe() {
    let p = Pair::new();
    let (out, _, code) = p.same(&["a.qcow2"], Some("read -P 0x5a 0 512\nlength\n"));
    assert_eq!(code, 0);
    assert!(out.starts_with("blk io> read 512/512"), "{out}");
    p.same(&["a.qcow2"], Some("read -P 0x11 0 512\n"));
    p.same(&["a.qcow2"], Some("bogus\n\n\nlength"));
    p.same(&["a.qcow2"], Some("help close\nq\nlength\n"));
    p.same(&["a.qcow2"], Some(""));
    p.same(&[], Some("read 0 512\n"));
    p.same(
        &[],
        Some("open -r a.qcow2\nread -P 0x5a 0 512\nclose\nread 0 512\nopen a.qcow2\nopen a.qcow2\nwrite -P 9 4k 4k\nquit\nlength\n"),
    );
    p.same_file("a.qcow2");
}

#[test]
fn open_and_close_commands() {
    let p = Pair::new();
    let cases: &[&[&str]] = &[
        &[
            "-c",
            "sleep 1",
            "-c",
            "help close",
            "-c",
            "help open",
            "-c",
            "help map",
        ],
        &["-c", "close", "-c", "close"],
        &["-c", "open"],
        &["-c", "open -Z a.qcow2"],
        &["-c", "open a.qcow2 b"],
        &["-c", "open nonexist", "-c", "read 0 1"],
        &["-c", "open -r -o driver=qcow2 a.qcow2", "-c", "write 0 1"],
        &["-c", "open -t bogus a.qcow2"],
        &["-c", "open -d bogus a.qcow2"],
        &["-c", "open -i bogus a.qcow2"],
        &[
            "-c",
            "open -o driver=qcow2,file.filename=a.qcow2",
            "-c",
            "read -P 0x5a 0 512",
        ],
        &[
            "-c",
            "open -o l2-cache-size=1M a.qcow2",
            "-c",
            "read -P 0x5a 0 512",
        ],
        &["-c", "open -r"],
        &["-c", "open -U a.qcow2"],
        &["-c", "open -r -U t.qcow2", "-c", "read -P 0x07 64k 4k"],
        &["-c", "open -o bogus=1 a.qcow2"],
        &[
            "-c",
            "open a.qcow2",
            "-c",
            "write -P 0x44 4k 4k",
            "-c",
            "close",
            "-c",
            "open -r a.qcow2",
            "-c",
            "read -P 0x44 4k 4k",
            "-c",
            "info",
        ],
        &["-c", "open a.qcow2", "a.qcow2"],
        &["-c", "close", "-c", "quit", "-c", "read 0 1", "a.qcow2"],
    ];
    for args in cases {
        p.same(args, None);
    }
    p.same_file("a.qcow2");
    p.same_file("t.qcow2");
}

#[test]
fn snapshot_flag_discards_writes() {
    let p = Pair::new();
    for img in ["r.raw", "a.qcow2", "t.qcow2"] {
        let (out, _, code) = p.same(
            &[
                "-s",
                "-c",
                "write -P 3 0 4k",
                "-c",
                "read -P 3 0 4k",
                "-c",
                "map",
                "-c",
                "info",
                "-c",
                "length",
                img,
            ],
            None,
        );
        assert_eq!(code, 0, "{out}");
        p.same_file(img);
    }
    p.same(&["-s", "-r", "-c", "write 0 1", "a.qcow2"], None);
    p.same(
        &[
            "-c",
            "open -s t.qcow2",
            "-c",
            "write -P 8 0 64k",
            "-c",
            "read -P 8 0 64k",
            "-c",
            "close",
            "-c",
            "open -r t.qcow2",
            "-c",
            "read -P 0x5a 0 64k",
        ],
        None,
    );
    p.same_file("t.qcow2");
    // The overlays are gone.
    assert_eq!(std::fs::read_dir(&p.bt).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&p.qt).unwrap().count(), 0);
}

#[test]
fn copy_on_read_flag() {
    let p = Pair::new();
    p.same(
        &[
            "-C",
            "-c",
            "read -P 0x5a 0 4k",
            "-c",
            "map",
            "-c",
            "read 512k 4k",
            "-c",
            "readv 200k 512 512",
            "-c",
            "map",
            "t.qcow2",
        ],
        None,
    );
    p.same_content_and_map("t.qcow2");
    p.same(
        &[
            "-c",
            "open -C t.qcow2",
            "-c",
            "read -P 0 900k 4k",
            "-c",
            "map",
        ],
        None,
    );
    p.same_content_and_map("t.qcow2");
    // Copy-on-read needs a writable image.
    p.same(&["-r", "-C", "-c", "read 0 4k", "t.qcow2"], None);
    p.same(&["-s", "-r", "-C", "-c", "read 0 4k", "t.qcow2"], None);
    p.same(&["-c", "open -r -C t.qcow2", "-c", "read 0 1"], None);
    p.same(
        &[
            "-s",
            "-C",
            "-c",
            "read -P 0x5a 0 4k",
            "-c",
            "map",
            "t.qcow2",
        ],
        None,
    );
    p.same_content_and_map("t.qcow2");
    // Without a backing file nothing changes.
    p.same(&["-C", "-c", "read 0 64k", "-c", "map", "a.qcow2"], None);
    p.same_file("a.qcow2");
}

#[test]
fn version_flag() {
    let p = Pair::new();
    for args in [&["-V"][..], &["-V", "-c", "read 0 1", "a.qcow2"]] {
        let q = run(Command::new("qemu-io").args(args));
        let b = run(Command::new(blk_bin()).arg("io").args(args));
        assert_eq!(q.status.code(), Some(0));
        assert_eq!(b.status.code(), Some(0));
        let first = |o: &std::process::Output| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        };
        assert!(first(&q).starts_with("qemu-io version "), "{}", first(&q));
        assert!(first(&b).starts_with("blk io version "), "{}", first(&b));
        assert!(b.stderr.is_empty());
    }
    let _ = p;
}

#[test]
fn invalid_modes_are_refused() {
    let p = Pair::new();
    for args in [
        &["-t", "bogus", "-c", "write -P 1 0 4k", "a.qcow2"][..],
        &["-t", "writethrough", "-c", "read -P 0x5a 0 4k", "a.qcow2"],
        &["-n", "-c", "read -P 0x5a 0 4k", "a.qcow2"],
        &["--image-opts", "-f", "qcow2", "-c", "read 0 1", "a.qcow2"],
    ] {
        p.same(args, None);
    }
    p.same_file("a.qcow2");
}

#[test]
fn image_opts_and_objects() {
    let p = Pair::new();
    for args in [
        &[
            "--image-opts",
            "-c",
            "read -P 0x5a 0 512",
            "driver=qcow2,file.filename=a.qcow2",
        ][..],
        &[
            "--image-opts",
            "-c",
            "read -P 0 0 512",
            "-c",
            "map",
            r"driver=qcow2,file.filename=t.qcow2",
        ],
        &[
            "-c",
            "map",
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"t.qcow2"},"backing":null}"#,
        ],
        &[
            "--image-opts",
            "-c",
            "read 0 1",
            "driver=qcow2,file.filename=nonexist",
        ],
        &[
            "--object",
            "secret,id=s0,data=x",
            "-c",
            "read -P 0x5a 0 512",
            "a.qcow2",
        ],
        &["--object", "secret,id=s0", "-c", "read 0 1", "a.qcow2"],
    ] {
        p.same(args, None);
    }
}
