//! Reading a source image as of an internal snapshot (`-l` of qemu-img
//! convert and measure, `-s` of convert): resolves the snapshot parameter
//! with qemu-img's messages and reopens the image with the read-only
//! snapshot view (`snapshot.id=ID` open option).

use crate::common::{error_detail, split_options, CliError, CliResult};
use block_core::DriverCaps;
use plugin_host::{Host, Image, OpenOptions};

/// A `-l` / `-s` argument.
#[derive(Debug, Clone)]
pub enum SnapshotParam {
    /// `snapshot.id=ID,snapshot.name=NAME` (either or both).
    Opts {
        /// `snapshot.id`.
        id: Option<String>,
        /// `snapshot.name`.
        name: Option<String>,
    },
    /// A bare ID or name (the ID is tried first).
    IdOrName(String),
}

/// Parses a `-l` argument as qemu-img does: `snapshot.`-prefixed options,
/// else an ID or a name.
pub fn parse_snapshot_param(arg: &str) -> CliResult<SnapshotParam> {
    if !arg.starts_with("snapshot.") {
        return Ok(SnapshotParam::IdOrName(arg.to_string()));
    }
    let fail = |m: String| CliError::new(format!("{m}\nFailed in parsing snapshot param '{arg}'"));
    let pairs = split_options(arg).map_err(|e| fail(e.msg.unwrap_or_default()))?;
    let (mut id, mut name) = (None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "snapshot.id" => id = Some(v),
            "snapshot.name" => name = Some(v),
            _ => return Err(fail(format!("Invalid parameter '{k}'"))),
        }
    }
    Ok(SnapshotParam::Opts { id, name })
}

/// The ID of the snapshot of `img` that `p` names, with qemu-img's
/// "Failed to load snapshot: ..." messages.
fn resolve(host: &Host, img: &Image, p: &SnapshotParam) -> CliResult<String> {
    let fmt = img.format().to_string();
    let supports = host
        .registry()
        .get(&fmt)
        .map(|d| d.driver.caps().contains(DriverCaps::SNAPSHOTS))
        .unwrap_or(false);
    if !supports {
        return Err(CliError::new(format!(
            "Failed to load snapshot: Block format '{fmt}' used by device '' does not support temporarily loading internal snapshots"
        )));
    }
    let list = img
        .snapshot_list()
        .map_err(|e| CliError::new(format!("Failed to load snapshot: {e}")))?;
    let found = match p {
        SnapshotParam::Opts { id, name } => list.iter().find(|s| {
            id.as_deref().is_none_or(|i| s.id == i)
                && name.as_deref().is_none_or(|n| s.name == n)
                && (id.is_some() || name.is_some())
        }),
        SnapshotParam::IdOrName(x) => list
            .iter()
            .find(|s| s.id == *x)
            .or_else(|| list.iter().find(|s| s.name == *x)),
    };
    found
        .map(|s| s.id.clone())
        .ok_or_else(|| CliError::new("Failed to load snapshot: Can't find snapshot"))
}

/// Reopens `img` (opened read-only with `opts`) as the read-only view of the
/// snapshot `p` names.
pub fn open_snapshot(
    host: &Host,
    img: Image,
    filename: &str,
    opts: &OpenOptions,
    p: &SnapshotParam,
) -> CliResult<Image> {
    let id = resolve(host, &img, p)?;
    let format = Some(img.format().to_string());
    drop(img);
    let mut o = opts.clone();
    o.format = format;
    o.read_only = true;
    o.options.push(("snapshot.id".to_string(), id));
    host.open(filename, &o).map_err(|e| {
        CliError::new(format!(
            "Failed to load snapshot: {}",
            error_detail(&e, filename)
        ))
    })
}
