//! qemu-img command-line surface against `qemu-img` 10: options blk must
//! accept (`-o help` without files, `-T`, protocol create options, ...) and
//! ones it must refuse as qemu-img refuses them (`convert -s`, unknown
//! protocol prefixes, invalid cache modes). Each case runs the same command
//! line through both tools, each in its own directory holding the same
//! images, and compares exit codes, output and resulting files.

use blk_tests::{blk_bin, qemu_img_ok, qemu_io_ok, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Two directories with the same starting content: one for qemu-img, one
/// for blk.
struct Pair {
    _tmp: tempfile::TempDir,
    q: PathBuf,
    b: PathBuf,
}

impl Pair {
    /// Empty directories.
    fn new() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("q");
        let b = tmp.path().join("b");
        std::fs::create_dir(&q).unwrap();
        std::fs::create_dir(&b).unwrap();
        Pair { _tmp: tmp, q, b }
    }

    /// Runs a qemu-img command in both directories (setup, must succeed).
    fn setup(&self, args: &[&str]) {
        for d in [&self.q, &self.b] {
            let out = run(Command::new("qemu-img").args(args).current_dir(d));
            assert!(out.status.success(), "setup {args:?}: {out:?}");
        }
    }

    /// Runs a qemu-io command in both directories (setup, must succeed).
    fn setup_io(&self, args: &[&str]) {
        for d in [&self.q, &self.b] {
            let out = run(Command::new("qemu-io").args(args).current_dir(d));
            assert!(out.status.success(), "setup {args:?}: {out:?}");
        }
    }

    /// Writes a file into both directories.
    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.q.join(name), data).unwrap();
        std::fs::write(self.b.join(name), data).unwrap();
    }

    /// Runs `qemu-img ARGS` in one directory and `blk ARGS` in the other;
    /// (stdout, stderr, exit code) must agree after normalising the
    /// program names. Returns blk's.
    fn same(&self, args: &[&str]) -> (String, String, i32) {
        let q = norm(&run(Command::new("qemu-img")
            .args(args)
            .current_dir(&self.q)));
        let b = norm(&run(Command::new(blk_bin())
            .args(args)
            .current_dir(&self.b)));
        assert_eq!(q, b, "qemu-img vs blk {args:?}");
        b
    }

    /// Both copies of a file exist (or not) alike and have equal bytes.
    fn same_file(&self, name: &str) {
        let q = std::fs::read(self.q.join(name)).ok();
        let b = std::fs::read(self.b.join(name)).ok();
        assert_eq!(
            q.is_some(),
            b.is_some(),
            "{name} exists in one directory only"
        );
        assert!(q == b, "{name} differs");
    }

    /// Both copies of an image have the same guest content.
    fn same_content(&self, name: &str) {
        let q = s(&self.q.join(name));
        let b = s(&self.b.join(name));
        qemu_img_ok(&["compare", "-U", &q, &b]);
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Stdout, stderr with the program names normalised, exit code.
fn norm(o: &std::process::Output) -> (String, String, i32) {
    let fix = |t: &[u8]| {
        String::from_utf8_lossy(t)
            .replace("qemu-img", "blk")
            .replace("qemu-io", "blk io")
    };
    (
        fix(&o.stdout),
        fix(&o.stderr),
        o.status.code().unwrap_or(-1),
    )
}

/// A small qcow2 image with data, in both directories.
fn with_image(p: &Pair) {
    p.setup(&["create", "-q", "-f", "qcow2", "a.qcow2", "1M"]);
    p.setup_io(&["-c", "write -P 0x5a 0 64k", "a.qcow2"]);
}

#[test]
fn convert_s_is_refused() {
    let p = Pair::new();
    with_image(&p);
    let (_, err, code) = p.same(&["convert", "-s", "snap", "-O", "raw", "a.qcow2", "o.raw"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid option -- 's'"), "{err}");
    p.same_file("o.raw");
    // Other unknown options get getopt's wording too.
    p.same(&["info", "--bogus", "a.qcow2"]);
    p.same(&["convert", "-Z", "-O", "raw", "a.qcow2", "o.raw"]);
    p.same(&["--bogus", "info", "a.qcow2"]);
    // Subcommand options are refused before the subcommand.
    p.same(&["--object", "secret,id=s0,data=x", "info", "a.qcow2"]);
    p.same(&["--image-opts", "info", "a.qcow2"]);
}

#[test]
fn unknown_protocol_prefix_is_refused() {
    let p = Pair::new();
    with_image(&p);
    let (_, err, code) = p.same(&["info", "x:y.qcow2"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unknown protocol 'x'"), "{err}");
    p.same(&["create", "-f", "qcow2", "x:y.qcow2", "1M"]);
    p.same_file("x:y.qcow2");
    p.same(&["convert", "-O", "raw", "a.qcow2", "x:y.raw"]);
    p.same(&["convert", "-O", "raw", "x:y.qcow2", "o.raw"]);
    p.same(&["create", "-q", "-f", "raw", "t.raw", "1M"]);
    p.same(&["convert", "-n", "-O", "raw", "a.qcow2", "x:t.raw"]);
    p.same_file("x:y.raw");
    p.same_file("o.raw");
    // A colon after a slash is part of the file name.
    p.same(&["info", "./x:y.qcow2"]);
    p.same(&["create", "-f", "qcow2", "-o", "help", "x:y.qcow2"]);
}

#[test]
fn invalid_cache_modes_are_refused() {
    let p = Pair::new();
    with_image(&p);
    p.setup(&[
        "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "t.qcow2",
    ]);
    for args in [
        &[
            "convert", "-t", "x", "-T", "y", "-O", "raw", "a.qcow2", "o.raw",
        ][..],
        &["convert", "-t", "x", "-O", "raw", "a.qcow2", "o.raw"],
        &[
            "convert",
            "-t",
            "directsync",
            "-T",
            "writeback",
            "-O",
            "raw",
            "a.qcow2",
            "o.raw",
        ],
        &["commit", "-t", "bogus", "t.qcow2"],
        &["check", "-T", "bogus", "a.qcow2"],
        &["rebase", "-u", "-t", "bogus", "-b", "", "t.qcow2"],
        &["rebase", "-u", "-T", "bogus", "-b", "", "t.qcow2"],
    ] {
        p.same(args);
    }
    p.same_content("o.raw");
    p.same_file("t.qcow2");
}

#[test]
fn option_help_without_files() {
    let p = Pair::new();
    with_image(&p);
    // blk has no qcow2 encryption: QEMU's encrypt.* lines are left out.
    let drop_encrypt = |args: &[&str]| {
        let q = norm(&run(Command::new("qemu-img").args(args).current_dir(&p.q)));
        let b = norm(&run(Command::new(blk_bin()).args(args).current_dir(&p.b)));
        let f = |t: &str| -> String {
            t.lines()
                .filter(|l| !l.contains("encrypt"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        assert_eq!((f(&q.0), &q.1, q.2), (f(&b.0), &b.1, b.2), "{args:?}");
        assert!(b.0.contains("options"), "{args:?}: {}", b.0);
    };
    drop_encrypt(&["create", "-f", "qcow2", "-o", "help"]);
    drop_encrypt(&["convert", "-O", "qcow2", "-o", "help"]);
    drop_encrypt(&["convert", "-O", "qcow2", "-o", "help", "out.qcow2"]);
    drop_encrypt(&["amend", "-f", "qcow2", "-o", "help"]);
    drop_encrypt(&["create", "-f", "qcow2", "-o", "help", "x.qcow2"]);
    // With a target name the protocol's options are merged in.
    let (out, _, _) = p.same(&["convert", "-O", "raw", "-o", "help", "a.qcow2", "z.raw"]);
    assert!(out.contains("nocow=<bool (on/off)>"), "{out}");
    p.same(&["create", "-f", "raw", "-o", "help", "x.raw"]);
    p.same(&["create", "-f", "raw", "-o", "help"]);
    // The protocol's options are accepted wherever qemu-img merges them.
    p.same(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "nocow=on,extent_size_hint=1M",
        "a.qcow2",
        "n.qcow2",
    ]);
    p.same(&["measure", "-O", "qcow2", "-o", "nocow=on", "a.qcow2"]);
    p.same(&[
        "measure",
        "-O",
        "raw",
        "-o",
        "preallocation=full",
        "--size",
        "1M",
    ]);
    p.same(&[
        "convert",
        "-O",
        "raw",
        "-o",
        "preallocation=full",
        "a.qcow2",
        "f.raw",
    ]);
    p.same_content("n.qcow2");
    p.same_file("f.raw");
    p.same(&["convert", "-O", "nope", "-o", "help"]);
    p.same(&["convert", "-O", "qcow2"]);
    p.same_file("z.raw");
    p.same_file("x.raw");
}

#[test]
fn global_trace_option() {
    let p = Pair::new();
    with_image(&p);
    p.write("events", b"foo\n#comment\nbdrv_*\n-bar\n\n");
    let (out, err, code) = p.same(&["-T", "foo", "info", "a.qcow2"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("image: a.qcow2"), "{out}");
    assert!(err.contains("trace event 'foo' does not exist"), "{err}");
    // QEMU has events that match a pattern (and traces them on stderr);
    // blk has none: only stdout and the exit code can agree.
    let q = norm(&run(Command::new("qemu-img")
        .args(["--trace", "enable=bdrv_*", "info", "a.qcow2"])
        .current_dir(&p.q)));
    let b = norm(&run(Command::new(blk_bin())
        .args(["--trace", "enable=bdrv_*", "info", "a.qcow2"])
        .current_dir(&p.b)));
    assert_eq!((q.0, q.2), (b.0, b.2));
    assert_eq!(b.1, "");
    p.same(&["-T", "foo", "-T", "bar", "info", "a.qcow2"]);
    p.same(&["-T", "events=events,file=trace.log", "info", "a.qcow2"]);
    p.same(&["-T", "events=nonexist", "info", "a.qcow2"]);
    p.same(&["-T", "bogus=1", "info", "a.qcow2"]);
    p.same(&["-T", "foo,file=/nonexistent/dir/log", "info", "a.qcow2"]);
    assert!(p.b.join("trace.log").is_file());
    // -T is a global option only.
    p.same(&["info", "-T", "foo", "a.qcow2"]);
}

/// The inode flags and extent size hint of a file (`FS_IOC_GETFLAGS`,
/// `FS_IOC_FSGETXATTR`), or `None` where the filesystem has none.
fn file_attrs(path: &Path) -> (Option<i32>, Option<(u32, u32)>) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let mut flags: libc::c_int = 0;
    // SAFETY: the ioctls write one int / one 28-byte fsxattr into buffers
    // that outlive the calls.
    let fl = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS as _, &mut flags) };
    let mut xattr = [0u32; 7];
    let xr = unsafe { libc::ioctl(f.as_raw_fd(), 0x801c_581f_u64 as _, xattr.as_mut_ptr()) };
    (
        (fl == 0).then_some(flags),
        (xr == 0).then_some((xattr[0], xattr[1])),
    )
}

#[test]
fn nocow_and_extent_size_hint() {
    let p = Pair::new();
    let (out, _, code) = p.same(&[
        "create",
        "-f",
        "raw",
        "-o",
        "nocow=on,extent_size_hint=2M",
        "x.raw",
        "1M",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("nocow=on extent_size_hint=2097152"), "{out}");
    p.same(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "nocow=on,extent_size_hint=0",
        "x.qcow2",
        "1M",
    ]);
    p.same(&[
        "create",
        "-f",
        "raw",
        "-o",
        "extent_size_hint=5G",
        "big.raw",
        "1M",
    ]);
    for f in ["x.raw", "x.qcow2"] {
        assert_eq!(
            file_attrs(&p.q.join(f)),
            file_attrs(&p.b.join(f)),
            "attributes of {f}"
        );
    }
    p.same_file("x.raw");
    p.same_content("x.qcow2");
    qemu_img_ok(&["check", &s(&p.b.join("x.qcow2"))]);
    let _ = qemu_io_ok;
}

/// A backing chain a.qcow2 <- t.qcow2 with data in both, in both directories.
fn with_chain(p: &Pair) {
    with_image(p);
    p.setup(&[
        "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "t.qcow2",
    ]);
    p.setup_io(&["-c", "write -P 0x07 64k 64k", "t.qcow2"]);
}

#[test]
fn info_short_backing_chain_flag() {
    let p = Pair::new();
    with_chain(&p);
    let (out, _, code) = p.same(&["info", "-b", "t.qcow2"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("image: ").count(), 2, "{out}");
    p.same(&["info", "-b", "--output=json", "t.qcow2"]);
}

#[test]
fn object_secret() {
    let p = Pair::new();
    with_image(&p);
    p.write("sec.txt", b"pass");
    p.write("sec.b64", b"c2VjcmV0");
    let ok: &[&[&str]] = &[
        &["info", "--object", "secret,id=s0,data=abc", "a.qcow2"],
        &[
            "info",
            "--object",
            "secret,id=s0,file=sec.b64,format=base64",
            "a.qcow2",
        ],
        &[
            "info",
            "--object",
            "secret,id=s0,data=a,,b,format=raw",
            "a.qcow2",
        ],
        &[
            "info",
            "--object",
            r#"{"qom-type":"secret","id":"s0","data":"abc"}"#,
            "a.qcow2",
        ],
        &[
            "create",
            "-f",
            "raw",
            "--object",
            "secret,id=s0,file=sec.txt",
            "x.raw",
            "1M",
        ],
        &[
            "convert",
            "--object",
            "secret,id=s0,data=x",
            "-O",
            "raw",
            "a.qcow2",
            "o.raw",
        ],
        &["info", "--object", "secret,help", "a.qcow2"],
    ];
    for args in ok {
        let (_, _, code) = p.same(args);
        assert_eq!(code, 0, "{args:?}");
    }
    let refused: &[&str] = &[
        "secret,id=s0",
        "secret,data=abc",
        "secret,id=s0,data=abc,file=sec.txt",
        "secret,id=s0,file=nonexist",
        "secret,id=s0,data=!!!,format=base64",
        "secret,id=s0,data=abc,format=hex",
        "secret,id=s0,data=abc,bogus=1",
        "bogus,id=x",
        "memory-backend-ram,id=m,size=1M",
        "id=s0,data=abc",
        "secret,id=s0,data=abc,keyid=k",
        "secret,id=1bad,data=abc",
    ];
    for def in refused {
        let (_, err, code) = p.same(&["info", "--object", def, "a.qcow2"]);
        assert_eq!(code, 1, "{def}: {err}");
    }
    p.same(&[
        "info",
        "--object",
        "secret,id=s0,data=a",
        "--object",
        "secret,id=s0,data=b",
        "a.qcow2",
    ]);
    // Refused before anything is created.
    p.same(&[
        "create",
        "-f",
        "raw",
        "--object",
        "secret,id=s0",
        "y.raw",
        "1M",
    ]);
    p.same_file("y.raw");
    p.same_file("x.raw");
    p.same_content("o.raw");
}

#[test]
fn image_opts_and_json_filenames() {
    let p = Pair::new();
    with_chain(&p);
    let cases: &[&[&str]] = &[
        &["info", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.driver=file,file.filename=t.qcow2,read-only=on",
        ],
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.filename=a.qcow2,l2-cache-size=1M,file.locking=off",
        ],
        &["info", "--image-opts", "driver=raw,file.filename=t.qcow2"],
        &["info", "--image-opts", "driver=file,filename=a.qcow2"],
        &[
            "info",
            "--image-opts",
            "-b",
            "driver=qcow2,file.filename=t.qcow2",
        ],
        &[
            "info",
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}"#,
        ],
        &[
            "info",
            r#"json:{"file":{"driver":"file","filename":"a.qcow2"}}"#,
        ],
        &[
            "info",
            r#"json:{"driver":"qcow2","file.filename":"t.qcow2","read-only":true}"#,
        ],
        &["map", "--image-opts", "driver=qcow2,file.filename=t.qcow2"],
        &[
            "map",
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"t.qcow2"},"backing":null}"#,
        ],
        &[
            "map",
            "--output=json",
            r#"json:{"driver":"qcow2","file":{"filename":"t.qcow2"},"backing":null}"#,
        ],
        &[
            "check",
            "--image-opts",
            "driver=qcow2,file.filename=t.qcow2",
        ],
        &[
            "convert",
            "--image-opts",
            "-O",
            "raw",
            "driver=qcow2,file.filename=t.qcow2",
            "o.raw",
        ],
        &[
            "compare",
            "--image-opts",
            "driver=qcow2,file.filename=t.qcow2",
            "driver=raw,file.filename=o.raw",
        ],
        &[
            "convert",
            "-O",
            "raw",
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"t.qcow2"},"backing":null}"#,
            "p.raw",
        ],
    ];
    for args in cases {
        let (_, err, code) = p.same(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    p.same_content("o.raw");
    p.same_content("p.raw");
    let refused: &[&[&str]] = &[
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.filename=nonexist",
        ],
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.filename=a.qcow2,bogus=1",
        ],
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.filename=a.qcow2,file.bogus=1",
        ],
        &[
            "info",
            "--image-opts",
            "driver=qcow2,file.filename=t.qcow2,backing=null",
        ],
        &["info", "--image-opts", "a.qcow2"],
        &["info", "--image-opts", "driver=qcow2"],
        &["info", "--image-opts", "driver=qcow2,filename=a.qcow2"],
        &["info", "-f", "qcow2", "--image-opts", "a.qcow2"],
        &["info", r#"json:{"driver":"qcow2","file":"a.qcow2"}"#],
        &[
            "info",
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"t.qcow2","bogus":1}}"#,
        ],
        &["info", r#"json:{"driver":"qcow2""#],
        &["info", "json:[1]"],
        &["info", "json:{}"],
        &[
            "info",
            r#"json:{"driver":"nope","file":{"driver":"file","filename":"t.qcow2"}}"#,
        ],
        &["create", "--image-opts", "-f", "raw", "x.raw", "1M"],
    ];
    for args in refused {
        let (_, err, code) = p.same(args);
        assert_eq!(code, 1, "{args:?}: {err}");
    }
    p.same_file("x.raw");
}

#[test]
fn commit_into_a_base_below_the_backing_file() {
    let p = Pair::new();
    p.setup(&["create", "-q", "-f", "qcow2", "a.qcow2", "1M"]);
    p.setup_io(&[
        "-c",
        "write -P 1 0 192k",
        "-c",
        "write -P 9 400k 64k",
        "a.qcow2",
    ]);
    p.setup(&[
        "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "m.qcow2",
    ]);
    p.setup_io(&[
        "-c",
        "write -P 2 64k 64k",
        "-c",
        "write -z 384k 64k",
        "m.qcow2",
    ]);
    p.setup(&[
        "create", "-q", "-f", "qcow2", "-b", "m.qcow2", "-F", "qcow2", "t.qcow2",
    ]);
    p.setup_io(&[
        "-c",
        "write -P 3 128k 64k",
        "-c",
        "write -P 4 900k 4k",
        "t.qcow2",
    ]);
    p.same(&["commit", "-b", "nonexist.qcow2", "t.qcow2"]);
    p.same(&["commit", "-b", "t.qcow2", "t.qcow2"]);
    let (out, _, code) = p.same(&["commit", "-b", "a.qcow2", "t.qcow2"]);
    assert_eq!((out.as_str(), code), ("Image committed.\n", 0));
    for f in ["a.qcow2", "m.qcow2", "t.qcow2"] {
        p.same_content(f);
    }
    qemu_img_ok(&["check", &s(&p.b.join("a.qcow2"))]);
    p.same(&["map", "-U", "t.qcow2"]);
    // Host offsets aside: QEMU frees the data cluster that a zero write
    // with unmap covers and reuses it, blk's qcow2 keeps it (a zero cluster
    // with its allocation).
    let map = |d: &Path| {
        let out = qemu_img_ok(&["map", "-U", "--output=json", &s(&d.join("a.qcow2"))]);
        out.lines()
            .map(|l| {
                l.split(", \"offset\"")
                    .next()
                    .unwrap_or(l)
                    .trim_end_matches(['}', ']', ','])
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(map(&p.q), map(&p.b));
    // The top and the intermediate image are left as they were (-b implies -d).
    p.same_file("m.qcow2");
    p.same_file("t.qcow2");
    // The base alone now reads as the whole chain did.
    qemu_img_ok(&[
        "compare",
        "-U",
        &s(&p.b.join("a.qcow2")),
        &s(&p.b.join("t.qcow2")),
    ]);
    p.same(&["commit", "-q", "-b", "./a.qcow2", "t.qcow2"]);
    p.same_content("a.qcow2");
}

#[test]
fn rebase_compressed() {
    let p = Pair::new();
    p.setup(&["create", "-q", "-f", "qcow2", "a.qcow2", "1M"]);
    p.setup_io(&[
        "-c",
        "write -P 1 0 192k",
        "-c",
        "write -P 9 400k 10k",
        "a.qcow2",
    ]);
    p.setup(&["create", "-q", "-f", "qcow2", "n.qcow2", "1M"]);
    p.setup_io(&[
        "-c",
        "write -P 1 0 64k",
        "-c",
        "write -P 5 600k 64k",
        "n.qcow2",
    ]);
    for t in ["t.qcow2", "u.qcow2", "v.qcow2"] {
        p.setup(&[
            "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", t,
        ]);
        p.setup_io(&["-c", "write -P 3 128k 4k", t]);
    }
    p.setup(&["create", "-q", "-f", "raw", "r.raw", "1M"]);
    let (_, _, code) = p.same(&["rebase", "-c", "-b", "", "t.qcow2"]);
    assert_eq!(code, 0);
    p.same(&["rebase", "-c", "-b", "n.qcow2", "-F", "qcow2", "u.qcow2"]);
    p.same(&["rebase", "-c", "-u", "-b", "", "v.qcow2"]);
    p.same(&["rebase", "-c", "-b", "", "-f", "raw", "r.raw"]);
    for f in ["t.qcow2", "u.qcow2", "v.qcow2"] {
        p.same_content(f);
        p.same(&["map", "--output=json", f]);
        p.same(&["check", f]);
        p.same(&["info", f]);
    }
    p.same_file("r.raw");
}

/// Overwrites the start of the compressed data of the `index`-th cluster
/// of a qcow2 image (the first L2 table) so that it no longer inflates.
fn corrupt_compressed_cluster(path: &Path, index: usize) {
    let mut img = std::fs::read(path).unwrap();
    let be = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let cluster_bits = u32::from_be_bytes(img[20..24].try_into().unwrap());
    let l1 = be(&img[40..48]) as usize;
    let l2 = (be(&img[l1..l1 + 8]) & 0x00ff_ffff_ffff_fe00) as usize;
    let entry = be(&img[l2 + 8 * index..l2 + 8 * index + 8]);
    assert!(entry & (1 << 62) != 0, "cluster {index} is not compressed");
    let off = (entry & ((1u64 << (62 - (cluster_bits - 8))) - 1)) as usize;
    img[off..off + 64].fill(0xff);
    std::fs::write(path, img).unwrap();
}

#[test]
fn convert_salvage_past_read_errors() {
    let p = Pair::new();
    p.setup(&["create", "-q", "-f", "qcow2", "c.qcow2", "1M"]);
    p.setup_io(&[
        "-c",
        "write -P 1 0 64k",
        "-c",
        "write -c -P 2 64k 64k",
        "-c",
        "write -P 3 128k 64k",
        "-c",
        "write -c -P 4 512k 64k",
        "c.qcow2",
    ]);
    corrupt_compressed_cluster(&p.q.join("c.qcow2"), 1);
    corrupt_compressed_cluster(&p.b.join("c.qcow2"), 1);
    let (_, err, code) = p.same(&["convert", "-O", "raw", "c.qcow2", "plain.raw"]);
    assert_eq!(code, 1);
    assert!(err.contains("error while reading at byte 65536"), "{err}");
    let (_, err, code) = p.same(&["convert", "--salvage", "-O", "raw", "c.qcow2", "s.raw"]);
    assert_eq!(code, 0);
    assert_eq!(
        err.matches("warning: error while reading offset").count(),
        128
    );
    p.same_file("s.raw");
    p.same(&["convert", "--salvage", "-O", "qcow2", "c.qcow2", "s.qcow2"]);
    p.same_content("s.qcow2");
    p.same(&[
        "convert",
        "--salvage",
        "-c",
        "-O",
        "qcow2",
        "c.qcow2",
        "sc.qcow2",
    ]);
    p.same_content("sc.qcow2");
    qemu_img_ok(&["check", &s(&p.b.join("sc.qcow2"))]);
}

#[test]
fn convert_rate_limit() {
    let p = Pair::new();
    p.setup(&["create", "-q", "-f", "raw", "big.raw", "3M"]);
    p.setup_io(&["-f", "raw", "-c", "write -P 1 0 3M", "big.raw"]);
    for bad in ["-5", "abc", "1x"] {
        let (_, _, code) = p.same(&["convert", "-r", bad, "-O", "raw", "big.raw", "x.raw"]);
        assert_eq!(code, 1);
    }
    p.same(&[
        "convert",
        "--rate-limit",
        "1M",
        "-O",
        "raw",
        "big.raw",
        "x.raw",
    ]);
    p.same(&["convert", "-r", "0", "-O", "raw", "big.raw", "z.raw"]);
    // 3 MiB is a 2 MiB chunk and a 1 MiB one: at 2 MiB/s the second may
    // start after a second, in both tools.
    for (tool, dir) in [("qemu-img", &p.q), ("blk", &p.b)] {
        let start = std::time::Instant::now();
        let mut c = if tool == "blk" {
            Command::new(blk_bin())
        } else {
            Command::new(tool)
        };
        let out = run(c
            .args(["convert", "-r", "2M", "-O", "raw", "big.raw", "r.raw"])
            .current_dir(dir));
        let took = start.elapsed();
        assert!(out.status.success(), "{tool}: {out:?}");
        assert!(took.as_millis() >= 700, "{tool} took {took:?}");
        assert!(took.as_secs() < 10, "{tool} took {took:?}");
    }
    p.same_file("r.raw");
    p.same_file("z.raw");
}

#[test]
fn image_opts_in_other_commands() {
    let p = Pair::new();
    with_chain(&p);
    let spec = "driver=qcow2,file.filename=t.qcow2";
    let cases: &[&[&str]] = &[
        &["snapshot", "-c", "s1", "--image-opts", spec],
        &["amend", "-o", "lazy_refcounts=on", "--image-opts", spec],
        &["measure", "-O", "qcow2", "--image-opts", spec],
        &[
            "dd",
            "--image-opts",
            "if=driver=qcow2,file.filename=t.qcow2",
            "of=o.raw",
            "-O",
            "raw",
        ],
        &["resize", "--image-opts", spec, "2M"],
        &[
            "rebase",
            "-u",
            "-b",
            "a.qcow2",
            "-F",
            "qcow2",
            "--image-opts",
            spec,
        ],
        &["commit", "--image-opts", spec],
    ];
    for args in cases {
        let (_, err, code) = p.same(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    // Snapshot dates may differ by a second between the two runs.
    for d in [&p.q, &p.b] {
        let out = run(Command::new(if d == &p.q {
            "qemu-img".into()
        } else {
            blk_bin()
        })
        .args(["snapshot", "-l", "--image-opts", spec])
        .current_dir(d));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(" s1 "));
    }
    p.same_content("o.raw");
    p.same_content("a.qcow2");
    p.same_content("t.qcow2");
    qemu_img_ok(&["check", &s(&p.b.join("t.qcow2"))]);
}

#[test]
fn commit_rate_limit() {
    let p = Pair::new();
    p.setup(&["create", "-q", "-f", "raw", "a.raw", "2M"]);
    p.setup(&[
        "create", "-q", "-f", "qcow2", "-b", "a.raw", "-F", "raw", "t.qcow2",
    ]);
    p.setup_io(&["-c", "write -P 1 0 2M", "t.qcow2"]);
    for bad in ["-1", "abc"] {
        let (_, _, code) = p.same(&["commit", "-r", bad, "t.qcow2"]);
        assert_eq!(code, 1);
    }
    p.same_file("t.qcow2");
    // As a block job: the 2 MiB copied take a second at 2 MiB/s.
    for (tool, dir) in [("qemu-img", &p.q), ("blk", &p.b)] {
        let start = std::time::Instant::now();
        let mut c = if tool == "blk" {
            Command::new(blk_bin())
        } else {
            Command::new(tool)
        };
        let out = run(c.args(["commit", "-r", "2M", "t.qcow2"]).current_dir(dir));
        let took = start.elapsed();
        assert!(out.status.success(), "{tool}: {out:?}");
        assert!(took.as_millis() >= 700, "{tool} took {took:?}");
        assert!(took.as_secs() < 10, "{tool} took {took:?}");
    }
    p.same_file("a.raw");
    p.same_content("t.qcow2");
}
