//! `blk create`: qemu-img create, with its "Formatting ..." line and messages.

use crate::common::{CliError, CliResult, Globals};
use block_core::{OptDesc, OptKind, OptionValues};
use clap::Args;
use plugin_host::{Host, OpenOptions};

/// Arguments of `blk create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Image format.
    #[arg(short = 'f', long = "format", default_value = "raw")]
    format: String,
    /// Format options `k=v,...` (repeatable; `-o help` lists them).
    #[arg(short = 'o', long = "options")]
    options: Vec<String>,
    /// Backing file.
    #[arg(short = 'b', long = "backing")]
    backing: Option<String>,
    /// Backing file format.
    #[arg(short = 'F', long = "backing-format")]
    backing_format: Option<String>,
    /// Unsafe: do not open the backing file.
    #[arg(short = 'u')]
    unsafe_backing: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// The image to create.
    filename: Option<String>,
    /// The virtual size (k/M/G/T/P/E suffixes).
    size: Option<String>,
    /// Anything else is an error.
    #[arg(hide = true)]
    extra: Vec<String>,
}

/// True when an option list asks for help (`help` or `?`).
pub fn has_help_option(opts: &str) -> bool {
    block_core::options::split_option_string(opts)
        .map(|v| v.iter().any(|(k, _)| k == "help" || k == "?"))
        .unwrap_or(false)
}

/// Prints the create options of a format as `qemu-img create -o help` does:
/// with a target file name, merged with its protocol's options.
pub fn print_option_help(host: &Host, fmt: &str, filename: Option<&str>) -> CliResult {
    let d = host
        .registry()
        .get(fmt)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{fmt}'")))?;
    let Some(filename) = filename else {
        println!("Supported {fmt} options:");
        print_opt_lines(&d.driver.create_options());
        println!();
        println!("The protocol level may support further options.");
        println!("Specify the target filename to include those options.");
        return Ok(());
    };
    let schema = merged_create_options(host, fmt, filename)?;
    println!("Supported options:");
    print_opt_lines(&schema);
    Ok(())
}

/// The create options of `fmt` followed by those of the protocol of
/// `filename` that the format lacks (QEMU's `qemu_opts_append` order).
pub fn merged_create_options(host: &Host, fmt: &str, filename: &str) -> CliResult<Vec<OptDesc>> {
    let d = host
        .registry()
        .get(fmt)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{fmt}'")))?;
    let mut schema = d.driver.create_options();
    if d.driver.kind() == block_core::DriverKind::Format {
        let proto = plugin_host::graph::find_protocol(host.registry(), filename)
            .map_err(|e| CliError::new(e.message.clone()))?;
        for o in proto.driver.create_options() {
            if !schema.iter().any(|s| s.name == o.name) {
                schema.push(o);
            }
        }
    }
    Ok(schema)
}

/// Prints one `  name=<type>  - help` line per option, sorted by name, as
/// QEMU's `qemu_opts_print_help`.
pub fn print_opt_lines(schema: &[OptDesc]) {
    let mut schema = schema.to_vec();
    schema.sort_by(|a, b| a.name.cmp(&b.name));
    for o in &schema {
        let ty = match o.kind {
            OptKind::Bool => "bool (on/off)",
            OptKind::Size => "size",
            OptKind::Number => "num",
            OptKind::String | OptKind::Enum(_) => "str",
        };
        println!("  {:<22} - {}", format!("{}=<{ty}>", o.name), o.help);
    }
}

/// The order in which QEMU prints the create options of a format.
fn print_order(fmt: &str, schema: &[OptDesc]) -> Vec<String> {
    let fixed: &[&str] = match fmt {
        "qcow2" => &[
            "encryption",
            "encrypt.format",
            "encrypt.key-secret",
            "encrypt.cipher-alg",
            "encrypt.cipher-mode",
            "encrypt.ivgen-alg",
            "encrypt.ivgen-hash-alg",
            "encrypt.hash-alg",
            "encrypt.iter-time",
            "cluster_size",
            "extended_l2",
            "preallocation",
            "compression_type",
            "size",
            "compat",
            "backing_file",
            "backing_fmt",
            "data_file",
            "data_file_raw",
            "lazy_refcounts",
            "refcount_bits",
        ],
        "raw" => &["size", "preallocation"],
        _ => &[],
    };
    let mut order: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    for o in schema {
        if !order.contains(&o.name) {
            order.push(o.name.clone());
        }
    }
    order
}

/// Options whose default QEMU shows in the "Formatting" line.
const SHOWN_DEFAULTS: &[&str] = &[
    "cluster_size",
    "extended_l2",
    "compression_type",
    "lazy_refcounts",
    "refcount_bits",
];

/// The "Formatting 'FILE', fmt=FMT k=v ..." line.
pub fn formatting_line(filename: &str, fmt: &str, values: &OptionValues) -> String {
    let mut line = format!("Formatting '{filename}', fmt={fmt}");
    for name in print_order(fmt, &values.schema) {
        let Some(desc) = values.schema.iter().find(|d| d.name == name) else {
            continue;
        };
        let given = values
            .values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone());
        let text = match given {
            Some(v) => match desc.kind {
                OptKind::Size => block_core::parse_size(&v)
                    .map(|n| n.to_string())
                    .unwrap_or(v),
                _ => v,
            },
            None => match (&desc.default, SHOWN_DEFAULTS.contains(&name.as_str())) {
                (Some(d), true) => match desc.kind {
                    OptKind::Size => block_core::parse_size(d)
                        .map(|n| n.to_string())
                        .unwrap_or(d.clone()),
                    _ => d.clone(),
                },
                _ => continue,
            },
        };
        line.push_str(&format!(" {name}={text}"));
    }
    line
}

/// `schema` with its enumerated options taken as text, as QemuOpts takes
/// them (the driver checks the words later).
pub use block_core::options::loosen_enums;

/// The message QEMU's create gives for an enumerated option with a value
/// not among its words: the QAPI member name for qcow2's, the file
/// protocol's own text for raw's preallocation.
pub fn bad_enum_value(schema: &[OptDesc], values: &OptionValues, fmt: &str) -> Option<String> {
    values.values.iter().find_map(|(k, v)| {
        let d = schema.iter().find(|d| &d.name == k)?;
        let OptKind::Enum(words) = &d.kind else {
            return None;
        };
        if words.iter().any(|w| w == v) {
            return None;
        }
        if fmt == "raw" {
            return Some(format!("invalid parameter value: {v}"));
        }
        let member = match k.as_str() {
            "compat" => "version".to_string(),
            "encrypt.format" => "format".to_string(),
            other => other.replace('_', "-"),
        };
        Some(format!("Parameter '{member}' does not accept value '{v}'"))
    })
}

/// Parses a size argument with qemu-img's messages.
pub fn parse_img_size(s: &str) -> CliResult<u64> {
    crate::human::cvtnum("image size", s).map_err(CliError::new)
}

/// Creates an image like `bdrv_img_create`: validates the options, takes
/// the size from the backing file when absent, prints the Formatting line.
#[allow(clippy::too_many_arguments)]
pub fn create_image(
    host: &Host,
    fmt: &str,
    filename: &str,
    options: &str,
    size: Option<u64>,
    backing: Option<&str>,
    backing_fmt: Option<&str>,
    unsafe_backing: bool,
    quiet: bool,
) -> CliResult {
    let ferr = |m: String| CliError::new(format!("{filename}: {m}"));
    let d = host
        .registry()
        .get(fmt)
        .ok_or_else(|| ferr(format!("Unknown file format '{fmt}'")))?;
    let _ = d;
    let schema =
        merged_create_options(host, fmt, filename).map_err(|e| ferr(e.msg.unwrap_or_default()))?;
    // QEMU takes enumerated values as text and checks them only when the
    // driver creates, after the Formatting line.
    let loose = loosen_enums(&schema);
    let mut values = OptionValues::parse_str(&loose, options).map_err(|e| ferr(e.message))?;
    // Positional size, -b and -F override -o.
    if let Some(s) = size {
        if values.is_set("size") {
            return Err(ferr(
                "The image size must be specified only once".to_string(),
            ));
        }
        values.set("size", s.to_string());
    }
    let backing = backing.map(str::to_string).or_else(|| {
        values
            .get_str("backing_file")
            .filter(|_| values.is_set("backing_file"))
    });
    let backing_fmt = backing_fmt.map(str::to_string).or_else(|| {
        values
            .get_str("backing_fmt")
            .filter(|_| values.is_set("backing_fmt"))
    });
    if backing.is_none() && backing_fmt.is_some() && !schema.iter().any(|o| o.name == "backing_fmt")
    {
        return Err(ferr(format!(
            "Backing file format not supported for file format '{fmt}'"
        )));
    }
    if let Some(b) = &backing {
        if !schema.iter().any(|o| o.name == "backing_file") {
            return Err(ferr(format!(
                "Backing file not supported for file format '{fmt}'"
            )));
        }
        let full = block_core::resolve_relative(b, Some(filename));
        // QEMU compares the names; blk the files too (`./a`, links).
        if b == filename || plugin_host::safety::same_file(&full, filename) {
            return Err(ferr(plugin_host::host::SAME_AS_BACKING.to_string()));
        }
        if backing_fmt.is_none() {
            let mut msg = "Backing file specified without backing format".to_string();
            if let Ok(img) = host.open(
                &full,
                &OpenOptions {
                    read_only: true,
                    no_backing: true,
                    force_share: true,
                    ..OpenOptions::default()
                },
            ) {
                msg.push_str(&format!("\nDetected format of {}.", img.format()));
            }
            return Err(ferr(msg));
        }
        values.set("backing_file", b.clone());
        if let Some(bf) = &backing_fmt {
            values.set("backing_fmt", bf.clone());
        }
        let have_size = values.is_set("size");
        if !unsafe_backing || !have_size {
            let opts = OpenOptions {
                format: backing_fmt.clone(),
                read_only: true,
                no_backing: true,
                force_share: true,
                ..OpenOptions::default()
            };
            match host.open(&full, &opts) {
                Ok(img) => {
                    if !have_size {
                        let len = img.length().map_err(|e| ferr(e.to_string()))?;
                        values.set("size", len.to_string());
                    }
                }
                Err(e) => {
                    if unsafe_backing {
                        return Err(ferr("Image creation needs a size parameter".to_string()));
                    }
                    // The backing's own reason, as qemu-img gives it: the
                    // file protocol's names the file ("Could not open 'B':
                    // ..."), a format's does not ("Image is not in qcow2
                    // format").
                    let d = crate::common::open_detail(&e, &full);
                    return Err(ferr(format!("{d}\nCould not open backing image.")));
                }
            }
        }
    } else if let Some(bf) = &backing_fmt {
        // Shown in the Formatting line, then refused as QEMU's driver does.
        values.set("backing_fmt", bf.clone());
    }
    if !values.is_set("size") {
        return Err(ferr("Image creation needs a size parameter".to_string()));
    }
    if !quiet {
        println!("{}", formatting_line(filename, fmt, &values));
    }
    if let Some(m) = bad_enum_value(&schema, &values, fmt) {
        return Err(ferr(m));
    }
    if backing.is_none() && backing_fmt.is_some() {
        return Err(ferr(
            "Backing format cannot be used without backing file".to_string(),
        ));
    }
    let opt_string = values
        .values
        .iter()
        .filter(|(k, _)| k != "backing_file" && k != "backing_fmt")
        .map(|(k, v)| format!("{k}={}", v.replace(',', ",,")))
        .collect::<Vec<_>>()
        .join(",");
    let size = values.get_size("size").ok().flatten();
    let bk = backing.as_deref().map(|b| (b, backing_fmt.as_deref()));
    let has_cluster_size = values.get("cluster_size").is_some();
    host.create(fmt, filename, &opt_string, size, bk)
        .map_err(|e| {
            // Out of range while sizing (EFBIG from the file's truncate, or
            // a format's metadata, such as a qcow2 L1 table, that cannot
            // map the size): qemu-img's bdrv_img_create words it itself.
            let too_large = e.kind == block_core::ErrorKind::OutOfRange
                && matches!(
                    e.op,
                    block_core::Operation::Truncate | block_core::Operation::Resize
                );
            if too_large {
                let hint = if has_cluster_size {
                    " (try using a larger cluster size)"
                } else {
                    ""
                };
                return ferr(format!(
                    "The image size is too large for file format '{fmt}'{hint}"
                ));
            }
            ferr(crate::common::create_detail(&e, filename))
        })
}

/// Runs `blk create`.
pub fn run(g: &Globals, a: CreateArgs) -> CliResult {
    crate::common::check_option_lists(&a.options)?;
    let host = g.host()?;
    let options = a.options.join(",");
    if has_help_option(&options) {
        return print_option_help(&host, &a.format, a.filename.as_deref());
    }
    let Some(filename) = a.filename.as_deref() else {
        return Err(CliError::usage("create", "Expecting image file name"));
    };
    if let Some(x) = a.extra.first() {
        return Err(CliError::usage(
            "create",
            format!("Unexpected argument: {x}"),
        ));
    }
    let size = a.size.as_deref().map(parse_img_size).transpose()?;
    create_image(
        &host,
        &a.format,
        filename,
        &options,
        size,
        a.backing.as_deref(),
        a.backing_format.as_deref(),
        a.unsafe_backing,
        a.quiet,
    )
}
