//! `--object` user-creatable objects. blk knows one type, `secret`
//! (`secret,id=ID,data=TEXT|file=PATH[,format=raw|base64][,keyid=ID,iv=IV]`),
//! parsed and checked as QEMU checks it and kept in a process-wide registry
//! that commands look secrets up in by id. Other object types are refused
//! with QEMU's messages.

use crate::common::{CliError, CliResult};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The secrets defined on the command line, by id.
static SECRETS: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();

/// QEMU's object types that blk does not implement (qemu-img's creatable
/// ones and well-known others): refused as "invalid object type".
const OTHER_QEMU_TYPES: &[&str] = &[
    "authz-list",
    "authz-list-file",
    "authz-pam",
    "authz-simple",
    "can-bus",
    "colo-compare",
    "cryptodev-backend",
    "dbus-vmstate",
    "filter-buffer",
    "filter-dump",
    "filter-mirror",
    "filter-redirector",
    "filter-replay",
    "filter-rewriter",
    "input-barrier",
    "input-linux",
    "iothread",
    "main-loop",
    "memory-backend-epc",
    "memory-backend-file",
    "memory-backend-memfd",
    "memory-backend-ram",
    "pr-manager-helper",
    "qtest",
    "rng-builtin",
    "rng-egd",
    "rng-random",
    "secret_keyring",
    "thread-context",
    "throttle-group",
    "tls-cipher-suites",
    "tls-creds-anon",
    "tls-creds-psk",
    "tls-creds-x509",
    "x-remote-object",
    "x-vfio-user-server",
];

/// The options of a `secret` object, as `secret,help` lists them.
const SECRET_OPTIONS: &[(&str, &str)] = &[
    ("data", "string"),
    ("file", "string"),
    ("format", "QCryptoSecretFormat"),
    ("iv", "string"),
    ("keyid", "string"),
];

/// What processing the `--object` arguments asked for.
pub enum ObjectsOutcome {
    /// Go on with the command.
    Continue,
    /// A help text was printed: exit 0.
    ExitOk,
}

/// Parses every `--object` argument in order and installs the registry.
pub fn install(args: &[String]) -> CliResult<ObjectsOutcome> {
    let mut secrets = BTreeMap::new();
    for a in args {
        match parse_one(a, &secrets)? {
            Parsed::Help => return Ok(ObjectsOutcome::ExitOk),
            Parsed::Secret(id, data) => {
                secrets.insert(id, data);
            }
        }
    }
    let _ = SECRETS.set(secrets);
    Ok(ObjectsOutcome::Continue)
}

/// The bytes of the secret `id`, if one was defined.
#[allow(dead_code)]
pub fn secret(id: &str) -> Option<&'static [u8]> {
    SECRETS.get()?.get(id).map(Vec::as_slice)
}

enum Parsed {
    Help,
    Secret(String, Vec<u8>),
}

/// The `(key, value)` pairs of one object definition: QemuOpts text with
/// `qom-type` implied, or a JSON object.
fn pairs_of(def: &str) -> CliResult<Vec<(String, String)>> {
    if def.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(def)
            .map_err(|e| CliError::new(format!("JSON parse error, {e}")))?;
        let serde_json::Value::Object(m) = v else {
            return Err(CliError::new("Invalid JSON object given"));
        };
        return Ok(m
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect());
    }
    crate::qemu_opts::parse(def, Some("qom-type")).map_err(CliError::new)
}

fn parse_one(def: &str, have: &BTreeMap<String, Vec<u8>>) -> CliResult<Parsed> {
    let pairs = pairs_of(def)?;
    let get = |k: &str| pairs.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v);
    let ty = get("qom-type");
    if ty.map(String::as_str) == Some("help") {
        println!("List of user creatable objects:");
        println!("  secret");
        return Ok(Parsed::Help);
    }
    let Some(ty) = ty else {
        return Err(CliError::new("Parameter 'qom-type' is missing"));
    };
    if ty != "secret" {
        return Err(if OTHER_QEMU_TYPES.contains(&ty.as_str()) {
            CliError::new(format!("invalid object type: {ty}"))
        } else {
            CliError::new(format!("Parameter 'qom-type' does not accept value '{ty}'"))
        });
    }
    if pairs.iter().any(|(k, _)| k == "help" || k == "?") {
        println!("secret options:");
        for (name, ty) in SECRET_OPTIONS {
            println!("  {name}=<{ty}>");
        }
        return Ok(Parsed::Help);
    }
    let Some(id) = get("id") else {
        return Err(CliError::new("Parameter 'id' is missing"));
    };
    if !is_identifier(id) {
        return Err(CliError::new(
            "Parameter 'id' expects an identifier\n\
             Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
        ));
    }
    for (k, _) in &pairs {
        if k != "qom-type" && k != "id" && !SECRET_OPTIONS.iter().any(|(n, _)| n == k) {
            return Err(CliError::new(format!("Parameter '{k}' is unexpected")));
        }
    }
    let base64 = match get("format").map(String::as_str) {
        None | Some("raw") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(CliError::new(format!(
                "Parameter 'format' does not accept value '{f}'"
            )))
        }
    };
    if have.contains_key(id.as_str()) {
        return Err(CliError::new(format!(
            "attempt to add duplicate property '{id}' to object (type 'container')"
        )));
    }
    let raw = match (get("data"), get("file")) {
        (Some(_), Some(_)) => {
            return Err(CliError::new("'file' and 'data' are mutually exclusive"))
        }
        (None, None) => return Err(CliError::new("Either 'file' or 'data' must be provided")),
        (Some(d), None) => d.as_bytes().to_vec(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| {
            CliError::new(format!(
                "Unable to read {f}: Failed to open file \u{201c}{f}\u{201d}: {}",
                crate::human::strerror(e.raw_os_error().unwrap_or(libc::EIO))
            ))
        })?,
    };
    let data = if base64 { decode_base64(&raw)? } else { raw };
    if let Some(k) = get("keyid") {
        if !have.contains_key(k.as_str()) {
            return Err(CliError::new(format!("No secret with id '{k}'")));
        }
        // Secrets encrypted with another secret (AES-256-CBC) are not
        // implemented.
        return Err(CliError::new(format!(
            "secret '{id}': decrypting with keyid is not supported"
        )));
    }
    Ok(Parsed::Secret(id.clone(), data))
}

/// QEMU's `id_wellformed`: letters, digits, `-`, `.`, `_`, starting with a
/// letter.
fn is_identifier(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '-' | '.' | '_'))
}

/// Decodes base64 as QEMU's `qbase64_decode`: only the alphabet, `=` and
/// newlines are allowed; decoding stops at padding.
fn decode_base64(text: &[u8]) -> CliResult<Vec<u8>> {
    if text.contains(&0) {
        return Err(CliError::new(
            "Base64 data contains embedded NUL characters",
        ));
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    if text
        .iter()
        .any(|&c| value(c).is_none() && c != b'=' && c != b'\n')
    {
        return Err(CliError::new("Base64 data contains invalid characters"));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64(b"c2VjcmV0").unwrap(), b"secret");
        assert_eq!(decode_base64(b"cGFzcw==").unwrap(), b"pass");
        assert!(decode_base64(b"!!!").is_err());
    }

    #[test]
    fn secrets() {
        let none = BTreeMap::new();
        match parse_one("secret,id=s0,data=a,,b", &none).unwrap() {
            Parsed::Secret(id, d) => assert_eq!((id.as_str(), d.as_slice()), ("s0", &b"a,b"[..])),
            Parsed::Help => panic!(),
        }
        assert!(parse_one("secret,id=s0", &none).is_err());
        assert!(parse_one("secret,id=1x,data=a", &none).is_err());
        assert!(parse_one("bogus,id=x", &none).is_err());
    }
}
