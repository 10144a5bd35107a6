//! The identity steps: `allocate-identity` (serial and device ID in one ledger transaction,
//! the serial counted or scanned from the unit's label) and, for profiles with a
//! `[device_identity]`, `device-key` (the device makes its key and hands over a CSR),
//! `issue-identity` (the factory CA issues the certificate) and `verify-identity` (the device
//! proves it holds the certificate's key). docs/device-identity.md describes them.

use std::time::{Duration, Instant, SystemTime};

use der::zeroize::Zeroizing;
use serde_json::json;

use super::super::labels::SerialWait;
use super::{REPORT_POLL_INTERVAL, StepFailure, StepResult, UnitJob};
use crate::contract::{self, IdentityCommand, IdentityMailboxRequest, IdentityResponse, IdentityStatus};
use crate::identity;
use crate::ledger::{IdentityRequest, SerialScheme};
use crate::profile::{DeviceIdentitySettings, KeyOrigin};
use crate::trust::{self, Certificate, CertificateRequest, Signer};

/// How long `allocate-identity` waits for the operator to scan a unit's serial label.
const SCANNED_SERIAL_WAIT: Duration = Duration::from_secs(600);

/// The identity certificate issued for a unit.
#[derive(Clone)]
pub(super) struct IssuedIdentity {
    pub(super) certificate: Certificate,
    /// Station-made keys only: the PKCS#8 DER for `mbed.BootstrapDevicePrivateKey`. It goes into
    /// the config store and nowhere else (never into details, events, errors or the ledger).
    pub(super) private_key_pkcs8: Option<Zeroizing<Vec<u8>>>,
}

impl<'a> UnitJob<'a> {
    pub(super) fn allocate_identity(&mut self) -> StepResult {
        let chip_uid = self.facts.chip_uid()?.clone();
        let profile = self.profile();
        let device_id = identity::device_id_from_chip_uid(profile.class_id, &chip_uid);
        let scanned_serial = match profile.serial_scheme {
            // Taken and checked by `identify`; a slot that skips it takes the scan here.
            SerialScheme::Scanned => match self.facts.scanned_serial.take() {
                Some(serial) => Some(serial),
                None => Some(self.wait_for_scanned_serial()?),
            },
            SerialScheme::Counter { .. } => None,
        };
        let allocated = self.context.ledger.allocate_identity(&IdentityRequest {
            chip_uid_hex: chip_uid.to_hex(),
            profile_name: profile.name.clone(),
            device_id,
            serial_scheme: profile.serial_scheme.clone(),
            scanned_serial,
            rework_policy: profile.rework_policy,
        })?;
        let mut detail = json!({
            "serial": allocated.identity.serial,
            "device_id": allocated.identity.device_id.to_string(),
            "is_rework": allocated.is_rework,
            "retired_serial": allocated.retired_serial,
        });
        if let Some(work_order) = self.context.labels.work_order() {
            detail["work_order"] = json!(work_order);
        }
        self.facts.identity = Some(allocated);
        Ok(detail)
    }

    /// Profiles with `serial.scheme = "scanned"`: takes the serial scanned for this unit
    /// (waiting for it) and asks the ledger, read-only, whether `allocate-identity` will accept
    /// it for chip `chip_uid_hex`; a label issued to another unit fails the unit now, naming the
    /// serial and the chip it belongs to, before anything is written to the unit. The chip's
    /// own serial coming back is a rework (`serial.rework`), not a duplicate.
    pub(super) fn take_checked_scanned_serial(&mut self, chip_uid_hex: &str) -> Result<(), StepFailure> {
        if !matches!(self.profile().serial_scheme, SerialScheme::Scanned) {
            return Ok(());
        }
        let serial = self.wait_for_scanned_serial()?;
        if let Err(refusal) = self.context.ledger.check_scanned_serial(
            Some(chip_uid_hex),
            &serial,
            self.profile().rework_policy,
        ) {
            return Err(StepFailure(format!(
                "scanned serial label {serial} refused before flashing: {refusal}; scan this board's own label"
            )));
        }
        self.facts.scanned_serial = Some(serial);
        Ok(())
    }

    /// The serial scanned from this unit's label (profiles with `serial.scheme = "scanned"`):
    /// waits for the scan, up to [`SCANNED_SERIAL_WAIT`].
    fn wait_for_scanned_serial(&self) -> Result<String, StepFailure> {
        let cancel = &self.context.cancel;
        match self.context.labels.take_serial(self.slot, &|| !cancel.is_aborting(), SCANNED_SERIAL_WAIT) {
            SerialWait::Serial(serial) => Ok(serial),
            SerialWait::Exhausted => Err(StepFailure(
                "no scanned serial left for this unit (the profile's serial scheme is \"scanned\"; \
                 every serial given was used)"
                    .to_string(),
            )),
            SerialWait::Stopped => {
                Err(StepFailure("the line was stopped while waiting for a serial scan".to_string()))
            }
            SerialWait::TimedOut => Err(StepFailure(format!(
                "no serial was scanned within {} s (the profile's serial scheme is \"scanned\")",
                SCANNED_SERIAL_WAIT.as_secs()
            ))),
        }
    }

    /// The identity certificate's subject CN for this unit (device ID or endpoint name).
    pub(super) fn identity_common_name(&mut self) -> Result<String, StepFailure> {
        if let Some(common_name) = &self.facts.identity_common_name {
            return Ok(common_name.clone());
        }
        let settings = self.identity_settings()?;
        let identity = self.facts.identity()?;
        let chip_uid_hex = self.facts.chip_uid()?.to_hex();
        let common_name =
            settings.common_name_for(&identity.identity.serial, identity.identity.device_id, &chip_uid_hex);
        if common_name.is_empty() || common_name.len() > contract::IDENTITY_SUBJECT_CAPACITY_BYTES {
            return Err(StepFailure(format!(
                "the identity certificate's subject name {common_name:?} has {} characters, expected 1 to {} (device_identity.endpoint_name)",
                common_name.len(),
                contract::IDENTITY_SUBJECT_CAPACITY_BYTES
            )));
        }
        self.facts.identity_common_name = Some(common_name.clone());
        Ok(common_name)
    }

    fn identity_settings(&self) -> Result<&'a DeviceIdentitySettings, StepFailure> {
        self.profile()
            .device_identity
            .as_ref()
            .ok_or_else(|| StepFailure("the profile has no [device_identity]".to_string()))
    }

    /// Writes an identity request into the mailbox, resets, and waits for the device's answer
    /// (echoing the nonce and command); a refusal is a failure naming the device's reason.
    fn identity_exchange(&mut self, command: IdentityCommand) -> Result<Vec<u8>, StepFailure> {
        let command_name = command.name();
        let response = self.mailbox_exchange(command)?;
        if response.status != IdentityStatus::Done {
            return Err(StepFailure(format!(
                "the device refused {command_name}: {} (identity status {})",
                response.status.describe(),
                response.status.code()
            )));
        }
        Ok(response.data)
    }

    /// Writes a mailbox command (section 6's layout), resets, and returns the device's response
    /// echoing the nonce and command, whatever its status.
    pub(super) fn mailbox_exchange(
        &mut self,
        command: IdentityCommand,
    ) -> Result<IdentityResponse, StepFailure> {
        let mut nonce_bytes = [0u8; 4];
        getrandom::fill(&mut nonce_bytes)
            .map_err(|error| StepFailure(format!("no randomness for the mailbox nonce: {error}")))?;
        let request = IdentityMailboxRequest { nonce: u32::from_le_bytes(nonce_bytes) | 1, command };
        let firmware = self.firmware()?;
        let mailbox = firmware.memory.mailbox;
        let mailbox_image = request.encode_mailbox();
        self.retry(|target| target.write_ram(mailbox.address, &mailbox_image))?;
        self.retry(|target| target.reset_and_run())?;
        let timeout_ms = firmware.self_test.report_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let command_name = request.command.name();
        loop {
            let mut bytes = vec![0u8; contract::IDENTITY_MAILBOX_SIZE_BYTES];
            self.retry(|target| target.read_memory(mailbox.address, &mut bytes))?;
            super::self_test::refuse_on_boot_refusal(
                contract::BootRefusal::decode_mailbox(&bytes),
                request.nonce,
            )?;
            if let Some(response) = IdentityResponse::decode_mailbox(&bytes)
                && response.nonce == request.nonce
                && response.command_code == request.command.code()
            {
                return Ok(response);
            }
            if Instant::now() >= deadline {
                return Err(StepFailure(format!(
                    "no answer to the identity request {command_name} within {timeout_ms} ms (self_test.report_timeout_ms); does the firmware implement the identity commands of the device contract, section 6?"
                )));
            }
            std::thread::sleep(REPORT_POLL_INTERVAL);
        }
    }

    /// Checks a device's CSR (whatever channel brought it: the mailbox or FCC): signed by the key
    /// it carries, asking for `common_name`; the key becomes the unit's device key. Returns the
    /// verified request and the key's SHA-256.
    pub(super) fn accept_device_csr(
        &mut self,
        request_der: &[u8],
        common_name: &str,
    ) -> Result<(trust::VerifiedCertificateRequest, [u8; 32]), StepFailure> {
        let verified = trust::verify_certificate_request(request_der)
            .map_err(|error| StepFailure(format!("the device's CSR is refused: {error}")))?;
        if verified.subject_common_name.as_deref() != Some(common_name) {
            return Err(StepFailure(format!(
                "the device's CSR asks for subject {:?}, expected CN={common_name}",
                verified.subject
            )));
        }
        let public_key_sha256 =
            trust::public_key_sha256(&verified.public_key).map_err(|error| StepFailure(error.to_string()))?;
        self.facts.device_public_key = Some(verified.public_key);
        Ok((verified, public_key_sha256))
    }

    /// Device-made keys: the device makes its key pair and answers with a CSR; the CSR must be
    /// signed by the key it carries and ask for this unit's subject name.
    pub(super) fn device_key(&mut self) -> StepResult {
        let common_name = self.identity_common_name()?;
        let request_der = self
            .identity_exchange(IdentityCommand::MakeKeyAndCsr { subject_common_name: common_name.clone() })?;
        let (verified, public_key_sha256) = self.accept_device_csr(&request_der, &common_name)?;
        Ok(json!({
            "key_origin": KeyOrigin::Device.name(),
            "csr_sha256": hex::encode(verified.request_sha256),
            "csr_bytes": request_der.len(),
            "subject": verified.subject,
            "public_key_sha256": hex::encode(public_key_sha256),
        }))
    }

    /// Issues the unit's identity certificate from the factory CA, for a key the station makes
    /// now or for the device's key from its CSR.
    pub(super) fn issue_identity(&mut self) -> StepResult {
        let settings = self.identity_settings()?;
        let common_name = self.identity_common_name()?;
        let (public_key, private_key_pkcs8) = match settings.key_origin {
            KeyOrigin::Station => {
                let key = trust::generate_device_key().map_err(|error| StepFailure(error.to_string()))?;
                let pkcs8 =
                    trust::device_key_pkcs8_der(&key).map_err(|error| StepFailure(error.to_string()))?;
                (key.verifying_key(), Some(pkcs8))
            }
            KeyOrigin::Device => (*self.facts.device_public_key()?, None),
        };
        let mut request = CertificateRequest::device_identity(common_name.clone(), settings.validity_days);
        request.organization = settings.organization.clone();
        let certificate = trust::issue_certificate(
            settings.ca_signer.as_ref(),
            &settings.ca_certificate,
            &public_key,
            &request,
        )
        .map_err(|error| StepFailure(format!("the factory CA did not issue the certificate: {error}")))?;
        let public_key_sha256 =
            trust::public_key_sha256(&public_key).map_err(|error| StepFailure(error.to_string()))?;
        let validity = certificate.parsed().tbs_certificate().validity();
        let detail = json!({
            "key_origin": settings.key_origin.name(),
            "subject": certificate.subject(),
            "issuer": certificate.issuer(),
            "certificate_fingerprint": certificate.fingerprint_hex(),
            "certificate_serial": certificate.serial_hex(),
            "not_before": validity.not_before.to_string(),
            "not_after": validity.not_after.to_string(),
            "public_key_sha256": hex::encode(public_key_sha256),
            "ca_fingerprint": settings.ca_certificate.fingerprint_hex(),
            "certificate_pem": certificate.to_pem(),
        });
        self.facts.issued_identity = Some(IssuedIdentity { certificate, private_key_pkcs8 });
        Ok(detail)
    }

    /// After injection: the checks of the device-side verification (chain to the CA, validity,
    /// subject name) and proof that the device holds the certificate's key.
    pub(super) fn verify_identity(&mut self) -> StepResult {
        let settings = self.identity_settings()?;
        let common_name = self.identity_common_name()?;
        let issued = self.facts.issued_identity()?.clone();
        let certificate = &issued.certificate;
        trust::check_device_certificate(
            certificate,
            &settings.ca_certificate,
            &common_name,
            SystemTime::now(),
        )
        .map_err(|error| {
            StepFailure(format!("the identity certificate fails the device-side checks: {error}"))
        })?;
        let mut challenge = [0u8; contract::IDENTITY_CHALLENGE_SIZE_BYTES];
        getrandom::fill(&mut challenge)
            .map_err(|error| StepFailure(format!("no randomness for the identity challenge: {error}")))?;
        let signature = self.identity_exchange(IdentityCommand::SignChallenge { challenge })?;
        let digest = contract::identity_challenge_digest(&challenge);
        trust::verify_challenge_signature(certificate, &digest, &signature).map_err(|error| {
            StepFailure(format!("the device does not prove it holds the certificate's key: {error}"))
        })?;
        Ok(json!({
            "key_origin": settings.key_origin.name(),
            "common_name": common_name,
            "certificate_fingerprint": certificate.fingerprint_hex(),
            "certificate_serial": certificate.serial_hex(),
            "chains_to": settings.ca_certificate.subject(),
            "not_after": certificate.parsed().tbs_certificate().validity().not_after.to_string(),
            "challenge": hex::encode(challenge),
            "challenge_signature_verified": true,
        }))
    }
}
