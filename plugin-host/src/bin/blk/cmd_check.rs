//! `blk check`: qemu-img check with its exit codes (0 clean, 1 check failed,
//! 2 corruptions, 3 leaks only, 63 unsupported format).

use crate::common::{open_image, parse_output, CliError, CliResult, Globals, OutputFormat};
use crate::qjson::QObj;
use block_core::{CheckFinding, CheckMode, CheckReport, CheckStopped};
use clap::Args;
use plugin_host::OpenOptions;

/// Arguments of `blk check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Repair: `leaks` or `all`.
    #[arg(short = 'r', long = "repair")]
    repair: Option<String>,
    /// Output format: human or json.
    #[arg(long = "output", value_name = "FMT")]
    output: Option<String>,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Force shared permissions.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Cache mode (accepted, no effect).
    #[arg(short = 'T')]
    cache: Option<String>,
    /// The image.
    filename: String,
}

/// The QAPI `ImageCheck` object.
fn check_qobj(filename: &str, format: &str, r: &CheckReport) -> QObj {
    let mut d = QObj::dict();
    d.put("filename", filename);
    d.put("format", format);
    d.put("check-errors", r.check_errors);
    let nz = |v: Option<u64>| v.filter(|x| *x != 0);
    d.put_opt("image-end-offset", nz(r.image_end_offset));
    d.put_opt("corruptions", nz(Some(r.corruptions)));
    d.put_opt("leaks", nz(Some(r.leaks)));
    d.put_opt("corruptions-fixed", nz(Some(r.corruptions_fixed)));
    d.put_opt("leaks-fixed", nz(Some(r.leaks_fixed)));
    d.put_opt("total-clusters", nz(r.total_clusters));
    d.put_opt("allocated-clusters", nz(r.allocated_clusters));
    d.put_opt("fragmented-clusters", nz(r.fragmented_clusters));
    d.put_opt("compressed-clusters", nz(r.compressed_clusters));
    d
}

/// qemu-img's human report.
fn human(r: &CheckReport) -> String {
    let mut s = String::new();
    if r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0 {
        s.push_str("No errors were found on the image.\n");
    } else {
        if r.corruptions != 0 {
            s.push_str(&format!(
                "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n",
                r.corruptions
            ));
        }
        if r.leaks != 0 {
            s.push_str(&format!(
                "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
                r.leaks
            ));
        }
        if r.check_errors != 0 {
            s.push_str(&format!(
                "\n{} internal errors have occurred during the check.\n",
                r.check_errors
            ));
        }
    }
    let total = r.total_clusters.unwrap_or(0);
    let alloc = r.allocated_clusters.unwrap_or(0);
    if total != 0 && alloc != 0 {
        let frag = r.fragmented_clusters.unwrap_or(0);
        let comp = r.compressed_clusters.unwrap_or(0);
        s.push_str(&format!(
            "{alloc}/{total} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters\n",
            alloc as f64 * 100.0 / total as f64,
            frag as f64 * 100.0 / alloc as f64,
            comp as f64 * 100.0 / alloc as f64
        ));
    }
    if let Some(end) = r.image_end_offset.filter(|e| *e != 0) {
        s.push_str(&format!("Image end offset: {end}\n"));
    }
    s
}

/// Prints a check's findings on stderr, one line each, as qemu-img does
/// while it checks.
fn print_findings(findings: &[CheckFinding]) {
    for f in findings {
        eprintln!("{}", f.message);
    }
}

/// Runs `blk check`.
pub fn run(g: &Globals, a: CheckArgs) -> CliResult {
    crate::cache_mode::check_source(a.cache.as_deref())?;
    let out = parse_output("check", a.output.as_deref())?;
    let mode = match a.repair.as_deref() {
        None => CheckMode::REPORT,
        Some("leaks") => CheckMode::FIX_LEAKS,
        Some("all") => CheckMode::FIX_ALL,
        Some(o) => {
            return Err(CliError::usage(
                "check",
                format!("--repair (-r) expects 'leaks' or 'all' not '{o}'"),
            ))
        }
    };
    let host = g.host()?;
    let fix = mode != CheckMode::REPORT;
    let opts = OpenOptions {
        format: a.format.clone(),
        read_only: !fix,
        force_share: a.force_share,
        for_check: true,
        ..OpenOptions::default()
    };
    let img = open_image(&host, &a.filename, &opts)?;
    let format = img.format().to_string();
    let collect = |m: CheckMode| -> CliResult<CheckReport> {
        let r = img.check(m).map_err(|e| {
            let stopped = e
                .source
                .as_ref()
                .and_then(|s| s.downcast_ref::<CheckStopped>());
            if let Some(s) = stopped {
                print_findings(&s.findings);
            }
            if e.is_unsupported() {
                CliError::with_code(63, "This image format does not support checks")
            } else {
                CliError::new(format!(
                    "Check failed: {}",
                    crate::human::strerror(e.errno())
                ))
            }
        })?;
        print_findings(&r.findings);
        Ok(r)
    };
    let mut report = collect(mode)?;
    if report.corruptions_fixed != 0 || report.leaks_fixed != 0 {
        if out == OutputFormat::Human && !a.quiet {
            print!(
                "The following inconsistencies were found and repaired:\n\n    {} leaked clusters\n    {} corruptions\n\nDouble checking the fixed image now...\n",
                report.leaks_fixed, report.corruptions_fixed
            );
        }
        let (lf, cf) = (report.leaks_fixed, report.corruptions_fixed);
        report = collect(CheckMode::REPORT)?;
        report.leaks_fixed = lf;
        report.corruptions_fixed = cf;
    }
    if !a.quiet {
        match out {
            OutputFormat::Human => print!("{}", human(&report)),
            OutputFormat::Json => {
                println!("{}", check_qobj(&a.filename, &format, &report).to_pretty())
            }
        }
    }
    if report.check_errors != 0 {
        return Err(CliError::new("Check failed"));
    }
    if report.corruptions != 0 {
        Err(CliError::silent(2))
    } else if report.leaks != 0 {
        Err(CliError::silent(3))
    } else {
        Ok(())
    }
}
