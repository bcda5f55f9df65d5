//! The embedding API tried as a new embedder would: plugin-host is the one
//! dependency (`cargo test -p plugin-host --no-default-features --test
//! embedder` builds it without the command line's clap, indicatif and
//! env_logger), the host reads no environment, and the operations (convert
//! with progress and cancellation, compare, map) give what the real
//! qemu-img says about the same images.

use plugin_host::ops::{self, CancelToken, CompareOutcome, ConvertRequest, MapRequest, OpError};
use plugin_host::{Host, Image, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs")
}

fn qemu_io(img: &Path, cmds: &[&str]) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "qcow2"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(img).output().expect("qemu-io runs");
    assert!(out.status.success(), "qemu-io: {out:?}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A qcow2 image qemu wrote: data, an explicit zero range and holes.
fn qemu_source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src.qcow2");
    let out = qemu_img(&["create", "-q", "-f", "qcow2", path(&src), "64M"]);
    assert!(out.status.success(), "{out:?}");
    qemu_io(
        &src,
        &[
            "write -P 0xab 0 3M",
            "write -P 0xcd 20M 1M",
            "write -z 40M 1M",
            "write -P 0x11 63M 512k",
        ],
    );
    src
}

/// Creates an empty qcow2 target of `size` bytes and opens it read-write.
fn new_target(host: &Host, dst: &Path, size: u64) -> Image {
    host.create("qcow2", path(dst), "", Some(size), None)
        .expect("create target");
    let opts = OpenOptions {
        format: Some("qcow2".into()),
        ..OpenOptions::default()
    };
    host.open(path(dst), &opts).expect("open target")
}

fn open_ro(host: &Host, p: &Path) -> Image {
    host.open(path(p), &OpenOptions::read_only())
        .expect("open read-only")
}

#[test]
fn convert_reports_monotonic_progress_and_qemu_img_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = qemu_source(dir.path());
    let dst_path = dir.path().join("dst.qcow2");
    let host = Host::without_env().unwrap();
    let src = open_ro(&host, &src_path);
    let len = src.length().unwrap();
    let dst = new_target(&host, &dst_path, len);
    let seen = Mutex::new(Vec::new());
    let record = |p: ops::Progress| seen.lock().unwrap().push(p);
    let r = ops::convert(
        &[&src],
        &dst,
        &ConvertRequest::default(),
        &record,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(r.bytes, len);
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() > 2, "progress reported per chunk: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].done < w[1].done));
    assert!(seen
        .iter()
        .all(|p| p.total == len && p.stage == ops::Stage::Copy));
    assert_eq!(seen.first().unwrap().done, 0);
    assert_eq!(seen.last().unwrap().done, len);
    drop((src, dst));
    let out = qemu_img(&["compare", path(&src_path), path(&dst_path)]);
    assert!(out.status.success(), "qemu-img compare: {out:?}");
    let out = qemu_img(&["check", path(&dst_path)]);
    assert!(out.status.success(), "qemu-img check: {out:?}");
}

#[test]
fn a_cancelled_convert_stops_and_leaves_a_consistent_target() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("full.qcow2");
    let out = qemu_img(&["create", "-q", "-f", "qcow2", path(&src_path), "16M"]);
    assert!(out.status.success(), "{out:?}");
    qemu_io(&src_path, &["write -P 0x5a 0 16M"]);
    let dst_path = dir.path().join("dst.qcow2");
    let host = Host::without_env().unwrap();
    let src = open_ro(&host, &src_path);
    let dst = new_target(&host, &dst_path, 16 << 20);
    let cancel = CancelToken::new();
    // Cancelled once the first chunk is done: the one worker stops before
    // its next one.
    let stop = |p: ops::Progress| {
        if p.done > 0 {
            cancel.cancel();
        }
    };
    let req = ConvertRequest {
        workers: 1,
        ..ConvertRequest::default()
    };
    let err = ops::convert(&[&src], &dst, &req, &stop, &cancel).unwrap_err();
    assert!(matches!(err, OpError::Cancelled), "{err:?}");
    // The first chunk was copied, the rest not.
    let r = ops::compare(
        &src,
        &dst,
        &Default::default(),
        &ops::no_progress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(
        r.outcome,
        CompareOutcome::ContentMismatch(ops::convert::CHUNK)
    );
    drop((src, dst));
    let out = qemu_img(&["check", path(&dst_path)]);
    assert!(out.status.success(), "qemu-img check: {out:?}");
    let out = qemu_img(&["compare", path(&src_path), path(&dst_path)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Content mismatch at offset {}!\n", ops::convert::CHUNK)
    );
}

#[test]
fn compare_finds_what_qemu_img_compare_finds() {
    let dir = tempfile::tempdir().unwrap();
    let a_path = qemu_source(dir.path());
    let b_path = dir.path().join("b.qcow2");
    let out = qemu_img(&["convert", "-O", "qcow2", path(&a_path), path(&b_path)]);
    assert!(out.status.success(), "{out:?}");
    let host = Host::without_env().unwrap();
    let cmp = |a: &Path, b: &Path| {
        let (a, b) = (open_ro(&host, a), open_ro(&host, b));
        ops::compare(
            &a,
            &b,
            &Default::default(),
            &ops::no_progress,
            &CancelToken::new(),
        )
        .unwrap()
    };
    assert!(cmp(&a_path, &b_path).identical());
    let out = qemu_img(&["compare", path(&a_path), path(&b_path)]);
    assert!(out.status.success(), "{out:?}");
    // One byte changed in the hole at 30 MiB + 1000.
    qemu_io(&b_path, &["write -P 0x01 31458280 1"]);
    let r = cmp(&a_path, &b_path);
    let out = qemu_img(&["compare", path(&a_path), path(&b_path)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let CompareOutcome::ContentMismatch(at) = r.outcome else {
        panic!("{r:?}");
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Content mismatch at offset {at}!\n")
    );
}

#[test]
fn map_gives_qemu_img_maps_extents() {
    let dir = tempfile::tempdir().unwrap();
    let base = qemu_source(dir.path());
    let top = dir.path().join("top.qcow2");
    let out = qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        path(&base),
        "-F",
        "qcow2",
        path(&top),
    ]);
    assert!(out.status.success(), "{out:?}");
    qemu_io(&top, &["write -P 0x77 1M 64k", "write -z 20M 64k"]);
    let host = Host::without_env().unwrap();
    for (img, req) in [
        (&top, MapRequest::default()),
        (&base, MapRequest::default()),
        (
            &top,
            MapRequest {
                start: 512 << 10,
                max_length: Some(30 << 20),
                ..MapRequest::default()
            },
        ),
    ] {
        let image = open_ro(&host, img);
        let ours = ops::map(&image, &req, &ops::no_progress, &CancelToken::new()).unwrap();
        let mut args = vec!["map", "--output=json"];
        let (s, l) = (req.start.to_string(), req.max_length.map(|l| l.to_string()));
        if req.start > 0 {
            args.extend(["-s", &s]);
        }
        if let Some(l) = &l {
            args.extend(["-l", l]);
        }
        args.push(path(img));
        let out = qemu_img(&args);
        assert!(out.status.success(), "{out:?}");
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(serde_json::to_value(&ours).unwrap(), theirs, "{args:?}");
    }
}

#[test]
fn commit_and_measure_agree_with_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let base = qemu_source(dir.path());
    let top = dir.path().join("top.qcow2");
    let out = qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        path(&base),
        "-F",
        "qcow2",
        path(&top),
    ]);
    assert!(out.status.success(), "{out:?}");
    qemu_io(&top, &["write -P 0x42 1M 3M", "write -z 20M 128k"]);
    // What the top reads before the commit, flattened by qemu-img.
    let expect = dir.path().join("expect.raw");
    let out = qemu_img(&["convert", "-O", "raw", path(&top), path(&expect)]);
    assert!(out.status.success(), "{out:?}");

    let host = Host::without_env().unwrap();
    let theirs = qemu_img(&["measure", "--output=json", "-O", "qcow2", path(&top)]);
    assert!(theirs.status.success(), "{theirs:?}");
    let theirs: serde_json::Value = serde_json::from_slice(&theirs.stdout).unwrap();
    let src = open_ro(&host, &top);
    let query = ops::MeasureQuery {
        format: "qcow2".into(),
        ..Default::default()
    };
    let ours = ops::measure(
        &host,
        Some(&src),
        &query,
        &ops::no_progress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(theirs["required"].as_u64(), Some(ours.required));
    assert_eq!(
        theirs["fully-allocated"].as_u64(),
        Some(ours.fully_allocated)
    );
    drop(src);

    let rw = |p: &Path| {
        let opts = OpenOptions {
            format: Some("qcow2".into()),
            no_backing: true,
            ..OpenOptions::default()
        };
        host.open(path(p), &opts).unwrap()
    };
    let (t, b) = (rw(&top), rw(&base));
    let req = ops::CommitRequest {
        empty_top: true,
        ..Default::default()
    };
    let seen = Mutex::new(Vec::new());
    let record = |p: ops::Progress| seen.lock().unwrap().push(p.done);
    let r = ops::commit(&t, &b, &req, &record, &CancelToken::new()).unwrap();
    assert!(r.emptied);
    assert_eq!(r.bytes_committed, (3 << 20) + (128 << 10));
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&(64 << 20)));
    drop((t, b));
    for img in [&base, &top] {
        let out = qemu_img(&["check", path(img)]);
        assert!(out.status.success(), "qemu-img check: {out:?}");
        let out = qemu_img(&["compare", path(img), path(&expect)]);
        assert!(out.status.success(), "qemu-img compare: {out:?}");
    }
    // The top is empty: qemu-img maps nothing as present in it.
    let out = qemu_img(&["map", "--output=json", path(&top)]);
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(map
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["depth"].as_u64() != Some(0) || e["present"] == false));
}
