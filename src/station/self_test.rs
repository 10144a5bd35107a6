//! The self-test material of a line: the signed candidate that must install, and the forged
//! ones that must be refused, as v3 manifests or (`self_test.manifest_schema = "v1"`) as v1
//! manifests, whose forgeries add one the device must not find by its certificate fingerprint.
//!
//! Manifests do not depend on the unit (they carry vendor and class, not the device ID), so
//! they are signed once per line rather than once per unit — one signature pass through the
//! profile's signer (which may be an HSM) instead of thousands.

use sha2::{Digest, Sha256};

use crate::contract::{UpdateStatus, encode_candidate};
use crate::image::FirmwareImage;
use crate::manifest::v1::{self, ManifestRequestV1};
use crate::manifest::{self, ManifestRequest, ManifestSchema, SemanticVersion};
use crate::profile::Profile;
use crate::trust::{CertificateRequest, Signer, generate_signing_key, self_signed_certificate};

/// A candidate ready to stage, with what the device must answer.
#[derive(Debug, Clone)]
pub struct StagedCandidate {
    /// Short name for records (`signed`, `untrusted-key`, `unknown-certificate`, `wrong-class-id`).
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
    /// The schema of every manifest here (the profile's `self_test.manifest_schema`).
    pub manifest_schema: ManifestSchema,
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
    /// Signing a v1 manifest failed.
    #[error("cannot sign the self-test v1 manifest: {0}")]
    ManifestV1(#[from] v1::ManifestV1Error),
    /// The certificate for the forged v1 manifest's unknown signer could not be made.
    #[error("cannot make the negative self-test's unknown certificate: {0}")]
    Certificate(#[from] crate::trust::TrustError),
    /// A key the profile names could not be opened (a token's PIN, a missing key).
    #[error(transparent)]
    Keys(#[from] crate::trust::KeySourceError),
    /// An FCC-only profile has no self-test.
    #[error(transparent)]
    FirmwareMissing(#[from] crate::profile::FirmwareMissing),
}

impl SelfTestMaterial {
    /// Opens the profile's keys (once: a token logs in here, when the line starts) and signs
    /// the self-test manifests for `profile`, in the schema its `self_test.manifest_schema` names.
    pub fn prepare(profile: &Profile) -> Result<SelfTestMaterial, SelfTestMaterialError> {
        profile.open_signers()?;
        let firmware = profile.require_firmware("the self-test")?;
        let payload = flatten_image(&firmware.self_test.payload, firmware.memory.application.erased_value);
        let payload_version = firmware.self_test.payload_version;
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
        // Forged updates carry a newer version still, so that a refusal can only come from the
        // forgery and never from the version policy.
        let forged_version = SemanticVersion { patch: payload_version.patch + 1, ..payload_version };
        let wrong_class_id =
            uuid::Uuid::new_v5(&profile.class_id, b"imprint negative self-test: not this class");
        let untrusted_key = generate_signing_key();
        let (signed, forged) = match firmware.self_test.manifest_schema {
            ManifestSchema::V3 => {
                let sign = |class_id, version, signer: &dyn Signer| {
                    manifest::create_manifest(&v3_request(profile, &payload, class_id, version), signer)
                };
                let signer = profile.signer.as_ref();
                (
                    candidate(
                        "signed",
                        sign(profile.class_id, payload_version, signer)?,
                        UpdateStatus::Installed,
                    ),
                    vec![
                        candidate(
                            "untrusted-key",
                            sign(profile.class_id, forged_version, &untrusted_key)?,
                            UpdateStatus::SignatureInvalid,
                        ),
                        candidate(
                            "wrong-class-id",
                            sign(wrong_class_id, forged_version, signer)?,
                            UpdateStatus::ClassIdMismatch,
                        ),
                    ],
                )
            }
            ManifestSchema::V1 => {
                let stored_certificate = profile.update_certificate.der();
                let sign = |class_id, version, signer: &dyn Signer, certificate: &[u8]| {
                    let request = ManifestRequestV1::new(
                        profile.vendor_id,
                        class_id,
                        v1::semantic_version_timestamp(version),
                        &payload,
                        self_test_payload_uri(profile),
                    );
                    v1::create_manifest_v1(&request, signer, certificate)
                };
                let signer = profile.signer.as_ref();
                // A certificate the device has never seen, for the fingerprint lookup to miss.
                let unknown_certificate = self_signed_certificate(
                    &untrusted_key,
                    &CertificateRequest::update_authority("imprint negative self-test: unknown signer", 1),
                )?;
                (
                    candidate(
                        "signed",
                        sign(profile.class_id, payload_version, signer, stored_certificate)?,
                        UpdateStatus::Installed,
                    ),
                    vec![
                        candidate(
                            "untrusted-key",
                            sign(profile.class_id, forged_version, &untrusted_key, stored_certificate)?,
                            UpdateStatus::SignatureInvalid,
                        ),
                        candidate(
                            "unknown-certificate",
                            sign(
                                profile.class_id,
                                forged_version,
                                &untrusted_key,
                                unknown_certificate.der(),
                            )?,
                            UpdateStatus::CertificateUnknown,
                        ),
                        candidate(
                            "wrong-class-id",
                            sign(wrong_class_id, forged_version, signer, stored_certificate)?,
                            UpdateStatus::ClassIdMismatch,
                        ),
                    ],
                )
            }
        };
        Ok(SelfTestMaterial {
            payload_sha256: Sha256::digest(&payload).into(),
            payload_version,
            manifest_schema: firmware.self_test.manifest_schema,
            signed,
            forged,
            payload,
        })
    }
}

fn self_test_payload_uri(profile: &Profile) -> String {
    format!("imprint:self-test/{}", profile.name)
}

fn v3_request<'a>(
    profile: &Profile,
    payload: &'a [u8],
    class_id: uuid::Uuid,
    version: SemanticVersion,
) -> ManifestRequest<'a> {
    ManifestRequest {
        vendor_id: profile.vendor_id,
        class_id,
        update_priority: 0,
        component_name: "MAIN".to_string(),
        payload_version: version,
        payload,
        payload_uri: self_test_payload_uri(profile),
        vendor_data: None,
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
