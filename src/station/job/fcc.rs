//! The FCC steps, for profiles with `[fcc]` (docs/fcc.md): `connect` on a slot without a debug
//! port (an `fcc:HOST:PORT` device, already reached when the line opened), `device-key` for
//! device-made keys (the first message of a keep-alive session asks for a CSR), and `fcc-inject`,
//! which sends the unit's identity to the device's Factory Configurator Client in one bundle:
//! vendor and class IDs, endpoint name, product metadata, serial number, time, the bootstrap
//! server URI and CA, the update certificate, the identity certificate and (station-made keys)
//! the key from `issue-identity`, optionally entropy and a root of trust, `Verify` and `Disable` as the
//! profile says. The device's `ReturnStatus` decides, by name, in the device's own words.
//!
//! The step's detail (and so the ledger) holds the name and SHA-256 of every item sent
//! (`FccBundle::item_digests`), never a private key, entropy or RoT bytes.

use std::time::SystemTime;

use der::zeroize::Zeroizing;
use serde_json::json;

use super::{StepFailure, StepName, StepResult, UnitJob};
use crate::fcc::{
    ConfigValue, CsrRequest, FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH, FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
    FCC_ENTROPY_SIZE_BYTES, FCC_ROT_SIZE_BYTES, FccBundle, FccError, FccResponse, FccStatus, FtcdStatus,
    KeyType,
};
use crate::identity::ReworkPolicy;
use crate::profile::{FccSettings, KeyOrigin};

/// Read-back chunk of the FCC storage's blank check.
const STORAGE_READ_CHUNK_BYTES: usize = 16 * 1024;

/// The KCM name of the update-authenticity certificate (or chain).
const UPDATE_AUTH_CERT_ITEM: &str = "mbed.UpdateAuthCert";

/// The KCM name of the device's identity key (bootstrap mode).
const DEVICE_PRIVATE_KEY_ITEM: &str = "mbed.BootstrapDevicePrivateKey";

impl<'a> UnitJob<'a> {
    /// `connect` for a slot without a debug port: the fixture reached the device over FCC when
    /// the line opened; there is no chip to attach to.
    pub(super) fn connect_without_debug_port(&mut self) -> StepResult {
        Ok(json!({
            "backend": self.target.backend_name(),
            "probe": self.probe,
            "debug_port": false,
        }))
    }

    fn fcc_settings(&self) -> Result<&'a FccSettings, StepFailure> {
        self.profile().fcc.as_ref().ok_or_else(|| StepFailure("the profile has no [fcc]".to_string()))
    }

    /// The unit's bundle, from the profile and what earlier steps learned.
    fn fcc_bundle(&self, settings: &FccSettings) -> Result<FccBundle, StepFailure> {
        let profile = self.profile();
        let serial = &self.facts.identity()?.identity.serial;
        let endpoint_name = self.facts.identity_common_name()?;
        let issued = self.facts.issued_identity()?;
        let mut bundle = FccBundle::new()
            .config_param("mbed.UseBootstrap", ConfigValue::Unsigned(1))
            .config_param("mbed.BootstrapServerURI", ConfigValue::Text(settings.bootstrap_server_uri.clone()))
            .config_param("mbed.Manufacturer", ConfigValue::Text(profile.manufacturer.clone()))
            .config_param("mbed.ModelNumber", ConfigValue::Text(profile.model_name.clone()));
        if let Some(device_type) = &profile.device_type {
            bundle = bundle.config_param("mbed.DeviceType", ConfigValue::Text(device_type.clone()));
        }
        if let Some(hardware_version) = &profile.hardware_version {
            bundle = bundle.config_param("mbed.HardwareVersion", ConfigValue::Text(hardware_version.clone()));
        }
        bundle = bundle
            .config_param("mbed.MemoryTotalKB", ConfigValue::Unsigned(u64::from(settings.memory_total_kb)))
            .config_param("mbed.SerialNumber", ConfigValue::Text(serial.clone()));
        if settings.send_current_time {
            let now_seconds = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|error| StepFailure(format!("the station's clock is before 1970: {error}")))?
                .as_secs();
            bundle = bundle.config_param("mbed.CurrentTime", ConfigValue::Unsigned(now_seconds));
        }
        bundle = bundle
            .config_param("mbed.EndpointName", ConfigValue::Text(endpoint_name.to_string()))
            .config_param("mbed.VendorId", ConfigValue::Bytes(profile.vendor_id.as_bytes().to_vec()))
            .config_param("mbed.ClassId", ConfigValue::Bytes(profile.class_id.as_bytes().to_vec()))
            .certificate(
                "mbed.BootstrapServerCACert",
                settings.bootstrap_server_ca_certificate.der().to_vec(),
            );
        // A delegated update authority: the chain from the delegate (the key that signs) to the
        // CA the device trusts, each certificate signed by the next, as the FCC checks it.
        bundle = match &profile.delegate_certificate {
            Some(delegate) => bundle.certificate_chain(
                UPDATE_AUTH_CERT_ITEM,
                vec![delegate.der().to_vec(), profile.update_certificate.der().to_vec()],
            ),
            None => bundle.certificate(UPDATE_AUTH_CERT_ITEM, profile.update_certificate.der().to_vec()),
        };
        // A device-made key stays on the device (it answered a CSR at device-key).
        if let Some(private_key) = issued.private_key_pkcs8.clone() {
            bundle = bundle.key(DEVICE_PRIVATE_KEY_ITEM, KeyType::EccPrivate, private_key);
        }
        bundle = bundle
            .certificate("mbed.BootstrapDeviceCert", issued.certificate.der().to_vec())
            .verify(settings.verify);
        if settings.send_entropy {
            let mut entropy = Zeroizing::new([0u8; FCC_ENTROPY_SIZE_BYTES]);
            getrandom::fill(&mut entropy[..])
                .map_err(|error| StepFailure(format!("no randomness for the device's entropy: {error}")))?;
            bundle = bundle.entropy(entropy);
        }
        if settings.send_root_of_trust {
            let mut rot = Zeroizing::new([0u8; FCC_ROT_SIZE_BYTES]);
            getrandom::fill(&mut rot[..]).map_err(|error| {
                StepFailure(format!("no randomness for the device's root of trust: {error}"))
            })?;
            bundle = bundle.rot(rot);
        }
        Ok(bundle.disable(settings.disable))
    }

    /// Device-made keys: the first message of a keep-alive session asks the device for a key
    /// pair and a CSR (`CsrReqs`, `Verify` 0); the CSR must be signed by the key it carries and
    /// ask for this unit's subject name. `fcc-inject` later sends the certificate in the
    /// session's last message.
    pub(super) fn fcc_device_key(&mut self) -> StepResult {
        let common_name = self.identity_common_name()?;
        let request = FccBundle::new().keep_alive(true).verify(false).csr_request(CsrRequest {
            private_key_name: DEVICE_PRIVATE_KEY_ITEM.to_string(),
            subject: format!("CN={common_name}"),
            key_usage: FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
            extended_key_usage: FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH,
        });
        let booted = self.boot_for_fcc()?;
        let response = self.fcc_send(&request)?;
        check_response(&response, &self.rework_hint())?;
        let csr =
            response.csrs.iter().find(|csr| csr.private_key_name == DEVICE_PRIVATE_KEY_ITEM).ok_or_else(
                || {
                    StepFailure(format!(
                        "the device answered no CSR for {DEVICE_PRIVATE_KEY_ITEM} (Csrs: {})",
                        response.csrs.len()
                    ))
                },
            )?;
        let (verified, public_key_sha256) = self.accept_device_csr(&csr.request_der, &common_name)?;
        Ok(json!({
            "key_origin": KeyOrigin::Device.name(),
            "endpoint": self.probe,
            "return_status": response.return_status.0,
            "return_status_name": response.return_status.name(),
            "info_message": response.info_message.as_deref().map(str::trim_end),
            "warning_info": response.warning_info.as_deref().map(str::trim_end),
            "csr_sha256": hex::encode(verified.request_sha256),
            "csr_bytes": csr.request_der.len(),
            "booted_before": booted,
            "subject": verified.subject,
            "public_key_sha256": hex::encode(public_key_sha256),
        }))
    }

    /// `[fcc] storage`, at `erase`: the device's FCC storage erased through the probe (and read
    /// back blank), so the unit's FCC holds no items when its bundle arrives. Not for a
    /// returning chip under `reuse-identity`, whose storage holds the identity it keeps. The
    /// step detail says which, and why.
    pub(super) fn wipe_fcc_storage(&mut self) -> Result<Option<serde_json::Value>, StepFailure> {
        let Some(storage) = self.profile().fcc.as_ref().and_then(|settings| settings.storage) else {
            return Ok(None);
        };
        let is_returning = self.facts.seen_before == Some(true);
        let policy = self.profile().rework_policy;
        let mut detail = json!({ "address": storage.address, "size_bytes": storage.size_bytes });
        if is_returning && policy == ReworkPolicy::ReuseIdentity {
            detail["erased"] = json!(false);
            detail["reason"] = json!(
                "a returning chip under serial.rework = \"reuse-identity\": its FCC storage keeps the identity it holds"
            );
            return Ok(Some(detail));
        }
        self.retry(|target| target.erase_flash(storage.address, storage.size_bytes, &mut |_| {}))?;
        let mut chunk = vec![0u8; STORAGE_READ_CHUNK_BYTES];
        let mut address = storage.address;
        while address < storage.address + storage.size_bytes {
            let length = (storage.address + storage.size_bytes - address).min(chunk.len() as u64) as usize;
            self.retry(|target| target.read_memory(address, &mut chunk[..length]))?;
            if let Some(offset) = chunk[..length].iter().position(|byte| *byte != storage.region.erased_value)
            {
                return Err(StepFailure(format!(
                    "the FCC storage (fcc.storage) is not blank after its erase: {:#x} reads {:#04x}",
                    address + offset as u64,
                    chunk[offset]
                )));
            }
            address += length as u64;
        }
        detail["erased"] = json!(true);
        detail["read_back_blank"] = json!(true);
        detail["reason"] = json!(if is_returning {
            "a returning chip under serial.rework = \"issue-new\": the items it holds are wiped so it takes a new identity"
        } else {
            "a new unit's FCC storage starts empty"
        });
        Ok(Some(detail))
    }

    /// Whether this unit reuses the identity the ledger recorded for its chip (a returning chip
    /// under `reuse-identity`, recognised by its unique ID).
    fn is_reusing_identity(&self) -> bool {
        self.profile().rework_policy == ReworkPolicy::ReuseIdentity
            && self.facts.identity.as_ref().is_some_and(|allocated| allocated.is_rework)
    }

    /// What the profile's rework policy makes of a device that answered 17 (it holds items),
    /// for the failure's reason: what this slot could not do, and what the operator can.
    fn rework_hint(&self) -> String {
        let has_probe = self.target.has_debug_port();
        let has_storage = self.profile().fcc.as_ref().is_some_and(|settings| settings.storage.is_some());
        match self.profile().rework_policy {
            ReworkPolicy::Refuse => {
                "rework refused (serial.rework = \"refuse\"): a provisioned device is not provisioned again; set it aside".to_string()
            }
            ReworkPolicy::ReuseIdentity => format!(
                "rework: the device keeps the identity it holds (serial.rework = \"reuse-identity\"), but the ledger does not know this device ({}), so the station cannot tell which identity that is and records none; to provision it again, erase its FCC storage first",
                if has_probe { "its chip UID was never provisioned here" } else { "an fcc: slot draws a new ID for every unit" }
            ),
            ReworkPolicy::IssueNew if has_probe && !has_storage => "rework: a new identity needs the device's FCC storage erased first (serial.rework = \"issue-new\"); name it in the profile ([fcc] storage = { address, size }) and the station erases it through the probe before flashing".to_string(),
            ReworkPolicy::IssueNew => "rework: a new identity needs the device's FCC storage erased first (serial.rework = \"issue-new\"); the FCC protocol has no erase and this slot has no probe: erase it on the device (a factory reset), then present it again".to_string(),
        }
    }

    /// A returning chip under `reuse-identity` whose device answered 17: it still holds items.
    /// The station checks them with a `Verify`-only message (a new session: on a slot with a
    /// probe the device is reset first, as its factory loop ended with the refused session);
    /// the unit passes with its reused identity when the device's own verification does.
    fn verify_reused_identity(
        &mut self,
        settings: &FccSettings,
        refused: &FccResponse,
    ) -> Result<serde_json::Value, StepFailure> {
        if self.target.has_debug_port() {
            self.retry(|target| target.reset_and_run())?;
        }
        let verify_only = FccBundle::new().verify(true).disable(settings.disable);
        let answer = self.fcc_send(&verify_only)?;
        if !answer.return_status.is_success() {
            let info = answer.info_message.as_deref().map(str::trim_end).unwrap_or("");
            return Err(StepFailure(format!(
                "rework (serial.rework = \"reuse-identity\"): the device holds items (17: \"{}\") but its own verification of them failed: {} {}: \"{info}\" ({})",
                refused.info_message.as_deref().map(str::trim_end).unwrap_or(""),
                answer.return_status.0,
                answer.return_status.name(),
                answer.return_status.description()
            )));
        }
        Ok(json!({
            "policy": ReworkPolicy::ReuseIdentity,
            "first_answer": {
                "return_status": refused.return_status.0,
                "return_status_name": refused.return_status.name(),
                "info_message": refused.info_message.as_deref().map(str::trim_end),
            },
            "verify_answer": {
                "return_status": answer.return_status.0,
                "return_status_name": answer.return_status.name(),
                "info_message": answer.info_message.as_deref().map(str::trim_end),
                "warning_info": answer.warning_info.as_deref().map(str::trim_end),
            },
            "device_kept_its_items": true,
            "certificate_installed": false,
            "explanation": "the device holds the items of its earlier run (17) and its own verification of them passed: the unit keeps its recorded serial, device ID and endpoint name; the certificate issued in this run was not installed (the device keeps the one from its earlier run)",
        }))
    }

    /// On a slot with a debug port (the FCC on the console port): the unit was just flashed,
    /// so it is reset into its application, whose FCC then listens, before the first message.
    /// Returns whether this call booted it.
    fn boot_for_fcc(&mut self) -> Result<bool, StepFailure> {
        if !self.target.has_debug_port() || self.facts.booted_for_fcc {
            return Ok(false);
        }
        self.retry(|target| target.reset_and_run())?;
        self.facts.booted_for_fcc = true;
        Ok(true)
    }

    /// One exchange with the device's FCC; an answer that is no bundle verdict (a closed
    /// connection, a timeout, a communication status) is a failure naming the endpoint.
    fn fcc_send(&mut self, bundle: &FccBundle) -> Result<FccResponse, StepFailure> {
        let item_count = bundle.item_digests().len();
        let answer = self.target.fcc_exchange(bundle).ok_or_else(|| {
            StepFailure(format!(
                "{} has no FCC channel (the profile's [fcc] needs an fcc:HOST:PORT slot or a console port)",
                self.probe
            ))
        })?;
        answer.map_err(|error| StepFailure(describe_exchange_error(&error, item_count)))
    }

    /// Sends the unit's bundle and judges the device's answer.
    pub(super) fn fcc_inject(&mut self) -> StepResult {
        let settings = self.fcc_settings()?;
        let bundle = self.fcc_bundle(settings)?;
        let items: Vec<serde_json::Value> = bundle
            .item_digests()
            .iter()
            .map(|item| json!({ "group": item.group, "name": item.name, "sha256": hex::encode(item.sha256) }))
            .collect();
        let request_bytes = bundle.to_cbor().map_err(|error| StepFailure(error.to_string()))?.len() as u64;
        let booted = self.boot_for_fcc()?;
        self.progress(StepName::FccInject, 0, request_bytes);
        let response = self.fcc_send(&bundle)?;
        self.progress(StepName::FccInject, request_bytes, request_bytes);
        let rework = if response.return_status == FccStatus::ITEM_ALREADY_EXISTS && self.is_reusing_identity()
        {
            Some(self.verify_reused_identity(settings, &response)?)
        } else {
            check_response(&response, &self.rework_hint())?;
            None
        };
        let answer_status = if rework.is_some() { FccStatus::SUCCESS } else { response.return_status };
        Ok(json!({
            "endpoint": self.probe,
            "endpoint_name": self.facts.identity_common_name()?,
            "return_status": answer_status.0,
            "return_status_name": answer_status.name(),
            "info_message": response.info_message.as_deref().map(str::trim_end),
            "warning_info": response.warning_info.as_deref().map(str::trim_end),
            "rework": rework,
            "verify": settings.verify,
            "disable": settings.disable,
            "entropy_sent": settings.send_entropy,
            "root_of_trust_sent": settings.send_root_of_trust,
            "request_bytes": request_bytes,
            "booted_before": booted,
            "items": items,
        }))
    }
}

/// A non-success `ReturnStatus` fails the step with the device's status by name and its own
/// words (which name the item, e.g. "Item size is wrong:mbed.VendorId"). "Already exists" (17)
/// also says what the profile's rework policy makes of a provisioned device.
fn check_response(response: &FccResponse, rework_hint: &str) -> Result<(), StepFailure> {
    if response.return_status.is_success() {
        return Ok(());
    }
    let info = response.info_message.as_deref().map(str::trim_end).unwrap_or("");
    let mut reason = format!(
        "the device refused the bundle: {} {}: \"{info}\" ({})",
        response.return_status.0,
        response.return_status.name(),
        response.return_status.description()
    );
    if let Some(warnings) =
        response.warning_info.as_deref().map(str::trim_end).filter(|text| !text.is_empty())
    {
        reason.push_str(&format!("; warnings: \"{warnings}\""));
    }
    if response.return_status == FccStatus::ITEM_ALREADY_EXISTS {
        reason.push_str("; ");
        reason.push_str(rework_hint);
    }
    Err(StepFailure(reason))
}

/// Words for an exchange that produced no bundle verdict.
fn describe_exchange_error(error: &FccError, item_count: usize) -> String {
    match error {
        FccError::CommunicationStatus { status, .. } if *status == FtcdStatus::FAILED_TO_PROCESS_DATA => {
            format!(
                "{error}: the device processed none of the {item_count} items; a device whose factory flow was disabled (Disable) answers this to every bundle"
            )
        }
        _ => format!("{error} (sending {item_count} items)"),
    }
}
