//! `blk convert`: qemu-img convert's command line: checks the arguments,
//! opens the sources, creates and opens the target with qemu-img's
//! messages, then runs `plugin_host::ops::convert` (allocated data only,
//! holes kept sparse, backing chains flattened unless `-B`, several
//! sources concatenated, `-m` workers) and prints its progress.

use crate::common::{errno_of, CliError, CliResult, Globals};
use crate::convert_rate::RateLimit;
use crate::human::strerror;
use crate::snapshot_src::{open_snapshot, parse_snapshot_param};
use block_core::{DriverCaps, OptionValues};
use clap::Args;
use plugin_host::ops::{self, CancelToken, ConvertRequest, OpError, SalvageFn, Stage};
use plugin_host::{Image, OpenOptions};
use std::sync::Mutex;

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
    let req = ConvertRequest {
        min_sparse,
        compress: a.compress,
        workers,
        out_of_order: a.out_of_order,
        top_only: a.backing.is_some(),
        target_is_zero: if a.target_is_zero {
            Some(true)
        } else if a.no_create {
            Some(false)
        } else {
            None
        },
        salvage: a.salvage.then_some(&salvage_warning as SalvageFn<'_>),
        rate: rate.as_ref().map_or(0, RateLimit::rate),
    };
    let progress = if progress.enabled() {
        let cluster = plugin_host::ops::chunk_size(&target);
        let walk = crate::convert_progress::WalkParams {
            sources: &sources,
            target_has_backing: req.top_only,
            target_backing_len: target.graph().backing().and_then(|b| b.node.length().ok()),
            min_sparse,
            compress_cluster: a.compress.then_some(cluster),
        };
        let chunks = crate::convert_progress::counted_chunks(&walk).unwrap_or_else(|e| {
            log::debug!("progress: block status failed: {e}");
            Vec::new()
        });
        Some(Mutex::new(crate::convert_progress::ConvertProgress::new(
            progress, chunks,
        )))
    } else {
        None
    };
    let show = |p: ops::Progress| {
        if let Some(cp) = &progress {
            cp.lock().unwrap_or_else(|e| e.into_inner()).advance(p.done);
        }
    };
    let images: Vec<&Image> = sources.iter().map(|(img, _)| img).collect();
    ops::convert(&images, &target, &req, &show, &CancelToken::new()).map_err(op_error)?;
    if let Some(list) = &bitmaps {
        crate::convert_bitmaps::copy(&sources[0].0, &target, list)?;
        target
            .flush()
            .map_err(|e| CliError::new(format!("error while flushing: {e}")))?;
    }
    if let Some(p) = progress {
        p.into_inner().unwrap_or_else(|e| e.into_inner()).finish();
    }
    Ok(())
}

/// `--salvage`: each unreadable sector is warned about (and written as
/// zeroes).
fn salvage_warning(_source: usize, offset: u64, e: &block_core::BlockError) {
    eprintln!(
        "blk: warning: error while reading offset {offset}: {}",
        strerror(errno_of(e))
    );
}

/// qemu-img's message for a failed convert.
fn op_error(e: OpError) -> CliError {
    let errno = |e: &block_core::BlockError| strerror(errno_of(e));
    match e {
        OpError::At {
            stage,
            offset,
            error,
            ..
        } => CliError::new(match stage {
            Stage::Read => format!("error while reading at byte {offset}: {}", errno(&error)),
            Stage::BlockStatus => format!(
                "error while reading block status at offset {offset}: {}",
                errno(&error)
            ),
            Stage::Flush => format!("error while flushing: {error}"),
            _ => format!("error while writing at byte {offset}: {}", errno(&error)),
        }),
        OpError::Block(e) => CliError::from(e),
        e => CliError::new(e.to_string()),
    }
}
