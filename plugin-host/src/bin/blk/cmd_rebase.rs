//! `blk rebase`: qemu-img rebase (safe mode copies what differs between the
//! old and new backing files, `plugin_host::ops::rebase`; `-u` only
//! rewrites the reference).

use crate::common::{open_image, CliError, CliResult, Globals};
use clap::Args;
use plugin_host::ops::{self, CancelToken, RebaseRequest};
use plugin_host::OpenOptions;

/// Arguments of `blk rebase`.
#[derive(Args, Debug)]
pub struct RebaseArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// The new backing file ("" for none).
    #[arg(short = 'b', long = "backing", allow_hyphen_values = true)]
    backing: Option<String>,
    /// The new backing file format.
    #[arg(short = 'F', long = "backing-format")]
    backing_format: Option<String>,
    /// Unsafe: only change the reference.
    #[arg(short = 'u')]
    unsafe_mode: bool,
    /// Write the copied data as compressed clusters.
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// Show progress.
    #[arg(short = 'p')]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Force shared permissions on the backing files.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Cache modes (accepted, no effect).
    #[arg(short = 't')]
    cache: Option<String>,
    /// Source cache mode (accepted, no effect).
    #[arg(short = 'T')]
    src_cache: Option<String>,
    /// The image.
    filename: String,
}

/// Runs `blk rebase`.
pub fn run(g: &Globals, a: RebaseArgs) -> CliResult {
    crate::cache_mode::check(a.cache.as_deref())?;
    crate::cache_mode::check_source(a.src_cache.as_deref())?;
    // Unsafe mode without -b drops the backing file, as qemu-img.
    let Some(new) = a
        .backing
        .clone()
        .or_else(|| a.unsafe_mode.then(String::new))
    else {
        return Err(CliError::usage(
            "rebase",
            "Must specify backing file (-b) or use unsafe mode (-u)",
        ));
    };
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet, 1.0);
    progress.print(0.0, 100);
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
    if let Some(f) = &a.backing_format {
        if host.registry().get(f).is_none() {
            return Err(CliError::new(format!("Invalid format name: '{f}'")));
        }
    }
    if a.compress {
        crate::rebase_compress::check_supported(&host, &top)?;
    }
    let info = top.info()?;
    let ro = |fmt: Option<String>| OpenOptions {
        format: fmt,
        read_only: true,
        force_share: a.force_share,
        ..OpenOptions::default()
    };
    let new_full = (!new.is_empty()).then(|| block_core::resolve_relative(&new, Some(&a.filename)));
    let new_fmt = a.backing_format.clone();
    if !a.unsafe_mode {
        let old = match &info.full_backing_filename {
            Some(f) => Some(crate::common::open_image_file(
                &host,
                f,
                &ro(info.node.backing_filename_format.clone()),
            )?),
            None => None,
        };
        let newimg = match &new_full {
            Some(f) => Some(host.open(f, &ro(new_fmt.clone())).map_err(|e| {
                CliError::new(format!(
                    "Could not open new backing file '{new}': {}",
                    crate::common::open_detail(&e, f)
                ))
            })?),
            None => None,
        };
        let len = top.length()?;
        // qemu-img steps through the image in IO_BUF_SIZE pieces and adds
        // this share after each unallocated one.
        let step = if len == 0 {
            0.0
        } else {
            100.0 / (len / len.min(ops::rebase::STEP)) as f32
        };
        let shown = std::sync::Mutex::new(&mut progress);
        let show = |p: ops::Progress| {
            if p.stage == ops::Stage::Compare {
                shown
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .print(step, 100);
            }
        };
        let req = RebaseRequest {
            compress: a.compress,
        };
        ops::rebase(
            &top,
            old.as_ref(),
            newimg.as_ref(),
            &req,
            &show,
            &CancelToken::new(),
        )
        .map_err(crate::common::op_error)?;
    }
    if !new.is_empty() && new_fmt.is_none() {
        // qemu-img requires the format (bdrv_change_backing_file's require).
        return Err(CliError::new(format!(
            "Could not change the backing file to '{new}': backing format must be specified"
        )));
    }
    top.change_backing_file(
        (!new.is_empty()).then_some(new.as_str()),
        if new.is_empty() {
            None
        } else {
            new_fmt.as_deref()
        },
    )
    .map_err(|e| {
        // A driver without backing files: QEMU's ENOTSUP text.
        let detail = if e.kind == block_core::ErrorKind::Unsupported {
            crate::human::strerror(e.errno())
        } else {
            crate::common::clean(&e.message)
        };
        CliError::new(format!(
            "Could not change the backing file to '{new}': {detail}"
        ))
    })?;
    top.flush()?;
    progress.set(100.0);
    progress.end();
    Ok(())
}
