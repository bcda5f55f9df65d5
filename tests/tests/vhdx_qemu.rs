//! vhdx images against qemu-img/qemu-io, both directions: what QEMU writes
//! blk reads byte for byte; what blk writes (create, io, convert) QEMU
//! checks clean and compares identical, and vhdiinfo (libvhdi) accepts.
//! A dirty log is replayed by blk as by QEMU.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, rng, s};
use rand::Rng;
use std::path::Path;
use std::process::Command;

/// Seeded guest writes over a disk of `size` bytes: patterned writes
/// (sector-aligned and not), zero writes and discards.
fn commands(seed: u64, size: u64) -> Vec<String> {
    let mut r = rng(seed);
    let mut c = Vec::new();
    for i in 0..20 {
        let len = r.gen_range(1..1_500_000u64).min(size);
        let off = r.gen_range(0..=size - len);
        let (off, len) = if i % 3 == 0 {
            (off / 512 * 512, len.div_ceil(512) * 512)
        } else {
            (off, len)
        };
        let len = len.min(size - off);
        c.push(match i % 8 {
            5 => format!("write -z {off} {len}"),
            7 => format!("discard {} {}", off / 512 * 512, (len / 512).max(1) * 512),
            _ => format!("write -P {} {off} {len}", r.gen_range(1..=255u8)),
        });
    }
    c.retain(|cmd| {
        let w: Vec<&str> = cmd.split(' ').collect();
        let o: u64 = w[w.len() - 2].parse().unwrap();
        let l: u64 = w[w.len() - 1].parse().unwrap();
        o + l <= size
    });
    c
}

fn io_args<'a>(cmds: &'a [String], img: &'a Path, fmt: &'a str) -> Vec<&'a str> {
    let mut a = vec!["-f", fmt];
    for c in cmds {
        a.push("-c");
        a.push(c);
    }
    a.push(s(img));
    a
}

/// blk's and qemu-img's raw conversions of `img` are the same bytes.
fn assert_reads_identically(img: &Path) {
    let dir = img.parent().unwrap();
    let (b, q) = (dir.join("blk.raw"), dir.join("qemu.raw"));
    blk_ok(&["convert", "-O", "raw", s(img), s(&b)]);
    qemu_img_ok(&["convert", "-O", "raw", s(img), s(&q)]);
    let (bb, qb) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
    assert_eq!(bb.len(), qb.len());
    assert!(
        bb == qb,
        "{}: blk reads other bytes than QEMU",
        img.display()
    );
}

/// QEMU checks `img` clean and finds it identical to `expect`; vhdiinfo
/// reads it.
fn assert_qemu_agrees(img: &Path, expect: &Path) {
    let out = qemu_img_ok(&["check", "-f", "vhdx", s(img)]);
    assert!(out.contains("No errors were found"), "{out}");
    let out = qemu_img_ok(&["compare", "-f", "vhdx", "-F", "raw", s(img), s(expect)]);
    assert!(out.contains("Images are identical"), "{out}");
    let o = Command::new("vhdiinfo")
        .arg(img)
        .output()
        .expect("vhdiinfo (libvhdi-utils) runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("VHDX"),
        "vhdiinfo: {text}"
    );
}

#[test]
fn qemu_written_vhdx_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (opts, size)) in [
        ("subformat=dynamic,block_size=1M", 7_340_032u64),
        ("subformat=dynamic", 20_000_256),
        (
            "subformat=dynamic,block_size=2M,block_state_zero=off",
            9_000_448,
        ),
        ("subformat=fixed,block_size=4M", 10_000_384),
        (
            "subformat=fixed,block_state_zero=off,block_size=1M",
            5_000_192,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("q{k}.vhdx"));
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "vhdx",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        let cmds = commands(k as u64 + 1, size);
        qemu_io_ok(&io_args(&cmds, &img, "vhdx"));
        assert_reads_identically(&img);
        let bi: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
        let qi: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
        for key in [
            "format",
            "virtual-size",
            "cluster-size",
            "format-specific",
            "dirty-flag",
        ] {
            assert_eq!(bi[key], qi[key], "{opts}: {key}");
        }
        let bc: serde_json::Value =
            serde_json::from_str(&blk_ok(&["check", "--output=json", s(&img)])).unwrap();
        let qc: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["check", "--output=json", s(&img)])).unwrap();
        assert_eq!(bc["check-errors"], qc["check-errors"]);
        assert_eq!(bc.get("corruptions"), qc.get("corruptions"));
    }
}

/// The bytes of `b` at `[at, at + len)`, zeroed in place (fields that are
/// random or derived from random fields).
fn blank(b: &mut [u8], at: usize, len: usize) {
    b[at..at + len].fill(0);
}

#[test]
fn blk_created_images_are_laid_out_as_qemu_img_lays_them_out() {
    let dir = tempfile::tempdir().unwrap();
    for (opts, size) in [
        ("subformat=dynamic", "5M"),
        ("subformat=dynamic,block_state_zero=off,log_size=2M", "3G"),
        ("subformat=fixed,block_size=2M", "7000000"),
        ("subformat=fixed,block_state_zero=off", "3000000"),
    ] {
        let b = dir.path().join("b.vhdx");
        let q = dir.path().join("q.vhdx");
        blk_ok(&["create", "-q", "-f", "vhdx", "-o", opts, s(&b), size]);
        qemu_img_ok(&["create", "-q", "-f", "vhdx", "-o", opts, s(&q), size]);
        let (mut bb, mut qb) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
        assert_eq!(bb.len(), qb.len(), "{opts}");
        for x in [&mut bb, &mut qb] {
            // Creator string, headers (sequence numbers, GUIDs, checksums).
            blank(x, 8, 512);
            for h in [64 << 10, 128 << 10] {
                blank(x, h + 4, 44);
            }
            // Page 83 data (random) in the metadata region.
            let md = u64::from_le_bytes(x[(192 << 10) + 64..(192 << 10) + 72].try_into().unwrap());
            blank(x, md as usize + (64 << 10) + 16, 16);
        }
        assert!(bb == qb, "{opts}: layouts differ");
        std::fs::remove_file(&b).unwrap();
        std::fs::remove_file(&q).unwrap();
    }
}

#[test]
fn blk_written_vhdx_passes_qemu_check_and_compares_identical() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (opts, size)) in [
        ("subformat=dynamic,block_size=1M", 9u64 << 20),
        ("subformat=dynamic", 12_000_256),
        (
            "subformat=dynamic,block_size=4M,block_state_zero=off",
            10_000_384,
        ),
        ("subformat=fixed,block_size=2M", 6_000_128),
        (
            "subformat=fixed,block_state_zero=off,block_size=1M",
            5_000_192,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("b{k}.vhdx"));
        let raw = dir.path().join(format!("b{k}.raw"));
        blk_ok(&[
            "create",
            "-q",
            "-f",
            "vhdx",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        blk_ok(&["create", "-q", "-f", "raw", s(&raw), &size.to_string()]);
        let cmds = commands(100 + k as u64, size);
        blk_ok(
            &["io"]
                .into_iter()
                .chain(io_args(&cmds, &img, "vhdx"))
                .collect::<Vec<_>>(),
        );
        // Discard keeps a vhdx image's data (as in QEMU): left out of the
        // expected content.
        let kept: Vec<String> = cmds
            .iter()
            .filter(|c| !c.starts_with("discard"))
            .cloned()
            .collect();
        qemu_io_ok(&io_args(&kept, &raw, "raw"));
        assert_qemu_agrees(&img, &raw);
        assert_reads_identically(&img);
        // QEMU goes on writing what blk wrote, and blk reads it.
        qemu_io_ok(&["-f", "vhdx", "-c", "write -P 0x77 1000000 2000000", s(&img)]);
        qemu_io_ok(&["-f", "raw", "-c", "write -P 0x77 1000000 2000000", s(&raw)]);
        assert_reads_identically(&img);
        let out = blk_ok(&["check", s(&img)]);
        assert!(out.contains("No errors were found"), "{out}");
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_vhdx_that_qemu_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let qcow2 = dir.path().join("src.qcow2");
    let size = 6u64 << 20;
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), &size.to_string()]);
    let cmds: Vec<String> = commands(7, size)
        .into_iter()
        .filter(|c| !c.starts_with("discard"))
        .collect();
    qemu_io_ok(&io_args(&cmds, &raw, "raw"));
    qemu_img_ok(&["convert", "-O", "qcow2", s(&raw), s(&qcow2)]);
    for (src, opts) in [
        (&raw, "subformat=dynamic,block_size=1M"),
        (&qcow2, "subformat=dynamic"),
        (&raw, "subformat=fixed,block_size=2M"),
        (&qcow2, "subformat=fixed,block_state_zero=off"),
    ] {
        let out = dir.path().join("out.vhdx");
        blk_ok(&["convert", "-O", "vhdx", "-o", opts, s(src), s(&out)]);
        assert_qemu_agrees(&out, &raw);
        assert_reads_identically(&out);
        std::fs::remove_file(&out).unwrap();
    }
}

/// Leaves a dirty log in `img` (made by QEMU, 1 MiB blocks): a new block
/// of `fill` bytes at the end of the file that only a log entry links in
/// as guest block `block`, as a crash between log write and apply leaves
/// it. The entry is made with blk's encoder; QEMU's replay checks it.
fn make_dirty_log(img: &Path, block: u64, fill: u8) {
    use blk_vhdx::guid::Guid;
    use blk_vhdx::header::{Header, HEADER_OFFSETS};
    let mut b = std::fs::read(img).unwrap();
    let data_at = (b.len() as u64).div_ceil(1 << 20) * (1 << 20);
    b.resize(data_at as usize, 0);
    b.extend(std::iter::repeat_n(fill, 1 << 20));
    let h0 = Header::decode(&b[64 << 10..68 << 10]).unwrap().unwrap();
    let h1 = Header::decode(&b[128 << 10..132 << 10]).unwrap().unwrap();
    let mut h = if h0.sequence > h1.sequence { h0 } else { h1 };
    let guid = Guid::random();
    h.log_guid = guid;
    h.sequence += 1;
    b[HEADER_OFFSETS[0] as usize..][..4096].copy_from_slice(&h.encode());
    h.sequence += 1;
    b[HEADER_OFFSETS[1] as usize..][..4096].copy_from_slice(&h.encode());
    // The BAT (1 MiB blocks, chunk ratio 4096: entry index = block).
    let bat = u64::from_le_bytes(b[(192 << 10) + 32..(192 << 10) + 40].try_into().unwrap());
    let entry_at = bat + block * 8;
    let sector_at = entry_at / 4096 * 4096;
    let mut sector = b[sector_at as usize..][..4096].to_vec();
    let k = (entry_at - sector_at) as usize;
    sector[k..k + 8].copy_from_slice(&(data_at | 6).to_le_bytes());
    let entry =
        blk_vhdx::log::encode_entry(5, guid, b.len() as u64, &[(sector_at, &sector)]).unwrap();
    let log_at = h.log_offset as usize;
    b[log_at..log_at + entry.len()].copy_from_slice(&entry);
    std::fs::write(img, &b).unwrap();
}

#[test]
fn a_dirty_log_is_replayed_as_qemu_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.vhdx");
    let q = dir.path().join("q.vhdx");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        s(&a),
        "8M",
    ]);
    qemu_io_ok(&["-f", "vhdx", "-c", "write -P 0x11 0 1M", s(&a)]);
    make_dirty_log(&a, 3, 0x5a);
    std::fs::copy(&a, &q).unwrap();
    // Read-only opens refuse, in both tools.
    let o = blk(&["info", s(&a)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("log that needs to be replayed"), "{err}");
    assert!(!qemu_img(&["info", "-f", "vhdx", s(&q)]).status.success());
    // A read-write open replays: blk's check -r all, QEMU's qemu-io.
    let o = blk(&["check", "-r", "all", s(&a)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 corruptions"));
    qemu_io_ok(&["-f", "vhdx", "-c", "read -P 0x5a 3M 1M", s(&q)]);
    // Both read the same guest data, and each reads the other's result.
    qemu_io_ok(&[
        "-f",
        "vhdx",
        "-c",
        "read -P 0x5a 3M 1M",
        "-c",
        "read -P 0x11 0 1M",
        s(&a),
    ]);
    let out = qemu_img_ok(&["compare", "-f", "vhdx", "-F", "vhdx", s(&a), s(&q)]);
    assert!(out.contains("Images are identical"), "{out}");
    assert_reads_identically(&q);
    assert_reads_identically(&a);
    let out = qemu_img_ok(&["check", "-f", "vhdx", s(&a)]);
    assert!(out.contains("No errors were found"), "{out}");
}

/// Writes `bytes` at `at` of a copy of `good` and reseals the checksum of
/// the structure `[start, start + len)` (checksum at `start + 4`) when
/// `reseal`.
fn damaged(good: &[u8], at: usize, bytes: &[u8], seal: Option<(usize, usize)>) -> Vec<u8> {
    let mut b = good.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    if let Some((start, len)) = seal {
        blk_vhdx::header::seal(&mut b[start..start + len], 4);
    }
    b
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("h.vhdx");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        s(&img),
        "4M",
    ]);
    qemu_io_ok(&["-f", "vhdx", "-c", "write -P 3 0 1M", s(&img)]);
    let good = std::fs::read(&img).unwrap();
    let (h1, h2, rt) = (64 << 10, 128 << 10, 192 << 10);
    let hseal = |h: usize| Some((h, 4096));
    let rseal = Some((rt, 64 << 10));
    let md = u64::from_le_bytes(good[rt + 64..rt + 72].try_into().unwrap()) as usize;
    let item0 = md + 32; // the file parameters entry
    let fp = md + (64 << 10); // its value
    let mdseal = None;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad CRC in both headers",
            {
                let b = damaged(&good, h1 + 8, &[0xff], None);
                damaged(&b, h2 + 8, &[0xff], None)
            },
            "No valid VHDX header",
        ),
        (
            "block size 0",
            damaged(&good, fp, &0u32.to_le_bytes(), mdseal),
            "block size",
        ),
        (
            "block size not a power of two",
            damaged(&good, fp, &(3u32 << 20).to_le_bytes(), mdseal),
            "block size",
        ),
        (
            "block size 512 MiB",
            damaged(&good, fp, &(512u32 << 20).to_le_bytes(), mdseal),
            "block size",
        ),
        (
            "region entries huge",
            damaged(&good, rt + 8, &u32::MAX.to_le_bytes(), rseal),
            "entries",
        ),
        (
            "BAT region past EOF",
            damaged(&good, rt + 32, &(1u64 << 40).to_le_bytes(), rseal),
            "past the end",
        ),
        (
            "BAT region too small",
            {
                // A 64 TiB disk in 1 MiB blocks needs far more than the 1 MiB region.
                damaged(
                    &good,
                    md + (64 << 10) + 8,
                    &(64u64 << 40).to_le_bytes(),
                    mdseal,
                )
            },
            "too small",
        ),
        (
            "metadata item out of region",
            damaged(&good, item0 + 16, &(2u32 << 20).to_le_bytes(), mdseal),
            "outside the metadata region",
        ),
        (
            "log length huge",
            {
                let b = damaged(&good, h1 + 68, &0xfff0_0000u32.to_le_bytes(), hseal(h1));
                damaged(&b, h2 + 68, &0xfff0_0000u32.to_le_bytes(), hseal(h2))
            },
            "log",
        ),
        (
            "log overlapping the BAT",
            {
                let bat = good[rt + 32..rt + 40].to_vec();
                let b = damaged(&good, h1 + 72, &bat, hseal(h1));
                damaged(&b, h2 + 72, &bat, hseal(h2))
            },
            "overlaps",
        ),
        (
            "BAT entry past EOF",
            {
                let bat = u64::from_le_bytes(good[rt + 32..rt + 40].try_into().unwrap()) as usize;
                damaged(&good, bat, &((1u64 << 40) | 6).to_le_bytes(), None)
            },
            "points after end of file",
        ),
    ];
    for (what, bytes, words) in cases {
        std::fs::write(&img, &bytes).unwrap();
        for args in [
            vec!["info", s(&img)],
            vec!["io", "-c", "read 0 512", s(&img)],
        ] {
            let o = blk(&args);
            assert_eq!(o.status.code(), Some(1), "{what}: {args:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(words), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
        assert!(std::fs::read(&img).unwrap() == bytes, "{what}: unchanged");
    }
}

#[test]
fn blk_check_reports_a_truncated_image_as_qemu_does() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("t.vhdx");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        s(&img),
        "4M",
    ]);
    qemu_io_ok(&["-f", "vhdx", "-c", "write -P 3 0 2M", s(&img)]);
    let len = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(len - (1 << 20) - 4096)
        .unwrap();
    let q = qemu_img(&["check", "-f", "vhdx", s(&img)]);
    let o = blk(&["check", s(&img)]);
    assert_eq!(o.status.code(), q.status.code());
    let (qe, be) = (
        String::from_utf8_lossy(&q.stderr),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(qe.contains("points after end of file"), "qemu: {qe}");
    assert!(be.contains("points after end of file"), "blk: {be}");
}

#[test]
fn blocks_past_the_first_chunk_skip_its_sector_bitmap_entry() {
    // 1 MiB blocks of 512-byte sectors: a chunk is 4096 blocks (4 GiB),
    // and BAT entry 4096 is the chunk's sector bitmap entry.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.vhdx");
    let b = dir.path().join("b.vhdx");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        s(&q),
        "10G",
    ]);
    blk_ok(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        s(&b),
        "10G",
    ]);
    let writes = [
        (4095u64 << 20, 0x41),
        (4096 << 20, 0x42),
        ((8193 << 20) + 12345, 0x43),
    ];
    let cmds: Vec<String> = writes
        .iter()
        .map(|(o, p)| format!("write -P {p} {o} 65536"))
        .collect();
    let reads: Vec<String> = writes
        .iter()
        .map(|(o, p)| format!("read -P {p} {o} 65536"))
        .collect();
    qemu_io_ok(&io_args(&cmds, &q, "vhdx"));
    blk_ok(
        &["io"]
            .into_iter()
            .chain(io_args(&cmds, &b, "vhdx"))
            .collect::<Vec<_>>(),
    );
    // Each reads what the other wrote.
    qemu_io_ok(&io_args(&reads, &b, "vhdx"));
    let out = blk_ok(
        &["io"]
            .into_iter()
            .chain(io_args(&reads, &q, "vhdx"))
            .collect::<Vec<_>>(),
    );
    assert!(!out.contains("verification failed"), "{out}");
    let out = qemu_img_ok(&["compare", "-f", "vhdx", "-F", "vhdx", s(&q), s(&b)]);
    assert!(out.contains("Images are identical"), "{out}");
    let out = qemu_img_ok(&["check", "-f", "vhdx", s(&b)]);
    assert!(out.contains("No errors were found"), "{out}");
    // blk left the sector bitmap entry alone and linked block 4096 after it.
    let img = std::fs::read(&b).unwrap();
    let bat = u64::from_le_bytes(img[(192 << 10) + 32..(192 << 10) + 40].try_into().unwrap());
    let entry = |i: u64| u64::from_le_bytes(img[(bat + 8 * i) as usize..][..8].try_into().unwrap());
    assert_eq!(entry(4096), 0);
    assert_eq!(entry(4097) & 7, 6);
}
