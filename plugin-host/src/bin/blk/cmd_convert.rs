//! `blk convert`: qemu-img convert. Copies allocated data only, keeps holes
//! sparse (block status plus zero detection with `-S`), flattens backing
//! chains unless `-B`, concatenates several sources, runs `-m` workers.

use crate::common::{errno_of, CliError, CliResult, Globals};
use crate::human::strerror;
use crate::snapshot_src::{open_snapshot, parse_snapshot_param};
use block_core::{DriverCaps, ExtentFlags, OptionValues, ReqFlags, ZeroFlags};
use clap::Args;
use plugin_host::{Image, OpenOptions};
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The unit of work of one worker (qemu-img's 2 MiB buffer).
const CHUNK: u64 = 2 << 20;

/// Arguments of `blk convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Target image format.
    #[arg(short = 'O', long = "target-format", default_value = "raw")]
    out_format: String,
    /// Target create options `k=v,...` (repeatable).
    #[arg(short = 'o', long = "options")]
    options: Vec<String>,
    /// Show progress.
    #[arg(short = 'p', long = "progress")]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Do not create the target (it must exist).
    #[arg(short = 'n')]
    no_create: bool,
    /// Write compressed clusters.
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// Minimum run of zero bytes kept sparse (default 4k; 0 = fully allocate).
    #[arg(short = 'S', long = "sparse-size", allow_hyphen_values = true)]
    sparse: Option<String>,
    /// Parallel workers (1..16, default 8).
    #[arg(short = 'm', long = "num-coroutines")]
    workers: Option<String>,
    /// Allow out-of-order writes (always the case here).
    #[arg(short = 'W')]
    out_of_order: bool,
    /// Target backing file (the source chain is not flattened).
    #[arg(short = 'B', long = "backing")]
    backing: Option<String>,
    /// Target backing file format.
    #[arg(short = 'F', long = "backing-format")]
    backing_format: Option<String>,
    /// The target reads as zeros already (needs -n).
    #[arg(long = "target-is-zero")]
    target_is_zero: bool,
    /// Source snapshot (`snapshot.name=NAME`, `snapshot.id=ID` or an ID or
    /// name).
    #[arg(short = 'l')]
    snapshot: Option<String>,
    /// Share the sources with other processes.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Cache mode of the target (accepted, no effect).
    #[arg(short = 't')]
    cache: Option<String>,
    /// Cache mode of the sources (accepted, no effect).
    #[arg(short = 'T')]
    src_cache: Option<String>,
    /// Enable copy offloading (accepted, no effect).
    #[arg(short = 'C')]
    copy_offload: bool,
    /// Keep going past read errors of the sources (unreadable sectors are
    /// written as zeroes, with a warning each).
    #[arg(long = "salvage")]
    salvage: bool,
    /// Limit the copy to RATE bytes per second (k/M/G suffixes).
    #[arg(short = 'r', value_name = "RATE", allow_hyphen_values = true)]
    rate: Option<String>,
    /// Copy the persistent dirty bitmaps too.
    #[arg(long = "bitmaps")]
    bitmaps: bool,
    /// With --bitmaps: skip inconsistent bitmaps instead of failing.
    #[arg(long = "skip-broken-bitmaps")]
    skip_broken_bitmaps: bool,
    /// Sources, then the target.
    #[arg(num_args = 0..)]
    files: Vec<String>,
}

/// The copy state shared by the workers.
struct Job<'a> {
    sources: &'a [(Image, u64)],
    target: &'a Image,
    has_zero_init: bool,
    target_has_backing: bool,
    min_sparse: u64,
    compress: bool,
    cluster: u64,
    zero_flags: ZeroFlags,
    /// `--salvage`: unreadable source sectors become zeroes.
    salvage: bool,
    done: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

fn fail(job: &Job<'_>, msg: String) {
    job.failed.store(true, Ordering::SeqCst);
    let mut e = job.error.lock().unwrap_or_else(|p| p.into_inner());
    if e.is_none() {
        *e = Some(msg);
    }
}

/// Writes `buf` (source data at target offset `toff`), skipping or zeroing
/// runs of `min_sparse` zero bytes.
fn write_data(job: &Job<'_>, toff: u64, buf: &[u8]) -> Result<(), String> {
    let werr = |off: u64, e: &block_core::BlockError| {
        log::debug!("write failed: {e}");
        format!(
            "error while writing at byte {off}: {}",
            strerror(errno_of(e))
        )
    };
    if job.compress {
        // One cluster per request; zero clusters are skipped or zeroed.
        let mut pos = 0usize;
        while pos < buf.len() {
            let n =
                ((job.cluster - (toff + pos as u64) % job.cluster) as usize).min(buf.len() - pos);
            let piece = &buf[pos..pos + n];
            let off = toff + pos as u64;
            if piece.iter().all(|&b| b == 0) {
                if !job.has_zero_init {
                    job.target
                        .write_zeroes(off, n as u64, job.zero_flags)
                        .map_err(|e| werr(off, &e))?;
                }
            } else {
                job.target
                    .write_vectored(off, &[IoSlice::new(piece)], ReqFlags::COMPRESSED)
                    .map_err(|e| werr(off, &e))?;
            }
            pos += n;
        }
        return Ok(());
    }
    if job.min_sparse == 0 {
        return job.target.write(toff, buf).map_err(|e| werr(toff, &e));
    }
    // Split into data runs and zero runs as qemu-img's convert_co_write
    // does (is_allocated_sectors_min): leading zeroes are skipped, zero runs
    // inside data only from min_sparse bytes on, aligned to the sparse size.
    let min = (job.min_sparse / SECTOR) as usize;
    let alignment = 1u64 << (63 - (job.min_sparse / SECTOR).leading_zeros());
    let total = buf.len().div_ceil(SECTOR as usize);
    let mut pos = 0usize;
    while pos < total {
        let at = pos * SECTOR as usize;
        let (alloc, n) = is_allocated_sectors_min(
            &buf[at..],
            total - pos,
            min,
            toff / SECTOR + pos as u64,
            alignment,
        );
        let end = ((pos + n) * SECTOR as usize).min(buf.len());
        let off = toff + at as u64;
        if alloc {
            job.target
                .write(off, &buf[at..end])
                .map_err(|e| werr(off, &e))?;
        } else if !job.has_zero_init {
            job.target
                .write_zeroes(off, (end - at) as u64, job.zero_flags)
                .map_err(|e| werr(off, &e))?;
        }
        pos += n;
    }
    Ok(())
}

const SECTOR: u64 = 512;

/// Whether sector `i` of `buf` (the last one may be short) is all zeroes.
fn sector_is_zero(buf: &[u8], i: usize) -> bool {
    let s = i * SECTOR as usize;
    buf[s..(s + SECTOR as usize).min(buf.len())]
        .iter()
        .all(|&b| b == 0)
}

/// qemu-img's `is_allocated_sectors`: whether the first run of `n` sectors
/// holds data, and its length, a run end not on `alignment` moved (zero runs
/// end down, data runs up; a zero run no longer than the tail counts as data).
fn is_allocated_sectors(buf: &[u8], n: usize, sector_num: u64, alignment: u64) -> (bool, usize) {
    if n == 0 {
        return (false, 0);
    }
    let mut is_zero = sector_is_zero(buf, 0);
    let mut i = 1;
    while i < n && sector_is_zero(buf, i) == is_zero {
        i += 1;
    }
    if i == n {
        return (!is_zero, i);
    }
    let tail = ((sector_num + i as u64) & (alignment - 1)) as usize;
    if tail != 0 {
        if is_zero && i <= tail {
            is_zero = false;
        }
        if !is_zero {
            i = (i + alignment as usize - tail).min(n);
        } else {
            i -= tail;
        }
    }
    (!is_zero, i)
}

/// qemu-img's `is_allocated_sectors_min`: leading zero sectors are a zero
/// run whatever their number; after data, only zero runs of at least `min`
/// sectors end the data run.
fn is_allocated_sectors_min(
    buf: &[u8],
    n: usize,
    min: usize,
    sector_num: u64,
    alignment: u64,
) -> (bool, usize) {
    let min = min.min(n);
    let (alloc, first) = is_allocated_sectors(buf, n, sector_num, alignment);
    if !alloc {
        return (false, first);
    }
    let mut used = first;
    let mut checked = first;
    while checked < n {
        let (alloc, k) = is_allocated_sectors(
            &buf[checked * SECTOR as usize..],
            n - checked,
            sector_num + checked as u64,
            alignment,
        );
        checked += k;
        if alloc {
            used = checked;
        } else if k >= min {
            break;
        }
    }
    (true, used)
}

/// Copies `[off, off+len)` of source `src` to target offset `base + off` in
/// whole target clusters (holes read as zeroes), as compressed writes need.
fn copy_range_compressed(
    job: &Job<'_>,
    src: &Image,
    base: u64,
    off: u64,
    len: u64,
    ops: &mut Vec<Op>,
) -> Result<(), String> {
    let end = off + len;
    let mut cur = off;
    let mut buf = Vec::new();
    while cur < end {
        if job.failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let toff = base + cur;
        let n = (job.cluster - toff % job.cluster).min(end - cur);
        let (e, _) = src.block_status_above(cur, n).map_err(|e| {
            log::debug!("block status failed: {e}");
            format!(
                "error while reading block status at offset {toff}: {}",
                strerror(errno_of(&e))
            )
        })?;
        if e.flags.contains(ExtentFlags::ZERO) && e.length >= n {
            if !job.has_zero_init {
                ops.push(Op::Zero(toff, n));
            }
        } else {
            buf.resize(n as usize, 0);
            crate::convert_salvage::read(src, cur, &mut buf, job.salvage).map_err(|e| {
                log::debug!("read failed: {e}");
                format!(
                    "error while reading at byte {toff}: {}",
                    strerror(errno_of(&e))
                )
            })?;
            ops.push(Op::Data(toff, std::mem::take(&mut buf)));
        }
        job.done.fetch_add(n, Ordering::Relaxed);
        cur += n;
    }
    Ok(())
}

/// A write to the target gathered by [`copy_range`].
enum Op {
    /// Write zeroes at `(offset, length)`.
    Zero(u64, u64),
    /// Write data at an offset (through [`write_data`]).
    Data(u64, Vec<u8>),
}

/// Performs gathered writes.
fn apply(job: &Job<'_>, ops: Vec<Op>) -> Result<(), String> {
    for op in ops {
        match op {
            Op::Zero(toff, n) => job
                .target
                .write_zeroes(toff, n, job.zero_flags)
                .map_err(|e| {
                    format!(
                        "error while writing at byte {toff}: {}",
                        strerror(errno_of(&e))
                    )
                })?,
            Op::Data(toff, buf) => write_data(job, toff, &buf)?,
        }
    }
    Ok(())
}

/// Reads `[off, off+len)` of source `src` and gathers the writes that copy it
/// to target offset `base + off` into `ops`.
fn copy_range(
    job: &Job<'_>,
    src: &Image,
    base: u64,
    off: u64,
    len: u64,
    ops: &mut Vec<Op>,
) -> Result<(), String> {
    if job.compress && !job.target_has_backing {
        return copy_range_compressed(job, src, base, off, len, ops);
    }
    let end = off + len;
    let mut cur = off;
    let mut buf = Vec::new();
    while cur < end {
        if job.failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let want = end - cur;
        let rerr = |e: &block_core::BlockError| {
            log::debug!("block status failed: {e}");
            format!(
                "error while reading block status at offset {}: {}",
                base + cur,
                strerror(errno_of(e))
            )
        };
        let (zero, data, n) = if job.target_has_backing {
            let e = src.block_status(cur, want).map_err(|e| rerr(&e))?;
            let alloc = e.flags.contains(ExtentFlags::ALLOCATED);
            // Unallocated in a source without a backing file reads as
            // zeroes, which must hide the target's backing file.
            let no_backing = src.graph().backing().is_none();
            let z = e.flags.contains(ExtentFlags::ZERO);
            (
                if no_backing { z || !alloc } else { alloc && z },
                alloc && !z,
                e.length,
            )
        } else {
            let (e, _) = src.block_status_above(cur, want).map_err(|e| rerr(&e))?;
            let z = e.flags.contains(ExtentFlags::ZERO);
            (z, !z, e.length)
        };
        let n = n.clamp(1, want);
        let toff = base + cur;
        if zero && job.min_sparse == 0 {
            // -S 0: zeroes are written as data, fully allocating the target
            // (qemu-img's convert_co_do_copy).
            ops.push(Op::Data(toff, vec![0; n as usize]));
        } else if zero {
            if !job.has_zero_init {
                ops.push(Op::Zero(toff, n));
            }
        } else if data {
            buf.resize(n as usize, 0);
            crate::convert_salvage::read(src, cur, &mut buf, job.salvage).map_err(|e| {
                log::debug!("read failed: {e}");
                format!(
                    "error while reading at byte {toff}: {}",
                    strerror(errno_of(&e))
                )
            })?;
            ops.push(Op::Data(toff, std::mem::take(&mut buf)));
        }
        // Neither: unallocated above a target backing file; leave it.
        job.done.fetch_add(n, Ordering::Relaxed);
        cur += n;
    }
    Ok(())
}

fn parse_workers(s: Option<&str>) -> CliResult<usize> {
    match s {
        None => Ok(8),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=16).contains(&n) => Ok(n),
            _ => Err(CliError::new(
                "Invalid number of coroutines specified. Must be between 1 and 16.",
            )),
        },
    }
}

fn parse_sparse(s: Option<&str>) -> CliResult<u64> {
    let bad = || {
        CliError::new(
            "Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).",
        )
    };
    match s {
        None => Ok(4096),
        Some(v) => {
            let n =
                crate::human::cvtnum("buffer size for sparse output", v).map_err(CliError::new)?;
            if n & 511 != 0 || n > 16 << 20 {
                return Err(bad());
            }
            Ok(n)
        }
    }
}

/// Runs `blk convert`.
pub fn run(g: &Globals, a: ConvertArgs) -> CliResult {
    crate::common::check_option_lists(&a.options)?;
    let options = a.options.join(",");
    if !a.no_create && crate::cmd_create::has_help_option(&options) {
        // As qemu-img: before any image is opened; the target name counts
        // only when there are at least two file names.
        let out = (a.files.len() > 1).then(|| a.files[a.files.len() - 1].as_str());
        return crate::cmd_create::print_option_help(&g.host()?, &a.out_format, out);
    }
    crate::cache_mode::check_source(a.src_cache.as_deref())?;
    crate::cache_mode::check(a.cache.as_deref())?;
    let workers = parse_workers(a.workers.as_deref())?;
    let rate = crate::convert_rate::parse(a.rate.as_deref())?;
    let min_sparse = parse_sparse(a.sparse.as_deref())?;
    if a.files.len() < 2 {
        return Err(CliError::new("Must specify image file name"));
    }
    if a.target_is_zero && !a.no_create {
        return Err(CliError::new("--target-is-zero requires use of -n flag"));
    }
    if a.no_create && !a.options.is_empty() {
        return Err(CliError::new(
            "-o has no effect when skipping image creation",
        ));
    }
    // As qemu-img: from here on errors end the progress line (`-o help`
    // prints no progress at all).
    let help = crate::cmd_create::has_help_option(&a.options.join(","));
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet && !help, 1.0);
    progress.print(0.0, 100);
    if a.files.len() > 2 && a.backing.is_some() {
        return Err(CliError::new(
            "Having a backing file for the target makes no sense when concatenating multiple input images",
        ));
    }
    let snapshot = a
        .snapshot
        .as_deref()
        .map(parse_snapshot_param)
        .transpose()?;
    if a.skip_broken_bitmaps && !a.bitmaps {
        return Err(CliError::new(
            "Use of --skip-broken-bitmaps requires --bitmaps",
        ));
    }
    if a.bitmaps && a.files.len() > 2 {
        return Err(CliError::new(
            "Copying bitmaps only possible with single source",
        ));
    }
    let host = g.host()?;
    let (srcs, dst) = a.files.split_at(a.files.len() - 1);
    let dst = &dst[0];
    if snapshot.is_some() && srcs.len() > 1 {
        return Err(CliError::new(
            "No support for concatenating multiple snapshot",
        ));
    }
    let mut sources = Vec::new();
    let mut total = 0u64;
    for s in srcs {
        let opts = OpenOptions {
            format: a.format.clone(),
            read_only: true,
            force_share: a.force_share,
            ..OpenOptions::default()
        };
        let mut img = crate::common::open_image_data(&host, s, &opts)?;
        if let Some(p) = &snapshot {
            img = open_snapshot(&host, img, s, &opts, p)?;
        }
        let len = img.length().map_err(CliError::from)?;
        sources.push((img, total));
        total += len;
    }
    let bitmaps = if a.bitmaps {
        Some(crate::convert_bitmaps::source_bitmaps(
            &sources[0].0,
            a.skip_broken_bitmaps,
        )?)
    } else {
        None
    };
    let drv = host
        .registry()
        .get(&a.out_format)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{}'", a.out_format)))?;
    if !a.no_create {
        plugin_host::graph::find_protocol(host.registry(), dst)
            .map_err(|e| CliError::new(e.message.clone()))?;
    }
    if a.compress && !drv.driver.caps().contains(DriverCaps::COMPRESSION) {
        return Err(CliError::new(
            "Compression not supported for this file format",
        ));
    }
    let schema = drv.driver.create_options();
    if a.backing.is_some() {
        if !schema.iter().any(|o| o.name == "backing_file") {
            return Err(CliError::new(format!(
                "Backing file not supported for file format '{}'",
                a.out_format
            )));
        }
        if a.backing_format.is_none() && !a.no_create {
            return Err(CliError::new(
                "Use of backing file requires explicit backing format",
            ));
        }
    }
    if a.backing_format.is_some() && !schema.iter().any(|o| o.name == "backing_fmt") {
        return Err(CliError::new(format!(
            "Backing file format not supported for file format '{}'",
            a.out_format
        )));
    }
    if !a.no_create && a.backing.is_none() && a.backing_format.is_some() {
        return Err(CliError::new(format!(
            "{dst}: error while converting {}: Backing format cannot be used without backing file",
            a.out_format
        )));
    }
    // The target is none of the files the sources read, before anything is
    // created or opened for writing. Without -U the sources hold their
    // locks, so qemu-img refuses with the write-lock conflict; with -U it
    // would overwrite the source.
    let named: Vec<(&str, &Image)> = srcs
        .iter()
        .map(String::as_str)
        .zip(sources.iter().map(|(img, _)| img))
        .collect();
    crate::target_check::check_target(&named, dst, |_| {
        let lock = crate::target_check::write_lock_message(dst);
        (!a.force_share).then(|| {
            if a.no_create {
                format!("Could not open '{dst}': {lock}")
            } else {
                format!("{dst}: error while converting {}: {lock}", a.out_format)
            }
        })
    })?;
    // So is the data file a new target gets (-o data_file=...).
    let data_file = if a.no_create {
        None
    } else {
        OptionValues::parse_str(&schema, &options)
            .ok()
            .and_then(|v| v.get_str("data_file").filter(|d| !d.is_empty()))
    };
    if let Some(df) = &data_file {
        let label = format!("target's data file '{df}'");
        crate::target_check::check_target_file(&named, df, &label, |_| {
            (!a.force_share).then(|| {
                format!(
                    "{dst}: error while converting {}: {}",
                    a.out_format,
                    crate::target_check::write_lock_message(df)
                )
            })
        })?;
    }
    if !a.no_create {
        // Validate the options first, as qemu-img does (with the target
        // protocol's options appended).
        let schema = crate::cmd_create::merged_create_options(&host, &a.out_format, dst)?;
        // Enumerated values are checked when the target is created.
        let loose = crate::cmd_create::loosen_enums(&schema);
        let values =
            OptionValues::parse_str(&loose, &options).map_err(|e| CliError::new(e.message))?;
        if let Some(m) = crate::cmd_create::bad_enum_value(&schema, &values, &a.out_format) {
            return Err(CliError::new(format!(
                "{dst}: error while converting {}: {m}",
                a.out_format
            )));
        }
        let bk = a
            .backing
            .as_deref()
            .map(|b| (b, a.backing_format.as_deref()));
        host.create(&a.out_format, dst, &options, Some(total), bk)
            .map_err(|e| {
                CliError::new(format!(
                    "{dst}: error while converting {}: {}",
                    a.out_format,
                    crate::common::create_detail(&e, dst)
                ))
            })?;
    }
    // Exclusive: an existing target (-n) held by any other process is
    // refused before a byte of it changes, and nobody opens it meanwhile.
    let topts = OpenOptions {
        format: Some(a.out_format.clone()),
        exclusive: true,
        ..OpenOptions::default()
    };
    let target = crate::common::open_image_file(&host, dst, &topts)?;
    if bitmaps.is_some() {
        crate::convert_bitmaps::check_target(&target, &a.out_format)?;
    }
    let tlen = target.length().map_err(CliError::from)?;
    if tlen < total {
        return Err(CliError::new("output file is smaller than input file"));
    }
    let target_has_backing = a.backing.is_some();
    let has_zero_init = if a.target_is_zero {
        true
    } else if a.no_create || target_has_backing || min_sparse == 0 {
        false
    } else {
        target.node().has_zero_init()
    };
    let cluster = target
        .info()
        .ok()
        .and_then(|i| i.node.cluster_size)
        .filter(|c| *c >= 512)
        .unwrap_or(65536);
    let job = Job {
        sources: &sources,
        target: &target,
        has_zero_init,
        target_has_backing,
        min_sparse,
        compress: a.compress,
        cluster,
        zero_flags: if min_sparse > 0 {
            ZeroFlags::MAY_UNMAP
        } else {
            ZeroFlags::NONE
        },
        salvage: a.salvage,
        done: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    // Work items: (source index, offset, length), never crossing sources.
    let chunk = if a.compress {
        CHUNK.div_ceil(cluster) * cluster
    } else {
        CHUNK
    };
    let mut items = Vec::new();
    for (i, (img, _)) in sources.iter().enumerate() {
        let len = img.length().map_err(CliError::from)?;
        let mut off = 0;
        while off < len {
            let n = chunk.min(len - off);
            items.push((i, off, n));
            off += n;
        }
    }
    let mut progress = if progress.enabled() {
        let walk = crate::convert_progress::WalkParams {
            sources: &sources,
            target_has_backing,
            target_backing_len: target.graph().backing().and_then(|b| b.node.length().ok()),
            min_sparse,
            compress_cluster: a.compress.then_some(cluster),
        };
        let chunks = crate::convert_progress::counted_chunks(&walk).unwrap_or_else(|e| {
            log::debug!("progress: block status failed: {e}");
            Vec::new()
        });
        Some(crate::convert_progress::ConvertProgress::new(
            progress, chunks,
        ))
    } else {
        None
    };
    let next = AtomicUsize::new(0);
    let turn = (Mutex::new(0usize), std::sync::Condvar::new());
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(src, off, len)) = items.get(i) else {
                    break;
                };
                if job.failed.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(r) = &rate {
                    r.acquire(len);
                }
                let (img, base) = &job.sources[src];
                let mut ops = Vec::new();
                let mut r = copy_range(&job, img, *base, off, len, &mut ops);
                // Without -W the writes go out in order (as qemu-img's, so
                // that clusters are allocated in guest order); the reads
                // still run in parallel.
                if !a.out_of_order {
                    let mut t = turn.0.lock().unwrap_or_else(|p| p.into_inner());
                    while *t != i && !job.failed.load(Ordering::Relaxed) {
                        t = turn.1.wait(t).unwrap_or_else(|p| p.into_inner());
                    }
                    if r.is_ok() && !job.failed.load(Ordering::Relaxed) {
                        r = apply(&job, ops);
                    }
                    *t += 1;
                    turn.1.notify_all();
                } else if r.is_ok() {
                    r = apply(&job, ops);
                }
                if let Err(m) = r {
                    fail(&job, m);
                    // Under the lock, so that no waiter misses the failure.
                    let _t = turn.0.lock().unwrap_or_else(|p| p.into_inner());
                    turn.1.notify_all();
                    break;
                }
            });
        }
        if let Some(p) = progress.as_mut() {
            while next.load(Ordering::SeqCst) < items.len() && !job.failed.load(Ordering::Relaxed) {
                p.advance(job.done.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    if let Some(m) = job.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(CliError::new(m));
    }
    if let Some(list) = &bitmaps {
        crate::convert_bitmaps::copy(&sources[0].0, &target, list)?;
    }
    target
        .flush()
        .map_err(|e| CliError::new(format!("error while flushing: {e}")))?;
    if let Some(p) = progress {
        p.finish();
    }
    Ok(())
}
