//! The `encrypt.` options of formats that embed QEMU's encryption (LUKS,
//! or the legacy AES of qcow and qcow2): their create and amend schema
//! rows as qemu-img lists them, and blk's refusals of them (blk has no
//! LUKS or AES implementation; see [`super::luks`]).

use super::luks::no_secret;
use crate::error::{BlockError, ErrorKind, Result};
use crate::options::{declare, OptDesc, OptType, OptionValues};

/// The create rows: the legacy `encryption` switch, `encrypt.format` with
/// the `formats` the image format offers, `encrypt.key-secret` with the
/// format's help text, and the LUKS parameters.
#[rustfmt::skip]
pub fn encryption_create_options(formats: &'static [&'static str], key_secret_help: &str) -> Vec<OptDesc> {
    use OptType::{Bool, Number, OneOf, Text};
    let choices: Vec<String> = formats.iter().map(|f| format!("'{f}'")).collect();
    let format_help = format!("Encrypt the image, format choices: {}", choices.join(", "));
    declare(&[
        ("encryption", Bool, None,
            "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)"),
        ("encrypt.format", OneOf(formats), None, &format_help),
        ("encrypt.key-secret", Text, None, key_secret_help),
        ("encrypt.cipher-alg", Text, None, "Name of encryption cipher algorithm"),
        ("encrypt.cipher-mode", Text, None, "Name of encryption cipher mode"),
        ("encrypt.ivgen-alg", Text, None, "Name of IV generator algorithm"),
        ("encrypt.ivgen-hash-alg", Text, None, "Name of IV generator hash algorithm"),
        ("encrypt.hash-alg", Text, None, "Name of encryption hash algorithm"),
        ("encrypt.iter-time", Number, None, "Time to spend in PBKDF in milliseconds"),
    ])
}

/// The amend rows of LUKS key-slot management.
#[rustfmt::skip]
pub fn luks_amend_options() -> Vec<OptDesc> {
    use OptType::{Number, Text};
    declare(&[
        ("encrypt.new-secret", Text, None, "New secret to set in the matching keyslots. Empty string to erase"),
        ("encrypt.state", Text, None, "Select new state of affected keyslots (active/inactive)"),
        ("encrypt.old-secret", Text, None, "Select all keyslots that match this password"),
        ("encrypt.keyslot", Number, None, "Select a single keyslot to modify explicitly"),
        ("encrypt.iter-time", Number, None, "Time to spend in PBKDF in milliseconds"),
    ])
}

/// Refuses create options that ask for encryption: without a secret with
/// QEMU's message, with one because blk cannot encrypt; `encrypt.` options
/// without a format are refused as QEMU refuses them.
pub fn refuse_create_encryption(o: &OptionValues) -> Result<()> {
    let any = o.values.iter().any(|(k, _)| k.starts_with("encrypt."));
    if !o.get_bool("encryption") && !o.is_set("encrypt.format") {
        return match any {
            true => Err(BlockError::invalid(
                "create",
                "Parameter 'encrypt.format' is missing",
            )),
            false => Ok(()),
        };
    }
    if !o.is_set("encrypt.key-secret") {
        return Err(no_secret("create"));
    }
    let msg = "blk cannot create encrypted images";
    Err(BlockError::new(ErrorKind::Unsupported, "create", msg))
}

/// Refuses to measure an image with LUKS encryption (only its header would
/// change the answer, and blk cannot size it); without a secret with
/// QEMU's message. Other encryption options do not change a measure.
pub fn refuse_luks_measure(o: &OptionValues) -> Result<()> {
    if o.get("encrypt.format") != Some("luks") {
        return Ok(());
    }
    if !o.is_set("encrypt.key-secret") {
        return Err(no_secret("measure"));
    }
    let msg = "blk cannot measure LUKS-encrypted images";
    Err(BlockError::new(ErrorKind::Unsupported, "measure", msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> OptionValues {
        let schema = encryption_create_options(&["aes", "luks"], "secret");
        OptionValues::parse_str(&schema, text).unwrap()
    }

    #[test]
    fn rows_as_qemu_img_lists_them() {
        let rows = encryption_create_options(&["aes", "luks"], "the key");
        assert_eq!(rows[1].name, "encrypt.format");
        assert_eq!(
            rows[1].help,
            "Encrypt the image, format choices: 'aes', 'luks'"
        );
        assert_eq!(rows[2].help, "the key");
        assert_eq!(rows.len(), 9);
        let amend = luks_amend_options();
        assert!(amend.iter().all(|d| d.name.starts_with("encrypt.")));
    }

    #[test]
    fn create_refusals() {
        assert!(refuse_create_encryption(&values("")).is_ok());
        let msg = |t: &str| refuse_create_encryption(&values(t)).unwrap_err();
        assert_eq!(
            msg("encrypt.cipher-alg=aes-256").message,
            "Parameter 'encrypt.format' is missing"
        );
        assert_eq!(msg("encryption=on").message, no_secret("create").message);
        assert_eq!(
            msg("encrypt.format=luks").message,
            no_secret("create").message
        );
        let e = msg("encrypt.format=luks,encrypt.key-secret=s");
        assert_eq!(e.kind, ErrorKind::Unsupported);
    }

    #[test]
    fn measure_refuses_luks_only() {
        assert!(refuse_luks_measure(&values("encrypt.format=aes")).is_ok());
        assert!(refuse_luks_measure(&values("encrypt.cipher-alg=x")).is_ok());
        let e = refuse_luks_measure(&values("encrypt.format=luks")).unwrap_err();
        assert_eq!(e.message, no_secret("measure").message);
        let e = refuse_luks_measure(&values("encrypt.format=luks,encrypt.key-secret=s"));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Unsupported);
    }
}
