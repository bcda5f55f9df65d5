//! Number formatting exactly as QEMU prints it: `size_to_str` (qemu-img),
//! `cvtstr` and `timestr` (qemu-io), and C's `%g`.

use std::time::Duration;

/// C's `printf("%.{prec}g", v)` for finite, non-negative and negative values.
pub fn fmt_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let prec = prec.max(1);
    // The exponent after rounding to `prec` significant digits.
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = strip_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{v:.decimals$}"))
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// QEMU's `size_to_str`: "64 MiB", "1.5 GiB", "332 KiB", "0 B".
pub fn size_to_str(val: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let x = val as f64 / (1000.0 / 1024.0);
    // frexp exponent: x = m * 2^e with m in [0.5, 1).
    let e = if x == 0.0 {
        0
    } else {
        x.log2().floor() as i32 + 1
    };
    let i = (((e - 1) / 10).max(0) as usize).min(SUFFIXES.len() - 1);
    let div = (1u64 << (i * 10)) as f64;
    format!("{} {}B", fmt_g(val as f64 / div, 3), SUFFIXES[i])
}

/// qemu-io's `cvtstr`: "4 KiB", "1.500 KiB", "512 bytes", "0 bytes".
pub fn cvtstr(value: f64) -> String {
    const UNITS: [(u32, &str); 6] = [
        (60, " EiB"),
        (50, " PiB"),
        (40, " TiB"),
        (30, " GiB"),
        (20, " MiB"),
        (10, " KiB"),
    ];
    let (mut s, suffix) = match UNITS.iter().find(|(sh, _)| value >= (1u64 << sh) as f64) {
        Some((sh, suf)) => (format!("{:.3}", value / (1u64 << sh) as f64), *suf),
        None => (format!("{value:.6}"), " bytes"),
    };
    if let Some(pos) = s.find(".000") {
        s.truncate(pos);
    }
    s.push_str(suffix);
    s
}

/// qemu-io's `timestr` (default format): "00.00 sec" or "H:MM:SS.ss".
pub fn timestr(d: Duration) -> String {
    let secs = d.as_secs();
    let frac = d.subsec_nanos() as f64 / 1e9;
    if secs > 0 {
        format!(
            "{}:{:02}:{:05.2}",
            secs / 3600,
            (secs % 3600) / 60,
            (secs % 60) as f64 + frac
        )
    } else {
        format!("{frac:05.2} sec")
    }
}

/// qemu-io's `timestr` in the verbose fixed format used with `-C`.
pub fn timestr_fixed(d: Duration) -> String {
    let secs = d.as_secs();
    let frac = d.subsec_nanos() as f64 / 1e9;
    format!(
        "{}:{:02}:{:05.2}",
        secs / 3600,
        (secs % 3600) / 60,
        (secs % 60) as f64 + frac
    )
}

/// Parses a size the way QEMU's `qemu_strtosz` does (default unit bytes;
/// suffixes B/K/M/G/T/P/E, case-insensitive; decimal fractions with a unit;
/// hexadecimal `0x...`). Errors are `EINVAL` or `ERANGE` like QEMU's.
pub fn strtosz(s: &str) -> Result<u64, i32> {
    let t = s;
    if t.is_empty() || t.starts_with('-') || t.starts_with(char::is_whitespace) {
        return Err(libc::EINVAL);
    }
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some(c)
            if c.is_ascii_alphabetic()
                && !(t.len() > 2 && t[..2].eq_ignore_ascii_case("0x") && c.is_ascii_hexdigit()) =>
        {
            let m: u64 = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'p' => 1 << 50,
                'e' => 1 << 60,
                _ => return Err(libc::EINVAL),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    if num.is_empty() {
        return Err(libc::EINVAL);
    }
    if let Some(hex) = num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(libc::EINVAL);
        }
        let v = u64::from_str_radix(hex, 16).map_err(|_| libc::ERANGE)?;
        return v
            .checked_mul(mult)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or(libc::ERANGE);
    }
    if !num.chars().all(|c| c.is_ascii_digit() || c == '.') || num.starts_with('.') {
        return Err(libc::EINVAL);
    }
    if let Ok(v) = num.parse::<u64>() {
        return v
            .checked_mul(mult)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or(libc::ERANGE);
    }
    if mult == 1 {
        // A fraction needs a unit larger than bytes.
        return Err(libc::EINVAL);
    }
    let f: f64 = num.parse().map_err(|_| libc::EINVAL)?;
    let v = f * mult as f64;
    if v >= i64::MAX as f64 {
        return Err(libc::ERANGE);
    }
    Ok(v as u64)
}

/// Parses a number the way qemu-img's `cvtnum` does, with its messages:
/// "Invalid WHAT specified: 'TEXT'." for text that is no size, and
/// "Invalid WHAT specified. Must be between 0 and INT64_MAX." for a
/// negative or too large one.
pub fn cvtnum(what: &str, s: &str) -> Result<u64, String> {
    match strtosz(s) {
        Ok(v) => Ok(v),
        Err(e) if e == libc::ERANGE || s.starts_with('-') => Err(format!(
            "Invalid {what} specified. Must be between 0 and {}.",
            i64::MAX
        )),
        Err(_) => Err(format!("Invalid {what} specified: '{s}'.")),
    }
}

/// The C library's message for an errno value ("Input/output error").
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_qemu() {
        assert_eq!(size_to_str(0), "0 B");
        assert_eq!(size_to_str(67108864), "64 MiB");
        assert_eq!(size_to_str(339968), "332 KiB");
        assert_eq!(size_to_str(459264), "448 KiB");
        assert_eq!(size_to_str(1536 << 20), "1.5 GiB");
        assert_eq!(size_to_str(999), "999 B");
        assert_eq!(size_to_str(1023), "0.999 KiB");
        assert_eq!(size_to_str(4096), "4 KiB");
    }

    #[test]
    fn cvtstr_like_qemu() {
        assert_eq!(cvtstr(4096.0), "4 KiB");
        assert_eq!(cvtstr(0.0), "0 bytes");
        assert_eq!(cvtstr(32.0), "32 bytes");
        assert_eq!(cvtstr(1048576.0), "1 MiB");
        assert_eq!(cvtstr(65994752.0), "62.938 MiB");
        assert_eq!(cvtstr(1114112.0), "1.062 MiB");
    }

    #[test]
    fn strtosz_like_qemu() {
        assert_eq!(strtosz("4k"), Ok(4096));
        assert_eq!(strtosz("0x1000"), Ok(4096));
        assert_eq!(strtosz("1.5M"), Ok(1572864));
        assert_eq!(strtosz("abc"), Err(libc::EINVAL));
        assert_eq!(strtosz("1Q"), Err(libc::EINVAL));
        assert_eq!(strtosz("-1"), Err(libc::EINVAL));
        assert_eq!(strtosz("16E"), Err(libc::ERANGE));
    }
}
