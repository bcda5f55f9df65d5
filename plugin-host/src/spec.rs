//! Image specifications: QEMU's option trees that name an image by its
//! driver and children instead of a file name. Two spellings reach the same
//! [`ImageSpec`]: a `json:{...}` file name (`{"driver": "qcow2", "file":
//! {"driver": "file", "filename": "x.qcow2"}}`) and the dotted option string
//! of `--image-opts` (`driver=qcow2,file.filename=x.qcow2`). The host turns a
//! spec into the same open request as a file name ([`crate::Host::open_spec`]).
//!
//! Understood: `driver`, `filename` (for a protocol), `file` as an object or
//! the dotted `file.driver`, `file.filename` and further `file.*` protocol
//! options, `backing: null` (open without the backing chain), `read-only`,
//! `force-share`, the generic keys blk has no use for (`node-name`,
//! `cache.*`, `discard`, `auto-read-only`), and every other key as a format
//! runtime option (`l2-cache-size`, `snapshot.name`, ...), which the format
//! driver accepts or refuses against its declared open options, in QEMU's
//! words (`block_core::read_open_options`).

use block_core::{BlockError, ErrorKind, Result};

/// One value of a specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecValue {
    /// A string (JSON numbers and booleans are kept as their text, `on`/`off`).
    Str(String),
    /// JSON `null`.
    Null,
}

/// A parsed image specification: its keys flattened with dots, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// `(dotted key, value)` pairs.
    pub pairs: Vec<(String, SpecValue)>,
}

/// A spec error: no file or operation, so it prints as the bare message.
fn spec_error(msg: impl Into<String>) -> BlockError {
    BlockError::new(ErrorKind::InvalidInput, "", msg)
}

impl ImageSpec {
    /// Parses the text after `json:` (QEMU's messages for bad JSON).
    pub fn from_json(text: &str) -> Result<ImageSpec> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let why = if e.is_eof() {
                "premature EOI".to_string()
            } else {
                e.to_string()
            };
            spec_error(format!(
                "Could not parse the JSON options: JSON parse error, {why}"
            ))
        })?;
        let serde_json::Value::Object(map) = v else {
            return Err(spec_error("Invalid JSON object given"));
        };
        let mut pairs = Vec::new();
        flatten("", &serde_json::Value::Object(map), &mut pairs);
        Ok(ImageSpec { pairs })
    }

    /// A spec from dotted `key=value` pairs (`--image-opts`).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> ImageSpec {
        ImageSpec {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k, SpecValue::Str(v)))
                .collect(),
        }
    }

    /// The string value of `key`, if given as a string.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find_map(|(k, v)| match v {
            SpecValue::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// The file the spec ends up opening (`file.filename`, else `filename`),
    /// for messages.
    pub fn filename(&self) -> Option<&str> {
        self.get("file.filename").or_else(|| self.get("filename"))
    }
}

/// Flattens nested objects into dotted keys (QEMU's `qdict_flatten`);
/// arrays get their indexes as keys.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, SpecValue)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        flatten(&key(k), v, out)
                    }
                    _ => flatten_leaf(key(k), v, out),
                }
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        _ => flatten_leaf(prefix.to_string(), v, out),
    }
}

fn flatten_leaf(key: String, v: &serde_json::Value, out: &mut Vec<(String, SpecValue)>) {
    let value = match v {
        serde_json::Value::Null => SpecValue::Null,
        serde_json::Value::Bool(b) => SpecValue::Str(if *b { "on" } else { "off" }.to_string()),
        serde_json::Value::String(s) => SpecValue::Str(s.clone()),
        other => SpecValue::Str(other.to_string()),
    };
    out.push((key, value));
}

/// What a spec asks the host to open.
#[derive(Debug, Default)]
pub(crate) struct SpecRequest {
    /// The driver of the root node (`None` probes).
    pub driver: Option<String>,
    /// The file name the root node opens (its protocol's file).
    pub filename: String,
    /// The driver of the `file` child.
    pub file_driver: Option<String>,
    /// Options of the `file` child.
    pub file_options: Vec<(String, String)>,
    /// Options of the root node.
    pub options: Vec<(String, String)>,
    /// `backing: null`.
    pub no_backing: bool,
    /// `read-only`.
    pub read_only: Option<bool>,
    /// `force-share`.
    pub force_share: Option<bool>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(spec_error(format!(
            "Parameter '{key}' expects 'on' or 'off'"
        ))),
    }
}

/// Keys QEMU's block layer takes for every node that change nothing in blk.
const IGNORED: &[&str] = &[
    "node-name",
    "cache.direct",
    "cache.no-flush",
    "discard",
    "auto-read-only",
];

impl ImageSpec {
    /// Sorts the keys into an open request; `is_protocol` tells whether a
    /// driver name is a protocol. `no_backing_open` says the caller opens
    /// without backing files, so backing keys stay unused.
    pub(crate) fn request(
        &self,
        is_protocol: impl Fn(&str) -> Option<bool>,
    ) -> Result<SpecRequest> {
        let mut r = SpecRequest::default();
        let mut root_filename = None;
        let mut file_filename = None;
        let mut have_file = false;
        for (k, v) in &self.pairs {
            let text = match v {
                SpecValue::Str(s) => Some(s.as_str()),
                SpecValue::Null => None,
            };
            match (k.as_str(), text) {
                ("backing", None) => r.no_backing = true,
                ("driver", Some(d)) => r.driver = Some(d.to_string()),
                ("filename", Some(f)) => root_filename = Some(f.to_string()),
                ("file", Some(f)) => {
                    return Err(spec_error(format!(
                        "Cannot find device='{f}' nor node-name='{f}'"
                    )))
                }
                ("file.filename", Some(f)) => {
                    have_file = true;
                    file_filename = Some(f.to_string())
                }
                ("file.driver", Some(d)) => {
                    have_file = true;
                    r.file_driver = Some(d.to_string())
                }
                ("read-only", Some(b)) => r.read_only = Some(parse_bool(k, b)?),
                ("force-share", Some(b)) => r.force_share = Some(parse_bool(k, b)?),
                (k, Some(_)) if IGNORED.contains(&k) => {}
                (k, Some(v)) => {
                    if let Some(rest) = k.strip_prefix("file.") {
                        have_file = true;
                        if !IGNORED.contains(&rest) {
                            r.file_options.push((rest.to_string(), v.to_string()));
                        }
                    } else {
                        r.options.push((k.to_string(), v.to_string()));
                    }
                }
                (k, None) => r.options.push((k.to_string(), String::new())),
            }
        }
        match r.driver.as_deref().map(|d| (d, is_protocol(d))) {
            None => {
                if let Some(f) = file_filename.or(root_filename) {
                    r.filename = f;
                } else if have_file {
                    return Err(spec_error("The 'file' block driver requires a file name"));
                } else {
                    return Err(spec_error("Must specify either driver or file"));
                }
            }
            Some((d, None)) => return Err(spec_error(format!("Unknown driver '{d}'"))),
            Some((d, Some(true))) => {
                // A protocol at the root: its own file name and options.
                r.filename = root_filename.ok_or_else(|| {
                    spec_error(format!("The '{d}' block driver requires a file name"))
                })?;
                if have_file {
                    return Err(spec_error(format!(
                        "Block protocol '{d}' doesn't support the option 'file'"
                    )));
                }
            }
            Some((_, Some(false))) => {
                r.filename = file_filename
                    .ok_or_else(|| spec_error("A block device must be specified for \"file\""))?;
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flattens() {
        let s = ImageSpec::from_json(
            r#"{"driver":"qcow2","file":{"driver":"file","filename":"x"},"backing":null,"read-only":true}"#,
        )
        .unwrap();
        assert_eq!(s.get("file.filename"), Some("x"));
        assert_eq!(s.get("read-only"), Some("on"));
        let r = s.request(|d| Some(d == "file")).unwrap();
        assert!(r.no_backing);
        assert_eq!(r.filename, "x");
        assert_eq!(r.file_driver.as_deref(), Some("file"));
    }

    #[test]
    fn bad_specs() {
        let e = ImageSpec::from_json("[1]").unwrap_err();
        assert_eq!(e.message, "Invalid JSON object given");
        let e = ImageSpec::from_json("{").unwrap_err();
        assert!(e.message.contains("premature EOI"), "{}", e.message);
        let s = ImageSpec::from_pairs(vec![("driver".into(), "qcow2".into())]);
        let e = s.request(|d| Some(d == "file")).unwrap_err();
        assert_eq!(e.message, "A block device must be specified for \"file\"");
        let e = ImageSpec::default().request(|_| None).unwrap_err();
        assert_eq!(e.message, "Must specify either driver or file");
    }
}
