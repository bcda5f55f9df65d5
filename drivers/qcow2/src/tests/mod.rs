//! Tests against images made and checked by qemu-img / qemu-io.
//!
//! The test host opens files with a small positional-I/O node and backing
//! files with this driver (qcow2) or as raw files.

#![allow(clippy::unwrap_used)]

mod amend;
mod bitmaps;
mod check;
mod create;
mod damage;
mod data_path;
mod features;
mod header;
mod hostile;
mod life;
mod mapping;
mod measure;
mod overlap;
mod read;
mod rebuild;
mod snap;
mod snapshot_table;
mod snapview;
pub(crate) mod stress;
mod write;
mod zero;

use crate::{Qcow2Driver, Qcow2Node};
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, HostServices,
    NodeInfo, OpenFlags, OpenRequest, OptionValues, Preallocation, ReqFlags, Result,
};
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A plain file as a protocol node.
pub(crate) struct FileNode {
    f: File,
}

impl BlockNode for FileNode {
    fn read_vectored(&self, offset: u64, bufs: &mut [IoSliceMut<'_>], _: ReqFlags) -> Result<()> {
        let mut off = offset;
        for b in bufs.iter_mut() {
            let mut done = 0;
            while done < b.len() {
                let n = self
                    .f
                    .read_at(&mut b[done..], off + done as u64)
                    .map_err(|e| BlockError::from_io("read", e))?;
                if n == 0 {
                    b[done..].fill(0);
                    break;
                }
                done += n;
            }
            off += b.len() as u64;
        }
        Ok(())
    }
    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], _: ReqFlags) -> Result<()> {
        let mut off = offset;
        for b in bufs {
            self.f
                .write_all_at(b, off)
                .map_err(|e| BlockError::from_io("write", e))?;
            off += b.len() as u64;
        }
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        self.f
            .sync_data()
            .map_err(|e| BlockError::from_io("flush", e))
    }
    fn length(&self) -> Result<u64> {
        Ok(self
            .f
            .metadata()
            .map_err(|e| BlockError::from_io("length", e))?
            .len())
    }
    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "file".into(),
            virtual_size: self.length()?,
            ..NodeInfo::default()
        })
    }
    fn truncate(&self, size: u64, _: Preallocation) -> Result<()> {
        self.f
            .set_len(size)
            .map_err(|e| BlockError::from_io("truncate", e))
    }
    fn discard(&self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
    fn allocated_size(&self) -> Result<u64> {
        Ok(self
            .f
            .metadata()
            .map_err(|e| BlockError::from_io("stat", e))?
            .blocks()
            * 512)
    }
}

/// The host used by the tests.
pub(crate) struct TestHost;

fn open_file(path: &str, ro: bool) -> Result<Arc<dyn BlockNode>> {
    let f = OpenOptions::new()
        .read(true)
        .write(!ro)
        .open(path)
        .map_err(|e| BlockError::from_io("open", e).in_file(path))?;
    Ok(Arc::new(FileNode { f }))
}

impl HostServices for TestHost {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        let name = block_core::resolve_relative(&req.filename, req.relative_to.as_deref());
        let ro = req.flags.contains(OpenFlags::READ_ONLY);
        match req.role {
            ChildRole::File | ChildRole::DataFile | ChildRole::Extent(_) => open_file(&name, ro),
            ChildRole::Backing | ChildRole::Parent(_) => {
                let fmt = match &req.format {
                    Some(f) => f.clone(),
                    None => {
                        let mut m = [0u8; 4];
                        let f = open_file(&name, true)?;
                        f.read_at(0, &mut m)?;
                        if m == *b"QFI\xfb" {
                            "qcow2".into()
                        } else {
                            "raw".into()
                        }
                    }
                };
                match fmt.as_str() {
                    "qcow2" => {
                        let r = OpenRequest::new(name, req.flags);
                        Ok(Arc::from(Qcow2Driver::new().open(&r, Arc::new(TestHost))?))
                    }
                    "raw" => open_file(&name, true),
                    f => Err(BlockError::invalid("open", format!("unknown format {f}"))),
                }
            }
        }
    }
    fn create_file(&self, filename: &str, size: u64, _: Preallocation) -> Result<()> {
        let f = File::create(filename).map_err(|e| BlockError::from_io("create", e))?;
        f.set_len(size)
            .map_err(|e| BlockError::from_io("create", e))
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh scratch directory, removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("blk-qcow2-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, panicking with its output on failure; returns stdout.
pub(crate) fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs qemu-img.
pub(crate) fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", args)
}

/// Runs qemu-io commands on a qcow2 image.
pub(crate) fn qemu_io(img: &str, cmds: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(img);
    let out = run("qemu-io", &args);
    assert!(
        !out.contains("error") && !out.contains("failed"),
        "qemu-io {cmds:?}: {out}"
    );
}

/// The guest content of an image as qemu-img sees it.
pub(crate) fn raw_of(img: &str, fmt: &str) -> Vec<u8> {
    let out = format!("{img}.rawdump");
    qemu_img(&["convert", "-f", fmt, "-O", "raw", img, &out]);
    let d = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    d
}

/// `qemu-img check --output=json` (exit codes 0..3 are all results).
pub(crate) fn qemu_check(img: &str) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["check", "--output=json", "-f", "qcow2", img])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check output: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts that qemu-img check finds no problem.
pub(crate) fn assert_clean(img: &str) {
    let v = qemu_check(img);
    for k in ["corruptions", "leaks", "check-errors"] {
        assert_eq!(
            v.get(k).and_then(|x| x.as_u64()).unwrap_or(0),
            0,
            "{k} in {v}"
        );
    }
}

/// The node the driver returns: the engine's node over the qcow2 format.
pub(crate) type Node = block_core::engine::FormatNode<Qcow2Node>;

/// Wraps an opened image as the driver does.
pub(crate) fn node_of(image: Qcow2Node, flags: OpenFlags) -> Node {
    Node::new(
        image,
        flags.contains(OpenFlags::READ_ONLY),
        flags.contains(OpenFlags::INACTIVE),
    )
}

/// Opens an image with this driver.
pub(crate) fn open(path: &str, flags: OpenFlags) -> Node {
    try_open(path, flags).unwrap()
}

/// Opens an image, returning the error.
pub(crate) fn try_open(path: &str, flags: OpenFlags) -> Result<Node> {
    crate::open::open(&OpenRequest::new(path, flags), Arc::new(TestHost)).map(|i| node_of(i, flags))
}

/// Creates an image with this driver.
pub(crate) fn create(path: &str, opts: &str) -> Result<()> {
    let schema = crate::create_options();
    let o = OptionValues::parse_str(&schema, opts)?;
    Qcow2Driver::new().create(path, &o, Arc::new(TestHost))
}

/// Reads the whole guest content through this driver.
pub(crate) fn read_all(n: &Node) -> Vec<u8> {
    let len = n.length().unwrap() as usize;
    let mut buf = vec![0u8; len];
    n.read_at(0, &mut buf).unwrap();
    buf
}

/// A deterministic pseudo-random generator (xorshift).
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Writes `data` at `off` of a raw file (for building expected content).
pub(crate) fn patch(buf: &mut [u8], off: u64, data: &[u8]) {
    buf[off as usize..off as usize + data.len()].copy_from_slice(data);
}

/// Byte-patches a file in place (to corrupt images).
pub(crate) fn poke(path: &str, off: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, off).unwrap();
}

/// Reads bytes of a file.
pub(crate) fn peek(path: &str, off: u64, n: usize) -> Vec<u8> {
    let f = File::open(path).unwrap();
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

#[allow(dead_code)]
pub(crate) fn exists(p: &str) -> bool {
    Path::new(p).exists()
}
