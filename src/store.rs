//! The config store: the bytes the station writes into the device's protected storage.
//!
//! A store holds the unit's identity and trust items keyed by the Pelion KCM names
//! (`mbed.VendorId`, `mbed.ClassId`, `mbed.UpdateAuthCert`, ...), the update-authenticity
//! certificate under its SHA-256 fingerprint, and an integrity digest bound to the chip's unique
//! ID, so that a corrupt store, or one copied to another chip, reads as "unprovisioned".
//! The byte layout is specified in `docs/device-contract.md`; this module is its reference
//! implementation and the device side (the sim's bootloader) decodes with the same code.
//!
//! **Invariant:** pure functions over bytes; no I/O. Decoding never panics and never reads past
//! the input, whatever the bytes.

use sha2::{Digest, Sha256};

/// The four bytes a store starts with ("IMPS").
pub const STORE_MAGIC: [u8; 4] = *b"IMPS";
/// The only store format version this station writes and reads.
pub const STORE_FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const STORE_HEADER_SIZE_BYTES: usize = 16;
/// Size of the trailing integrity digest.
pub const STORE_DIGEST_SIZE_BYTES: usize = 32;
/// Items are padded to this alignment inside the store (before the final write-alignment pad).
const ITEM_ALIGNMENT_BYTES: usize = 4;

/// KCM item names written by the station.
pub mod keys {
    /// Vendor ID, 16 bytes (RFC-4122 UUID).
    pub const VENDOR_ID: &str = "mbed.VendorId";
    /// Device class ID, 16 bytes.
    pub const CLASS_ID: &str = "mbed.ClassId";
    /// SHA-256 fingerprint (32 bytes) of the update-authenticity certificate; the certificate
    /// itself is the item whose key is those 32 fingerprint bytes.
    pub const UPDATE_AUTH_CERT: &str = "mbed.UpdateAuthCert";
    /// Serial number, UTF-8 text.
    pub const SERIAL_NUMBER: &str = "mbed.SerialNumber";
    /// Manufacturer name, UTF-8 text.
    pub const MANUFACTURER_NAME: &str = "mbed.ManufacturerName";
    /// Model number, UTF-8 text.
    pub const MODEL_NUMBER: &str = "mbed.ModelNumber";
    /// Device type, UTF-8 text.
    pub const DEVICE_TYPE: &str = "mbed.DeviceType";
    /// Hardware version, UTF-8 text.
    pub const HARDWARE_VERSION: &str = "mbed.HardwareVersion";
    /// Device ID, 16 bytes (UUIDv5 of the chip's unique ID in the class namespace).
    pub const DEVICE_ID: &str = "imprint.DeviceId";
    /// Version of the application flashed at the factory, UTF-8 text "major.minor.patch";
    /// the bootloader's rollback reference until it has installed an update itself.
    pub const FACTORY_APP_VERSION: &str = "imprint.FactoryAppVersion";
    /// The device's identity certificate (X.509, DER), issued by the factory CA; its subject CN
    /// is the device ID or the endpoint name (docs/device-identity.md).
    pub const BOOTSTRAP_DEVICE_CERT: &str = "mbed.BootstrapDeviceCert";
    /// The device's identity private key (PKCS#8 DER, P-256), only when the station made the
    /// key. A secret: it goes into the device's protected store and nowhere else.
    pub const BOOTSTRAP_DEVICE_PRIVATE_KEY: &str = "mbed.BootstrapDevicePrivateKey";
    /// The factory CA's certificate (DER), the default name for it (a profile may choose another).
    pub const BOOTSTRAP_SERVER_CA_CERT: &str = "mbed.BootstrapServerCACert";
    /// The device's endpoint name, UTF-8 text: the identity certificate's subject CN.
    pub const ENDPOINT_NAME: &str = "mbed.EndpointName";

    /// Items whose values are secrets: their bytes are never shown by `Debug`.
    pub const SECRET_KEYS: [&str; 1] = [BOOTSTRAP_DEVICE_PRIVATE_KEY];
}

/// The value type of an item, as stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ItemKind {
    /// Opaque bytes (identifiers, certificates, fingerprints).
    Binary = 1,
    /// UTF-8 text.
    Text = 2,
}

/// One key/value pair of the store.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreItem {
    /// The key bytes: a KCM name in ASCII, or a certificate fingerprint.
    pub key: Vec<u8>,
    /// How the value is to be read.
    pub kind: ItemKind,
    /// The value bytes.
    pub value: Vec<u8>,
}

impl std::fmt::Debug for StoreItem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = formatter.debug_struct("StoreItem");
        debug.field("key", &display_key(&self.key)).field("kind", &self.kind);
        // A private key in the store must not reach a log through `{:?}` of a store.
        if self.is_secret() {
            debug.field("value", &format_args!("<{} secret bytes>", self.value.len()));
        } else {
            debug.field("value", &self.value);
        }
        debug.finish()
    }
}

impl StoreItem {
    /// Whether the value is a secret (a private key) that must never be shown.
    pub fn is_secret(&self) -> bool {
        keys::SECRET_KEYS.iter().any(|key| key.as_bytes() == self.key.as_slice())
    }

    /// A text item under a KCM name.
    pub fn text(key: &str, value: &str) -> Self {
        Self { key: key.as_bytes().to_vec(), kind: ItemKind::Text, value: value.as_bytes().to_vec() }
    }

    /// A binary item under a KCM name.
    pub fn binary(key: &str, value: &[u8]) -> Self {
        Self { key: key.as_bytes().to_vec(), kind: ItemKind::Binary, value: value.to_vec() }
    }
}

/// A decoded (or to-be-encoded) config store: an ordered list of items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigStore {
    /// Items in store order. Keys are unique.
    pub items: Vec<StoreItem>,
}

/// Why a store could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The encoded store does not fit the space the profile gives it.
    #[error("config store needs {needed_bytes} bytes but the region has room for {available_bytes}")]
    TooLarge { needed_bytes: usize, available_bytes: usize },
    /// A key or value is longer than the format can describe.
    #[error("config store item {key} is too long ({length_bytes} bytes)")]
    ItemTooLong { key: String, length_bytes: usize },
    /// Two items share a key.
    #[error("config store has two items with key {key}")]
    DuplicateKey { key: String },
    /// The bytes do not start with the store magic (erased or foreign data).
    #[error("no config store: expected magic \"IMPS\", found {found:02x?}")]
    BadMagic { found: Vec<u8> },
    /// The store uses a format version this station does not know.
    #[error("config store format version {found} is not supported (expected {STORE_FORMAT_VERSION})")]
    UnsupportedVersion { found: u16 },
    /// A length field points outside the store.
    #[error("config store is malformed at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// The digest does not match: corrupted, or written for another chip.
    #[error("config store integrity digest does not match (corrupt, or written for another chip)")]
    DigestMismatch,
    /// An item the caller needs is absent.
    #[error("config store has no item {key}")]
    MissingItem { key: String },
    /// An item is present but its value has the wrong shape.
    #[error("config store item {key} is invalid: {reason}")]
    InvalidItem { key: String, reason: String },
}

/// Where and how the store is written: the part of the profile's config region it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLayout {
    /// Bytes available for the store (the config region minus the bootloader's boot-state sector).
    pub capacity_bytes: usize,
    /// The flash write alignment; the encoded store is padded to a multiple of it.
    pub write_alignment_bytes: usize,
    /// The flash's erased value, used for padding.
    pub erased_value: u8,
}

impl ConfigStore {
    /// Adds an item, replacing an item with the same key.
    pub fn set(&mut self, item: StoreItem) {
        match self.items.iter_mut().find(|existing| existing.key == item.key) {
            Some(existing) => *existing = item,
            None => self.items.push(item),
        }
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&StoreItem> {
        self.items.iter().find(|item| item.key == key)
    }

    /// A required 16-byte identifier item.
    pub fn uuid_bytes(&self, key: &str) -> Result<[u8; 16], StoreError> {
        let item = self.require(key)?;
        item.value.as_slice().try_into().map_err(|_| StoreError::InvalidItem {
            key: key.to_string(),
            reason: format!("expected 16 bytes, found {}", item.value.len()),
        })
    }

    /// A required text item.
    pub fn text(&self, key: &str) -> Result<&str, StoreError> {
        let item = self.require(key)?;
        std::str::from_utf8(&item.value).map_err(|_| StoreError::InvalidItem {
            key: key.to_string(),
            reason: "expected UTF-8 text".to_string(),
        })
    }

    /// The update-authenticity certificate: follows `mbed.UpdateAuthCert` (a fingerprint) to the
    /// item keyed by that fingerprint, and checks that the certificate hashes to it.
    /// Returns `(fingerprint, certificate DER)`.
    pub fn update_certificate(&self) -> Result<([u8; 32], &[u8]), StoreError> {
        let fingerprint_item = self.require(keys::UPDATE_AUTH_CERT)?;
        let fingerprint: [u8; 32] =
            fingerprint_item.value.as_slice().try_into().map_err(|_| StoreError::InvalidItem {
                key: keys::UPDATE_AUTH_CERT.to_string(),
                reason: format!(
                    "expected a 32-byte fingerprint, found {} bytes",
                    fingerprint_item.value.len()
                ),
            })?;
        let certificate = self.get(&fingerprint).ok_or_else(|| StoreError::MissingItem {
            key: format!("certificate with fingerprint {}", hex::encode(fingerprint)),
        })?;
        if Sha256::digest(&certificate.value).as_slice() != fingerprint {
            return Err(StoreError::InvalidItem {
                key: hex::encode(fingerprint),
                reason: "certificate does not hash to its fingerprint key".to_string(),
            });
        }
        Ok((fingerprint, &certificate.value))
    }

    /// Stores the update-authenticity certificate under its fingerprint and points
    /// `mbed.UpdateAuthCert` at it.
    pub fn set_update_certificate(&mut self, certificate_der: &[u8]) {
        let fingerprint: [u8; 32] = Sha256::digest(certificate_der).into();
        self.set(StoreItem::binary(keys::UPDATE_AUTH_CERT, &fingerprint));
        self.set(StoreItem {
            key: fingerprint.to_vec(),
            kind: ItemKind::Binary,
            value: certificate_der.to_vec(),
        });
    }

    fn require(&self, key: &str) -> Result<&StoreItem, StoreError> {
        self.get(key.as_bytes()).ok_or_else(|| StoreError::MissingItem { key: key.to_string() })
    }

    /// Encodes the store for the chip with `chip_uid`, padded to the layout's write alignment
    /// with the erased value.
    pub fn encode(&self, chip_uid: &[u8], layout: &StoreLayout) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&STORE_MAGIC);
        bytes.extend_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
        let item_count = u16::try_from(self.items.len()).map_err(|_| StoreError::ItemTooLong {
            key: "item count".to_string(),
            length_bytes: self.items.len(),
        })?;
        bytes.extend_from_slice(&item_count.to_le_bytes());
        // Total length is patched in once known.
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[0; 4]);
        let mut seen_keys: Vec<&[u8]> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let key_name = display_key(&item.key);
            if seen_keys.contains(&item.key.as_slice()) {
                return Err(StoreError::DuplicateKey { key: key_name });
            }
            seen_keys.push(&item.key);
            let key_length = u16::try_from(item.key.len()).map_err(|_| StoreError::ItemTooLong {
                key: key_name.clone(),
                length_bytes: item.key.len(),
            })?;
            let value_length = u32::try_from(item.value.len())
                .map_err(|_| StoreError::ItemTooLong { key: key_name, length_bytes: item.value.len() })?;
            bytes.extend_from_slice(&key_length.to_le_bytes());
            bytes.extend_from_slice(&(item.kind as u16).to_le_bytes());
            bytes.extend_from_slice(&value_length.to_le_bytes());
            bytes.extend_from_slice(&item.key);
            bytes.extend_from_slice(&item.value);
            while bytes.len() % ITEM_ALIGNMENT_BYTES != 0 {
                bytes.push(0);
            }
        }
        let total_length = bytes.len() + STORE_DIGEST_SIZE_BYTES;
        let total_length_field = u32::try_from(total_length).map_err(|_| StoreError::TooLarge {
            needed_bytes: total_length,
            available_bytes: layout.capacity_bytes,
        })?;
        bytes[8..12].copy_from_slice(&total_length_field.to_le_bytes());
        let digest = store_digest(&bytes, chip_uid);
        bytes.extend_from_slice(&digest);
        let alignment = layout.write_alignment_bytes.max(1);
        while bytes.len() % alignment != 0 {
            bytes.push(layout.erased_value);
        }
        if bytes.len() > layout.capacity_bytes {
            return Err(StoreError::TooLarge {
                needed_bytes: bytes.len(),
                available_bytes: layout.capacity_bytes,
            });
        }
        Ok(bytes)
    }

    /// Decodes a store read from the device (any trailing bytes after the store are ignored)
    /// and checks its digest against `chip_uid`.
    pub fn decode(bytes: &[u8], chip_uid: &[u8]) -> Result<ConfigStore, StoreError> {
        if bytes.len() < STORE_HEADER_SIZE_BYTES {
            return Err(StoreError::Malformed {
                offset: bytes.len(),
                reason: "shorter than the store header",
            });
        }
        if bytes[0..4] != STORE_MAGIC {
            return Err(StoreError::BadMagic { found: bytes[0..4].to_vec() });
        }
        let version = read_u16(bytes, 4);
        if version != STORE_FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion { found: version });
        }
        let item_count = read_u16(bytes, 6) as usize;
        let total_length = read_u32(bytes, 8) as usize;
        if total_length < STORE_HEADER_SIZE_BYTES + STORE_DIGEST_SIZE_BYTES || total_length > bytes.len() {
            return Err(StoreError::Malformed { offset: 8, reason: "total length outside the store" });
        }
        if read_u32(bytes, 12) != 0 {
            return Err(StoreError::Malformed { offset: 12, reason: "reserved field is not zero" });
        }
        let digest_offset = total_length - STORE_DIGEST_SIZE_BYTES;
        if store_digest(&bytes[..digest_offset], chip_uid) != bytes[digest_offset..total_length] {
            return Err(StoreError::DigestMismatch);
        }
        let mut store = ConfigStore::default();
        let mut offset = STORE_HEADER_SIZE_BYTES;
        for _ in 0..item_count {
            // The previous item's padding may end past an unaligned digest offset: compare
            // before subtracting (found by fuzz/fuzz_targets/store_decode.rs).
            if offset > digest_offset || digest_offset - offset < 8 {
                return Err(StoreError::Malformed { offset, reason: "item header runs past the digest" });
            }
            let key_length = read_u16(bytes, offset) as usize;
            let kind = match read_u16(bytes, offset + 2) {
                1 => ItemKind::Binary,
                2 => ItemKind::Text,
                _ => return Err(StoreError::Malformed { offset: offset + 2, reason: "unknown item kind" }),
            };
            let value_length = read_u32(bytes, offset + 4) as usize;
            let body_start = offset + 8;
            let body_length =
                key_length.checked_add(value_length).filter(|length| *length <= digest_offset - body_start);
            let Some(body_length) = body_length else {
                return Err(StoreError::Malformed { offset, reason: "item runs past the digest" });
            };
            let key = bytes[body_start..body_start + key_length].to_vec();
            let value = bytes[body_start + key_length..body_start + body_length].to_vec();
            if store.get(&key).is_some() {
                return Err(StoreError::DuplicateKey { key: display_key(&key) });
            }
            store.items.push(StoreItem { key, kind, value });
            offset = (body_start + body_length).next_multiple_of(ITEM_ALIGNMENT_BYTES);
        }
        if offset != digest_offset {
            return Err(StoreError::Malformed {
                offset,
                reason: "bytes between the last item and the digest",
            });
        }
        Ok(store)
    }
}

/// SHA-256 over the store bytes before the digest, then the chip's unique ID; binding the
/// digest to the chip makes a store copied to another chip read as unprovisioned.
fn store_digest(store_bytes: &[u8], chip_uid: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(store_bytes);
    hasher.update(chip_uid);
    hasher.finalize().into()
}

fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|character| character.is_ascii_graphic()) => text.to_string(),
        _ => hex::encode(key),
    }
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: StoreLayout =
        StoreLayout { capacity_bytes: 4096, write_alignment_bytes: 8, erased_value: 0xFF };
    const CHIP_UID: &[u8] = &[0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80];

    fn sample_store() -> ConfigStore {
        let mut store = ConfigStore::default();
        store.set(StoreItem::binary(keys::VENDOR_ID, &[1; 16]));
        store.set(StoreItem::binary(keys::CLASS_ID, &[2; 16]));
        store.set(StoreItem::text(keys::SERIAL_NUMBER, "SN-000001"));
        store.set_update_certificate(b"not really a certificate, but bytes");
        store
    }

    #[test]
    fn secret_items_are_not_shown_by_debug() {
        let mut store = sample_store();
        store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY, &[0xA5; 40]));
        let shown = format!("{store:?}");
        assert!(shown.contains("<40 secret bytes>"), "{shown}");
        assert!(!shown.contains("165, 165"), "{shown}");
        // Everything else is still shown, keys by name.
        assert!(shown.contains("mbed.SerialNumber") && shown.contains("83, 78, 45"), "{shown}");
    }

    #[test]
    fn round_trip_and_padding() {
        let store = sample_store();
        let bytes = store.encode(CHIP_UID, &LAYOUT).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(ConfigStore::decode(&bytes, CHIP_UID).unwrap(), store);
        let (fingerprint, certificate) = store.update_certificate().unwrap();
        assert_eq!(certificate, b"not really a certificate, but bytes");
        assert_eq!(fingerprint.as_slice(), Sha256::digest(certificate).as_slice());
    }

    #[test]
    fn store_copied_to_another_chip_is_rejected() {
        let bytes = sample_store().encode(CHIP_UID, &LAYOUT).unwrap();
        assert_eq!(ConfigStore::decode(&bytes, &[0x11; 8]), Err(StoreError::DigestMismatch));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample_store().encode(CHIP_UID, &LAYOUT).unwrap();
        let total_length = read_u32(&bytes, 8) as usize;
        for bit in 0..total_length * 8 {
            let mut corrupted = bytes.clone();
            corrupted[bit / 8] ^= 1 << (bit % 8);
            assert!(ConfigStore::decode(&corrupted, CHIP_UID).is_err(), "bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn too_large_for_region() {
        let layout = StoreLayout { capacity_bytes: 64, ..LAYOUT };
        assert!(matches!(sample_store().encode(CHIP_UID, &layout), Err(StoreError::TooLarge { .. })));
    }

    /// Header fields and items as given, then the correct digest over them for `CHIP_UID`.
    fn store_with_digest(item_count: u16, items: &[u8]) -> Vec<u8> {
        let total_length = (STORE_HEADER_SIZE_BYTES + items.len() + STORE_DIGEST_SIZE_BYTES) as u32;
        let mut bytes = STORE_MAGIC.to_vec();
        bytes.extend_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&item_count.to_le_bytes());
        bytes.extend_from_slice(&total_length.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(items);
        let digest = store_digest(&bytes, CHIP_UID);
        bytes.extend_from_slice(&digest);
        bytes
    }

    #[test]
    fn item_padding_past_an_unaligned_digest_is_malformed() {
        // Found by the store_decode fuzz target: a 1-byte key with a 0-byte value ends 1 byte
        // before an unaligned digest; its padding runs past it, and the second item's header
        // check subtracted past zero (a panic with overflow checks, an out-of-bounds read or a
        // read of the digest as items without).
        let mut items = Vec::new();
        items.extend_from_slice(&1u16.to_le_bytes());
        items.extend_from_slice(&(ItemKind::Binary as u16).to_le_bytes());
        items.extend_from_slice(&0u32.to_le_bytes());
        items.push(b'k');
        for item_count in [1, 2, 3] {
            let bytes = store_with_digest(item_count, &items);
            assert!(
                matches!(ConfigStore::decode(&bytes, CHIP_UID), Err(StoreError::Malformed { .. })),
                "{item_count} items"
            );
        }
        // The same item with its padding is a valid one-item store.
        items.extend_from_slice(&[0; 3]);
        let store = ConfigStore::decode(&store_with_digest(1, &items), CHIP_UID).unwrap();
        assert_eq!(
            store.items,
            vec![StoreItem { key: b"k".to_vec(), kind: ItemKind::Binary, value: Vec::new() }]
        );
    }

    #[test]
    fn erased_flash_is_not_a_store() {
        assert!(matches!(ConfigStore::decode(&[0xFF; 256], CHIP_UID), Err(StoreError::BadMagic { .. })));
        assert!(matches!(ConfigStore::decode(&[0x00; 256], CHIP_UID), Err(StoreError::BadMagic { .. })));
    }
}
