//! The formats the fuzzer covers: for each, a seed image made by a real
//! tool (qemu-img and qemu-io, or a format's own tool), and where its
//! metadata lies, so mutations land where the parser reads.

use std::path::{Path, PathBuf};

/// One format under the fuzzer.
#[derive(Clone, Copy)]
pub struct FuzzTarget {
    /// The format name given to the host's open (`-f`).
    pub format: &'static str,
    /// Builds the seed image in the directory and returns its path.
    pub seed: fn(&Path) -> PathBuf,
    /// Bytes at the start of the file that hold the header.
    pub header_bytes: usize,
    /// Bytes at the end of the file that hold metadata (a footer or a
    /// trailer), 0 when the format has none.
    pub trailer_bytes: usize,
    /// Whether the format can be opened for writing.
    pub writable: bool,
    /// Further (offset, length) ranges holding metadata, for formats that
    /// spread it over the file (vhdx's headers, regions, metadata, BAT).
    pub regions: &'static [(usize, usize)],
}

impl std::fmt::Debug for FuzzTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.format)
    }
}

/// Every format the fuzzer covers.
pub const TARGETS: &[FuzzTarget] = &[
    FuzzTarget {
        format: "qcow2",
        seed: qcow2_seed,
        header_bytes: 112,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "qed",
        seed: qed_seed,
        header_bytes: 68,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "vdi",
        seed: vdi_seed,
        header_bytes: 512,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "vpc",
        seed: vpc_seed,
        header_bytes: 1536,
        trailer_bytes: 512,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "parallels",
        seed: parallels_seed,
        header_bytes: 64,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "qcow",
        seed: qcow_seed,
        header_bytes: 48,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "vhdx",
        seed: vhdx_seed,
        header_bytes: 64,
        trailer_bytes: 0,
        writable: true,
        // Headers, region tables, the log's start, the metadata region and
        // the BAT, where qemu-img places them with a 1 MiB log.
        regions: &[
            (64 << 10, 4096),
            (128 << 10, 4096),
            (192 << 10, 4096),
            (256 << 10, 4096),
            (1 << 20, 4096),
            (2 << 20, 4096),
            (3 << 20, 4096),
        ],
    },
    FuzzTarget {
        format: "vmdk",
        seed: vmdk_seed,
        header_bytes: 2048,
        trailer_bytes: 0,
        writable: true,
        regions: &[],
    },
    FuzzTarget {
        format: "bochs",
        seed: bochs_seed,
        header_bytes: 512,
        trailer_bytes: 0,
        writable: false,
        regions: &[],
    },
];

/// The target for `format`, if the fuzzer covers it.
pub fn target(format: &str) -> Option<&'static FuzzTarget> {
    TARGETS.iter().find(|t| t.format == format)
}

/// An image of `format` made by qemu-img with `opts`, then written by
/// qemu-io: data, a zero write, a discard and data near the end, so
/// tables hold allocated, zero and free entries.
fn qemu_seed(dir: &Path, format: &str, opts: &str, size: &str) -> PathBuf {
    let img = dir.join(format!("seed.{format}"));
    let p = img.to_str().expect("utf-8");
    let mut args = vec!["create", "-q", "-f", format];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([p, size]);
    crate::qemu_img_ok(&args);
    crate::qemu_io_ok(&[
        "-f",
        format,
        "-c",
        "write -P 0x11 0 64k",
        "-c",
        "write -z 64k 16k",
        "-c",
        "write -P 0x33 900k 20k",
        "-c",
        "discard 0 4k",
        p,
    ]);
    img
}

/// A qcow2 with data, zero clusters, a compressed cluster, a snapshot and
/// two persistent bitmaps (one with dirty bits), 4 KiB clusters so
/// metadata is dense.
fn qcow2_seed(dir: &Path) -> PathBuf {
    let img = dir.join("seed.qcow2");
    let p = img.to_str().expect("utf-8");
    crate::qemu_img_ok(&["create", "-f", "qcow2", "-o", "cluster_size=4k", p, "1M"]);
    crate::qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0x11 0 64k",
        "-c",
        "write -z 64k 16k",
        "-c",
        "write -c -P 0x22 256k 4k",
        "-c",
        "write -P 0x33 900k 20k",
        p,
    ]);
    crate::qemu_img_ok(&["snapshot", "-c", "s1", p]);
    crate::qemu_img_ok(&["bitmap", "--add", "-g", "512", p, "fine"]);
    crate::qemu_img_ok(&["bitmap", "--add", "--disable", p, "off"]);
    crate::qemu_io_ok(&["-f", "qcow2", "-c", "write -P 0x44 0 8k", p]);
    img
}

fn qed_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "qed", "cluster_size=4k", "1M")
}

fn vdi_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "vdi", "", "4M")
}

fn vpc_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "vpc", "", "4M")
}

fn parallels_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "parallels", "cluster_size=4k", "1M")
}

fn qcow_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "qcow", "", "1M")
}

/// A vhdx with a 1 MiB log and 1 MiB blocks.
fn vhdx_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "vhdx", "block_size=1M,log_size=1M", "8M")
}

fn vmdk_seed(dir: &Path) -> PathBuf {
    qemu_seed(dir, "vmdk", "", "4M")
}

/// A bximage growing image with data written into two extents.
fn bochs_seed(dir: &Path) -> PathBuf {
    let p = dir.join("seed.bochs");
    crate::bochs::bximage(&p, 10);
    let mut img = std::fs::read(&p).expect("bximage image");
    crate::bochs::write_sectors(&mut img, 3, &[0x11; 8192]);
    crate::bochs::write_sectors(&mut img, 9000, &[0x22; 4096]);
    std::fs::write(&p, &img).expect("bochs seed");
    p
}
