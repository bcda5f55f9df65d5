//! `blk commit`: qemu-img commit of an image into its backing file, over
//! `plugin_host::ops::commit`.

use crate::common::{op_error, open_image, CliError, CliResult, Globals};
use clap::Args;
use plugin_host::ops::{self, CancelToken, CommitRequest};
use plugin_host::OpenOptions;

/// Arguments of `blk commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// The base to commit into (any image of the backing chain); implies -d.
    #[arg(short = 'b', long = "base")]
    base: Option<String>,
    /// Do not empty the image after committing.
    #[arg(short = 'd', long = "drop")]
    keep: bool,
    /// Show progress.
    #[arg(short = 'p', long = "progress")]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Cache mode (accepted, no effect).
    #[arg(short = 't')]
    cache: Option<String>,
    /// Rate limit in bytes per second (k/M/G suffixes).
    #[arg(short = 'r', allow_hyphen_values = true)]
    rate: Option<String>,
    /// The image.
    filename: String,
}

/// Runs `blk commit`.
pub fn run(g: &Globals, a: CommitArgs) -> CliResult {
    crate::cache_mode::check(a.cache.as_deref())?;
    let rate = crate::convert_rate::parse(a.rate.as_deref())?;
    let host = g.host()?;
    let top = open_image(
        &host,
        &a.filename,
        &OpenOptions {
            format: a.format.clone(),
            no_backing: true,
            ..OpenOptions::default()
        },
    )?;
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet, 1.0);
    progress.print(0.0, 100);
    let info = top.info()?;
    let Some(base_name) = info.full_backing_filename.clone() else {
        return Err(CliError::new("Image does not have a backing file"));
    };
    if let Some(b) = &a.base {
        let canon = |p: &str| std::fs::canonicalize(p).ok();
        if canon(b) != canon(&base_name) {
            // A base further down: commit through the intermediates (the
            // top stays open, and locked, meanwhile).
            crate::commit_base::commit_to(&host, &a.filename, a.format.clone(), b, rate.as_ref())?;
            // The top stays open, and locked, meanwhile.
            drop(top);
            if !a.quiet {
                println!("Image committed.");
            }
            return Ok(());
        }
    }
    // Exclusive: the base is overwritten (and may grow); any other holder
    // refuses before a byte of it changes (docs/data-safety.md).
    let base_opts = OpenOptions {
        format: info.node.backing_filename_format.clone(),
        no_backing: true,
        exclusive: true,
        ..OpenOptions::default()
    };
    // qemu-img meets a base that cannot be written (a lock conflict, a
    // file it may not open for writing) when its commit job reopens the
    // base read-write, and reports the reopen's own words, without
    // "Could not open 'BASE':" around them.
    let base = host
        .open(&base_name, &base_opts)
        .map_err(|e| CliError::new(crate::common::open_detail(&e, &base_name)))?;
    let progress = std::sync::Mutex::new(progress);
    let show = |p: ops::Progress| {
        if p.done > 0 {
            // qemu-img reports the commit job's offset in single precision.
            let mut pr = progress.lock().unwrap_or_else(|e| e.into_inner());
            pr.set(p.done as f32 / p.total as f32 * 100.0);
        }
    };
    let req = CommitRequest {
        base_depth: 1,
        // As qemu-img: empty the top image unless -d (or -b, which implies
        // it).
        empty_top: !a.keep && a.base.is_none(),
        rate: rate.as_ref().map_or(0, |r| r.rate()),
    };
    ops::commit(&top, &base, &req, &show, &CancelToken::new()).map_err(op_error)?;
    let mut progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    progress.set(100.0);
    progress.end();
    if !a.quiet {
        println!("Image committed.");
    }
    Ok(())
}
