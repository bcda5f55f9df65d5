//! `blk info`: qemu-img info (human and JSON, optionally the backing chain).

use crate::common::{open_image, parse_output, CliError, CliResult, Globals, OutputFormat};
use crate::human::size_to_str;
use crate::qjson::{dump_human, QObj};
use crate::snapshots::{snapshot_qobj, snapshot_table};
use block_core::{ChildRole, NodeInfo, SnapshotInfo};
use clap::Args;
use plugin_host::{GraphNode, OpenOptions};

/// Arguments of `blk info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Open with shared permissions (force share).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Show every image of the backing chain.
    #[arg(short = 'b', long = "backing-chain")]
    backing_chain: bool,
    /// Output format: human or json.
    #[arg(long = "output", value_name = "FMT")]
    output: Option<String>,
    /// The image.
    filename: String,
}

/// Everything `info` prints about one node.
pub struct NodeReport {
    /// The node's own description.
    pub info: NodeInfo,
    /// The file name.
    pub filename: String,
    /// Bytes used on storage.
    pub actual_size: Option<u64>,
    /// The backing file name resolved against the image's directory.
    pub full_backing_filename: Option<String>,
    /// Internal snapshots.
    pub snapshots: Vec<SnapshotInfo>,
    /// True for protocol nodes (file, null...).
    pub protocol: bool,
    /// Non-backing children: (name, report).
    pub children: Vec<(String, NodeReport)>,
}

/// Collects the report of a graph node and its non-backing children.
pub fn node_report(n: &GraphNode) -> CliResult<NodeReport> {
    let info = n
        .node
        .info()
        .map_err(|e| CliError::new(e.in_file(&n.filename).to_string()))?;
    let mut info = info;
    if n.driver == "file" || (n.driver == "raw" && info.virtual_size & 511 != 0) {
        // QEMU counts files in whole sectors.
        info.virtual_size = info.virtual_size.div_ceil(512) * 512;
    }
    let actual_size = n.node.allocated_size().ok();
    let full_backing_filename = info
        .backing_filename
        .as_deref()
        .map(|b| block_core::resolve_relative(b, Some(&n.filename)));
    let snapshots = n
        .node
        .snapshots()
        .and_then(|s| s.snapshot_list().ok())
        .unwrap_or_default();
    let protocol = n.role == Some(ChildRole::File) || n.role == Some(ChildRole::DataFile);
    let mut children = Vec::new();
    for (role, c) in n.children() {
        // QEMU 10 lists neither the backing file nor an external data
        // file among an image's child nodes.
        if role == ChildRole::Backing || role == ChildRole::DataFile {
            continue;
        }
        children.push((role.as_str().to_string(), node_report(&c)?));
    }
    Ok(NodeReport {
        info,
        // QEMU names a node opened as "file:NAME" by its file's name.
        filename: n
            .filename
            .strip_prefix("file:")
            .unwrap_or(&n.filename)
            .to_string(),
        actual_size,
        full_backing_filename,
        snapshots,
        protocol,
        children,
    })
}

/// The QAPI `BlockGraphInfo` object of a report.
pub fn report_qobj(r: &NodeReport) -> QObj {
    let mut d = QObj::dict();
    d.put("filename", r.filename.as_str());
    d.put("format", r.info.format.as_str());
    d.put("dirty-flag", r.info.dirty_flag);
    d.put_opt("actual-size", r.actual_size);
    d.put("virtual-size", r.info.virtual_size);
    d.put_opt("cluster-size", r.info.cluster_size);
    d.put_opt("backing-filename", r.info.backing_filename.clone());
    d.put_opt("full-backing-filename", r.full_backing_filename.clone());
    d.put_opt(
        "backing-filename-format",
        r.info.backing_filename_format.clone(),
    );
    if !r.snapshots.is_empty() {
        d.put(
            "snapshots",
            QObj::List(r.snapshots.iter().map(snapshot_qobj).collect()),
        );
    }
    if let Some(fs) = format_specific(r) {
        d.put("format-specific", fs);
    }
    if encrypted(r) {
        d.put("encrypted", true);
    }
    let children: Vec<QObj> = r
        .children
        .iter()
        .map(|(name, c)| {
            let mut e = QObj::dict();
            e.put("name", name.as_str());
            e.put("info", report_qobj(c));
            e
        })
        .collect();
    d.put("children", QObj::List(children));
    d
}

/// True for an encrypted image: its format-specific data describes the
/// encryption (qcow2's `encrypt`), as QEMU's ImageInfo `encrypted`.
fn encrypted(r: &NodeReport) -> bool {
    r.info
        .format_specific
        .as_ref()
        .and_then(|v| v.get("data"))
        .is_some_and(|d| d.get("encrypt").is_some())
}

/// The format-specific object; protocol nodes of the `file` driver get
/// QEMU's empty `{"type": "file", "data": {}}`.
fn format_specific(r: &NodeReport) -> Option<QObj> {
    match &r.info.format_specific {
        Some(v) => {
            // Keep "type" before "data" as QAPI does.
            let mut d = QObj::dict();
            if let Some(t) = v.get("type") {
                d.put("type", QObj::from_value(t));
            }
            if let Some(data) = v.get("data") {
                d.put("data", QObj::from_value(data));
            }
            if let serde_json::Value::Object(m) = v {
                for (k, val) in m {
                    if k != "type" && k != "data" {
                        d.put(k, QObj::from_value(val));
                    }
                }
            }
            Some(d)
        }
        None if r.protocol && r.info.format == "file" => {
            let mut d = QObj::dict();
            d.put("type", "file");
            d.put("data", QObj::dict());
            Some(d)
        }
        None => None,
    }
}

fn push_line(out: &mut String, indent: usize, text: &str) {
    out.push_str(&format!("{:w$}{text}\n", "", w = indent * 4));
}

/// qemu-img's human dump of one node (`bdrv_node_info_dump`).
pub fn dump_node_human(r: &NodeReport, indent: usize, protocol: bool, out: &mut String) {
    let disk = r
        .actual_size
        .map(size_to_str)
        .unwrap_or_else(|| "unavailable".to_string());
    let vs = r.info.virtual_size;
    if protocol {
        push_line(out, indent, &format!("filename: {}", r.filename));
        push_line(out, indent, &format!("protocol type: {}", r.info.format));
        push_line(
            out,
            indent,
            &format!("file length: {} ({vs} bytes)", size_to_str(vs)),
        );
        push_line(out, indent, &format!("disk size: {disk}"));
    } else {
        push_line(out, indent, &format!("image: {}", r.filename));
        push_line(out, indent, &format!("file format: {}", r.info.format));
        push_line(
            out,
            indent,
            &format!("virtual size: {} ({vs} bytes)", size_to_str(vs)),
        );
        push_line(out, indent, &format!("disk size: {disk}"));
    }
    if encrypted(r) {
        push_line(out, indent, "encrypted: yes");
    }
    if let Some(cs) = r.info.cluster_size {
        push_line(out, indent, &format!("cluster_size: {cs}"));
    }
    if r.info.dirty_flag {
        push_line(out, indent, "cleanly shut down: no");
    }
    if let Some(b) = &r.info.backing_filename {
        let mut line = format!("backing file: {b}");
        match &r.full_backing_filename {
            None => line.push_str(" (cannot determine actual path)"),
            Some(full) if full != b => line.push_str(&format!(" (actual path: {full})")),
            _ => {}
        }
        push_line(out, indent, &line);
    }
    if let Some(bf) = &r.info.backing_filename_format {
        push_line(out, indent, &format!("backing file format: {bf}"));
    }
    if !r.snapshots.is_empty() {
        push_line(out, indent, "Snapshot list:");
        for l in snapshot_table(&r.snapshots) {
            push_line(out, indent, &l);
        }
    }
    if let Some(QObj::Dict(fs)) = format_specific(r) {
        if let Some((_, data)) = fs.iter().find(|(k, _)| k == "data") {
            let non_empty = matches!(data, QObj::Dict(m) if !m.is_empty());
            if non_empty {
                push_line(out, indent, "Format specific information:");
                dump_human(data, indent + 1, out);
            }
        }
    }
}

/// qemu-img's human dump of a node and its children (`bdrv_graph_info_dump`).
pub fn dump_graph_human(
    r: &NodeReport,
    indent: usize,
    path: &str,
    protocol: bool,
    out: &mut String,
) {
    dump_node_human(r, indent, protocol, out);
    for (name, c) in &r.children {
        let child_path = format!("{path}/{name}");
        push_line(out, indent, &format!("Child node '{child_path}':"));
        dump_graph_human(c, indent + 1, &child_path, true, out);
    }
}

/// Runs `blk info`.
pub fn run(g: &Globals, a: InfoArgs) -> CliResult {
    let out_fmt = parse_output("info", a.output.as_deref())?;
    let host = g.host()?;
    let mut reports = Vec::new();
    let mut filename = a.filename.clone();
    let mut format = a.format.clone();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let canon = std::fs::canonicalize(&filename)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| filename.clone());
        if seen.contains(&canon) {
            return Err(CliError::new(format!(
                "Backing file '{filename}' creates an infinite loop."
            )));
        }
        seen.push(canon);
        let opts = OpenOptions {
            format: format.clone(),
            read_only: true,
            no_backing: true,
            force_share: a.force_share,
            ..OpenOptions::default()
        };
        // Only the first image is the argument (a spec with --image-opts).
        let img = if reports.is_empty() {
            open_image(&host, &filename, &opts)?
        } else {
            crate::common::open_image_file(&host, &filename, &opts)?
        };
        let r = node_report(img.graph())?;
        let next = r
            .full_backing_filename
            .clone()
            .map(|f| (f, r.info.backing_filename_format.clone()));
        reports.push(r);
        match next {
            Some((f, bf)) if a.backing_chain => {
                filename = f;
                format = bf;
            }
            _ => break,
        }
    }
    match out_fmt {
        OutputFormat::Json => {
            let text = if a.backing_chain {
                QObj::List(reports.iter().map(report_qobj).collect()).to_pretty()
            } else {
                report_qobj(&reports[0]).to_pretty()
            };
            println!("{text}");
        }
        OutputFormat::Human => {
            let mut out = String::new();
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                dump_graph_human(r, 0, "", false, &mut out);
            }
            print!("{out}");
        }
    }
    Ok(())
}
