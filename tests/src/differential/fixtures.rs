//! The fixtures of the differential layer: images made at run time by
//! qemu-img and qemu-io (seeded), built once per test process into a
//! template directory and copied into each row's directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The fixture names [`fixture`] knows, each with what it is.
pub const FIXTURES: &[(&str, &str)] = &[
    ("a.qcow2", "16 MiB qcow2, 64 KiB clusters, seeded data"),
    ("b.qcow2", "16 MiB qcow2 with other data than a.qcow2"),
    (
        "c4k.qcow2",
        "16 MiB qcow2, 4 KiB clusters, sub-cluster and zero writes",
    ),
    ("a.raw", "16 MiB sparse raw with the same data as a.qcow2"),
    ("t.qcow2", "4 MiB qcow2 target with data of its own"),
    ("t.raw", "4 MiB raw target with data of its own"),
    ("base.qcow2", "16 MiB qcow2 base of top.qcow2"),
    (
        "top.qcow2",
        "qcow2 overlay of base.qcow2 (relative name, -F qcow2)",
    ),
    ("snap.qcow2", "qcow2 with snapshots s1 and s2"),
    (
        "bm.qcow2",
        "qcow2 with persistent bitmaps b0 (enabled) and b1 (disabled)",
    ),
    (
        "leak.qcow2",
        "qcow2 with two leaked clusters (L1 entry 0 cleared)",
    ),
    ("v9.qcow2", "a.qcow2 with header version 9"),
    ("sym.qcow2", "a symlink to a.qcow2"),
    ("hard.qcow2", "a hard link to a.qcow2"),
    ("sym.raw", "a symlink to a.raw"),
    (
        "ext.qcow2",
        "16 MiB qcow2 with its data in the external data file ext.data",
    ),
    (
        "comp.qcow2",
        "a.qcow2 converted with -c (compressed clusters)",
    ),
    ("v2.qcow2", "16 MiB qcow2 v2 (compat=0.10) with data"),
    (
        "xl2.qcow2",
        "16 MiB qcow2 with extended L2 entries, sub-cluster data and zeroes",
    ),
    (
        "stale.qcow2",
        "bm.qcow2 with the bitmaps autoclear bit cleared (as by an old program)",
    ),
    (
        "luks.qcow2",
        "16 MiB LUKS-encrypted qcow2 (secret sec0 = 'abc123')",
    ),
];

/// Files a fixture needs besides itself.
fn fixture_deps(name: &str) -> &'static [&'static str] {
    match name {
        "top.qcow2" => &["base.qcow2"],
        "sym.qcow2" | "hard.qcow2" | "v9.qcow2" => &["a.qcow2"],
        "sym.raw" => &["a.raw"],
        "ext.qcow2" => &["ext.data"],
        "comp.qcow2" => &["a.qcow2"],
        "stale.qcow2" => &["bm.qcow2"],
        _ => &[],
    }
}

fn sh_ok(dir: &Path, prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "fixture step {prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seeded `qemu-io` write commands over a 16 MiB image.
fn seeded_writes(seed: u64, gran: u64) -> Vec<String> {
    use rand::Rng;
    let mut r = crate::rng(seed);
    let size = 16u64 << 20;
    (0..10)
        .map(|_| {
            let off = r.gen_range(0..size / gran) * gran;
            let len = (r.gen_range(1..=8) * gran).min(size - off);
            format!("write -P {} {off} {len}", r.gen_range(1..=255u8))
        })
        .collect()
}

fn qemu_io_cmds(dir: &Path, fmt: &str, file: &str, cmds: &[String]) {
    let mut args = vec!["-f", fmt];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(file);
    sh_ok(dir, "qemu-io", &args);
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open fixture for patching");
    f.write_all_at(bytes, offset).expect("patch fixture");
}

fn be_u64_at(path: &Path, offset: usize) -> u64 {
    let b = std::fs::read(path).expect("read fixture");
    u64::from_be_bytes(b[offset..offset + 8].try_into().unwrap())
}

/// Builds fixture `name` (and what it needs) in `dir`.
pub fn fixture(dir: &Path, name: &str) {
    for d in fixture_deps(name) {
        if !dir.join(d).exists() {
            fixture(dir, d);
        }
    }
    if dir.join(name).symlink_metadata().is_ok() {
        return;
    }
    let q = |args: &[&str]| sh_ok(dir, "qemu-img", args);
    match name {
        "a.qcow2" | "b.qcow2" | "base.qcow2" => {
            let seed = match name {
                "a.qcow2" => 1,
                "b.qcow2" => 2,
                _ => 3,
            };
            q(&["create", "-q", "-f", "qcow2", name, "16M"]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(seed, 64 << 10));
        }
        "c4k.qcow2" => {
            q(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4k",
                name,
                "16M",
            ]);
            let mut cmds = seeded_writes(4, 512);
            cmds.push("write -z 65536 65536".into());
            cmds.push("write -z -u 1048576 16384".into());
            qemu_io_cmds(dir, "qcow2", name, &cmds);
        }
        "a.raw" => {
            q(&["create", "-q", "-f", "raw", name, "16M"]);
            qemu_io_cmds(dir, "raw", name, &seeded_writes(1, 64 << 10));
        }
        "t.qcow2" => {
            q(&["create", "-q", "-f", "qcow2", name, "4M"]);
            qemu_io_cmds(dir, "qcow2", name, &["write -P 0x77 0 1M".into()]);
        }
        "t.raw" => {
            q(&["create", "-q", "-f", "raw", name, "4M"]);
            qemu_io_cmds(dir, "raw", name, &["write -P 0x77 0 1M".into()]);
        }
        "top.qcow2" => {
            q(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                "base.qcow2",
                "-F",
                "qcow2",
                name,
            ]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(5, 4096));
        }
        "snap.qcow2" => {
            q(&["create", "-q", "-f", "qcow2", name, "16M"]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(6, 64 << 10));
            q(&["snapshot", "-c", "s1", name]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(7, 64 << 10));
            q(&["snapshot", "-c", "s2", name]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(8, 64 << 10));
        }
        "bm.qcow2" => {
            q(&["create", "-q", "-f", "qcow2", name, "16M"]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(9, 64 << 10));
            q(&["bitmap", "--add", name, "b0"]);
            q(&["bitmap", "--add", "--disable", "-g", "128k", name, "b1"]);
            qemu_io_cmds(dir, "qcow2", name, &seeded_writes(10, 64 << 10));
        }
        "leak.qcow2" => {
            q(&["create", "-q", "-f", "qcow2", name, "16M"]);
            qemu_io_cmds(dir, "qcow2", name, &["write -P 0x5a 0 64k".into()]);
            let l1 = be_u64_at(&dir.join(name), 40);
            patch(&dir.join(name), l1, &[0u8; 8]);
        }
        "ext.data" => {
            // Made with its image (an image with a data file needs both).
            q(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "data_file=ext.data",
                "ext.qcow2",
                "16M",
            ]);
            let cmds = ["write -P 7 0 1M".into(), "write -P 8 5M 64k".into()];
            qemu_io_cmds(dir, "qcow2", "ext.qcow2", &cmds);
        }
        // Made with ext.data.
        "ext.qcow2" => {}
        "comp.qcow2" => q(&["convert", "-c", "-O", "qcow2", "a.qcow2", name]),
        "v2.qcow2" => {
            q(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "compat=0.10",
                name,
                "16M",
            ]);
            qemu_io_cmds(dir, "qcow2", name, &["write -P 3 0 256k".into()]);
        }
        "xl2.qcow2" => {
            q(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "extended_l2=on",
                name,
                "16M",
            ]);
            let cmds = ["write -P 4 4k 8k".into(), "write -z 64k 32k".into()];
            qemu_io_cmds(dir, "qcow2", name, &cmds);
        }
        "luks.qcow2" => q(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=abc123",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
            name,
            "16M",
        ]),
        "stale.qcow2" => {
            std::fs::copy(dir.join("bm.qcow2"), dir.join(name)).expect("copy fixture");
            patch(&dir.join(name), 88, &0u64.to_be_bytes());
        }
        "v9.qcow2" => {
            std::fs::copy(dir.join("a.qcow2"), dir.join(name)).expect("copy fixture");
            patch(&dir.join(name), 4, &9u32.to_be_bytes());
        }
        "sym.qcow2" => std::os::unix::fs::symlink("a.qcow2", dir.join(name)).expect("symlink"),
        "sym.raw" => std::os::unix::fs::symlink("a.raw", dir.join(name)).expect("symlink"),
        "hard.qcow2" => std::fs::hard_link(dir.join("a.qcow2"), dir.join(name)).expect("link"),
        other => panic!("unknown fixture {other}; known: {FIXTURES:?}"),
    }
}

/// The directory holding one made copy of every fixture, built once per
/// test process.
fn template() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        // One directory per test process, named by its pid; those of
        // processes that have ended are removed first, so runs leave at most
        // the directories of the processes still alive.
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("blk-diff-fixtures-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = tmp.join(format!("blk-diff-fixtures-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("fixture directory");
        for (name, _) in FIXTURES {
            fixture(&dir, name);
        }
        dir
    })
}

/// Copies the fixture `name` (and what it needs) from the template into
/// `dir`, keeping symlinks and hard links as links.
pub(crate) fn place(dir: &Path, name: &str) {
    for d in fixture_deps(name) {
        place(dir, d);
    }
    let to = dir.join(name);
    if to.symlink_metadata().is_ok() {
        return;
    }
    let from = template().join(name);
    let meta = from.symlink_metadata().expect("fixture exists");
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&from).expect("readlink");
        std::os::unix::fs::symlink(target, &to).expect("symlink");
    } else if name == "hard.qcow2" {
        std::fs::hard_link(dir.join("a.qcow2"), &to).expect("hard link");
    } else {
        std::fs::copy(&from, &to).expect("copy fixture");
    }
}
