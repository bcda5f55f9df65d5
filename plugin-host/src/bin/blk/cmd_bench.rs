//! `blk bench`: qemu-img bench. Sends COUNT read or write requests of
//! BUFSIZE bytes, DEPTH in parallel, stepping through the image, and prints
//! how long the run took. The queue depth is served by worker threads that
//! share the image (`plugin_host::ops::bench`).

use crate::args::{cvtnum_full, parse_ulong};
use crate::common::errno_of;
use crate::common::{CliError, CliResult, Globals};
use crate::human::strerror;
use clap::Args;
use plugin_host::ops::{self, BenchRequest, CancelToken, OpError, Stage};
use plugin_host::OpenOptions;

/// `INT_MAX`, qemu-img's bound for counts and sizes.
const INT_MAX: u64 = i32::MAX as u64;

/// Arguments of `blk bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Number of requests (default 75000).
    #[arg(
        short = 'c',
        long = "count",
        value_name = "COUNT",
        allow_hyphen_values = true
    )]
    count: Option<String>,
    /// Requests in parallel (default 64).
    #[arg(
        short = 'd',
        long = "depth",
        value_name = "DEPTH",
        allow_hyphen_values = true
    )]
    depth: Option<String>,
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format", value_name = "FMT")]
    format: Option<String>,
    /// Native AIO (needs `-t none` or `-t directsync`; no effect here).
    #[arg(short = 'n', long = "native")]
    native: bool,
    /// AIO backend: threads, native or io_uring (no effect here).
    #[arg(short = 'i', long = "aio", value_name = "AIO")]
    aio: Option<String>,
    /// Offset of the first request (default 0).
    #[arg(
        short = 'o',
        long = "offset",
        value_name = "OFFSET",
        allow_hyphen_values = true
    )]
    offset: Option<String>,
    /// Quiet (qemu-img bench prints its two lines anyway).
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Bytes per request (default 4096).
    #[arg(
        short = 's',
        long = "buffer-size",
        value_name = "BUFFER_SIZE",
        allow_hyphen_values = true
    )]
    bufsize: Option<String>,
    /// Offset increment between requests (default: the buffer size).
    #[arg(
        short = 'S',
        long = "step-size",
        value_name = "STEP_SIZE",
        allow_hyphen_values = true
    )]
    step: Option<String>,
    /// Cache mode (validated; blk has no O_DIRECT, so no effect).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Write test (default: read).
    #[arg(short = 'w', long = "write")]
    write: bool,
    /// The byte to write (default 0).
    #[arg(long = "pattern", value_name = "PATTERN", allow_hyphen_values = true)]
    pattern: Option<String>,
    /// Flush after this many requests (write tests).
    #[arg(
        long = "flush-interval",
        value_name = "INTERVAL",
        allow_hyphen_values = true
    )]
    flush_interval: Option<String>,
    /// Do not wait for the requests in flight before flushing.
    #[arg(long = "no-drain")]
    no_drain: bool,
    /// Open the image in shared mode.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image.
    files: Vec<String>,
}

/// True when a cache mode needs O_DIRECT (`cache.direct=on`).
fn cache_direct(mode: &str) -> CliResult<bool> {
    match mode {
        "none" | "off" | "directsync" => Ok(true),
        "writeback" | "writethrough" | "unsafe" => Ok(false),
        _ => Err(CliError::new("Invalid cache mode")),
    }
}

/// Runs `blk bench`.
pub fn run(g: &Globals, a: BenchArgs) -> CliResult {
    let count = match &a.count {
        Some(v) => parse_ulong("request count", v, 1, INT_MAX)?,
        None => 75000,
    };
    let depth = match &a.depth {
        Some(v) => parse_ulong("queue depth", v, 1, INT_MAX)?,
        None => 64,
    };
    let offset = match &a.offset {
        Some(v) => cvtnum_full("offset", v, 0, i64::MAX as u64)?,
        None => 0,
    };
    let bufsize = match &a.bufsize {
        Some(v) => cvtnum_full("buffer size", v, 1, INT_MAX)?,
        None => 4096,
    };
    let step = match &a.step {
        Some(v) => cvtnum_full("step size", v, 0, INT_MAX)?,
        None => 0,
    };
    let direct = a
        .cache
        .as_deref()
        .map(cache_direct)
        .transpose()?
        .unwrap_or(false);
    let mut native = a.native;
    if let Some(aio) = &a.aio {
        match aio.as_str() {
            "threads" => native = false,
            "native" => native = true,
            "io_uring" => {}
            _ => return Err(CliError::new(format!("Invalid aio option: {aio}"))),
        }
    }
    let pattern = match &a.pattern {
        Some(v) => parse_ulong("pattern byte", v, 0, 255)? as u8,
        None => 0,
    };
    let flush_interval = match &a.flush_interval {
        Some(v) => parse_ulong("flush interval", v, 0, INT_MAX)?,
        None => 0,
    };
    if a.files.len() != 1 {
        return Err(CliError::usage("bench", "Expecting one image file name"));
    }
    let filename = &a.files[0];
    if !a.write && flush_interval > 0 {
        return Err(CliError::new(
            "--flush-interval is only available in write tests",
        ));
    }
    if flush_interval > 0 && flush_interval < depth {
        return Err(CliError::new("Flush interval can't be smaller than depth"));
    }
    if native && !direct {
        return Err(CliError::new(format!(
            "Could not open '{filename}': aio=native was specified, but it requires cache.direct=on, which was not specified."
        )));
    }
    if direct {
        log::info!("cache.direct=on: blk has no O_DIRECT, the page cache is used");
    }
    let host = g.host()?;
    let img = crate::common::open_image_data(
        &host,
        filename,
        &OpenOptions {
            format: a.format.clone(),
            read_only: !a.write,
            force_share: a.force_share,
            ..OpenOptions::default()
        },
    )?;
    let p = BenchRequest {
        bufsize,
        step: if step == 0 { bufsize } else { step },
        depth,
        count,
        offset,
        write: a.write,
        pattern,
        flush_interval,
        drain_on_flush: !a.no_drain,
    };
    // qemu-img bench prints these even with -q.
    println!(
        "Sending {} {} requests, {} bytes each, {} in parallel (starting at offset {}, step size {})",
        p.count,
        if p.write { "write" } else { "read" },
        p.bufsize,
        p.depth,
        p.offset,
        p.step
    );
    if flush_interval > 0 {
        println!("Sending flush every {flush_interval} requests");
    }
    let r = ops::bench(&img, &p, &ops::no_progress, &CancelToken::new()).map_err(|e| match e {
        OpError::At {
            stage: Stage::Flush,
            error,
            ..
        } => CliError::new(format!(
            "Failed flush request: {}",
            strerror(errno_of(&error))
        )),
        OpError::At { error, .. } => {
            CliError::new(format!("Failed request: {}", strerror(errno_of(&error))))
        }
        OpError::Block(e) => CliError::from(e),
        e => CliError::new(e.to_string()),
    })?;
    println!("Run completed in {:.3} seconds.", r.elapsed.as_secs_f64());
    Ok(())
}
