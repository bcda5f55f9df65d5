//! `blk commit -b BASE` with a base below the immediate backing file: the
//! data of every image above the base (the top and the intermediates) is
//! written into the base, as QEMU's commit job does; the top and the
//! intermediate images are left as they are (`-b` implies `-d`).

use crate::common::{op_error, CliError, CliResult};
use plugin_host::ops::{self, CancelToken, CommitRequest};
use plugin_host::{Host, Image, OpenOptions};

/// The depth (0 = top) of the image named `base` in the chain of `top`.
fn depth_of(top: &Image, base: &str) -> Option<usize> {
    let want = std::fs::canonicalize(base).ok()?;
    let mut node = top.graph().clone();
    let mut depth = 0;
    loop {
        if std::fs::canonicalize(&node.filename).ok().as_ref() == Some(&want) {
            return Some(depth);
        }
        node = node.backing()?;
        depth += 1;
    }
}

/// Commits `top_name` (format `format`) into `base`, which must be in its
/// backing chain below the immediate backing file.
pub fn commit_to(
    host: &Host,
    top_name: &str,
    format: Option<String>,
    base: &str,
    rate: Option<&crate::convert_rate::RateLimit>,
) -> CliResult {
    let top = crate::common::open_image(
        host,
        top_name,
        // The chain is only read, and the base is written through its own
        // open below: the chain's nodes share it (as QEMU's backing nodes
        // share write permission with the commit job).
        &OpenOptions {
            format,
            read_only: true,
            force_share: true,
            ..OpenOptions::default()
        },
    )?;
    let Some(base_depth) = depth_of(&top, base).filter(|d| *d > 0) else {
        return Err(CliError::new(format!(
            "Did not find '{base}' in the backing chain of '{top_name}'"
        )));
    };
    let base_fmt = {
        let mut node = top.graph().clone();
        for _ in 0..base_depth {
            node = node
                .backing()
                .ok_or_else(|| CliError::new("backing chain changed"))?;
        }
        node.driver.clone()
    };
    let base_img = crate::common::open_image_file(
        host,
        base,
        &OpenOptions {
            format: Some(base_fmt),
            no_backing: true,
            ..OpenOptions::default()
        },
    )?;
    let req = CommitRequest {
        base_depth,
        empty_top: false,
        rate: rate.map_or(0, |r| r.rate()),
    };
    ops::commit(
        &top,
        &base_img,
        &req,
        &ops::no_progress,
        &CancelToken::new(),
    )
    .map_err(op_error)?;
    Ok(())
}
