//! Typed option schemas and the qemu-img style `-o key=value,...` parser.

use crate::error::{BlockError, Result};
use serde::{Deserialize, Serialize};

/// The type of an option value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "values")]
pub enum OptKind {
    /// `on|off|true|false|yes|no`.
    Bool,
    /// A byte size with optional k/M/G/T/P/E suffix (binary units).
    Size,
    /// An unsigned integer.
    Number,
    /// Free text (a file name, ...).
    String,
    /// One of a fixed set of words.
    Enum(Vec<String>),
}

/// The description of one option in a driver's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptDesc {
    /// The option name as given in `-o name=value`.
    pub name: String,
    /// The value type.
    pub kind: OptKind,
    /// The default value as text, if any.
    pub default: Option<String>,
    /// One line of help.
    pub help: String,
}

impl OptDesc {
    /// A new option description.
    pub fn new(name: &str, kind: OptKind, default: Option<&str>, help: &str) -> OptDesc {
        OptDesc {
            name: name.to_string(),
            kind,
            default: default.map(str::to_string),
            help: help.to_string(),
        }
    }

    /// An enum option from a word list.
    pub fn choice(name: &str, words: &[&str], default: Option<&str>, help: &str) -> OptDesc {
        OptDesc::new(
            name,
            OptKind::Enum(words.iter().map(|s| s.to_string()).collect()),
            default,
            help,
        )
    }
}

/// The type of an option in a compact declaration ([`declare`]): an
/// [`OptKind`] whose enum words are borrowed, so that a driver's whole
/// schema can be one literal table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptType {
    /// [`OptKind::Bool`].
    Bool,
    /// [`OptKind::Size`].
    Size,
    /// [`OptKind::Number`].
    Number,
    /// [`OptKind::String`].
    Text,
    /// [`OptKind::Enum`] with these words.
    OneOf(&'static [&'static str]),
}

/// One row of a compact declaration: name, type, default, help.
pub type OptRow<'a> = (&'a str, OptType, Option<&'a str>, &'a str);

/// Builds a schema from rows `(name, type, default, help)`, for any driver
/// that declares more than a few options (qcow2's create and open schemas).
pub fn declare(rows: &[OptRow<'_>]) -> Vec<OptDesc> {
    rows.iter()
        .map(|&(name, ty, default, help)| {
            let kind = match ty {
                OptType::Bool => OptKind::Bool,
                OptType::Size => OptKind::Size,
                OptType::Number => OptKind::Number,
                OptType::Text => OptKind::String,
                OptType::OneOf(w) => OptKind::Enum(w.iter().map(|s| s.to_string()).collect()),
            };
            OptDesc::new(name, kind, default, help)
        })
        .collect()
}

/// The create schema of formats without metadata (raw, file): `size` and
/// `preallocation=off|falloc|full`.
pub fn plain_create_options() -> Vec<OptDesc> {
    vec![
        OptDesc::new("size", OptKind::Size, Some("0"), "Virtual disk size"),
        OptDesc::choice(
            "preallocation",
            &["off", "falloc", "full"],
            Some("off"),
            "Preallocation mode (allowed values: off, falloc, full)",
        ),
    ]
}

/// Parses a size such as `512`, `64k`, `1.5G`, `10M` into bytes (binary units,
/// as qemu-img). A bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || BlockError::invalid("parse size", format!("invalid size '{text}'"));
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'p' => 1 << 50,
                'e' => 1 << 60,
                _ => return Err(bad()),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    if num.is_empty() || num.starts_with('-') || num.starts_with('+') {
        return Err(bad());
    }
    if let Ok(v) = num.parse::<u64>() {
        return v.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    let v = f * mult as f64;
    if v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

/// Parses a boolean option value with QEMU's words (`on`, `yes`, `true`,
/// `y` and `off`, `no`, `false`, `n`; not digits).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// The schema with every enumerated option turned into free text, for
/// parsers that leave the words to the driver (QEMU's option lists declare
/// them as strings; each driver words its own refusal).
pub fn loosen_enums(schema: &[OptDesc]) -> Vec<OptDesc> {
    let loose = |d: &OptDesc| match d.kind {
        OptKind::Enum(_) => OptDesc {
            kind: OptKind::String,
            ..d.clone()
        },
        _ => d.clone(),
    };
    schema.iter().map(loose).collect()
}

/// Refuses with an invalid-argument error of operation `op` when `bad`:
/// the one-line form of the checks that validate option values.
pub fn refuse_if(bad: bool, op: &str, msg: &str) -> Result<()> {
    match bad {
        true => Err(BlockError::invalid(op, msg)),
        false => Ok(()),
    }
}

/// Splits an option string at its commas into items, with `,,` standing for
/// a literal comma as in QEMU; empty items are kept.
pub fn split_option_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    items
}

/// Splits `k=v,k2=v2` into pairs, with `,,` standing for a literal comma as in
/// QEMU. A bare `k` means `k=on`.
pub fn split_option_string(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let items = split_option_items(text);
    for item in items {
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some((k, v)) => {
                if k.is_empty() {
                    return Err(BlockError::invalid(
                        "parse options",
                        "Invalid parameter ''".to_string(),
                    ));
                }
                out.push((k.to_string(), v.to_string()))
            }
            None => out.push((item.clone(), "on".to_string())),
        }
    }
    Ok(out)
}

/// The error for a value of the wrong type, in QemuOpts' words (the value
/// is not repeated, as QEMU does not; sizes carry its suffix hint). An
/// enumerated value names the words it expects.
pub fn type_error(name: &str, kind: &OptKind, value: &str) -> BlockError {
    let msg = match kind {
        OptKind::Size => format!(
            "Parameter '{name}' expects a non-negative number below 2^64\n\
             Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
             and exabytes, respectively."
        ),
        OptKind::Bool => format!("Parameter '{name}' expects 'on' or 'off'"),
        OptKind::Number => format!("Parameter '{name}' expects a number"),
        OptKind::String => format!("Parameter '{name}' expects text"),
        OptKind::Enum(w) => format!(
            "Parameter '{name}' expects one of {}, got '{value}'",
            w.join(", ")
        ),
    };
    BlockError::invalid("parse options", msg)
}

/// True when `value` is of type `kind`.
pub fn value_fits(kind: &OptKind, value: &str) -> bool {
    match kind {
        OptKind::Bool => parse_bool(value).is_some(),
        OptKind::Size => parse_size(value).is_ok(),
        OptKind::Number => value.parse::<u64>().is_ok(),
        OptKind::String => true,
        OptKind::Enum(words) => words.iter().any(|w| w == value),
    }
}

/// Option values checked against a schema: every name known, every value of
/// the right type. Getters return the given value or the schema default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionValues {
    /// The schema the values were checked against.
    pub schema: Vec<OptDesc>,
    /// The values given, in order, as text.
    pub values: Vec<(String, String)>,
}

impl OptionValues {
    /// Checks `pairs` against `schema`. Unknown names and ill-typed values are
    /// errors naming the option. A later value for the same name wins.
    pub fn parse(schema: &[OptDesc], pairs: &[(String, String)]) -> Result<OptionValues> {
        let mut values: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            let desc = schema.iter().find(|d| &d.name == k).ok_or_else(|| {
                BlockError::invalid("parse options", format!("Invalid parameter '{k}'"))
            })?;
            if !value_fits(&desc.kind, v) {
                return Err(type_error(k, &desc.kind, v));
            }
            values.retain(|(n, _)| n != k);
            values.push((k.clone(), v.clone()));
        }
        Ok(OptionValues {
            schema: schema.to_vec(),
            values,
        })
    }

    /// Parses a `k=v,...` string against a schema.
    pub fn parse_str(schema: &[OptDesc], text: &str) -> Result<OptionValues> {
        OptionValues::parse(schema, &split_option_string(text)?)
    }

    /// True when the option was given explicitly.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.iter().any(|(k, _)| k == name)
    }

    /// The raw text of an option: given value, else schema default.
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some((_, v)) = self.values.iter().find(|(k, _)| k == name) {
            return Some(v);
        }
        self.schema
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.default.as_deref())
    }

    /// A string option.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// A boolean option (false when absent and without default).
    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).and_then(parse_bool).unwrap_or(false)
    }

    /// A boolean option as given or defaulted (`None`: neither).
    pub fn get_flag(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(parse_bool)
    }

    /// The value of an enumerated option when it is not one of the words
    /// `schema` lists for it (`None`: absent, listed, or not enumerated);
    /// for values parsed against [`loosen_enums`] of `schema`.
    pub fn unlisted<'a>(&'a self, schema: &[OptDesc], name: &str) -> Option<&'a str> {
        let v = self.get(name)?;
        match &schema.iter().find(|d| d.name == name)?.kind {
            OptKind::Enum(words) if !words.iter().any(|w| w == v) => Some(v),
            _ => None,
        }
    }

    /// The `preallocation` option (`off` when absent or not a mode).
    pub fn get_preallocation(&self) -> crate::types::Preallocation {
        let mode = self.get("preallocation");
        mode.and_then(crate::types::Preallocation::parse)
            .unwrap_or_default()
    }

    /// A size option.
    pub fn get_size(&self, name: &str) -> Result<Option<u64>> {
        self.get(name).map(parse_size).transpose()
    }

    /// A number option.
    pub fn get_u64(&self, name: &str) -> Result<Option<u64>> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    BlockError::invalid("parse options", format!("'{name}' is not a number"))
                })
            })
            .transpose()
    }

    /// Sets (or replaces) a value without schema checking; for hosts that fill
    /// in values such as `size` from positional arguments.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.retain(|(k, _)| k != name);
        self.values.push((name.to_string(), value.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999E").is_err());
    }

    #[test]
    fn option_strings() {
        let v = split_option_string("a=1,b=x,,y,c").unwrap();
        assert_eq!(
            v,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x,y".into()),
                ("c".into(), "on".into())
            ]
        );
    }

    #[test]
    fn schema_checks() {
        let schema = vec![
            OptDesc::new("size", OptKind::Size, None, "size"),
            OptDesc::new("lazy", OptKind::Bool, Some("off"), "lazy"),
            OptDesc::choice("compat", &["0.10", "1.1"], Some("1.1"), "compat"),
        ];
        let v = OptionValues::parse_str(&schema, "size=1G,lazy=on").unwrap();
        assert_eq!(v.get_size("size").unwrap(), Some(1 << 30));
        assert!(v.get_bool("lazy"));
        assert_eq!(v.get("compat"), Some("1.1"));
        assert!(OptionValues::parse_str(&schema, "nope=1").is_err());
        assert!(OptionValues::parse_str(&schema, "compat=2").is_err());
        assert!(OptionValues::parse_str(&schema, "lazy=maybe").is_err());
        assert!(OptionValues::parse_str(&schema, "size=abc").is_err());
    }

    #[test]
    fn refusals_only_when_bad() {
        assert!(refuse_if(false, "create", "no").is_ok());
        let e = refuse_if(true, "create", "no").unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (crate::ErrorKind::InvalidInput, "no")
        );
        assert_eq!(e.op, crate::Operation::from("create"));
    }

    #[test]
    fn bools_in_qemus_words() {
        for (t, v) in [
            ("on", true),
            ("yes", true),
            ("y", true),
            ("off", false),
            ("n", false),
        ] {
            assert_eq!(parse_bool(t), Some(v), "{t}");
        }
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_bool("0"), None);
    }

    #[test]
    fn loose_enums_and_unlisted_words() {
        let schema = vec![
            OptDesc::choice("compat", &["0.10", "1.1"], Some("1.1"), "compat"),
            OptDesc::new("lazy", OptKind::Bool, None, "lazy"),
        ];
        assert!(OptionValues::parse_str(&schema, "compat=2").is_err());
        let loose = loosen_enums(&schema);
        assert_eq!(loose[0].kind, OptKind::String);
        assert_eq!(loose[1], schema[1]);
        let v = OptionValues::parse_str(&loose, "compat=2").unwrap();
        assert_eq!(v.unlisted(&schema, "compat"), Some("2"));
        assert_eq!(v.unlisted(&schema, "lazy"), None);
        let v = OptionValues::parse_str(&loose, "lazy=off").unwrap();
        assert_eq!(v.unlisted(&schema, "compat"), None);
        assert_eq!(v.get_flag("lazy"), Some(false));
        assert_eq!(v.get_flag("compat"), None);
        assert_eq!(v.get_preallocation(), crate::types::Preallocation::Off);
        let schema = plain_create_options();
        let v = OptionValues::parse_str(&schema, "preallocation=full").unwrap();
        assert_eq!(v.get_preallocation(), crate::types::Preallocation::Full);
    }
}
