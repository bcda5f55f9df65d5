//! `cargo xtask new-plugin NAME DIR`: starts a plugin crate from the
//! template in `sdk/plugin-template`.
//!
//! The template is copied into DIR (which must not exist or be empty), its
//! name `battemplate` (crate, library, driver and plugin name) is replaced
//! by NAME everywhere, and its block-core dependency, a path relative to the
//! template's place in this repository, becomes the absolute path of this
//! checkout's block-core. This checkout's Cargo.lock seeds the plugin's, so
//! the plugin first builds against the dependency versions blk is tested
//! with.

use std::path::{Path, PathBuf};

/// The template's name, replaced by the new plugin's.
const TEMPLATE_NAME: &str = "battemplate";
/// The template's directory, relative to the repository root.
const TEMPLATE_DIR: &str = "sdk/plugin-template";
/// Files and directories of the template not copied (build output).
const SKIPPED: &[&str] = &["target", "Cargo.lock"];
/// The longest name accepted.
const MAX_NAME_LEN: usize = 64;

/// Names that cannot be a crate or a new driver: Rust keywords, crates a
/// plugin depends on or links with, and the drivers blk ships.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "block_core",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "file",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "log",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "qcow2",
    "raw",
    "ref",
    "return",
    "self",
    "serde_json",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Checks that `name` can name the crate, its library and the driver: a
/// lowercase identifier (`[a-z][a-z0-9_]*`), not reserved.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok {
        return Err(format!(
            "plugin name '{name}' is not a lowercase identifier (a letter a-z, then a-z, 0-9 or _)"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "plugin name '{name}' is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "plugin name '{name}' is reserved (a Rust keyword, a dependency, or a driver blk ships)"
        ));
    }
    Ok(())
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The template manifest with its block-core dependency pointed at
/// `block_core` (an absolute path). Exactly one `block-core = ` line must
/// be there.
pub fn rewrite_manifest(manifest: &str, block_core: &Path) -> Result<String, String> {
    let path = block_core
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", block_core.display()))?;
    let mut found = 0;
    let mut out = String::with_capacity(manifest.len() + 200);
    for line in manifest.lines() {
        if line.trim_start().starts_with("block-core = ") {
            found += 1;
            out.push_str(
                "# The blk checkout this plugin was made from. Switch to a crates.io\n\
                 # version (block-core = \"0.1\") once block-core is published.\n",
            );
            out.push_str(&format!(
                "block-core = {{ path = {} }}\n",
                toml_string(path)
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if found != 1 {
        return Err(format!(
            "the template manifest has {found} block-core dependency lines, expected 1"
        ));
    }
    Ok(out)
}

/// Copies the template tree `from` into `to`, renaming on the way.
fn copy_tree(from: &Path, to: &Path, name: &str, top: bool) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("create {}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    let mut entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read {}: {e}", from.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(format!(
                "template file name {:?} is not UTF-8",
                entry.file_name()
            ));
        };
        if top && SKIPPED.contains(&file_name) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(file_name.replace(TEMPLATE_NAME, name));
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", src.display()))?;
        if kind.is_dir() {
            copy_tree(&src, &dst, name, false)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => text.replace(TEMPLATE_NAME, name).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            std::fs::write(&dst, bytes).map_err(|e| format!("write {}: {e}", dst.display()))?;
        } else {
            return Err(format!(
                "{}: the template holds only files and directories",
                src.display()
            ));
        }
    }
    Ok(())
}

/// Makes the plugin `name` in `dir` from the template of the checkout at
/// `root`. `dir` must not exist, or be an empty directory.
pub fn make(root: &Path, name: &str, dir: &Path) -> Result<(), String> {
    validate_name(name)?;
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty: give a new or empty directory",
                    dir.display()
                ));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let block_core = std::fs::canonicalize(root.join("block-core"))
        .map_err(|e| format!("block-core in {}: {e}", root.display()))?;
    let template = root.join(TEMPLATE_DIR);
    let result = (|| {
        copy_tree(&template, dir, name, true)?;
        let manifest_path = dir.join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("read {}: {e}", manifest_path.display()))?;
        std::fs::write(&manifest_path, rewrite_manifest(&manifest, &block_core)?)
            .map_err(|e| format!("write {}: {e}", manifest_path.display()))?;
        let lock = root.join("Cargo.lock");
        if lock.exists() {
            std::fs::copy(&lock, dir.join("Cargo.lock"))
                .map_err(|e| format!("copy {}: {e}", lock.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Leave nothing behind: the directory was new or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

/// The template is outside the workspace, so `cargo fmt --all` and
/// `cargo clippy --workspace` do not see it: `cargo xtask lint` checks it
/// here (its build output under `target`, not in the template).
pub fn lint_template(
    root: &Path,
    target: &Path,
    run: fn(std::process::Command) -> Result<(), String>,
) -> Result<(), String> {
    let manifest = root.join(TEMPLATE_DIR).join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(&cargo);
    c.arg("fmt")
        .arg("--check")
        .arg("--manifest-path")
        .arg(&manifest);
    run(c)?;
    let mut c = std::process::Command::new(&cargo);
    c.arg("clippy")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "--all-targets",
            "--features",
            "plugin",
            "--",
            "-D",
            "warnings",
        ])
        .env("CARGO_TARGET_DIR", target.join("sdk-template"));
    run(c)
}

/// `cargo xtask new-plugin NAME DIR`.
pub fn new_plugin(root: &Path, args: &[String]) -> Result<(), String> {
    let [name, dir] = args else {
        return Err("usage: cargo xtask new-plugin NAME DIR".into());
    };
    let dir = PathBuf::from(dir);
    make(root, name, &dir)?;
    println!(
        "xtask: plugin '{name}' made in {d}\n\
         next: cd {d} && cargo test && cargo build --features plugin\n\
         then: blk-conformance --plugin target/debug/lib{name}.so (docs/plugins.md)",
        d = dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn names_are_lowercase_identifiers_and_not_reserved() {
        for good in ["batfmt", "a", "my_format2", &"x".repeat(64)] {
            validate_name(good).unwrap();
        }
        for (bad, words) in [
            ("", "not a lowercase identifier"),
            ("Bat", "not a lowercase identifier"),
            ("2fmt", "not a lowercase identifier"),
            ("_fmt", "not a lowercase identifier"),
            ("my-format", "not a lowercase identifier"),
            ("fmt/..", "not a lowercase identifier"),
            ("ünï", "not a lowercase identifier"),
            (&"x".repeat(65), "longer than 64"),
            ("self", "reserved"),
            ("block_core", "reserved"),
            ("qcow2", "reserved"),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn the_dependency_line_becomes_an_absolute_path_with_the_note() {
        let m = "[dependencies]\nblock-core = { path = \"../../block-core\" }\nlog = \"0.4\"\n";
        let out = rewrite_manifest(m, Path::new("/src/my \"blk\"/block-core")).unwrap();
        assert!(out.contains("block-core = { path = \"/src/my \\\"blk\\\"/block-core\" }\n"));
        assert!(out.contains("once block-core is published"));
        assert!(out.ends_with("log = \"0.4\"\n"));
        assert!(rewrite_manifest("[dependencies]\n", Path::new("/x")).is_err());
        let twice = format!("{m}block-core = {{ path = \"x\" }}\n");
        assert!(rewrite_manifest(&twice, Path::new("/x")).is_err());
    }

    #[test]
    fn the_template_is_copied_renamed_and_pointed_at_this_checkout() {
        let tmp = std::env::temp_dir().join(format!("xtask-new-plugin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let dir = tmp.join("fresh");
        make(&root(), "myfmt", &dir).unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"myfmt\""), "{manifest}");
        let core = std::fs::canonicalize(root().join("block-core")).unwrap();
        assert!(manifest.contains(&format!("path = \"{}\"", core.display())));
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("DRIVER_NAME: &str = \"myfmt\""));
        assert!(lib.contains("export_plugin!(\"myfmt\""));
        for f in [
            "src/driver.rs",
            "src/format.rs",
            "src/tests/mod.rs",
            "README.md",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(
                !text.contains(TEMPLATE_NAME),
                "{f} still names the template"
            );
        }
        assert!(!dir.join("target").exists());

        // A non-empty directory is refused and left as it was.
        let e = make(&root(), "other", &dir).unwrap_err();
        assert!(e.contains("is not empty"), "{e}");
        assert!(std::fs::read_to_string(dir.join("Cargo.toml")).unwrap() == manifest);
        // A bad name is refused before anything is made.
        assert!(make(&root(), "Bad", &tmp.join("bad")).is_err());
        assert!(!tmp.join("bad").exists());
        // An empty directory is fine.
        let empty = tmp.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        make(&root(), "emptyfmt", &empty).unwrap();
        assert!(empty.join("src/header.rs").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
