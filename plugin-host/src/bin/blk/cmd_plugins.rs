//! `blk plugins`: the registered drivers, their origin, ABI and capabilities.

use crate::common::{parse_output, print_json, CliResult, Globals, OutputFormat};
use block_core::abi::{BLK_ABI_MAJOR, BLK_ABI_MINOR};
use block_core::{DriverKind, DriverOrigin};
use clap::Args;
use serde_json::json;

/// Arguments of `blk plugins`.
#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// Output format: human or json.
    #[arg(long = "output", value_name = "FMT")]
    output: Option<String>,
}

/// Runs `blk plugins`.
pub fn run(g: &Globals, a: PluginsArgs) -> CliResult {
    let out = parse_output("plugins", a.output.as_deref())?;
    let host = g.host()?;
    let mut rows = Vec::new();
    for d in host.registry().iter() {
        let kind = match d.driver.kind() {
            DriverKind::Format => "format",
            DriverKind::Protocol => "protocol",
        };
        let abi = match &d.origin {
            DriverOrigin::Plugin { abi, .. } => format!("{}.{}", abi.0, abi.1),
            DriverOrigin::Static => format!("{BLK_ABI_MAJOR}.{BLK_ABI_MINOR}"),
        };
        rows.push((
            d.driver.name().to_string(),
            kind,
            d.origin.describe(),
            abi,
            d.driver.caps().names(),
            d.driver.description().to_string(),
        ));
    }
    match out {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(name, kind, origin, abi, caps, desc)| {
                    json!({
                        "name": name,
                        "kind": kind,
                        "origin": origin,
                        "abi": abi,
                        "caps": caps,
                        "description": desc,
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(v));
        }
        OutputFormat::Human => {
            let w_name = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
            let w_origin = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(6);
            println!(
                "{:<w_name$}  {:<8}  {:<5}  {:<w_origin$}  CAPS",
                "NAME", "KIND", "ABI", "ORIGIN"
            );
            for (name, kind, origin, abi, caps, _) in &rows {
                println!(
                    "{:<w_name$}  {:<8}  {:<5}  {:<w_origin$}  {}",
                    name,
                    kind,
                    abi,
                    origin,
                    if caps.is_empty() {
                        "-".to_string()
                    } else {
                        caps.join(",")
                    }
                );
            }
        }
    }
    Ok(())
}
