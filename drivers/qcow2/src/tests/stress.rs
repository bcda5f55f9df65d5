//! Concurrency stress: many threads write, zero, discard and read disjoint
//! cluster-aligned chunks of one image (striped, so they share L2 tables
//! and refcount blocks) with tiny metadata caches (so tables are evicted
//! and reloaded all the time); every thread checks its chunks against a
//! shadow copy while the others run, and the whole image is checked at the
//! end (through this driver and through qemu-img).

use super::*;
use block_core::ZeroFlags;
use std::sync::Barrier;

thread_local! {
    /// When set, the next table load on this thread meets this barrier
    /// twice between its disk read and its cache insertion.
    static PAUSE_LOADS: std::cell::RefCell<Option<Arc<Barrier>>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by the L2 table loader between reading a table from disk and
/// putting it into the cache: on a thread with a pause barrier, signals
/// "loaded" and waits for "go", so a test can interleave other operations.
pub(crate) fn widen_load_window() {
    // One pause per barrier: a reload after a refused insertion runs on.
    if let Some(b) = PAUSE_LOADS.with(|p| p.borrow_mut().take()) {
        b.wait();
        b.wait();
    }
}

/// One stress configuration.
struct Cfg {
    create: &'static str,
    size: u64,
    /// Open options (cache sizes).
    open: &'static [(&'static str, &'static str)],
    threads: usize,
    ops: usize,
    /// Chunk size in clusters (each thread owns every `threads`-th chunk).
    chunk_clusters: u64,
    /// Write a backing file with this seed first (its content is the
    /// initial shadow).
    backing: bool,
    seed: u64,
}

fn open_with(path: &str, opts: &[(&str, &str)]) -> super::Node {
    let mut r = OpenRequest::new(path, OpenFlags::NONE);
    r.options = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    super::node_of(
        crate::open::open(&r, Arc::new(TestHost)).unwrap(),
        OpenFlags::NONE,
    )
}

fn stress(cfg: &Cfg) {
    let dir = Scratch::new();
    let img = dir.path("stress.qcow2");
    let mut initial = vec![0u8; cfg.size as usize];
    if cfg.backing {
        let base = dir.path("base.raw");
        let mut r = Rng(cfg.seed ^ 0x5555);
        initial = r.bytes(cfg.size as usize);
        std::fs::write(&base, &initial).unwrap();
        create(
            &img,
            &format!(
                "{},size={},backing_file={base},backing_fmt=raw",
                cfg.create, cfg.size
            ),
        )
        .unwrap();
    } else {
        create(&img, &format!("{},size={}", cfg.create, cfg.size)).unwrap();
    }
    let n = open_with(&img, cfg.open);
    let cs = n.geo().cs();
    let chunk = cfg.chunk_clusters * cs;
    let nchunks = cfg.size / chunk;
    let v3 = n.geo().version >= 3;
    let shadows: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let n = &n;
                let initial = &initial;
                sc.spawn(move || {
                    let mine: Vec<u64> = (0..nchunks)
                        .filter(|c| *c as usize % cfg.threads == t)
                        .collect();
                    let mut sh = initial.clone();
                    let mut r = Rng(cfg.seed.wrapping_mul(31).wrapping_add(t as u64 + 1));
                    for op in 0..cfg.ops {
                        let c = mine[r.below(mine.len() as u64) as usize] * chunk;
                        let off = c + r.below(chunk);
                        let len = 1 + r.below(c + chunk - off);
                        let (o, l) = (off as usize, len as usize);
                        match r.below(16) {
                            0..=8 => {
                                let d = r.bytes(l);
                                n.write_at(off, &d).unwrap();
                                sh[o..o + l].copy_from_slice(&d);
                            }
                            9..=10 => {
                                let f = if r.below(2) == 0 {
                                    ZeroFlags::MAY_UNMAP
                                } else {
                                    ZeroFlags::NONE
                                };
                                n.write_zeroes(off, len, f).unwrap();
                                sh[o..o + l].fill(0);
                            }
                            11 if v3 => {
                                // Whole clusters: reads as zeros afterwards
                                // (v3 makes them zero clusters).
                                let a = off - off % cs;
                                let k = 1 + r.below((c + chunk - a) / cs);
                                n.discard(a, k * cs).unwrap();
                                sh[a as usize..(a + k * cs) as usize].fill(0);
                            }
                            12 if t == 0 && op % 8 == 0 => n.flush().unwrap(),
                            _ => {
                                let mut b = vec![0u8; chunk as usize];
                                n.read_at(c, &mut b).unwrap();
                                assert!(
                                    b[..] == sh[c as usize..(c + chunk) as usize],
                                    "thread {t} op {op}: chunk at {c:#x} differs from its shadow"
                                );
                            }
                        }
                    }
                    sh
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut expect = initial.clone();
    for c in 0..nchunks {
        let t = c as usize % cfg.threads;
        let r = (c * chunk) as usize..((c + 1) * chunk) as usize;
        expect[r.clone()].copy_from_slice(&shadows[t][r]);
    }
    let got = read_all(&n);
    for c in 0..nchunks {
        let r = (c * chunk) as usize..((c + 1) * chunk) as usize;
        assert!(
            got[r.clone()] == expect[r],
            "chunk {c} differs after the run"
        );
    }
    n.flush().unwrap();
    drop(n);
    assert_clean(&img);
    let fmt = "qcow2";
    assert!(raw_of(&img, fmt) == expect, "qemu-img reads other data");
}

const TINY_CACHE: &[(&str, &str)] = &[("l2-cache-size", "2k"), ("refcount-cache-size", "2k")];

#[test]
fn stress_small_clusters_tiny_cache() {
    for seed in 1..=4 {
        stress(&Cfg {
            create: "cluster_size=512",
            size: 2 << 20,
            open: TINY_CACHE,
            threads: 8,
            ops: 400,
            chunk_clusters: 3,
            backing: false,
            seed,
        });
    }
}

#[test]
fn stress_narrow_refcounts_with_backing() {
    for seed in 1..=2 {
        stress(&Cfg {
            create: "cluster_size=512,refcount_bits=1",
            size: 1 << 20,
            open: TINY_CACHE,
            threads: 8,
            ops: 300,
            chunk_clusters: 2,
            backing: true,
            seed,
        });
    }
}

#[test]
fn stress_extended_l2() {
    for seed in 1..=2 {
        stress(&Cfg {
            create: "cluster_size=16k,extended_l2=on",
            size: 4 << 20,
            open: &[("l2-cache-size", "64k"), ("refcount-cache-size", "64k")],
            threads: 8,
            ops: 300,
            chunk_clusters: 1,
            backing: seed == 2,
            seed,
        });
    }
}

#[test]
fn stress_default_cache_v2() {
    stress(&Cfg {
        create: "cluster_size=1k,compat=0.10",
        size: 2 << 20,
        open: &[],
        threads: 8,
        ops: 300,
        chunk_clusters: 2,
        backing: false,
        seed: 9,
    });
}

/// Readers load L2 tables without the allocation mutex. A load that
/// read a table from disk, while a writer modified and wrote back the same
/// table and a third request evicted it, must not put its stale copy into
/// the cache: that lost the writer's allocation (reads returned old data,
/// the next allocation in the table wrote the stale table back and leaked
/// the cluster). The interleaving is forced with the load hook.
#[test]
fn stale_table_load_after_eviction() {
    let dir = Scratch::new();
    let img = dir.path("stale.qcow2");
    create(&img, "cluster_size=512,size=1M").unwrap();
    // 64 entries per L2 table: table k maps guest bytes [k*32K, (k+1)*32K).
    let tbl = 32u64 << 10;
    let n = open_with(&img, TINY_CACHE);
    let a = vec![0xaa; 512];
    n.write_at(0, &a).unwrap();
    let touch = |n: &super::Node, ks: std::ops::RangeInclusive<u64>| {
        let mut b = [0u8; 1];
        for k in ks {
            n.read_at(k * tbl, &mut b).unwrap();
        }
    };
    for k in 1..=8u64 {
        n.write_at(k * tbl, &[k as u8; 512]).unwrap();
    }
    n.flush().unwrap();
    touch(&n, 1..=8); // table 0 is evicted (the cache holds 4 tables)
    let b = vec![0xbb; 512];
    std::thread::scope(|sc| {
        let n = &n;
        let paused_read = |off: u64, bar: Arc<Barrier>| {
            move || {
                PAUSE_LOADS.with(|p| *p.borrow_mut() = Some(bar));
                let mut got = vec![0u8; 512];
                n.read_at(off, &mut got).unwrap();
                got
            }
        };
        let b1 = Arc::new(Barrier::new(2));
        let b3 = Arc::new(Barrier::new(2));
        // Reader 1 reads table 0 from disk and stops.
        let r1 = sc.spawn(paused_read(0, b1.clone()));
        b1.wait();
        // Reader 3 reads table 1 (evicted too) and stops.
        let r3 = sc.spawn(paused_read(tbl, b3.clone()));
        b3.wait();
        // An allocation in table 0 (loaded and changed in the cache) ...
        n.write_at(512, &b).unwrap();
        // ... which becomes the least recently used table ...
        touch(n, 6..=8);
        // ... and is written back: the writeback marks it clean and then
        // waits for the readers (it needs the metadata write lock).
        let fl = sc.spawn(|| n.flush().unwrap());
        while n.l2.dirty_count() != 0 && !fl.is_finished() {
            std::thread::yield_now();
        }
        // Reader 3 inserts its table: table 0 is evicted.
        b3.wait();
        assert_eq!(r3.join().unwrap(), vec![1u8; 512]);
        // Reader 1 inserts the table 0 it read before the allocation.
        b1.wait();
        assert_eq!(r1.join().unwrap(), a);
        fl.join().unwrap();
    });
    let mut got = vec![0u8; 512];
    n.read_at(512, &mut got).unwrap();
    assert_eq!(got, b, "an allocation was lost to a stale table");
    n.write_at(1024, &[0xcc; 512]).unwrap();
    n.flush().unwrap();
    drop(n);
    assert_clean(&img);
    let raw = raw_of(&img, "qcow2");
    assert_eq!(&raw[..512], &a[..]);
    assert_eq!(&raw[512..1024], &b[..]);
    assert!(raw[1024..1536].iter().all(|&x| x == 0xcc));
}
