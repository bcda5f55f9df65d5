//! The check of `convert` and `dd` that their target is none of the files
//! their sources read (the image, its backing chain, its data files),
//! compared by device and inode, before any file is created or opened for
//! writing (docs/data-safety.md).

use crate::common::{CliError, CliResult};
use plugin_host::safety::{find_same_file, FileRelation};
use plugin_host::Image;

/// A source file that the target would overwrite.
pub struct Clash {
    /// The source image name as given.
    pub source: String,
    /// The source's file that is the target.
    pub file: String,
    /// Where that file sits in the source.
    pub relation: FileRelation,
}

/// The first file of the sources that is the same file as `target`.
pub fn find_clash(sources: &[(&str, &Image)], target: &str) -> Option<Clash> {
    sources.iter().find_map(|(name, img)| {
        find_same_file(img.graph(), target).map(|f| Clash {
            source: name.to_string(),
            file: f.filename,
            relation: f.relation,
        })
    })
}

/// qemu-img's message where the target's write lock conflicts with the
/// lock that the source open holds on the same file.
pub fn write_lock_message(target: &str) -> String {
    format!("Failed to get \"write\" lock\nIs another process using the image [{target}]?")
}

/// blk's error where qemu-img would go on and destroy the source; `target`
/// says which target file (`target 'x.qcow2'`).
pub fn clash_error(target: &str, c: &Clash) -> CliError {
    let what = match c.relation {
        FileRelation::Image => format!("the source image '{}'", c.source),
        FileRelation::Backing => format!(
            "'{}' in the backing chain of the source image '{}'",
            c.file, c.source
        ),
        FileRelation::DataFile => format!(
            "'{}', a data file of the source image '{}'",
            c.file, c.source
        ),
    };
    CliError::new(format!(
        "The {target} is the same file as {what}; it would destroy the source"
    ))
}

/// Refuses when the target is a file of the sources: with qemu-img's lock
/// message where qemu-img refuses too (`qemu_refuses`), else with blk's.
pub fn check_target(
    sources: &[(&str, &Image)],
    target: &str,
    qemu_refuses: impl Fn(&Clash) -> Option<String>,
) -> CliResult {
    check_target_file(sources, target, &format!("target '{target}'"), qemu_refuses)
}

/// As [`check_target`] for one file of the target (`label` names it in
/// blk's message: `target 'x'`, `target's data file 'y'`).
pub fn check_target_file(
    sources: &[(&str, &Image)],
    file: &str,
    label: &str,
    qemu_refuses: impl Fn(&Clash) -> Option<String>,
) -> CliResult {
    match find_clash(sources, file) {
        None => Ok(()),
        Some(c) => Err(match qemu_refuses(&c) {
            Some(m) => CliError::new(m),
            None => clash_error(label, &c),
        }),
    }
}
