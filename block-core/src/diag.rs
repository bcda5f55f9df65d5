//! Conventions for diagnostics sent through `log` that a front end renders
//! in a form of its own, so that it tests where a record is logged, never
//! the record's text.
//!
//! A *hint* continues the warning logged just before it (QEMU's
//! `error_printf` after a `warn_report`): drivers log it with [`crate::hint!`]
//! (target [`HINT_TARGET`]) and `blk` prints it bare. Records of plugin
//! drivers reach the host under `plugin::NAME::TARGET`, which
//! [`is_hint_target`] also accepts.

/// The `log` target of a hint.
pub const HINT_TARGET: &str = "blk::hint";

/// True for the target of a hint, logged here or by a plugin driver.
pub fn is_hint_target(target: &str) -> bool {
    target == HINT_TARGET
        || target
            .strip_suffix(HINT_TARGET)
            .is_some_and(|head| head.starts_with("plugin::") && head.ends_with("::"))
}

/// Logs a hint that continues the previous warning:
/// `block_core::hint!("Some clusters may be leaked, ...")`.
#[macro_export]
macro_rules! hint {
    ($($arg:tt)+) => {
        ::log::warn!(target: $crate::diag::HINT_TARGET, $($arg)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hints are recognised by target, linked in or from a plugin.
    #[test]
    fn hint_targets() {
        assert!(is_hint_target(HINT_TARGET));
        assert!(is_hint_target("plugin::qcow2::blk::hint"));
        assert!(!is_hint_target("qcow2::bitmap"));
        assert!(!is_hint_target("xblk::hint"));
    }
}
