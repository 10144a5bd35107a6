//! The self-test steps: `self-test` stages the update signed for this product, resets, and
//! checks the device's report (installed, identity as provisioned, the application slot holds
//! the payload); `negative-self-test` stages forged updates, each of which must be refused
//! with the application unchanged. The candidates come from the line's
//! [`SelfTestMaterial`](crate::station::SelfTestMaterial), signed once.

use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{REPORT_POLL_INTERVAL, StepFailure, StepName, StepResult, UnitJob};
use crate::contract::{self, BootRefusal, MailboxRequest, SelfTestReport, StoreStatus};
use crate::profile::{ReportChannel, SkippableStep};
use crate::station::self_test::StagedCandidate;

impl UnitJob<'_> {
    /// Stages a candidate, resets, and returns the device's report.
    fn stage_and_boot(
        &mut self,
        step: StepName,
        candidate: &StagedCandidate,
    ) -> Result<SelfTestReport, StepFailure> {
        if self.profile().device_hardware.update_storage.is_some() {
            return self.stage_on_update_storage(step, candidate);
        }
        let candidate_region = self.firmware()?.memory.candidate;
        let padded = contract::pad_to_alignment(
            &candidate.candidate_bytes,
            candidate_region.write_alignment_bytes as usize,
            candidate_region.erased_value,
        );
        self.write_skipping_unchanged(step, candidate_region, candidate_region.address, padded)?;
        self.verify_written(step)?;
        let mut nonce_bytes = [0u8; 4];
        getrandom::fill(&mut nonce_bytes)
            .map_err(|error| StepFailure(format!("no randomness for the mailbox nonce: {error}")))?;
        let request = MailboxRequest { nonce: u32::from_le_bytes(nonce_bytes) | 1 };
        let mailbox = self.firmware()?.memory.mailbox;
        let _ = self.target.take_console_lines();
        let mailbox_image = request.encode_mailbox();
        self.retry(|target| target.write_ram(mailbox.address, &mailbox_image))?;
        self.retry(|target| target.reset_and_run())?;
        self.wait_for_report(request.nonce)
    }

    pub(super) fn wait_for_report(&mut self, nonce: u32) -> Result<SelfTestReport, StepFailure> {
        let firmware = self.firmware()?;
        let timeout_ms = firmware.self_test.report_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mailbox = firmware.memory.mailbox;
        let channel = firmware.self_test.report_channel;
        loop {
            let report = match channel {
                ReportChannel::Mailbox => {
                    let mut bytes = vec![0u8; contract::MAILBOX_SIZE_BYTES];
                    self.retry(|target| target.read_memory(mailbox.address, &mut bytes))?;
                    refuse_on_boot_refusal(BootRefusal::decode_mailbox(&bytes), nonce)?;
                    SelfTestReport::decode_mailbox(&bytes)
                }
                ReportChannel::Console => {
                    let lines = self.target.take_console_lines().ok_or_else(|| {
                        StepFailure(
                            "the profile reads reports from the console, but this target has none"
                                .to_string(),
                        )
                    })?;
                    refuse_on_boot_refusal(
                        lines.iter().rev().find_map(|line| BootRefusal::parse_console_line(line)),
                        nonce,
                    )?;
                    lines.iter().rev().find_map(|line| SelfTestReport::parse_console_line(line))
                }
            };
            if let Some(report) = report
                && report.nonce == nonce
            {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                return Err(StepFailure(format!(
                    "no self-test report within {timeout_ms} ms (self_test.report_timeout_ms)"
                )));
            }
            std::thread::sleep(REPORT_POLL_INTERVAL);
        }
    }

    fn application_slot_sha256(&mut self, step: StepName, length: usize) -> Result<[u8; 32], StepFailure> {
        let address = self.firmware()?.memory.application.address;
        let bytes = self.read_back(step, address, length, 0, length as u64)?;
        Ok(Sha256::digest(&bytes).into())
    }

    /// The line's signed and forged candidates (an FCC-only profile has none).
    fn self_test_material(
        &self,
    ) -> Result<std::sync::Arc<crate::station::self_test::SelfTestMaterial>, StepFailure> {
        self.context.self_test.clone().ok_or_else(|| {
            StepFailure(self.profile().require_firmware("the self-test").err().map_or_else(
                || "the line prepared no self-test material".to_string(),
                |error| error.to_string(),
            ))
        })
    }

    pub(super) fn self_test(&mut self) -> StepResult {
        let material = self.self_test_material()?;
        let report = self.stage_and_boot(StepName::SelfTest, &material.signed)?;
        let identity = self.facts.identity()?.clone();
        let profile = self.profile();
        let mut mismatches = Vec::new();
        if report.update_status != material.signed.expected_status {
            mismatches.push(format!(
                "update client reported {:?} ({:#04x}), expected Installed",
                report.update_status,
                report.update_status.code()
            ));
        }
        if report.store_status != StoreStatus::Provisioned {
            mismatches.push("device reports its config store unreadable (unprovisioned)".to_string());
        }
        let expectations: [(&str, String, String); 6] = [
            ("vendor ID", hex::encode(report.vendor_id), hex::encode(profile.vendor_id.as_bytes())),
            ("class ID", hex::encode(report.class_id), hex::encode(profile.class_id.as_bytes())),
            ("device ID", hex::encode(report.device_id), hex::encode(identity.identity.device_id.as_bytes())),
            (
                "certificate fingerprint",
                hex::encode(report.certificate_fingerprint),
                hex::encode(profile.update_certificate.fingerprint_sha256()),
            ),
            ("serial number", report.serial_number.clone(), identity.identity.serial.clone()),
            ("running version", report.running_version.to_string(), material.payload_version.to_string()),
        ];
        for (what, reported, expected) in &expectations {
            if reported != expected {
                mismatches.push(format!("device reports {what} {reported}, expected {expected}"));
            }
        }
        if !mismatches.is_empty() {
            return Err(StepFailure(mismatches.join("; ")));
        }
        let installed = self.application_slot_sha256(StepName::SelfTest, material.payload.len())?;
        if installed != material.payload_sha256 {
            return Err(StepFailure(
                "the device reports the update installed, but the application slot does not hold the payload"
                    .to_string(),
            ));
        }
        Ok(json!({
            "manifest_schema": material.manifest_schema.name(),
            "manifest_sha256": hex::encode(material.signed.manifest_sha256),
            "payload_sha256": hex::encode(material.payload_sha256),
            "installed_version": report.running_version.to_string(),
            "reported_serial": report.serial_number,
            "reported_device_id": uuid::Uuid::from_bytes(report.device_id).to_string(),
            "certificate_fingerprint": hex::encode(report.certificate_fingerprint),
        }))
    }

    pub(super) fn negative_self_test(&mut self) -> StepResult {
        let material = self.self_test_material()?;
        let running_before =
            if self.profile().skips(SkippableStep::SelfTest) { None } else { Some(material.payload_version) };
        // After a passed self-test the slot holds the payload (its hash was just read back);
        // otherwise read what is there now.
        let application_before = match running_before {
            Some(_) => material.payload_sha256,
            None => self.application_slot_sha256(StepName::NegativeSelfTest, material.payload.len())?,
        };
        let mut refusals = Vec::new();
        for forged in &material.forged {
            let report = self.stage_and_boot(StepName::NegativeSelfTest, forged)?;
            if report.update_status != forged.expected_status {
                return Err(StepFailure(format!(
                    "forged update '{}' was answered {:?} ({:#04x}), expected refusal {:?} ({:#04x})",
                    forged.name,
                    report.update_status,
                    report.update_status.code(),
                    forged.expected_status,
                    forged.expected_status.code()
                )));
            }
            if let Some(running_before) = running_before
                && report.running_version != running_before
            {
                return Err(StepFailure(format!(
                    "after refusing '{}' the device runs version {}, expected {running_before}",
                    forged.name, report.running_version
                )));
            }
            let application_after =
                self.application_slot_sha256(StepName::NegativeSelfTest, material.payload.len())?;
            if application_after != application_before {
                return Err(StepFailure(format!(
                    "forged update '{}' was refused but the application slot changed",
                    forged.name
                )));
            }
            refusals.push(json!({
                "candidate": forged.name,
                "manifest_sha256": hex::encode(forged.manifest_sha256),
                "reason_code": report.update_status.code(),
            }));
        }
        Ok(json!({ "refused": refusals }))
    }
}

/// A bootloader that booted nothing says why (docs/device-contract.md, section 7.3): the step
/// fails with its reason at once instead of waiting out the report timeout.
pub(super) fn refuse_on_boot_refusal(refusal: Option<BootRefusal>, nonce: u32) -> Result<(), StepFailure> {
    match refusal {
        Some(refusal) if refusal.nonce == nonce => Err(StepFailure(format!(
            "the device's bootloader refused to boot the application: {} ({:#04x}): {}",
            refusal.reason.name(),
            refusal.reason.code(),
            refusal.reason.describe()
        ))),
        _ => Ok(()),
    }
}
