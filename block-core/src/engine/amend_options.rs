//! The option side of `qemu-img amend` that every format shares: the
//! values are checked against the format's amend schema in the order
//! given, enumerated values are left to the format (QEMU declares them as
//! text and each driver words its own refusal), and a refusal of options
//! that the create schema accepts carries QEMU's hint.

use crate::error::{BlockError, Result};
use crate::options::{loosen_enums, OptDesc, OptionValues};

/// The hint QEMU appends when the refused options are create options.
pub const CREATE_ONLY_HINT: &str = "This option is only supported for image creation";

/// Parses amend `pairs` against the `amend` schema as qemu-img amend does:
/// the first unknown name or ill-typed value is refused with QEMU's
/// message, followed by [`CREATE_ONLY_HINT`] when all of `pairs` parse
/// against the amend and `create` schemas together. Errors are invalid
/// arguments of operation `amend`.
pub fn parse_amend_options(
    amend: &[OptDesc],
    create: &[OptDesc],
    pairs: &[(String, String)],
) -> Result<OptionValues> {
    let loose = loosen_enums(amend);
    OptionValues::parse(&loose, pairs).map_err(|e| {
        let mut both = loose.clone();
        both.extend(loosen_enums(create));
        let msg = match OptionValues::parse(&both, pairs) {
            Ok(_) => format!("{}\n{CREATE_ONLY_HINT}", e.message),
            Err(_) => e.message,
        };
        BlockError::invalid("amend", msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{declare, split_option_string, OptType};

    fn schemas() -> (Vec<OptDesc>, Vec<OptDesc>) {
        let amend = declare(&[
            ("size", OptType::Size, None, "size"),
            ("compat", OptType::OneOf(&["a", "b"]), None, "compat"),
            ("lazy", OptType::Bool, None, "lazy"),
        ]);
        let create = declare(&[
            ("size", OptType::Size, None, "size"),
            ("cluster_size", OptType::Size, Some("64k"), "cluster size"),
        ]);
        (amend, create)
    }

    fn parse(text: &str) -> Result<OptionValues> {
        let (a, c) = schemas();
        parse_amend_options(&a, &c, &split_option_string(text).unwrap())
    }

    #[test]
    fn values_typed_and_enum_words_left_to_the_format() {
        let o = parse("size=1M,compat=zz,lazy=y,lazy=n").unwrap();
        assert_eq!(o.get_size("size").unwrap(), Some(1 << 20));
        assert_eq!(o.get("compat"), Some("zz"));
        assert_eq!(o.get_flag("lazy"), Some(false));
        assert_eq!(o.get("cluster_size"), None);
    }

    #[test]
    fn refusals_in_qemus_words_and_order() {
        let msg = |t: &str| parse(t).unwrap_err().message;
        assert_eq!(msg("foo=bar"), "Invalid parameter 'foo'");
        assert_eq!(
            msg("cluster_size=4k"),
            format!("Invalid parameter 'cluster_size'\n{CREATE_ONLY_HINT}")
        );
        // The hint needs every pair to parse with the create options.
        assert_eq!(
            msg("cluster_size=4k,lazy=maybe"),
            "Invalid parameter 'cluster_size'"
        );
        assert_eq!(
            msg("lazy=maybe,foo=bar"),
            "Parameter 'lazy' expects 'on' or 'off'"
        );
        assert_eq!(msg("lazy=1"), "Parameter 'lazy' expects 'on' or 'off'");
        assert_eq!(
            parse("x=1").unwrap_err().op,
            crate::Operation::from("amend")
        );
    }
}
