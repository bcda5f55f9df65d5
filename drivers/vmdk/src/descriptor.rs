//! The text descriptor: `key=value` lines (CID, parentCID, createType,
//! parentFileNameHint), extent lines (`RW 20480 SPARSE "name"`) and
//! `ddb.*` lines, as qemu-img writes and reads them.

use block_core::{BlockError, Result};

/// The descriptor's first line, which probing looks for.
pub const SIGNATURE: &str = "# Disk DescriptorFile";
/// Largest descriptor read (QEMU refuses more than 1 MiB too).
pub const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;
/// parentCID of an image without a backing file.
pub const NO_PARENT: u32 = 0xffff_ffff;

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// Access (`RW`, `RDONLY`, `NOACCESS`).
    pub access: String,
    /// Sectors of the extent.
    pub sectors: u64,
    /// Type (`SPARSE`, `FLAT`, `ZERO`, `VMFS`...).
    pub kind: String,
    /// File name as written.
    pub file: String,
}

/// The fields of a parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Content ID.
    pub cid: u32,
    /// The backing image's content ID ([`NO_PARENT`] without one).
    pub parent_cid: u32,
    /// The subformat (`monolithicSparse`, ...).
    pub create_type: String,
    /// The backing file name, when there is one.
    pub parent_hint: Option<String>,
    /// The extents in order.
    pub extents: Vec<ExtentLine>,
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

impl Descriptor {
    /// Parses descriptor text (NUL padding ends it).
    pub fn parse(text: &str) -> Result<Descriptor> {
        let text = text.split('\0').next().unwrap_or("");
        let bad = |m: String| BlockError::corrupt("open", format!("VMDK descriptor: {m}"));
        let mut d = Descriptor {
            cid: 0,
            parent_cid: NO_PARENT,
            create_type: String::new(),
            parent_hint: None,
            extents: Vec::new(),
        };
        let hex = |v: &str| {
            u32::from_str_radix(unquote(v), 16).map_err(|_| bad(format!("bad CID {v:?}")))
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                d.extents.push(
                    parse_extent(line).ok_or_else(|| bad(format!("bad extent line {line:?}")))?,
                );
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "CID" => d.cid = hex(v)?,
                "parentCID" => d.parent_cid = hex(v)?,
                "createType" => d.create_type = unquote(v).to_string(),
                "parentFileNameHint" => d.parent_hint = Some(unquote(v).to_string()),
                _ => {}
            }
        }
        if d.create_type.is_empty() {
            return Err(bad("no createType".into()));
        }
        Ok(d)
    }
}

fn parse_extent(line: &str) -> Option<ExtentLine> {
    let (head, rest) = line.split_once('"')?;
    let file = rest.split('"').next()?.to_string();
    let mut w = head.split_whitespace();
    Some(ExtentLine {
        access: w.next()?.to_string(),
        sectors: w.next()?.parse().ok()?,
        kind: w.next()?.to_string(),
        file,
    })
}

/// What a new descriptor says.
#[derive(Debug, Clone)]
pub struct NewDescriptor<'a> {
    /// Content ID.
    pub cid: u32,
    /// Backing: its name and content ID.
    pub parent: Option<(&'a str, u32)>,
    /// The subformat.
    pub create_type: &'a str,
    /// Extent lines.
    pub extents: Vec<ExtentLine>,
    /// Disk sectors (for the geometry).
    pub sectors: u64,
    /// `ddb.adapterType`.
    pub adapter_type: &'a str,
    /// `ddb.virtualHWVersion`.
    pub hw_version: &'a str,
    /// `ddb.toolsVersion`.
    pub tools_version: &'a str,
}

impl NewDescriptor<'_> {
    /// The text, laid out as qemu-img writes it.
    pub fn render(&self) -> String {
        let heads: u64 = if self.adapter_type == "ide" { 16 } else { 255 };
        let cylinders = self.sectors / (63 * heads);
        let mut s = format!(
            "{SIGNATURE}\nversion=1\nCID={:x}\nparentCID={:08x}\ncreateType=\"{}\"\n",
            self.cid,
            self.parent.map_or(NO_PARENT, |p| p.1),
            self.create_type
        );
        if let Some((name, _)) = self.parent {
            s += &format!("parentFileNameHint=\"{name}\"\n");
        }
        s += "\n# Extent description\n";
        for e in &self.extents {
            s += &format!("{} {} {} \"{}\"\n", e.access, e.sectors, e.kind, e.file);
        }
        s += "\n# The Disk Data Base\n#DDB\n\n";
        s += &format!(
            "ddb.virtualHWVersion = \"{}\"\nddb.geometry.cylinders = \"{cylinders}\"\n\
             ddb.geometry.heads = \"{heads}\"\nddb.geometry.sectors = \"63\"\n\
             ddb.adapterType = \"{}\"\nddb.toolsVersion = \"{}\"\n",
            self.hw_version, self.adapter_type, self.tools_version
        );
        s
    }
}

/// A content ID other than `old` and [`NO_PARENT`] (time and process based;
/// QEMU's is random).
pub fn new_cid(old: u32) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = (t ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let c = (x >> 32) as u32;
    if c == old || c == NO_PARENT {
        old.wrapping_add(1).max(1) & 0x7fff_ffff
    } else {
        c
    }
}

/// Descriptor text `raw` (NUL padded) with its `CID=` line set to `cid`.
pub fn with_cid(raw: &[u8], cid: u32) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.split('\0').next().unwrap_or("");
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("CID") && line.contains('=') {
            out += &format!("CID={cid:x}\n");
        } else {
            out += line;
        }
    }
    out
}
