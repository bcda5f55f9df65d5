//! `blk rebase`: qemu-img rebase (safe mode copies what differs between the
//! old and new backing files; `-u` only rewrites the reference).

use crate::common::{open_image, CliError, CliResult, Globals};
use block_core::ExtentFlags;
use clap::Args;
use plugin_host::{Image, OpenOptions};

/// qemu-img's rebase step (its IO_BUF_SIZE).
const IO_BUF_SIZE: u64 = 2 << 20;

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

fn read_or_zero(img: Option<&Image>, off: u64, buf: &mut [u8]) -> CliResult {
    buf.fill(0);
    if let Some(img) = img {
        let len = img.length()?;
        if off < len {
            let n = ((len - off) as usize).min(buf.len());
            img.read(off, &mut buf[..n])?;
        }
    }
    Ok(())
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
            100.0 / (len / len.min(IO_BUF_SIZE)) as f32
        };
        let mut off = 0u64;
        let (mut b1, mut b2) = (Vec::new(), Vec::new());
        while off < len {
            let e = top.block_status(off, (len - off).min(IO_BUF_SIZE))?;
            let n = e.length.clamp(1, len - off);
            if !e.flags.contains(ExtentFlags::ALLOCATED) {
                let mut pos = off;
                while pos < off + n {
                    let m = if a.compress {
                        // Whole clusters, each written compressed.
                        let cl = crate::rebase_compress::piece_size(&top);
                        (cl - pos % cl).min(off + n - pos) as usize
                    } else {
                        (off + n - pos).min(64 << 10) as usize
                    };
                    b1.resize(m, 0);
                    b2.resize(m, 0);
                    read_or_zero(old.as_ref(), pos, &mut b1)?;
                    read_or_zero(newimg.as_ref(), pos, &mut b2)?;
                    if b1 != b2 {
                        if a.compress {
                            crate::rebase_compress::write(&top, pos, &b1)?;
                        } else {
                            top.write(pos, &b1)?;
                        }
                    }
                    pos += m as u64;
                }
                progress.print(step, 100);
            }
            off += n;
        }
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
