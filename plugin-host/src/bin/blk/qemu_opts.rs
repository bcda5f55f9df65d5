//! QEMU's `QemuOpts` option strings as the command-line tools parse them
//! (`-T`, `--object`, `--image-opts`): `key=value` items separated by
//! commas (`,,` is a literal comma), a first item without `=` naming the
//! value of the list's implied option, a later bare `key` meaning `key=on`.

/// Parses `text` into `(key, value)` pairs in order. `implied` names the
/// option a leading bare value belongs to. Errors are QEMU's messages.
pub fn parse(text: &str, implied: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let items = block_core::options::split_option_items(text);
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some(("", _)) => return Err(format!("Invalid parameter '{item}'")),
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => match implied {
                Some(name) if i == 0 => out.push((name.to_string(), item)),
                _ => out.push((item, "on".to_string())),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn implied_and_escapes() {
        let v = parse("foo,,bar,file=x", Some("enable")).unwrap();
        assert_eq!(
            v,
            vec![
                ("enable".to_string(), "foo,bar".to_string()),
                ("file".to_string(), "x".to_string())
            ]
        );
        let v = parse("a=1,flag", None).unwrap();
        assert_eq!(v[1], ("flag".to_string(), "on".to_string()));
        assert!(parse("=x", None).is_err());
    }
}
