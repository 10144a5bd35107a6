//! Identifiers: vendor, class and device IDs as RFC 4122 version-5 (name-based, SHA-1) UUIDs.
//!
//! A Pelion update client accepts an update only if the manifest's vendor ID and class ID match
//! the ones provisioned into the device, so the station must derive them exactly as the tool
//! that signs the manifests does. Deriving them from names (rather than storing random UUIDs)
//! lets a factory recompute them from the profile alone.
//!
//! Compatibility with Izuma/Pelion `manifest-tool` 2.6.2, checked in its source:
//! - `manifest-tool create` (`mtool/asn1/manifest_codec.py`) computes
//!   `vendor_id = uuid.uuid5(uuid.NAMESPACE_DNS, vendor_domain)` from `vendor: domain:` and
//!   `class_id = uuid.uuid5(vendor_id, model_name)` from `device: model-name:`; Python encodes
//!   the name as UTF-8. [`vendor_id_from_domain`] and [`class_id_from_model`] are the same
//!   functions. It also rejects a domain that does not match `^\S+\.\S+$`;
//!   [`check_vendor_domain`] applies that rule.
//! - `manifest-dev-tool init` does *not* derive IDs: `--vendor-id`/`--class-id` default to
//!   random `uuid.uuid4()` values, or are given as hex (`uuid.UUID(hex=...)`), and are written
//!   to `.manifest-dev-tool/dev.cfg.yaml` as 32 lowercase hex digits without hyphens. Importing
//!   such an environment therefore goes through [`parse_uuid`], which accepts that form.
//!
//! The device ID follows the same pattern one level down (not a Pelion rule, our choice): the
//! version-5 UUID of the chip's unique ID, written as lowercase hex, in the class ID's
//! namespace. It is stable for a chip, distinct across classes, and reveals nothing about the
//! raw unique ID beyond what SHA-1 leaks.
//!
//! Serial numbers live here too ([`serial`]): the schemes, the rework policy, what a serial and
//! a counter prefix may contain, and how a counter value becomes a serial. The profile checks a
//! scheme with it, the ledger and the central lease issue serials with it.

pub mod serial;

use std::fmt;

use uuid::Uuid;

pub use serial::{ReworkPolicy, SerialScheme, SerialSchemeError};

/// Why an identifier could not be parsed or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{field}: expected a uuid as 32 hex digits or in hyphenated 8-4-4-4-12 form, found {text:?}")]
    MalformedUuid { field: String, text: String },

    #[error("chip unique id: expected 1 to {max_length_bytes} bytes, found {length_bytes}")]
    ChipUidLength { length_bytes: usize, max_length_bytes: usize },

    #[error("chip unique id: expected an even number of hex digits, found {text:?}: {reason}")]
    MalformedChipUidHex { text: String, reason: String },

    #[error(
        "vendor domain: expected a domain name like \"example.com\" (no spaces, a dot with text \
         on both sides, as manifest-tool requires), found {domain:?}"
    )]
    MalformedVendorDomain { domain: String },
}

/// The vendor ID for a vendor's DNS domain: `uuid5(NAMESPACE_DNS, domain)`, as `manifest-tool`
/// computes it from `vendor: domain:`.
pub fn vendor_id_from_domain(vendor_domain: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, vendor_domain.as_bytes())
}

/// The class ID for a device model: `uuid5(vendor_id, model_name)`, as `manifest-tool`
/// computes it from `device: model-name:`.
pub fn class_id_from_model(vendor_id: Uuid, model_name: &str) -> Uuid {
    Uuid::new_v5(&vendor_id, model_name.as_bytes())
}

/// The device ID for one chip: `uuid5(class_id, chip_uid.to_hex())`.
pub fn device_id_from_chip_uid(class_id: Uuid, chip_uid: &ChipUid) -> Uuid {
    Uuid::new_v5(&class_id, chip_uid.to_hex().as_bytes())
}

/// Checks a vendor domain the way `manifest-tool` does before deriving a vendor ID
/// (`re.match(r"^\S+\.\S+$", domain)`): no whitespace, and a dot with at least one character
/// on each side. (Python's `$` would also accept one trailing newline; we do not.)
pub fn check_vendor_domain(vendor_domain: &str) -> Result<(), IdentityError> {
    let characters: Vec<char> = vendor_domain.chars().collect();
    let has_inner_dot = characters.len() >= 3 && characters[1..characters.len() - 1].contains(&'.');
    // Python's `\s` is `str.isspace()`, which is Unicode White_Space plus the four ASCII
    // information separators U+001C..U+001F; match it exactly.
    let has_whitespace = characters
        .iter()
        .any(|&character| character.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&character));
    if has_inner_dot && !has_whitespace {
        Ok(())
    } else {
        Err(IdentityError::MalformedVendorDomain { domain: vendor_domain.to_string() })
    }
}

/// Parses a UUID written as 32 hex digits (`manifest-dev-tool`'s form) or hyphenated
/// 8-4-4-4-12 (RFC 4122's form), in either case; `field_for_errors` names the setting in the
/// error. Braced and `urn:uuid:` forms are refused so that a profile has one spelling.
pub fn parse_uuid(text: &str, field_for_errors: &str) -> Result<Uuid, IdentityError> {
    let malformed =
        || IdentityError::MalformedUuid { field: field_for_errors.to_string(), text: text.to_string() };
    let is_simple = text.len() == 32;
    let is_hyphenated = text.len() == 36
        && text
            .char_indices()
            .all(|(index, character)| matches!(index, 8 | 13 | 18 | 23) == (character == '-'));
    if !is_simple && !is_hyphenated {
        return Err(malformed());
    }
    Uuid::try_parse(text).map_err(|_| malformed())
}

/// A chip's factory-programmed unique ID, as read from the device (1 to 64 bytes; an STM32 has
/// 12, an nRF52 8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChipUid(Vec<u8>);

impl ChipUid {
    /// The longest unique ID accepted; no MCU we know of has more than 16 bytes, and a bound
    /// keeps a misread from turning into an absurd identifier.
    pub const MAX_LENGTH_BYTES: usize = 64;

    pub fn new(bytes: Vec<u8>) -> Result<ChipUid, IdentityError> {
        if bytes.is_empty() || bytes.len() > ChipUid::MAX_LENGTH_BYTES {
            return Err(IdentityError::ChipUidLength {
                length_bytes: bytes.len(),
                max_length_bytes: ChipUid::MAX_LENGTH_BYTES,
            });
        }
        Ok(ChipUid(bytes))
    }

    /// Parses hex digits (either case, no separators or prefix).
    pub fn from_hex(text: &str) -> Result<ChipUid, IdentityError> {
        let bytes = hex::decode(text).map_err(|error| IdentityError::MalformedChipUidHex {
            text: text.to_string(),
            reason: error.to_string(),
        })?;
        ChipUid::new(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, the form hashed into the device ID.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for ChipUid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}
