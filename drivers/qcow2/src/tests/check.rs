//! check() counts like `qemu-img check` and repairs what it reports.

use super::*;
use block_core::prelude::*;
use block_core::CheckMode;

fn compare_with_qemu(img: &str) -> block_core::CheckReport {
    let q = qemu_check(img);
    let n = open(img, OpenFlags::READ_ONLY.with(OpenFlags::CHECK));
    let r = n.check(CheckMode::REPORT).unwrap();
    let g = |k: &str| q.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(r.corruptions, g("corruptions"), "corruptions: {q}");
    assert_eq!(r.leaks, g("leaks"), "leaks: {q}");
    assert_eq!(r.check_errors, g("check-errors"), "errors: {q}");
    assert_eq!(
        r.image_end_offset,
        q["image-end-offset"].as_u64(),
        "end: {q}"
    );
    assert_eq!(r.total_clusters, q["total-clusters"].as_u64(), "{q}");
    assert_eq!(
        r.allocated_clusters,
        q["allocated-clusters"].as_u64(),
        "{q}"
    );
    assert_eq!(
        r.fragmented_clusters,
        q["fragmented-clusters"].as_u64(),
        "{q}"
    );
    assert_eq!(
        r.compressed_clusters,
        q["compressed-clusters"].as_u64(),
        "{q}"
    );
    r
}

fn l2_of(img: &str, l1_index: u64) -> u64 {
    let b = peek(img, 0x30000 + 8 * l1_index, 8);
    u64::from_be_bytes(b.try_into().unwrap()) & crate::layout::mapping::L1E_OFFSET_MASK
}

fn base_image(s: &Scratch) -> String {
    let img = s.path("c.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "4M"]);
    qemu_io(
        &img,
        &[
            "write -P 1 0 256k",
            "write -P 2 1M 64k",
            "write -P 3 512k 64k",
            "write -c -P 4 2M 64k",
            "write -c -P 5 3M 64k",
            "write -z 3200k 64k",
        ],
    );
    img
}

#[test]
fn clean_image_same_numbers() {
    let s = Scratch::new();
    let img = base_image(&s);
    let r = compare_with_qemu(&img);
    assert_eq!(r.corruptions + r.leaks, 0);
    assert!(r.fragmented_clusters.unwrap() > 0);
}

fn repair_matches(img: &str, expect_fix: bool) {
    let before = raw_of(img, "qcow2");
    let copy = format!("{img}.q");
    std::fs::copy(img, &copy).unwrap();
    let n = open(img, OpenFlags::CHECK);
    let r = n.check(CheckMode::FIX_ALL).unwrap();
    assert!(
        !expect_fix || r.corruptions_fixed + r.leaks_fixed > 0,
        "{r:?}"
    );
    drop(n);
    assert_clean(img);
    // qemu's own repair gives the same content.
    let _ = Command::new("qemu-img")
        .args(["check", "-q", "-r", "all", &copy])
        .output();
    assert!(raw_of(img, "qcow2") == raw_of(&copy, "qcow2"));
    let _ = before;
}

#[test]
fn leak_counted_and_repaired() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    // Drop the reference of guest cluster 3: its host cluster leaks.
    poke(&img, l2 + 3 * 8, &[0u8; 8]);
    let r = compare_with_qemu(&img);
    assert_eq!(r.leaks, 1);
    let n = open(&img, OpenFlags::CHECK);
    let r = n.check(CheckMode::FIX_LEAKS).unwrap();
    assert_eq!(r.leaks_fixed, 1);
    drop(n);
    assert_clean(&img);
}

#[test]
fn corruptions_counted_and_repaired() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    // Guest cluster 1 now shares host cluster of guest cluster 0.
    let e0 = peek(&img, l2, 8);
    poke(&img, l2 + 8, &e0);
    // A refcount dropped to zero for the L2 table.
    let rb = 0x20000u64;
    poke(&img, rb + 2 * (l2 / 65536), &[0, 0]);
    let r = compare_with_qemu(&img);
    assert!(r.corruptions >= 2, "{r:?}");
    repair_matches(&img, true);
}

#[test]
fn reserved_bits_and_copied_flags() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    let mut e = peek(&img, l2 + 16, 8);
    e[0] &= 0x7f; // clear COPIED
    e[7] |= 0x02; // reserved bit
    poke(&img, l2 + 16, &e);
    let r = compare_with_qemu(&img);
    assert_eq!(r.corruptions, 2);
}

#[test]
fn snapshot_images_same_numbers() {
    let s = Scratch::new();
    let img = base_image(&s);
    qemu_img(&["snapshot", "-c", "one", &img]);
    qemu_io(&img, &["write -P 9 0 100k", "write -c -P 8 2560k 64k"]);
    qemu_img(&["snapshot", "-c", "two", &img]);
    compare_with_qemu(&img);
    let l2 = l2_of(&img, 0);
    poke(&img, l2 + 5 * 8, &[0x80, 0, 0, 0, 0, 0x0f, 0, 0]);
    compare_with_qemu(&img);
}

#[test]
fn small_clusters_and_narrow_refcounts() {
    let s = Scratch::new();
    let img = s.path("n.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512,refcount_bits=2",
        &img,
        "1M",
    ]);
    qemu_io(
        &img,
        &[
            "write -P 1 0 300k",
            "write -c -P 2 512k 4k",
            "write -P 3 700k 1k",
        ],
    );
    compare_with_qemu(&img);
}

#[test]
fn repair_never_writes_through_a_refcount_block_in_data() {
    let s = Scratch::new();
    let img = s.path("rb.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 7 0 64k"]);
    // Point refcount table entry 0 at the data cluster of guest offset 0.
    let data = {
        let n = open(&img, OpenFlags::READ_ONLY);
        let m = n.meta_read();
        let lk = n.lookup(&m, 0).unwrap();
        (
            lk.entry & crate::layout::mapping::L2E_OFFSET_MASK,
            m.h.refcount_table_offset,
        )
    };
    poke(&img, data.1, &data.0.to_be_bytes());
    let before = std::fs::read(&img).unwrap();
    let n = open(&img, OpenFlags::CHECK);
    // Report only: the block is shared with data, the structure must be
    // rebuilt; `-r leaks` cannot do that and fails (as qemu-img does).
    let r = n.check(CheckMode::REPORT).unwrap();
    assert!(r.corruptions > 0, "{r:?}");
    assert!(n.check(CheckMode::FIX_LEAKS).is_err());
    assert_eq!(std::fs::read(&img).unwrap(), before);
    // `-r all` rebuilds the structure elsewhere, leaving the data alone.
    let r = n.check(CheckMode::FIX_ALL).unwrap();
    assert_eq!((r.corruptions, r.check_errors), (0, 0), "{r:?}");
    drop(n);
    let after = std::fs::read(&img).unwrap();
    let d = data.0 as usize;
    assert_eq!(before[d..d + 65536], after[d..d + 65536]);
    let n = open(&img, OpenFlags::CHECK);
    let r = n.check(CheckMode::REPORT).unwrap();
    assert_eq!((r.corruptions, r.leaks, r.check_errors), (0, 0, 0), "{r:?}");
}

/// A lazy-refcounts writer killed after the L2 tables of a writeback are
/// on disk but before the refcount table is: the L2 tables reference data
/// in a range that no refcount block covers on disk (the block the writer
/// placed for it exists only in its memory), and the first cluster of that
/// range holds guest data. The stale on-disk refcounts call that cluster
/// free; the repair on open must place the missing refcount block only
/// where its own computed references show a free cluster.
#[test]
fn lazy_repair_places_new_refcount_blocks_only_in_free_clusters() {
    let s = Scratch::new();
    let img = s.path("lz.qcow2");
    create(&img, "size=64M,lazy_refcounts=on,cluster_size=4096").unwrap();
    // 4 KiB clusters, 16-bit refcounts: one block covers 2048 clusters
    // (8 MiB of the file). The L2 tables first (one per 2 MiB of guest
    // data), flushed, so that the later writes only fill existing tables.
    let n = open(&img, OpenFlags::NONE);
    let mut expect = vec![0u8; 64 << 20];
    let mut rng = Rng(11);
    for l2 in 0..8u64 {
        let d = rng.bytes(4096);
        n.write_at(l2 << 21, &d).unwrap();
        patch(&mut expect, l2 << 21, &d);
    }
    n.flush().unwrap();
    // Then single-cluster writes until the data runs past the range of
    // refcount block 0.
    for k in 0..2200u64 {
        let off = (k * 4096 * 3) % (16 << 20) + 4096;
        let d = rng.bytes(4096);
        n.write_at(off, &d).unwrap();
        patch(&mut expect, off, &d);
    }
    n.flush().unwrap();
    std::mem::forget(n);
    let rt = u64::from_be_bytes(peek(&img, 48, 8).try_into().unwrap());
    let rte1 = u64::from_be_bytes(peek(&img, rt + 8, 8).try_into().unwrap());
    assert_ne!(rte1, 0, "the writer needed a second refcount block");
    // The state after a kill between writeback steps 2 and 3: refcount
    // table entry 1 never reached the disk.
    poke(&img, rt + 8, &[0u8; 8]);
    let n = open(&img, OpenFlags::NONE);
    assert!(!n.info().unwrap().dirty_flag);
    assert!(read_all(&n) == expect, "guest data changed by the repair");
    drop(n);
    assert_clean(&img);
    assert!(raw_of(&img, "qcow2") == expect);
}

/// The same kill with a refcount table that had to grow: the header on
/// disk still names the old, smaller table, and the L2 tables reference
/// data past everything it covers. The repair must move the table (and
/// add blocks) only into clusters nothing references.
#[test]
fn lazy_repair_grows_the_refcount_table_only_into_free_clusters() {
    let s = Scratch::new();
    let img = s.path("lg.qcow2");
    // 512-byte clusters: a block covers 128 KiB of the file, the
    // one-cluster refcount table 8 MiB.
    create(&img, "size=16M,lazy_refcounts=on,cluster_size=512").unwrap();
    let n = open(&img, OpenFlags::NONE);
    let mut expect = vec![0u8; 16 << 20];
    let mut rng = Rng(12);
    let chunks = 300u64; // of 32 KiB, one L2 table each
    for c in 0..chunks {
        let d = rng.bytes(512);
        n.write_at(c << 15, &d).unwrap();
        patch(&mut expect, c << 15, &d);
    }
    n.flush().unwrap();
    let hdr = peek(&img, 48, 12);
    for c in 0..chunks {
        let d = rng.bytes((32 << 10) - 512);
        n.write_at((c << 15) + 512, &d).unwrap();
        patch(&mut expect, (c << 15) + 512, &d);
    }
    n.flush().unwrap();
    std::mem::forget(n);
    assert_ne!(
        peek(&img, 48, 12),
        hdr,
        "the writer moved the refcount table"
    );
    // Killed before the header write: the old table is still named.
    poke(&img, 48, &hdr);
    let n = open(&img, OpenFlags::NONE);
    assert!(!n.info().unwrap().dirty_flag);
    assert!(read_all(&n) == expect, "guest data changed by the repair");
    drop(n);
    assert_clean(&img);
    assert!(raw_of(&img, "qcow2") == expect);
}

/// A file node that stops writing after a budget of writes, like a killed
/// process: what was written stays, nothing after it reaches the file.
struct CrashFile {
    inner: Arc<dyn BlockNode>,
    budget: Arc<std::sync::atomic::AtomicI64>,
}

impl BlockNode for CrashFile {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        f: block_core::ReqFlags,
    ) -> Result<()> {
        self.inner.read_vectored(offset, bufs, f)
    }
    fn write_vectored(
        &self,
        offset: u64,
        bufs: &[IoSlice<'_>],
        f: block_core::ReqFlags,
    ) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(BlockError::io("write", "killed"));
        }
        self.inner.write_vectored(offset, bufs, f)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn length(&self) -> Result<u64> {
        self.inner.length()
    }
    fn info(&self) -> Result<NodeInfo> {
        self.inner.info()
    }
    fn truncate(&self, size: u64, p: Preallocation) -> Result<()> {
        if self.budget.load(Ordering::SeqCst) <= 0 {
            return Err(BlockError::io("truncate", "killed"));
        }
        self.inner.truncate(size, p)
    }
    fn discard(&self, off: u64, len: u64) -> Result<()> {
        self.inner.discard(off, len)
    }
    fn allocated_size(&self) -> Result<u64> {
        self.inner.allocated_size()
    }
}

struct CrashHost(Arc<std::sync::atomic::AtomicI64>);

impl HostServices for CrashHost {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        Ok(Arc::new(CrashFile {
            inner: TestHost.open_child(req)?,
            budget: self.0.clone(),
        }))
    }
    fn create_file(&self, filename: &str, size: u64, p: Preallocation) -> Result<()> {
        TestHost.create_file(filename, size, p)
    }
}

/// A writer whose data crosses into the range of a new refcount block is
/// "killed" after every possible number of writes: the image must never
/// be corrupt (leaks are fine). The refcount table was written with the
/// L1 table, after the L2 tables: a kill between them left the clusters
/// of the new range that the L2 tables referenced at refcount 0.
#[test]
fn killed_at_every_write_while_crossing_a_refcount_block_range() {
    killed_at_every_write(false);
}

/// The same with lazy refcounts: after every kill the repair on open
/// leaves a clean image (it placed the missing refcount block on the
/// guest data at the start of the new range).
#[test]
fn lazy_killed_at_every_write_is_repaired_on_open() {
    killed_at_every_write(true);
}

fn killed_at_every_write(lazy: bool) {
    let s = Scratch::new();
    let base = s.path("base.qcow2");
    let opts = if lazy {
        "size=64M,cluster_size=4096,lazy_refcounts=on"
    } else {
        "size=64M,cluster_size=4096"
    };
    create(&base, opts).unwrap();
    // Host clusters 0..~2040 used: the next allocations cross cluster
    // 2048, the first of refcount block 1's range.
    let n = open(&base, OpenFlags::NONE);
    n.write_at(0, &Rng(5).bytes((8 << 20) - (64 << 10)))
        .unwrap();
    drop(n);
    let work = |img: &str, budget: i64| -> i64 {
        let b = Arc::new(std::sync::atomic::AtomicI64::new(budget));
        let req = OpenRequest::new(img, OpenFlags::NONE);
        let n = super::node_of(
            crate::open::open(&req, Arc::new(CrashHost(b.clone()))).unwrap(),
            OpenFlags::NONE,
        );
        let mut rng = Rng(6);
        let _ = (|| -> Result<()> {
            for i in 0..30u64 {
                n.write_at((9 << 20) + i * 20480, &rng.bytes(4096))?;
                if i % 8 == 7 {
                    n.flush()?;
                }
            }
            n.flush()
        })();
        let used = budget - b.load(Ordering::SeqCst);
        std::mem::forget(n);
        used
    };
    let img = s.path("crash.qcow2");
    std::fs::copy(&base, &img).unwrap();
    let total = work(&img, i64::MAX / 2);
    assert!(total > 30, "{total} writes");
    for k in 0..total {
        std::fs::copy(&base, &img).unwrap();
        work(&img, k);
        if lazy {
            if let Err(e) = try_open(&img, OpenFlags::NONE) {
                panic!("killed after {k} of {total} writes: {e}");
            }
            assert_clean(&img);
            continue;
        }
        let v = qemu_check(&img);
        let c = v.get("corruptions").and_then(|x| x.as_u64()).unwrap_or(0);
        assert_eq!(c, 0, "killed after {k} of {total} writes: {v}");
    }
}
