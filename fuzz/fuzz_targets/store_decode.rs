//! Fuzz target: the config store decoder (`imprint::store::ConfigStore::decode`).
//!
//! The store is read back from a device's flash, which may hold anything: an erased region, a
//! half-written store after a power cut, another product's data. The decoder promises (module
//! docs) never to panic and never to read past the input. A random input almost never carries
//! a matching SHA-256 digest, so each input is decoded twice: as given, and with its digest
//! fixed up (the digest field recomputed over the bytes it covers and the chip ID, as the
//! device contract defines it), which lets the fuzzer reach the item parser behind the digest.
//!
//! Whatever decodes must survive a round trip: encoding the decoded items and decoding again
//! gives the same items.
#![no_main]

use imprint::store::{ConfigStore, STORE_DIGEST_SIZE_BYTES, STORE_HEADER_SIZE_BYTES, StoreLayout, keys};
use imprint_fuzz::FUZZ_CHIP_UID;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn with_fixed_digest(data: &[u8]) -> Option<Vec<u8>> {
    let total_length = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?) as usize;
    if total_length < STORE_HEADER_SIZE_BYTES + STORE_DIGEST_SIZE_BYTES || total_length > data.len() {
        return None;
    }
    let digest_offset = total_length - STORE_DIGEST_SIZE_BYTES;
    let mut fixed = data.to_vec();
    let mut hasher = Sha256::new();
    hasher.update(&fixed[..digest_offset]);
    hasher.update(FUZZ_CHIP_UID);
    let digest: [u8; 32] = hasher.finalize().into();
    fixed[digest_offset..total_length].copy_from_slice(&digest);
    Some(fixed)
}

fn exercise(bytes: &[u8]) {
    let Ok(store) = ConfigStore::decode(bytes, FUZZ_CHIP_UID) else { return };
    // Keys are unique in anything decoded.
    for (index, item) in store.items.iter().enumerate() {
        assert!(store.items[..index].iter().all(|earlier| earlier.key != item.key), "duplicate key decoded");
    }
    // The accessors the device and the station use must handle any decoded store.
    for key in [keys::VENDOR_ID, keys::CLASS_ID, keys::DEVICE_ID] {
        let _ = store.uuid_bytes(key);
    }
    for key in [keys::SERIAL_NUMBER, keys::FACTORY_APP_VERSION, keys::MANUFACTURER_NAME] {
        let _ = store.text(key);
    }
    let _ = store.update_certificate();
    // Round trip: what decodes encodes (it fitted once) and decodes to the same items.
    let layout = StoreLayout { capacity_bytes: usize::MAX, write_alignment_bytes: 4, erased_value: 0xFF };
    let encoded = match store.encode(FUZZ_CHIP_UID, &layout) {
        Ok(encoded) => encoded,
        Err(error) => panic!("a decoded store does not encode: {error}"),
    };
    match ConfigStore::decode(&encoded, FUZZ_CHIP_UID) {
        Ok(again) => assert_eq!(again, store, "round trip changed the store"),
        Err(error) => panic!("a re-encoded store does not decode: {error}"),
    }
    // Bound to the chip: another chip ID never reads it.
    assert!(ConfigStore::decode(bytes, b"another-chip").is_err(), "store read under another chip ID");
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Some(fixed) = with_fixed_digest(data) {
        exercise(&fixed);
    }
});
