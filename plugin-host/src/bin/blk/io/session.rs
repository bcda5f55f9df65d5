//! The image a `blk io` session works on: opened from the command line or
//! by the `open` command, closed by `close`, with qemu-io's `-s` (writes go
//! to a temporary qcow2 overlay, deleted when the image is closed) and `-C`
//! (copy-on-read).

use crate::common::{open_detail, CliError};
use plugin_host::{Host, Image, OpenOptions};

/// How to open the session's image.
#[derive(Debug, Clone, Default)]
pub struct OpenSpec {
    /// The file name (a specification with `image_opts`).
    pub filename: String,
    /// The argument is an `--image-opts` specification.
    pub image_opts: bool,
    /// Format, flags and driver options.
    pub opts: OpenOptions,
    /// `-s`: a temporary overlay takes the writes.
    pub snapshot: bool,
    /// `-C`: copy-on-read.
    pub copy_on_read: bool,
    /// The name messages give (`None`: the file name; empty: no name, as
    /// for `open -o ...` without a path).
    pub display_name: Option<String>,
}

impl OpenSpec {
    fn cant_open(&self, reason: String) -> CliError {
        match self.display_name.as_deref() {
            Some("") => CliError::new(format!("can't open: {reason}")),
            Some(n) => cant_open(n, reason),
            None => cant_open(&self.filename, reason),
        }
    }
}

/// The open image of a session.
pub struct OpenImage {
    /// The image the commands use (the overlay with `-s`).
    pub img: Image,
    /// Writes are refused before they reach the image.
    pub read_only: bool,
    /// Reads copy into the top image.
    pub copy_on_read: bool,
    /// The temporary overlay file of `-s`, removed on close.
    temp: Option<String>,
}

impl Drop for OpenImage {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

/// `can't open device NAME: REASON` as qemu-io words a failed open.
fn cant_open(name: &str, reason: String) -> CliError {
    CliError::new(format!("can't open device {name}: {reason}"))
}

fn open_plain(host: &Host, spec: &OpenSpec, opts: &OpenOptions) -> Result<Image, CliError> {
    if spec.image_opts {
        let s = crate::common::parse_image_opts(&spec.filename)?;
        let inner = s.filename().unwrap_or(&spec.filename).to_string();
        return host
            .open_spec(&s, opts)
            .map_err(|e| spec.cant_open(open_detail(&e, &inner)));
    }
    host.open(&spec.filename, opts).map_err(|e| {
        let inner = match spec.filename.strip_prefix("json:") {
            Some(j) => plugin_host::ImageSpec::from_json(j)
                .ok()
                .and_then(|s| s.filename().map(str::to_string)),
            None => None,
        };
        spec.cant_open(open_detail(&e, inner.as_deref().unwrap_or(&spec.filename)))
    })
}

/// A new temporary file name for a snapshot overlay, as QEMU's
/// `get_tmp_filename` (in `$TMPDIR`, else `/var/tmp`), reserved on disk.
fn temp_overlay_name() -> Result<String, CliError> {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/var/tmp".to_string());
    let pid = std::process::id();
    for n in 0..1000u32 {
        let name = format!("{dir}/vl.blk{pid}.{n}");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)
        {
            Ok(_) => return Ok(name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CliError::new(format!(
                    "Could not get temporary filename: {e}"
                )))
            }
        }
    }
    Err(CliError::new("Could not get temporary filename"))
}

/// Opens the session image.
pub fn open(host: &Host, spec: &OpenSpec) -> Result<OpenImage, CliError> {
    if !spec.snapshot {
        let img = open_plain(host, spec, &spec.opts)?;
        if spec.copy_on_read && (spec.opts.read_only || spec.opts.force_share) {
            return Err(spec.cant_open("Can't use copy-on-read on read-only device".to_string()));
        }
        return Ok(OpenImage {
            read_only: spec.opts.read_only || spec.opts.force_share,
            copy_on_read: spec.copy_on_read,
            img,
            temp: None,
        });
    }
    // -s: the image itself only read; a qcow2 overlay over it takes writes.
    let mut base_opts = spec.opts.clone();
    base_opts.read_only = true;
    let base = open_plain(host, spec, &base_opts)?;
    if spec.copy_on_read && (spec.opts.read_only || spec.opts.force_share) {
        return Err(spec.cant_open("Can't use copy-on-read on read-only device".to_string()));
    }
    let size = base.length().map_err(CliError::from)?;
    let fmt = base.format().to_string();
    let base_name = std::fs::canonicalize(base.filename())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| base.filename().to_string());
    drop(base);
    let temp = temp_overlay_name()?;
    let made = host.create(
        "qcow2",
        &temp,
        "",
        Some(size),
        Some((base_name.as_str(), Some(fmt.as_str()))),
    );
    if let Err(e) = made {
        let _ = std::fs::remove_file(&temp);
        return Err(spec.cant_open(format!(
            "Could not create temporary overlay '{temp}': {}",
            e.message
        )));
    }
    let oopts = OpenOptions {
        format: Some("qcow2".to_string()),
        ..OpenOptions::default()
    };
    let img = match host.open(&temp, &oopts) {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(spec.cant_open(open_detail(&e, &temp)));
        }
    };
    Ok(OpenImage {
        img,
        read_only: spec.opts.read_only || spec.opts.force_share,
        copy_on_read: spec.copy_on_read,
        temp: Some(temp),
    })
}
