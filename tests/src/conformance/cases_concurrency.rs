//! Concurrent use of one open image from many threads.

use super::util::{compare, e2s, read_all};
use super::Target;
use rand::Rng;
use std::sync::Barrier;

/// How many threads share the image.
const THREADS: u64 = 8;
/// Writes (each read back) per thread.
const WRITES_PER_THREAD: usize = 24;

/// `THREADS` threads, started together, each make seeded writes to its own
/// region of one open image and read each back while the others write;
/// afterwards every region holds exactly its thread's data. A driver with
/// shared per-request state (a seek position, a scratch buffer) mixes the
/// threads' data up.
pub(super) fn concurrent_writers(t: &Target) -> Result<(), String> {
    let img = t.open(false)?;
    let len = img.length().map_err(e2s)?;
    let region = len / THREADS;
    let start = Barrier::new(THREADS as usize);
    let results: Vec<Result<Vec<u8>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (img, start) = (&img, &start);
                sc.spawn(move || -> Result<Vec<u8>, String> {
                    // First, so that no thread can fail before the barrier.
                    start.wait();
                    let mut shadow = vec![0u8; region as usize];
                    let base = i * region;
                    img.read(base, &mut shadow).map_err(e2s)?;
                    let mut r = crate::rng(t.seed * 10 + i);
                    for _ in 0..WRITES_PER_THREAD {
                        let size = r.gen_range(1..70_000u64).min(region);
                        let off = r.gen_range(0..=region - size);
                        let mut data = vec![0u8; size as usize];
                        r.fill(&mut data[..]);
                        img.write(base + off, &data).map_err(e2s)?;
                        shadow[off as usize..(off + size) as usize].copy_from_slice(&data);
                        // Readers run concurrently with the other writers.
                        let mut back = vec![0u8; size as usize];
                        img.read(base + off, &mut back).map_err(e2s)?;
                        compare(
                            &format!("thread {i}: read-back at {}", base + off),
                            &back,
                            &data,
                        )?;
                    }
                    Ok(shadow)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect()
    });
    let all = read_all(&img)?;
    for (i, r) in results.into_iter().enumerate() {
        let shadow = r?;
        let base = i * region as usize;
        compare(
            &format!("region of thread {i} after all threads finished"),
            &all[base..base + region as usize],
            &shadow,
        )?;
    }
    Ok(())
}
