//! `blk bench`.

use crate::common::{CliError, CliResult, Globals};
use clap::Args;

/// Arguments of `blk bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Arguments.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs `blk bench`.
pub fn run(_g: &Globals, _a: BenchArgs) -> CliResult {
    Err(CliError::new("bench: not implemented yet"))
}
