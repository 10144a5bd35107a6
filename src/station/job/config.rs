//! The config-store steps: `write-config` builds the store (identity, update certificate and,
//! for profiles with a `[device_identity]`, the device's certificate and key) bound to the
//! chip UID and writes it into the config region; `verify-config` reads it back, compares the
//! bytes and decodes it to the same items. The byte layout is in docs/device-contract.md.

use der::zeroize::Zeroizing;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{StepFailure, StepName, StepResult, UnitJob};
use crate::store::{ConfigStore, StoreItem, keys};

impl UnitJob<'_> {
    fn config_store(&self) -> Result<ConfigStore, StepFailure> {
        let profile = self.profile();
        let identity = self.facts.identity()?;
        let mut store = ConfigStore::default();
        store.set(StoreItem::binary(keys::VENDOR_ID, profile.vendor_id.as_bytes()));
        store.set(StoreItem::binary(keys::CLASS_ID, profile.class_id.as_bytes()));
        store.set(StoreItem::binary(keys::DEVICE_ID, identity.identity.device_id.as_bytes()));
        store.set(StoreItem::text(keys::SERIAL_NUMBER, &identity.identity.serial));
        store.set(StoreItem::text(keys::MANUFACTURER_NAME, &profile.manufacturer));
        store.set(StoreItem::text(keys::MODEL_NUMBER, &profile.model_name));
        if let Some(device_type) = &profile.device_type {
            store.set(StoreItem::text(keys::DEVICE_TYPE, device_type));
        }
        if let Some(hardware_version) = &profile.hardware_version {
            store.set(StoreItem::text(keys::HARDWARE_VERSION, hardware_version));
        }
        let application_version = self.firmware()?.application_version;
        store.set(StoreItem::text(keys::FACTORY_APP_VERSION, &application_version.to_string()));
        store.set_update_certificate(profile.update_certificate.der());
        if let Some(settings) = &profile.device_identity {
            let issued = self.facts.issued_identity()?;
            let common_name = self.facts.identity_common_name()?;
            store.set(StoreItem::text(keys::ENDPOINT_NAME, common_name));
            store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_CERT, issued.certificate.der()));
            if let Some(private_key) = &issued.private_key_pkcs8 {
                store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY, private_key));
            }
            store.set(StoreItem::binary(&settings.ca_certificate_item, settings.ca_certificate.der()));
        }
        Ok(store)
    }

    pub(super) fn write_config(&mut self) -> StepResult {
        let store = self.config_store()?;
        let chip_uid = self.facts.chip_uid()?.clone();
        let profile = self.profile();
        let firmware = self.firmware()?;
        let layout = profile.store_layout().map_err(|error| StepFailure(error.to_string()))?;
        let encoded = Zeroizing::new(
            store
                .encode(chip_uid.as_bytes(), &layout)
                .map_err(|error| StepFailure(format!("cannot build the config store: {error}")))?,
        );
        let config = firmware.memory.config;
        self.is_writing_secret = store.items.iter().any(StoreItem::is_secret);
        let written = if profile.reserves_device_key_sector() {
            // The device keeps its own key in the device-key sector: write the store area and
            // erase the boot-state sector, but never touch the sector in between.
            let mut store_area = encoded.to_vec();
            store_area.resize(layout.capacity_bytes, config.erased_value);
            self.write_skipping_unchanged(StepName::WriteConfig, config, config.address, store_area).and_then(
                |store_detail| {
                    let boot_state = vec![config.erased_value; config.sector_size_bytes as usize];
                    let boot_state_address = firmware.memory.boot_state_address();
                    self.write_skipping_unchanged(StepName::WriteConfig, config, boot_state_address, boot_state)
                        .map(|boot_state_detail| json!({ "store_area": store_detail, "boot_state": boot_state_detail }))
                },
            )
        } else {
            // The whole config region is written: the store, then erased bytes up to the end, so
            // the boot-state sector is erased too and a fresh store starts from the factory version.
            let mut region_image = encoded.to_vec();
            region_image.resize(config.size_bytes as usize, config.erased_value);
            self.write_skipping_unchanged(StepName::WriteConfig, config, config.address, region_image)
        };
        self.is_writing_secret = false;
        let write_detail = written?;
        let mut detail = json!({
            "store_bytes": encoded.len(),
            "flash": write_detail,
            "store_sha256": hex::encode(Sha256::digest(&encoded[..])),
            "certificate_fingerprint": hex::encode(profile.update_certificate.fingerprint_sha256()),
            "items": store.items.len(),
        });
        if let Some(issued) = &self.facts.issued_identity {
            detail["device_certificate_fingerprint"] = json!(issued.certificate.fingerprint_hex());
            detail["device_private_key_in_store"] = json!(issued.private_key_pkcs8.is_some());
        }
        Ok(detail)
    }

    pub(super) fn verify_config(&mut self) -> StepResult {
        let mut detail = self.verify_written(StepName::VerifyConfig)?;
        let chip_uid = self.facts.chip_uid()?.clone();
        let layout = self.profile().store_layout().map_err(|error| StepFailure(error.to_string()))?;
        let address = self.firmware()?.memory.config.address;
        let read = self.read_back(
            StepName::VerifyConfig,
            address,
            layout.capacity_bytes,
            0,
            layout.capacity_bytes as u64,
        )?;
        let decoded = ConfigStore::decode(&read, chip_uid.as_bytes())
            .map_err(|error| StepFailure(format!("the config store read back does not decode: {error}")))?;
        let expected = self.config_store()?;
        if decoded != expected {
            return Err(StepFailure("the config store read back decodes to different items".to_string()));
        }
        detail["decoded_items"] = json!(decoded.items.len());
        Ok(detail)
    }
}
