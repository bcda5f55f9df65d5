//! `blk map`: qemu-img map, extents merged exactly as qemu-img merges them.

use crate::common::{parse_output, CliError, CliResult, Globals, OutputFormat};
use block_core::{ChildRole, ExtentFlags};
use clap::Args;
use plugin_host::{GraphNode, Image, OpenOptions};
use std::sync::Arc;

/// Arguments of `blk map`.
#[derive(Args, Debug)]
pub struct MapArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Output format: human or json.
    #[arg(long = "output", value_name = "FMT")]
    output: Option<String>,
    /// Start at this offset.
    #[arg(short = 's', long = "start-offset", allow_hyphen_values = true)]
    start_offset: Option<String>,
    /// Map at most this many bytes.
    #[arg(short = 'l', long = "max-length", allow_hyphen_values = true)]
    max_length: Option<String>,
    /// Force shared permissions.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image.
    filename: String,
}

/// One map entry (qemu-img's `MapEntry`).
#[derive(Debug, Clone, Default, PartialEq)]
struct MapEntry {
    start: u64,
    length: u64,
    data: bool,
    zero: bool,
    compressed: bool,
    offset: Option<u64>,
    depth: usize,
    present: bool,
    filename: Option<String>,
}

fn mergeable(curr: &MapEntry, next: &MapEntry) -> bool {
    if curr.length == 0 {
        return false;
    }
    if curr.zero != next.zero
        || curr.data != next.data
        || curr.compressed != next.compressed
        || curr.depth != next.depth
        || curr.present != next.present
        || curr.filename.is_some() != next.filename.is_some()
        || curr.offset.is_some() != next.offset.is_some()
    {
        return false;
    }
    if curr.filename != next.filename {
        return false;
    }
    if let (Some(a), Some(b)) = (curr.offset, next.offset) {
        if a + curr.length != b {
            return false;
        }
    }
    true
}

/// The name qemu-img prints in the "File" column for an offset that the
/// node `n` reported into its child `role`: the node's own name for its
/// `file` (as the protocol node shares it), the data file's name for an
/// external data file.
fn mapped_file_name(n: &GraphNode, role: ChildRole) -> Option<String> {
    match role {
        ChildRole::File => Some(n.filename.clone()),
        _ => n.child(role).map(|c| c.filename.clone()),
    }
}

fn status(img: &Image, chain: &[Arc<GraphNode>], offset: u64, bytes: u64) -> CliResult<MapEntry> {
    let (e, depth) = img.block_status_above(offset, bytes).map_err(|e| {
        CliError::new(format!(
            "Could not read file metadata: {}",
            crate::human::strerror(e.errno())
        ))
    })?;
    let f = e.flags;
    let has_offset = f.contains(ExtentFlags::OFFSET_VALID);
    Ok(MapEntry {
        start: offset,
        length: e.length.clamp(1, bytes),
        data: f.contains(ExtentFlags::DATA),
        zero: f.contains(ExtentFlags::ZERO),
        compressed: f.contains(ExtentFlags::COMPRESSED),
        offset: has_offset.then_some(e.mapped_offset),
        depth,
        present: f.contains(ExtentFlags::ALLOCATED),
        filename: if has_offset {
            chain
                .get(depth)
                .and_then(|n| mapped_file_name(n, e.mapped_child))
        } else {
            None
        },
    })
}

fn hex(v: u64) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Prints one entry; in human mode it may rewrite `next` to coalesce.
fn dump(out: OutputFormat, e: &MapEntry, next: Option<&mut MapEntry>) -> CliResult {
    match out {
        OutputFormat::Human => {
            if e.data && e.offset.is_none() {
                return Err(CliError::new(
                    "File contains external, encrypted or compressed clusters.",
                ));
            }
            if e.data && !e.zero {
                println!(
                    "{:<16}{:<16}{:<16}{}",
                    hex(e.start),
                    hex(e.length),
                    hex(e.offset.unwrap_or(0)),
                    e.filename.as_deref().unwrap_or("")
                );
            }
            if let Some(n) = next {
                if !n.data || n.zero {
                    n.data = false;
                    n.zero = true;
                }
            }
        }
        OutputFormat::Json => {
            let mut s = format!(
                "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
                e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
            );
            if let Some(o) = e.offset {
                s.push_str(&format!(", \"offset\": {o}"));
            }
            s.push('}');
            if next.is_some() {
                println!("{s},");
            } else {
                print!("{s}");
            }
        }
    }
    Ok(())
}

fn size_opt(s: Option<&str>, what: &str) -> CliResult<Option<u64>> {
    s.map(|v| crate::args::cvtnum_full(what, v, 0, i64::MAX as u64))
        .transpose()
}

/// Runs `blk map`.
pub fn run(g: &Globals, a: MapArgs) -> CliResult {
    let out = parse_output("map", a.output.as_deref())?;
    let start = size_opt(a.start_offset.as_deref(), "start offset")?.unwrap_or(0);
    let max_len = size_opt(a.max_length.as_deref(), "max length")?;
    let host = g.host()?;
    let opts = OpenOptions {
        format: a.format.clone(),
        read_only: true,
        force_share: a.force_share,
        ..OpenOptions::default()
    };
    let img = crate::common::open_image_data(&host, &a.filename, &opts)?;
    let mut chain = vec![img.graph().clone()];
    let mut cur = img.graph().backing();
    while let Some(n) = cur {
        cur = n.backing();
        chain.push(n);
    }
    let mut length = img.length()?;
    if let Some(m) = max_len {
        length = length.min(start.saturating_add(m));
    }
    match out {
        OutputFormat::Human => println!("{:<16}{:<16}{:<16}File", "Offset", "Length", "Mapped to"),
        OutputFormat::Json => print!("["),
    }
    let mut curr = MapEntry {
        start,
        ..MapEntry::default()
    };
    while curr.start + curr.length < length {
        let offset = curr.start + curr.length;
        let n = (length - offset).min(1 << 30);
        let mut next = status(&img, &chain, offset, n)?;
        if mergeable(&curr, &next) {
            curr.length += next.length;
            continue;
        }
        if curr.length > 0 {
            dump(out, &curr, Some(&mut next))?;
        }
        curr = next;
    }
    dump(out, &curr, None)?;
    if out == OutputFormat::Json {
        println!("]");
    }
    Ok(())
}
