//! JSON output byte-compatible with QEMU's `qobject_to_json_pretty`: object
//! members come out in QDict hash-table order (QEMU's `tdb_hash` over 512
//! buckets, later insertions first within a bucket), four-space indentation,
//! empty containers on two lines, non-ASCII escaped as `\uXXXX`.

use serde_json::Value;

/// A QEMU QObject: objects keep their insertion order (the QAPI field order).
#[derive(Debug, Clone, PartialEq)]
pub enum QObj {
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (QEMU prints uint64 values as unsigned).
    UInt(u64),
    /// A floating point number.
    Num(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<QObj>),
    /// A dictionary in insertion order.
    Dict(Vec<(String, QObj)>),
}

impl QObj {
    /// An empty dictionary.
    pub fn dict() -> QObj {
        QObj::Dict(Vec::new())
    }

    /// Appends a member to a dictionary (no effect on other values).
    pub fn put(&mut self, key: &str, v: impl Into<QObj>) {
        if let QObj::Dict(m) = self {
            m.retain(|(k, _)| k != key);
            m.push((key.to_string(), v.into()));
        }
    }

    /// Appends a member when `v` is `Some`.
    pub fn put_opt<T: Into<QObj>>(&mut self, key: &str, v: Option<T>) {
        if let Some(v) = v {
            self.put(key, v);
        }
    }

    /// Converts a serde value (object members in its own order).
    pub fn from_value(v: &Value) -> QObj {
        match v {
            Value::Null => QObj::Null,
            Value::Bool(b) => QObj::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    QObj::UInt(u)
                } else if let Some(i) = n.as_i64() {
                    QObj::Int(i)
                } else {
                    QObj::Num(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => QObj::Str(s.clone()),
            Value::Array(a) => QObj::List(a.iter().map(QObj::from_value).collect()),
            Value::Object(m) => QObj::Dict(
                m.iter()
                    .map(|(k, v)| (k.clone(), QObj::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// QEMU's pretty JSON text of this object (no trailing newline).
    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        write_obj(self, 0, &mut s);
        s
    }
}

impl From<bool> for QObj {
    fn from(b: bool) -> QObj {
        QObj::Bool(b)
    }
}
impl From<u64> for QObj {
    fn from(v: u64) -> QObj {
        QObj::UInt(v)
    }
}
impl From<i64> for QObj {
    fn from(v: i64) -> QObj {
        QObj::Int(v)
    }
}
impl From<&str> for QObj {
    fn from(v: &str) -> QObj {
        QObj::Str(v.to_string())
    }
}
impl From<String> for QObj {
    fn from(v: String) -> QObj {
        QObj::Str(v)
    }
}
impl From<Vec<QObj>> for QObj {
    fn from(v: Vec<QObj>) -> QObj {
        QObj::List(v)
    }
}

/// QEMU's `tdb_hash` of a QDict key.
fn tdb_hash(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut value: u32 = 0x238F13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &c) in bytes.iter().enumerate() {
        value = value.wrapping_add((c as u32) << ((i * 5) % 24));
    }
    1103515243u32.wrapping_mul(value).wrapping_add(12345)
}

const QDICT_BUCKET_MAX: u32 = 512;

/// The members of a dictionary in QDict iteration order.
pub fn qdict_order(members: &[(String, QObj)]) -> Vec<&(String, QObj)> {
    let mut v: Vec<(u32, usize, &(String, QObj))> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (tdb_hash(&m.0) % QDICT_BUCKET_MAX, i, m))
        .collect();
    // Buckets ascending; within a bucket the latest insertion first.
    v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    v.into_iter().map(|(_, _, m)| m).collect()
}

fn newline(indent: usize, s: &mut String) {
    s.push('\n');
    for _ in 0..indent {
        s.push_str("    ");
    }
}

fn write_str(v: &str, s: &mut String) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let cp = c as u32;
                if cp > 0xffff {
                    let v = cp - 0x10000;
                    s.push_str(&format!(
                        "\\u{:04X}\\u{:04X}",
                        0xd800 + (v >> 10),
                        0xdc00 + (v & 0x3ff)
                    ));
                } else {
                    s.push_str(&format!("\\u{cp:04X}"));
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn write_obj(o: &QObj, indent: usize, s: &mut String) {
    match o {
        QObj::Null => s.push_str("null"),
        QObj::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        QObj::Int(i) => s.push_str(&i.to_string()),
        QObj::UInt(u) => s.push_str(&u.to_string()),
        QObj::Num(f) => s.push_str(&crate::human::fmt_g(*f, 17)),
        QObj::Str(v) => write_str(v, s),
        QObj::List(items) => {
            s.push('[');
            let mut first = true;
            for it in items {
                if !first {
                    s.push(',');
                }
                first = false;
                newline(indent + 1, s);
                write_obj(it, indent + 1, s);
            }
            newline(indent, s);
            s.push(']');
        }
        QObj::Dict(members) => {
            s.push('{');
            let mut first = true;
            for (k, v) in qdict_order(members) {
                if !first {
                    s.push(',');
                }
                first = false;
                newline(indent + 1, s);
                write_str(k, s);
                s.push_str(": ");
                write_obj(v, indent + 1, s);
            }
            newline(indent, s);
            s.push('}');
        }
    }
}

/// QEMU's human dump of a format-specific dictionary
/// (`bdrv_image_info_specific_dump`): dashes in keys become spaces.
pub fn dump_human(o: &QObj, indentation: usize, out: &mut String) {
    match o {
        QObj::Dict(members) => {
            for (k, v) in qdict_order(members) {
                let composite = matches!(v, QObj::Dict(_) | QObj::List(_));
                let key = k.replace('-', " ");
                out.push_str(&format!("{:w$}{key}:", "", w = indentation * 4));
                out.push_str(if composite { "\n" } else { " " });
                dump_human(v, indentation + 1, out);
                if !composite {
                    out.push('\n');
                }
            }
        }
        QObj::List(items) => {
            for (i, v) in items.iter().enumerate() {
                let composite = matches!(v, QObj::Dict(_) | QObj::List(_));
                out.push_str(&format!(
                    "{:w$}[{i}]:{}",
                    "",
                    if composite { '\n' } else { ' ' },
                    w = indentation * 4
                ));
                dump_human(v, indentation + 1, out);
                if !composite {
                    out.push('\n');
                }
            }
        }
        QObj::Null => out.push_str("null"),
        QObj::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        QObj::Int(i) => out.push_str(&i.to_string()),
        QObj::UInt(u) => out.push_str(&u.to_string()),
        QObj::Num(f) => out.push_str(&format!("{f}")),
        QObj::Str(v) => out.push_str(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_order_like_qemu() {
        let mut d = QObj::dict();
        for k in [
            "filename",
            "format",
            "check-errors",
            "image-end-offset",
            "total-clusters",
            "allocated-clusters",
        ] {
            d.put(k, 1u64);
        }
        let keys: Vec<&str> = match &d {
            QObj::Dict(m) => qdict_order(m).iter().map(|(k, _)| k.as_str()).collect(),
            _ => vec![],
        };
        assert_eq!(
            keys,
            [
                "image-end-offset",
                "total-clusters",
                "check-errors",
                "allocated-clusters",
                "filename",
                "format"
            ]
        );
    }

    #[test]
    fn empty_containers() {
        let mut d = QObj::dict();
        d.put("children", QObj::List(vec![]));
        assert_eq!(d.to_pretty(), "{\n    \"children\": [\n    ]\n}");
    }
}
