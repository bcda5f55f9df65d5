//! `blk snapshot`: qemu-img snapshot (-l list, -c create, -a apply, -d delete).

use crate::common::{CliError, CliResult, Globals};
use crate::snapshots::snapshot_table;
use clap::Args;
use plugin_host::OpenOptions;

/// Arguments of `blk snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// List the snapshots.
    #[arg(short = 'l')]
    list: bool,
    /// Create a snapshot.
    #[arg(short = 'c', value_name = "NAME")]
    create: Option<String>,
    /// Revert the disk to a snapshot.
    #[arg(short = 'a', value_name = "NAME")]
    apply: Option<String>,
    /// Delete a snapshot.
    #[arg(short = 'd', value_name = "NAME")]
    delete: Option<String>,
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Force shared permissions (list only).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image.
    filename: String,
}

/// Runs `blk snapshot`.
pub fn run(g: &Globals, a: SnapshotArgs) -> CliResult {
    let actions = [
        a.list,
        a.create.is_some(),
        a.apply.is_some(),
        a.delete.is_some(),
    ];
    if actions.iter().filter(|x| **x).count() > 1 {
        return Err(CliError::usage(
            "snapshot",
            "Cannot mix '-l', '-a', '-c', '-d'",
        ));
    }
    let host = g.host()?;
    let listing = a.create.is_none() && a.apply.is_none() && a.delete.is_none();
    let opts = OpenOptions {
        format: a.format.clone(),
        read_only: listing,
        force_share: a.force_share,
        no_backing: true,
        ..OpenOptions::default()
    };
    let img = crate::common::open_image_data(&host, &a.filename, &opts)?;
    if a.format.is_none() && img.graph().probed_raw && !listing {
        crate::io::probe_warning(&a.filename);
    }
    let errno = |e: &block_core::BlockError| crate::human::strerror(e.errno());
    if let Some(name) = &a.create {
        img.snapshot_create(name).map_err(|e| {
            CliError::new(format!("Could not create snapshot '{name}': {}", errno(&e)))
        })?;
    } else if let Some(name) = &a.apply {
        img.snapshot_apply(name).map_err(|e| {
            // A busy device (active dirty bitmaps) refuses in its own
            // words; a failed load is reported by its errno.
            if e.kind == block_core::ErrorKind::Busy {
                return CliError::new(format!("Could not apply snapshot '{name}': {}", e.message));
            }
            CliError::new(format!(
                "Could not apply snapshot '{name}': Failed to load snapshot: {}",
                errno(&e)
            ))
        })?;
    } else if let Some(name) = &a.delete {
        // qemu-img deletes by name only (an ID is not looked up).
        let by_name = img
            .snapshot_list()
            .map(|l| l.iter().any(|s| &s.name == name))
            .unwrap_or(true);
        if !by_name {
            return Err(CliError::new(format!(
                "Could not delete snapshot '{name}': snapshot not found"
            )));
        }
        img.snapshot_delete(name).map_err(|e| {
            let detail = if e.kind == block_core::ErrorKind::NotFound {
                "snapshot not found".to_string()
            } else {
                errno(&e)
            };
            CliError::new(format!("Could not delete snapshot '{name}': {detail}"))
        })?;
    } else {
        let snaps = img.snapshot_list().unwrap_or_default();
        if !snaps.is_empty() && !a.quiet {
            println!("Snapshot list:");
            for l in snapshot_table(&snaps) {
                println!("{l}");
            }
        }
        return Ok(());
    }
    img.flush()?;
    Ok(())
}
