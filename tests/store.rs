//! Property tests for the config store: encode/decode round trips, and the decoder never panics
//! (nor accepts a store for the wrong chip) whatever the bytes.

use imprint::store::{ConfigStore, ItemKind, StoreItem, StoreLayout};
use proptest::prelude::*;

const CASES: u32 = 10_000;

fn item_strategy() -> impl Strategy<Value = StoreItem> {
    (
        proptest::collection::vec(any::<u8>(), 1..40),
        prop_oneof![Just(ItemKind::Binary), Just(ItemKind::Text)],
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(key, kind, value)| StoreItem { key, kind, value })
}

fn store_strategy() -> impl Strategy<Value = ConfigStore> {
    proptest::collection::vec(item_strategy(), 0..12).prop_map(|items| {
        let mut store = ConfigStore::default();
        for item in items {
            store.set(item);
        }
        store
    })
}

fn layout_strategy() -> impl Strategy<Value = StoreLayout> {
    (prop_oneof![Just(1usize), Just(4), Just(8), Just(16), Just(256)], prop_oneof![Just(0xFFu8), Just(0x00)])
        .prop_map(|(write_alignment_bytes, erased_value)| StoreLayout {
            capacity_bytes: 64 * 1024,
            write_alignment_bytes,
            erased_value,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn round_trip(store in store_strategy(), layout in layout_strategy(), chip_uid in proptest::collection::vec(any::<u8>(), 1..16)) {
        let bytes = store.encode(&chip_uid, &layout).unwrap();
        prop_assert_eq!(bytes.len() % layout.write_alignment_bytes, 0);
        // Trailing erased flash after the store is ignored, as on the device.
        let mut region = bytes.clone();
        region.resize(bytes.len() + 64, layout.erased_value);
        prop_assert_eq!(ConfigStore::decode(&region, &chip_uid).unwrap(), store);
        let mut other_chip = chip_uid.clone();
        other_chip[0] ^= 1;
        prop_assert!(ConfigStore::decode(&region, &other_chip).is_err());
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = ConfigStore::decode(&bytes, b"chip");
    }

    #[test]
    fn decoder_never_panics_on_mutated_stores(
        store in store_strategy(),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let layout = StoreLayout { capacity_bytes: 64 * 1024, write_alignment_bytes: 4, erased_value: 0xFF };
        let mut bytes = store.encode(b"chip", &layout).unwrap();
        for (index, value) in mutations {
            let position = index.index(bytes.len());
            bytes[position] = value;
        }
        let _ = ConfigStore::decode(&bytes, b"chip");
    }
}
