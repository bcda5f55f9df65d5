//! Checking `-o k=v,...` option lists against a driver schema with QEMU's
//! `qemu_opts_do_parse` messages.

use block_core::options::{parse_bool, split_option_string};
use block_core::{parse_size, OptDesc, OptKind, OptionValues};

/// The message QEMU gives for a malformed size value.
const SIZE_HINT: &str = "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

/// Checks `text` against `schema`: unknown names and ill-typed values give
/// QEMU's message ("Invalid parameter 'k'", "Parameter 'k' expects ...").
pub fn check_options(schema: &[OptDesc], text: &str) -> Result<OptionValues, String> {
    let pairs = split_option_string(text).map_err(|e| e.message)?;
    for (k, v) in &pairs {
        let Some(d) = schema.iter().find(|d| &d.name == k) else {
            return Err(format!("Invalid parameter '{k}'"));
        };
        match d.kind {
            OptKind::Bool if parse_bool(v).is_none() => {
                return Err(format!("Parameter '{k}' expects 'on' or 'off'"));
            }
            OptKind::Size if parse_size(v).is_err() => {
                return Err(format!(
                    "Parameter '{k}' expects a non-negative number below 2^64\n{SIZE_HINT}"
                ));
            }
            OptKind::Number if v.parse::<u64>().is_err() => {
                return Err(format!("Parameter '{k}' expects a number"));
            }
            _ => {}
        }
    }
    OptionValues::parse(schema, &pairs).map_err(|e| e.message)
}
