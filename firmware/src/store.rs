//! The config store (contract section 2), decoded in place from code memory.
//!
//! Mirrors `ConfigStore::decode` and its accessors in the station's `src/store.rs` rule for
//! rule (header, reserved word, digest bound to the chip unique ID, item layout, duplicate keys,
//! nothing between the last item and the digest), because "the store decodes" is the line
//! between provisioned and unprovisioned and both implementations must draw it identically.

use sha2::{Digest, Sha256};

/// Store magic ("IMPS").
pub const STORE_MAGIC: [u8; 4] = *b"IMPS";
/// The format version this firmware reads.
pub const STORE_FORMAT_VERSION: u16 = 1;
const HEADER_SIZE_BYTES: usize = 16;
const DIGEST_SIZE_BYTES: usize = 32;
const ITEM_ALIGNMENT_BYTES: usize = 4;

/// Item keys the firmware reads (contract section 2, "Items the station writes").
pub mod keys {
    /// 16-byte vendor UUID.
    pub const VENDOR_ID: &[u8] = b"mbed.VendorId";
    /// 16-byte class UUID.
    pub const CLASS_ID: &[u8] = b"mbed.ClassId";
    /// 16-byte device UUID.
    pub const DEVICE_ID: &[u8] = b"imprint.DeviceId";
    /// Serial number (text).
    pub const SERIAL_NUMBER: &[u8] = b"mbed.SerialNumber";
    /// The factory application's version (text).
    pub const FACTORY_APP_VERSION: &[u8] = b"imprint.FactoryAppVersion";
    /// SHA-256 fingerprint of the update-authenticity certificate.
    pub const UPDATE_AUTH_CERT: &[u8] = b"mbed.UpdateAuthCert";
    /// The identity private key the station made (PKCS#8 DER, ECDSA P-256): a secret.
    pub const BOOTSTRAP_DEVICE_PRIVATE_KEY: &[u8] = b"mbed.BootstrapDevicePrivateKey";
}

/// One item: key and value borrowed from the store bytes.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The key bytes.
    pub key: &'a [u8],
    /// 1 = binary, 2 = UTF-8 text.
    pub kind: u16,
    /// The value bytes.
    pub value: &'a [u8],
}

/// A store that passed its digest check and whose items all lie before the digest.
pub struct ConfigStore<'a> {
    bytes: &'a [u8],
    item_count: usize,
}

/// Walks the items of a store: yields each item and, at the end, checks nothing but the walk.
struct ItemWalk<'a> {
    bytes: &'a [u8],
    digest_offset: usize,
    offset: usize,
    remaining: usize,
}

impl<'a> ItemWalk<'a> {
    /// The next item, `Some(None)` when an item does not fit (malformed), `None` at the end.
    fn next_item(&mut self) -> Option<Option<Item<'a>>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (bytes, offset, digest_offset) = (self.bytes, self.offset, self.digest_offset);
        if digest_offset - offset < 8 {
            return Some(None);
        }
        let key_length = read_u16(bytes, offset) as usize;
        let kind = read_u16(bytes, offset + 2);
        if kind != 1 && kind != 2 {
            return Some(None);
        }
        let value_length = read_u32(bytes, offset + 4) as usize;
        let body_start = offset + 8;
        let Some(body_length) =
            key_length.checked_add(value_length).filter(|length| *length <= digest_offset - body_start)
        else {
            return Some(None);
        };
        self.offset = (body_start + body_length).next_multiple_of(ITEM_ALIGNMENT_BYTES);
        Some(Some(Item {
            key: &bytes[body_start..body_start + key_length],
            kind,
            value: &bytes[body_start + key_length..body_start + body_length],
        }))
    }
}

impl<'a> ConfigStore<'a> {
    /// Decodes `bytes` (the store region) for the chip with `chip_uid`; `None` means
    /// "unprovisioned": wrong magic or version, a malformed layout, or a failing digest.
    pub fn decode(bytes: &'a [u8], chip_uid: &[u8]) -> Option<ConfigStore<'a>> {
        if bytes.len() < HEADER_SIZE_BYTES || bytes[0..4] != STORE_MAGIC {
            return None;
        }
        if read_u16(bytes, 4) != STORE_FORMAT_VERSION {
            return None;
        }
        let item_count = read_u16(bytes, 6) as usize;
        let total_length = read_u32(bytes, 8) as usize;
        if total_length < HEADER_SIZE_BYTES + DIGEST_SIZE_BYTES || total_length > bytes.len() {
            return None;
        }
        if read_u32(bytes, 12) != 0 {
            return None;
        }
        let digest_offset = total_length - DIGEST_SIZE_BYTES;
        let mut hasher = Sha256::new();
        hasher.update(&bytes[..digest_offset]);
        hasher.update(chip_uid);
        if hasher.finalize().as_slice() != &bytes[digest_offset..total_length] {
            return None;
        }
        let store = ConfigStore { bytes: &bytes[..total_length], item_count };
        let mut walk = store.walk();
        let mut index = 0;
        while let Some(item) = walk.next_item() {
            let item = item?;
            // Keys are unique: compare with every earlier item.
            let mut earlier = store.walk();
            for _ in 0..index {
                if let Some(Some(previous)) = earlier.next_item()
                    && previous.key == item.key
                {
                    return None;
                }
            }
            index += 1;
        }
        (walk.offset == digest_offset).then_some(store)
    }

    fn walk(&self) -> ItemWalk<'a> {
        ItemWalk {
            bytes: self.bytes,
            digest_offset: self.bytes.len() - DIGEST_SIZE_BYTES,
            offset: HEADER_SIZE_BYTES,
            remaining: self.item_count,
        }
    }

    /// The item under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Item<'a>> {
        let mut walk = self.walk();
        while let Some(Some(item)) = walk.next_item() {
            if item.key == key {
                return Some(item);
            }
        }
        None
    }

    /// A 16-byte identifier item (`None` when absent or of another length).
    pub fn uuid_bytes(&self, key: &[u8]) -> Option<[u8; 16]> {
        self.get(key)?.value.try_into().ok()
    }

    /// A text item (`None` when absent or not UTF-8).
    pub fn text(&self, key: &[u8]) -> Option<&'a str> {
        core::str::from_utf8(self.get(key)?.value).ok()
    }

    /// The update-authenticity certificate found through `mbed.UpdateAuthCert`:
    /// `(fingerprint, certificate DER)`, only when the DER hashes to the fingerprint.
    pub fn update_certificate(&self) -> Option<([u8; 32], &'a [u8])> {
        let fingerprint: [u8; 32] = self.get(keys::UPDATE_AUTH_CERT)?.value.try_into().ok()?;
        let certificate = self.get(&fingerprint)?;
        (Sha256::digest(certificate.value).as_slice() == fingerprint)
            .then_some((fingerprint, certificate.value))
    }
}

/// Little-endian u16 at `offset`.
pub fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

/// Little-endian u32 at `offset`.
pub fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}
