//! Numeric option parsing with qemu-img's messages: `cvtnum_full` for sizes
//! (suffixes allowed) and `qemu_strtoul`-style plain numbers.

use crate::common::{CliError, CliResult};
use crate::human::strtosz;

/// Parses a size option (`k`/`M`/`G`... suffixes) within `[min, max]`, as
/// qemu-img's `cvtnum_full`: "Invalid NAME specified: 'V'." for text that is
/// not a size, "Invalid NAME specified. Must be between MIN and MAX." when
/// out of range (negative numbers included).
pub fn cvtnum_full(name: &str, value: &str, min: u64, max: u64) -> CliResult<u64> {
    let range = || {
        CliError::new(format!(
            "Invalid {name} specified. Must be between {min} and {max}."
        ))
    };
    let parsed = match value.trim_start().strip_prefix('-') {
        // qemu_strtosz negates a leading minus sign: always out of range.
        Some(rest) => match strtosz(rest) {
            Ok(_) => return Err(range()),
            Err(e) => Err(e),
        },
        None => strtosz(value.trim_start()),
    };
    match parsed {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(_) | Err(libc::ERANGE) => Err(range()),
        Err(_) => Err(CliError::new(format!(
            "Invalid {name} specified: '{value}'."
        ))),
    }
}

/// Parses a plain unsigned number as C's `strtoul(s, NULL, 0)` accepts it
/// (leading blanks, `0x` hexadecimal, `0` octal) within `[min, max]`, with
/// the same messages as [`cvtnum_full`].
pub fn parse_ulong(name: &str, value: &str, min: u64, max: u64) -> CliResult<u64> {
    let range = || {
        CliError::new(format!(
            "Invalid {name} specified. Must be between {min} and {max}."
        ))
    };
    let invalid = || CliError::new(format!("Invalid {name} specified: '{value}'."));
    let t = value.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        (&t[1..], 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid());
    }
    let v = u64::from_str_radix(digits, radix).map_err(|_| range())?;
    if neg && v != 0 {
        return Err(range());
    }
    if !(min..=max).contains(&v) {
        return Err(range());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulong_forms() {
        assert_eq!(parse_ulong("n", "010", 0, 100).unwrap(), 8);
        assert_eq!(parse_ulong("n", "0x10", 0, 100).unwrap(), 16);
        assert_eq!(parse_ulong("n", " 5", 0, 100).unwrap(), 5);
        assert_eq!(parse_ulong("n", "0", 0, 100).unwrap(), 0);
        let e = parse_ulong("n", "1k", 0, 100).unwrap_err();
        assert_eq!(e.msg.unwrap(), "Invalid n specified: '1k'.");
        let e = parse_ulong("n", "-1", 1, 100).unwrap_err();
        assert_eq!(
            e.msg.unwrap(),
            "Invalid n specified. Must be between 1 and 100."
        );
        assert!(parse_ulong("n", "0x", 0, 100).is_err());
    }

    #[test]
    fn cvtnum_forms() {
        assert_eq!(cvtnum_full("s", "1.5k", 0, 1 << 40).unwrap(), 1536);
        assert_eq!(cvtnum_full("s", "0x100", 0, 1 << 40).unwrap(), 256);
        let e = cvtnum_full("s", "-1", 0, 10).unwrap_err();
        assert_eq!(
            e.msg.unwrap(),
            "Invalid s specified. Must be between 0 and 10."
        );
        let e = cvtnum_full("s", "x", 0, 10).unwrap_err();
        assert_eq!(e.msg.unwrap(), "Invalid s specified: 'x'.");
    }
}
