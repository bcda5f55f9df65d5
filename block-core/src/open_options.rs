//! A driver's open options read against its declaration: the schema of
//! [`BlockDriver::open_options`] is the single source of what `open`
//! accepts. [`read_open_options`] refuses an undeclared key or a value of
//! the wrong type with QEMU's words, and returns typed values (given or
//! declared default) the driver reads instead of parsing strings. Any
//! driver uses it, format or protocol.

use crate::driver::{BlockDriver, OpenRequest};
use crate::error::{BlockError, ErrorKind, Result};
use crate::options::{type_error, value_fits, OptDesc, OptKind, OptionValues};
use crate::types::DriverKind;

/// QEMU's refusal of an open option the driver does not declare ("Block
/// format 'qcow2' does not support the option 'x'", "Block protocol
/// 'file' doesn't support the option 'x'", as `bdrv_open` words it).
pub fn unknown_open_option(driver: &str, kind: DriverKind, key: &str) -> BlockError {
    let msg = match kind {
        DriverKind::Format => {
            format!("Block format '{driver}' does not support the option '{key}'")
        }
        DriverKind::Protocol => {
            format!("Block protocol '{driver}' doesn't support the option '{key}'")
        }
    };
    BlockError::new(ErrorKind::InvalidInput, "", msg)
}

/// The refusal of a declared open option with a value of the wrong type,
/// as QEMU's option visitor words it (an enumerated value: "invalid
/// parameter value: V").
pub fn bad_open_value(desc: &OptDesc, value: &str) -> BlockError {
    match &desc.kind {
        OptKind::Enum(_) => BlockError::new(
            ErrorKind::InvalidInput,
            "",
            format!("invalid parameter value: {value}"),
        ),
        k => type_error(&desc.name, k, value).with_op(""),
    }
}

/// Checks `pairs` against the open schema of driver `driver` (of `kind`):
/// every key declared, every value of its type; a later value for a key
/// wins. The result's getters return given values or declared defaults.
pub fn parse_open_options(
    driver: &str,
    kind: DriverKind,
    schema: &[OptDesc],
    pairs: &[(String, String)],
) -> Result<OptionValues> {
    for (k, v) in pairs {
        let desc = schema
            .iter()
            .find(|d| &d.name == k)
            .ok_or_else(|| unknown_open_option(driver, kind, k))?;
        if !value_fits(&desc.kind, v) {
            return Err(bad_open_value(desc, v));
        }
    }
    OptionValues::parse(schema, pairs)
}

/// Reads an open request's options against `driver`'s own declaration.
pub fn read_open_options(driver: &dyn BlockDriver, req: &OpenRequest) -> Result<OptionValues> {
    parse_open_options(
        driver.name(),
        driver.kind(),
        &driver.open_options(),
        &req.options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{declare, OptType};

    fn schema() -> Vec<OptDesc> {
        declare(&[
            ("cache-size", OptType::Size, None, "cache"),
            ("lazy", OptType::Bool, Some("off"), "lazy"),
            ("n", OptType::Number, None, "n"),
            ("mode", OptType::OneOf(&["a", "b"]), Some("a"), "mode"),
        ])
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_values_and_defaults() {
        let s = schema();
        let p = pairs(&[("cache-size", "1M"), ("lazy", "on"), ("mode", "b")]);
        let v = parse_open_options("fmt", DriverKind::Format, &s, &p).unwrap();
        assert_eq!(v.get_size("cache-size").unwrap(), Some(1 << 20));
        assert!(v.get_bool("lazy"));
        assert_eq!(v.get("mode"), Some("b"));
        assert_eq!(v.get_u64("n").unwrap(), None);
        let v = parse_open_options("fmt", DriverKind::Format, &s, &[]).unwrap();
        assert!(!v.get_bool("lazy"));
        assert_eq!(v.get("mode"), Some("a"));
    }

    #[test]
    fn refusals_in_qemus_words() {
        let s = schema();
        let msg = |kind, p: &[(&str, &str)]| {
            parse_open_options("drv", kind, &s, &pairs(p))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg(DriverKind::Format, &[("x", "1")]),
            "Block format 'drv' does not support the option 'x'"
        );
        assert_eq!(
            msg(DriverKind::Protocol, &[("x", "1")]),
            "Block protocol 'drv' doesn't support the option 'x'"
        );
        assert_eq!(
            msg(DriverKind::Format, &[("lazy", "maybe")]),
            "Parameter 'lazy' expects 'on' or 'off'"
        );
        assert_eq!(
            msg(DriverKind::Format, &[("n", "x")]),
            "Parameter 'n' expects a number"
        );
        assert!(msg(DriverKind::Format, &[("cache-size", "x")])
            .starts_with("Parameter 'cache-size' expects a non-negative number below 2^64\n"));
        assert_eq!(
            msg(DriverKind::Format, &[("mode", "c")]),
            "invalid parameter value: c"
        );
    }
}
