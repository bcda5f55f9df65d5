//! The plugin's panic strategy, read from its ABI stamp before any of its
//! code runs. A plugin built with `panic = "abort"` cannot have its panics
//! caught at the ABI boundary: the first one would end the host process
//! (exit 134) instead of failing one call, so such a plugin is refused.
//! Plugins built before ABI 1.6 do not declare their strategy; they load.

use block_core::abi::BcAbiStamp;
use block_core::{BlockError, ErrorKind, Result};
use std::path::Path;

/// Refuses a plugin whose stamp says it was built with `panic = "abort"`,
/// naming the file and the fix; accepts unwinding and undeclared ones.
pub fn check(path: &Path, stamp: &BcAbiStamp) -> Result<()> {
    match stamp.panic_strategy {
        BcAbiStamp::PANIC_UNWIND => Ok(()),
        BcAbiStamp::PANIC_ABORT => Err(BlockError::new(
            ErrorKind::AbiMismatch,
            "load plugin",
            "plugin was built with panic=abort, so any panic in it would abort the whole \
             host process instead of failing one call; rebuild it with `panic = \"unwind\"` \
             (the default) in the Cargo profile it is built with",
        )
        .in_file(path.display().to_string())),
        other => {
            log::debug!(
                "{}: plugin does not declare its panic strategy (ABI {}.{}, value {other}); \
                 loading it, but a panic in it may abort the host if it was built with panic=abort",
                path.display(),
                stamp.abi_major,
                stamp.abi_minor
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(strategy: u32) -> BcAbiStamp {
        BcAbiStamp {
            panic_strategy: strategy,
            ..BcAbiStamp::CURRENT
        }
    }

    #[test]
    fn abort_is_refused_with_the_fix() {
        let e = check(Path::new("/p/libx.so"), &stamp(BcAbiStamp::PANIC_ABORT)).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("/p/libx.so"), "{m}");
        assert!(m.contains("panic=abort"), "{m}");
        assert!(m.contains("panic = \"unwind\""), "{m}");
    }

    #[test]
    fn unwind_and_undeclared_load() {
        check(Path::new("x"), &stamp(BcAbiStamp::PANIC_UNWIND)).unwrap();
        check(Path::new("x"), &stamp(BcAbiStamp::PANIC_UNDECLARED)).unwrap();
        check(Path::new("x"), &stamp(7)).unwrap();
    }

    #[test]
    fn the_macro_stamp_reflects_this_crate() {
        let s = BcAbiStamp::for_plugin(cfg!(panic = "unwind"));
        assert_eq!(s.panic_strategy, BcAbiStamp::PANIC_UNWIND);
        assert_eq!(
            BcAbiStamp::for_plugin(false).panic_strategy,
            BcAbiStamp::PANIC_ABORT
        );
    }
}
