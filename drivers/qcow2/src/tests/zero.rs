//! Zero writes and discards produce the same image layout as QEMU's:
//! the same operations through qemu-io and through this driver give equal
//! `qemu-img map --output=json`, equal content and clean images.

use super::*;
use block_core::ZeroFlags;

/// One operation, applied through qemu-io and through this driver.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Pattern write.
    Write(u64, u64, u8),
    /// Compressed pattern write of one cluster.
    WriteCompressed(u64, u64, u8),
    /// Zero write (`true`: may unmap).
    Zero(u64, u64, bool),
    /// Discard.
    Discard(u64, u64),
}

impl Op {
    fn qemu_cmd(self) -> String {
        match self {
            Op::Write(o, l, p) => format!("write -P {p} {o} {l}"),
            Op::WriteCompressed(o, l, p) => format!("write -c -P {p} {o} {l}"),
            Op::Zero(o, l, false) => format!("write -z {o} {l}"),
            Op::Zero(o, l, true) => format!("write -z -u {o} {l}"),
            Op::Discard(o, l) => format!("discard {o} {l}"),
        }
    }

    fn apply(self, n: &super::Node) {
        match self {
            Op::Write(o, l, p) => n.write_at(o, &vec![p; l as usize]).unwrap(),
            Op::WriteCompressed(o, l, p) => n
                .write_vectored(
                    o,
                    &[IoSlice::new(&vec![p; l as usize])],
                    ReqFlags::COMPRESSED,
                )
                .unwrap(),
            Op::Zero(o, l, u) => {
                let f = if u {
                    ZeroFlags::MAY_UNMAP
                } else {
                    ZeroFlags::NONE
                };
                n.write_zeroes(o, l, f).unwrap()
            }
            Op::Discard(o, l) => n.discard(o, l).unwrap(),
        }
    }
}

/// `qemu-img map --output=json` without host offsets (allocation order
/// is not part of the layout), adjacent equal extents merged.
fn map(img: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img(&["map", "--output=json", "-f", "qcow2", img])).unwrap();
    let mut out: Vec<serde_json::Value> = Vec::new();
    for mut e in v.as_array().unwrap().iter().cloned() {
        let obj = e.as_object_mut().unwrap();
        obj.remove("offset");
        let len = obj.remove("length").unwrap().as_u64().unwrap();
        let start = obj.remove("start").unwrap().as_u64().unwrap();
        if let Some(last) = out.last_mut() {
            let lo = last.as_object_mut().unwrap();
            let lstart = lo["start"].as_u64().unwrap();
            let llen = lo["length"].as_u64().unwrap();
            let same = obj.iter().all(|(k, v)| lo.get(k) == Some(v));
            if same && lstart + llen == start {
                lo.insert("length".into(), (llen + len).into());
                continue;
            }
        }
        obj.insert("start".into(), start.into());
        obj.insert("length".into(), len.into());
        out.push(e);
    }
    out
}

/// Runs `ops` on two copies of a qemu-made image and compares.
fn same_as_qemu(create_opts: &str, backing: bool, ops: &[Op]) {
    let s = Scratch::new();
    let q = s.path("q.qcow2");
    let b = s.path("b.qcow2");
    let mut args = vec!["create", "-q", "-f", "qcow2", "-o", create_opts];
    let base = s.path("base.raw");
    if backing {
        // Data in the first half; the second half lies past the backing
        // file's end and reads as zeros.
        std::fs::write(&base, vec![0x5au8; 1 << 20]).unwrap();
        args.extend_from_slice(&["-b", &base, "-F", "raw"]);
    }
    let mut qa = args.clone();
    qa.extend_from_slice(&[&q, "2M"]);
    qemu_img(&qa);
    let mut ba = args.clone();
    ba.extend_from_slice(&[&b, "2M"]);
    qemu_img(&ba);
    let cmds: Vec<String> = ops.iter().map(|o| o.qemu_cmd()).collect();
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io(&q, &refs);
    let n = open(&b, OpenFlags::NONE);
    for op in ops {
        op.apply(&n);
    }
    drop(n);
    assert_clean(&b);
    assert_eq!(map(&q), map(&b), "{create_opts} backing={backing}");
    qemu_img(&["compare", "-f", "qcow2", "-F", "qcow2", &q, &b]);
}

const C: u64 = 65536;
const SC: u64 = C / 32;

/// Operations that touch every case of the zero write and discard paths.
fn ops() -> Vec<Op> {
    vec![
        Op::Write(0, 4 * C, 1),
        // Partial subcluster inside data: real zeros.
        Op::Zero(3 * 1024, 1024, false),
        // Partial subcluster over unallocated space.
        Op::Zero(5 * C + 300, 100, false),
        // Unaligned head and tail around aligned subclusters, over data
        // and over unallocated space.
        Op::Zero(C + SC / 2, 5 * SC, false),
        Op::Zero(6 * C + SC / 2, 5 * SC, false),
        // Whole clusters: unallocated, allocated (kept), allocated (unmapped).
        Op::Zero(8 * C, 2 * C, false),
        Op::Zero(2 * C, C, false),
        Op::Zero(3 * C, C, true),
        // A partial subcluster zero next to zero subclusters.
        Op::Zero(6 * C + 7 * SC, 100, false),
        // Compressed clusters: whole zeroing frees, partial writes zeros.
        Op::WriteCompressed(12 * C, C, 3),
        Op::WriteCompressed(13 * C, C, 4),
        Op::Zero(12 * C, C, false),
        Op::Zero(13 * C + SC, SC, false),
        // Discards: partial clusters are ignored, whole ones zeroed.
        Op::Write(16 * C, 3 * C, 2),
        Op::Discard(16 * C + SC, 4 * SC),
        Op::Discard(17 * C, C),
        Op::Discard(20 * C, 2 * C),
        // A zero write that ends at the image end.
        Op::Zero(2 * 1024 * 1024 - SC - 10, SC + 10, false),
    ]
}

#[test]
fn extended_l2_zero_and_discard_like_qemu() {
    same_as_qemu("extended_l2=on,cluster_size=64k", false, &ops());
    same_as_qemu("extended_l2=on,cluster_size=64k", true, &ops());
}

#[test]
fn standard_l2_zero_and_discard_like_qemu() {
    same_as_qemu("cluster_size=64k", false, &ops());
    same_as_qemu("cluster_size=64k", true, &ops());
}

#[test]
fn version2_zero_and_discard_like_qemu() {
    same_as_qemu("compat=0.10,cluster_size=64k", false, &ops());
    same_as_qemu("compat=0.10,cluster_size=64k", true, &ops());
}
