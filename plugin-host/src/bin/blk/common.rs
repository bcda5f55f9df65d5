//! Shared pieces of the subcommands: the error type with its exit status,
//! host construction, opening images with qemu-img style messages, output
//! formats.

use block_core::BlockError;
use plugin_host::ops::OpError;
use plugin_host::{Host, Image, OpenOptions};
use std::fmt;

/// A command failure: the exit status and an optional one-line message
/// (printed as `blk: <message>`).
#[derive(Debug)]
pub struct CliError {
    /// The process exit status.
    pub code: i32,
    /// The message, without the `blk: ` prefix.
    pub msg: Option<String>,
}

impl CliError {
    /// Exit status 1 with a message.
    pub fn new(msg: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            msg: Some(msg.into()),
        }
    }

    /// A usage error: the message and qemu-img's "Try ... --help" hint.
    pub fn usage(cmd: &str, msg: impl Into<String>) -> CliError {
        CliError::new(format!(
            "{}\nTry 'blk {cmd} --help' for more info",
            msg.into()
        ))
    }

    /// A given exit status with a message.
    pub fn with_code(code: i32, msg: impl Into<String>) -> CliError {
        CliError {
            code,
            msg: Some(msg.into()),
        }
    }

    /// A given exit status, nothing printed.
    pub fn silent(code: i32) -> CliError {
        CliError { code, msg: None }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.msg {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl From<BlockError> for CliError {
    fn from(e: BlockError) -> CliError {
        CliError::new(clean(&e.to_string()))
    }
}

/// The errno qemu-img reports for a failed request (out-of-range requests
/// are `EIO`, as the block layer's request checks return; so is corrupt
/// metadata or data, such as a compressed cluster that does not inflate).
pub fn errno_of(e: &BlockError) -> i32 {
    match e.kind {
        block_core::ErrorKind::OutOfRange | block_core::ErrorKind::Corrupt => libc::EIO,
        k => k.errno(),
    }
}

/// Removes Rust's " (os error N)" decorations from a message.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(" (os error ") {
        out.push_str(&rest[..p]);
        match rest[p..].find(')') {
            Some(q) => rest = &rest[p + q + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The result type of the subcommands.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Global options shared by every subcommand.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// Plugin directories given with `--plugin-dir`.
    pub plugin_dirs: Vec<String>,
}

impl Globals {
    /// Builds the host: linked-in drivers, `--plugin-dir` plugins and
    /// `BLK_PLUGIN_PATH`.
    pub fn host(&self) -> CliResult<Host> {
        let mut b = Host::builder();
        for d in &self.plugin_dirs {
            b = b.plugin_dir(d);
        }
        b.build().map_err(CliError::from)
    }
}

/// `--output=human|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Human-readable text (the default).
    #[default]
    Human,
    /// JSON.
    Json,
}

/// Parses an `--output` value of subcommand `cmd` with qemu-img's message.
pub fn parse_output(cmd: &str, s: Option<&str>) -> CliResult<OutputFormat> {
    match s {
        None | Some("human") => Ok(OutputFormat::Human),
        Some("json") => Ok(OutputFormat::Json),
        Some(o) => Err(CliError::usage(
            cmd,
            format!("--output expects 'human' or 'json' not '{o}'"),
        )),
    }
}

/// The text of an error without a leading `file: ` that repeats `filename`.
pub fn error_detail(e: &BlockError, filename: &str) -> String {
    if e.file.as_deref() == Some(filename) {
        clean(&e.detail())
    } else {
        clean(&e.to_string())
    }
}

/// The reason of a failed image creation, as qemu-img words it after the
/// file name (without the library's `create` operation).
pub fn create_detail(e: &BlockError, filename: &str) -> String {
    detail_without_op(e, filename, block_core::Operation::Create)
}

/// [`error_detail`] without the operation (and its offset) when the error
/// is of `op`: how qemu-img words the reason of a failed `op` after the
/// file name.
pub fn detail_without_op(e: &BlockError, filename: &str, op: block_core::Operation) -> String {
    if e.op != op {
        return error_detail(e, filename);
    }
    let mut message = e.message.clone();
    if let Some(src) = std::error::Error::source(e) {
        message.push_str(&format!(": {src}"));
    }
    let bare = BlockError {
        kind: e.kind,
        op: block_core::Operation::Unspecified,
        offset: None,
        file: e.file.clone(),
        message,
        source: None,
    };
    error_detail(&bare, filename)
}

/// Refuses a `-o` argument qemu-img's getopt loop refuses: empty, starting
/// with a comma, or ending in an odd number of commas.
pub fn check_option_lists(lists: &[String]) -> CliResult<()> {
    for l in lists {
        let trailing = l.len() - l.trim_end_matches(',').len();
        if l.is_empty() || l.starts_with(',') || trailing % 2 == 1 {
            return Err(CliError::new(format!("Invalid option list: {l}")));
        }
    }
    Ok(())
}

/// Set once from the command line: `--image-opts` was given.
static IMAGE_OPTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records `--image-opts` (the image arguments are specifications).
pub fn set_image_opts(on: bool) {
    IMAGE_OPTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--image-opts` was given.
pub fn image_opts() -> bool {
    IMAGE_OPTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Parses an `--image-opts` argument (`driver=qcow2,file.filename=...`;
/// a leading bare value is the `file` option, as QEMU's).
pub fn parse_image_opts(text: &str) -> CliResult<plugin_host::ImageSpec> {
    let pairs = crate::qemu_opts::parse(text, Some("file")).map_err(CliError::new)?;
    Ok(plugin_host::ImageSpec::from_pairs(pairs))
}

/// Opens an image argument; failures read `Could not open 'FILE': ...` as
/// qemu-img's. With `--image-opts` the argument is a specification.
pub fn open_image(host: &Host, filename: &str, opts: &OpenOptions) -> CliResult<Image> {
    if image_opts() {
        if opts.format.is_some() {
            return Err(CliError::new(
                "--image-opts and --format are mutually exclusive",
            ));
        }
        let spec = parse_image_opts(filename)?;
        return host
            .open_spec(&spec, opts)
            .map_err(|e| spec_open_error(&e, filename, &spec));
    }
    open_image_file(host, filename, opts)
}

/// Opens an image whose data the command reads: an encrypted image is
/// refused as QEMU refuses to open it without its secret (blk has none:
/// it cannot decrypt). `info`, which needs no data, uses [`open_image`].
pub fn open_image_data(host: &Host, filename: &str, opts: &OpenOptions) -> CliResult<Image> {
    let img = open_image(host, filename, opts)?;
    let encrypted = img
        .info()
        .ok()
        .and_then(|i| i.node.format_specific)
        .and_then(|v| v.get("data").map(|d| d.get("encrypt").is_some()))
        .unwrap_or(false);
    if encrypted {
        return Err(CliError::new(format!(
            "Could not open '{filename}': Parameter 'encrypt.key-secret' is required for cipher"
        )));
    }
    Ok(img)
}

/// Opens an image by file name (or `json:` specification) whatever
/// `--image-opts` says: for targets and backing files.
pub fn open_image_file(host: &Host, filename: &str, opts: &OpenOptions) -> CliResult<Image> {
    host.open(filename, opts)
        .map_err(|e| open_error(&e, filename))
}

/// The message of a failed open of a specification written as `outer`.
pub fn spec_open_error(e: &BlockError, outer: &str, spec: &plugin_host::ImageSpec) -> CliError {
    let inner = spec.filename().unwrap_or(outer);
    CliError::new(format!(
        "Could not open '{outer}': {}",
        open_detail(e, inner)
    ))
}

/// The qemu-style message of a failed open.
pub fn open_error(e: &BlockError, filename: &str) -> CliError {
    if let Some(json) = filename.strip_prefix("json:") {
        if let Ok(spec) = plugin_host::ImageSpec::from_json(json) {
            return spec_open_error(e, filename, &spec);
        }
    }
    // The file protocol's own errors name the file without "file:".
    let inner = filename.strip_prefix("file:").unwrap_or(filename);
    CliError::new(format!(
        "Could not open '{filename}': {}",
        open_detail(e, inner)
    ))
}

/// The reason of a failed open, as qemu-img words it after the file name
/// (drivers word their reasons as QEMU's: the file protocol's "Could not
/// open 'F': ...", qcow2's "Image is not in qcow2 format").
pub fn open_detail(e: &BlockError, filename: &str) -> String {
    let detail = if e.file.as_deref() == Some(filename) {
        let mut m = e.message.clone();
        if let Some(src) = std::error::Error::source(e) {
            m.push_str(&format!(": {src}"));
        }
        clean(&m)
    } else {
        error_detail(e, filename)
    };
    detail
}

/// Prints pretty JSON with QEMU's four-space indentation.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", to_json_pretty(v));
}

/// Pretty JSON with four-space indentation, as qemu-img prints it.
pub fn to_json_pretty(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Splits `a=b,c=d` open options (`,,` escapes a comma).
pub fn split_options(s: &str) -> CliResult<Vec<(String, String)>> {
    block_core::options::split_option_string(s).map_err(|e| CliError::new(e.message))
}

/// A failed library operation (commit, rebase) as qemu-img words it: the
/// block layer's error.
pub fn op_error(e: OpError) -> CliError {
    match e {
        OpError::At { error, .. } => CliError::from(*error),
        OpError::Block(error) => CliError::from(error),
        e => CliError::new(e.to_string()),
    }
}
