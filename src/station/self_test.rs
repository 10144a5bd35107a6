//! The self-test material of a line: the signed candidate that must install, and the forged
//! ones that must be refused.
//!
//! Manifests do not depend on the unit (they carry vendor and class, not the device ID), so
//! they are signed once per line rather than once per unit — one signature pass through the
//! profile's signer (which may be an HSM) instead of thousands.

use sha2::{Digest, Sha256};

use crate::contract::{UpdateStatus, encode_candidate};
use crate::image::FirmwareImage;
use crate::manifest::{self, ManifestRequest, SemanticVersion};
use crate::profile::Profile;
use crate::trust::{Signer, generate_signing_key};

/// A candidate ready to stage, with what the device must answer.
#[derive(Debug, Clone)]
pub struct StagedCandidate {
    /// Short name for records (`signed`, `untrusted-key`, `wrong-class-id`).
    pub name: &'static str,
    /// The candidate slot image (header, manifest, payload).
    pub candidate_bytes: Vec<u8>,
    /// SHA-256 of the manifest DER.
    pub manifest_sha256: [u8; 32],
    /// What the update client must report for it.
    pub expected_status: UpdateStatus,
}

/// Everything the self-test steps stage, prepared once per line.
#[derive(Debug, Clone)]
pub struct SelfTestMaterial {
    /// The payload as one flat binary, installed at the start of the application slot.
    pub payload: Vec<u8>,
    /// SHA-256 of the payload.
    pub payload_sha256: [u8; 32],
    /// Its version.
    pub payload_version: SemanticVersion,
    /// The correctly signed update.
    pub signed: StagedCandidate,
    /// Forged updates the device must refuse.
    pub forged: Vec<StagedCandidate>,
}

/// Why the self-test material could not be made (a signer that refuses, a payload that does
/// not flatten).
#[derive(Debug, thiserror::Error)]
pub enum SelfTestMaterialError {
    /// Signing the manifest failed.
    #[error("cannot sign the self-test manifest: {0}")]
    Manifest(#[from] manifest::ManifestError),
    /// A key the profile names could not be opened (a token's PIN, a missing key).
    #[error(transparent)]
    Keys(#[from] crate::trust::KeySourceError),
    /// An FCC-only profile has no self-test.
    #[error(transparent)]
    FirmwareMissing(#[from] crate::profile::FirmwareMissing),
}

impl SelfTestMaterial {
    /// Opens the profile's keys (once: a token logs in here, when the line starts) and signs
    /// the self-test manifests for `profile`.
    pub fn prepare(profile: &Profile) -> Result<SelfTestMaterial, SelfTestMaterialError> {
        profile.open_signers()?;
        let firmware = profile.require_firmware("the self-test")?;
        let payload = flatten_image(&firmware.self_test.payload, firmware.memory.application.erased_value);
        let payload_version = firmware.self_test.payload_version;
        let request = |class_id: uuid::Uuid, version: SemanticVersion| ManifestRequest {
            vendor_id: profile.vendor_id,
            class_id,
            update_priority: 0,
            component_name: "MAIN".to_string(),
            payload_version: version,
            payload: &payload,
            payload_uri: format!("imprint:self-test/{}", profile.name),
            vendor_data: None,
        };
        let candidate = |name, manifest_der: Vec<u8>, expected_status| StagedCandidate {
            name,
            manifest_sha256: Sha256::digest(&manifest_der).into(),
            candidate_bytes: encode_candidate(
                &manifest_der,
                profile.delegate_certificate.as_ref().map(|certificate| certificate.der()),
                &payload,
            ),
            expected_status,
        };
        let signed_manifest =
            manifest::create_manifest(&request(profile.class_id, payload_version), profile.signer.as_ref())?;
        // Forged updates carry a newer version still, so that a refusal can only come from the
        // forgery and never from the version policy.
        let forged_version = SemanticVersion { patch: payload_version.patch + 1, ..payload_version };
        let untrusted_key = generate_signing_key();
        let untrusted_manifest = manifest::create_manifest(
            &request(profile.class_id, forged_version),
            &untrusted_key as &dyn Signer,
        )?;
        let wrong_class_id =
            uuid::Uuid::new_v5(&profile.class_id, b"imprint negative self-test: not this class");
        let wrong_class_manifest =
            manifest::create_manifest(&request(wrong_class_id, forged_version), profile.signer.as_ref())?;
        Ok(SelfTestMaterial {
            payload_sha256: Sha256::digest(&payload).into(),
            payload_version,
            signed: candidate("signed", signed_manifest, UpdateStatus::Installed),
            forged: vec![
                candidate("untrusted-key", untrusted_manifest, UpdateStatus::SignatureInvalid),
                candidate("wrong-class-id", wrong_class_manifest, UpdateStatus::ClassIdMismatch),
            ],
            payload,
        })
    }
}

/// The image as one contiguous binary from its lowest address, gaps filled with `fill`.
pub fn flatten_image(image: &FirmwareImage, fill: u8) -> Vec<u8> {
    let start = image.start_address();
    let mut bytes = vec![fill; (image.end_address() - start) as usize];
    for segment in &image.segments {
        let offset = (segment.address - start) as usize;
        bytes[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
    }
    bytes
}
