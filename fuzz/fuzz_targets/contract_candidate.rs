//! Fuzz target: the update client's decision (`imprint::contract::evaluate_candidate`), the
//! security core of the device contract: a candidate slot with arbitrary bytes, against a valid
//! provisioned store holding the developer certificate.
//!
//! Two kinds of input, chosen by the first byte:
//! - raw: the rest of the input is the candidate slot as read from flash;
//! - structured: the input describes a candidate (versions, ids, payload, header tampering,
//!   truncation, one flipped byte) that the target builds with a manifest really signed by the
//!   developer key, so that the fuzzer gets past the signature check and exercises every
//!   refusal after it, which random bytes never reach.
//!
//! The property, beyond "never panics": an `Install` verdict only ever names a payload range
//! inside the slot whose bytes are exactly a payload the developer key signed, for a version
//! newer than the installed one, no larger than the application slot.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use imprint::contract::{
    CANDIDATE_HEADER_SIZE_BYTES, CandidateVerdict, UpdateClientInputs, encode_candidate, evaluate_candidate,
};
use imprint::manifest::{ManifestRequest, SemanticVersion, create_manifest};
use imprint::trust::SoftwareSigner;
use imprint_fuzz::{FIXTURE_CLASS_ID, FIXTURE_VENDOR_ID, FUZZ_CHIP_UID};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

struct Setup {
    store_region: Vec<u8>,
    signer: SoftwareSigner,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut store_region = imprint_fuzz::provisioned_store_bytes();
        store_region.resize(0x7000, 0xFF);
        Setup { store_region, signer: imprint_fuzz::developer_signer() }
    })
}

/// A candidate to build. Versions are kept in the manifest's range (0..=999 per component) by
/// `% 1000`; everything else is the fuzzer's.
#[derive(Debug, Arbitrary)]
struct CandidateCase {
    payload: Vec<u8>,
    payload_version: (u16, u16, u16),
    installed_version: Option<(u16, u16, u16)>,
    /// `None`: the store's vendor id; otherwise another one.
    vendor_id: Option<[u8; 16]>,
    class_id: Option<[u8; 16]>,
    update_priority: u64,
    vendor_data: Option<Vec<u8>>,
    delegate_certificate: Option<Vec<u8>>,
    /// Overrides of the three header size fields.
    manifest_size_override: Option<u32>,
    delegate_size_override: Option<u32>,
    payload_size_override: Option<u32>,
    /// Keep only this many bytes of the slot.
    truncate_to: Option<u16>,
    /// XOR one byte of the slot.
    flip: Option<(u16, u8)>,
    /// Bytes after the candidate (the rest of the slot).
    trailing: Vec<u8>,
    application_slot_size_bytes: u32,
    erased_value_is_zero: bool,
}

fn version((major, minor, patch): (u16, u16, u16)) -> SemanticVersion {
    SemanticVersion::new(u32::from(major % 1000), u32::from(minor % 1000), u32::from(patch % 1000))
}

fn fixed_now() -> SystemTime {
    // 2026-01-01: inside the developer certificate's validity.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn evaluate(
    slot: &[u8],
    installed_version: Option<SemanticVersion>,
    application_slot_size_bytes: u64,
    erased_value: u8,
) -> CandidateVerdict {
    evaluate_candidate(&UpdateClientInputs {
        store_region: &setup().store_region,
        chip_uid: FUZZ_CHIP_UID,
        candidate_slot: slot,
        installed_version,
        application_slot_size_bytes,
        erased_value,
        now: fixed_now(),
    })
}

fn structured(case: CandidateCase) {
    let setup = setup();
    let payload_version = version(case.payload_version);
    let mut request = ManifestRequest::new(
        case.vendor_id.map_or(FIXTURE_VENDOR_ID, uuid::Uuid::from_bytes),
        case.class_id.map_or(FIXTURE_CLASS_ID, uuid::Uuid::from_bytes),
        payload_version,
        &case.payload,
        "file:///fuzz/payload.bin",
    );
    request.update_priority = case.update_priority;
    request.vendor_data = case.vendor_data;
    let Ok(manifest) = create_manifest(&request, &setup.signer) else { return };
    let mut slot = encode_candidate(&manifest, case.delegate_certificate.as_deref(), &case.payload);
    for (offset, size_override) in [
        (8, case.manifest_size_override),
        (12, case.delegate_size_override),
        (16, case.payload_size_override),
    ] {
        if let Some(size) = size_override {
            slot[offset..offset + 4].copy_from_slice(&size.to_le_bytes());
        }
    }
    slot.extend_from_slice(&case.trailing);
    if let Some(length) = case.truncate_to {
        slot.truncate(usize::from(length));
    }
    if let Some((position, mask)) = case.flip
        && !slot.is_empty()
    {
        let index = usize::from(position) % slot.len();
        slot[index] ^= mask;
    }
    let installed_version = case.installed_version.map(version);
    let application_slot_size_bytes = u64::from(case.application_slot_size_bytes);
    let erased_value = if case.erased_value_is_zero { 0x00 } else { 0xFF };
    let verdict = evaluate(&slot, installed_version, application_slot_size_bytes, erased_value);
    if let CandidateVerdict::Install { payload_range, boot_state } = verdict {
        // Only a signed payload, byte for byte (a flipped payload byte must have been refused).
        let installed = &slot[payload_range.clone()];
        assert_eq!(installed, case.payload.as_slice(), "installed bytes the key did not sign");
        assert!(payload_range.start >= CANDIDATE_HEADER_SIZE_BYTES);
        assert!(installed.len() as u64 <= application_slot_size_bytes, "payload larger than the slot");
        assert_eq!(boot_state.installed_version, payload_version);
        assert_eq!(boot_state.installed_size_bytes as usize, installed.len());
        let digest: [u8; 32] = Sha256::digest(installed).into();
        assert_eq!(boot_state.installed_digest, digest);
        if let Some(installed_version) = installed_version {
            assert!(payload_version > installed_version, "installed a rollback");
        }
        assert!(case.vendor_id.is_none_or(|id| id == *FIXTURE_VENDOR_ID.as_bytes()), "foreign vendor id");
        assert!(case.class_id.is_none_or(|id| id == *FIXTURE_CLASS_ID.as_bytes()), "foreign class id");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        // Raw slot bytes: nothing random is signed by the developer key, so never an install.
        let verdict = evaluate(rest, None, u64::MAX, 0xFF);
        assert!(
            !matches!(verdict, CandidateVerdict::Install { .. }),
            "installed unsigned bytes: {verdict:?}"
        );
        return;
    }
    let mut unstructured = Unstructured::new(rest);
    if let Ok(case) = CandidateCase::arbitrary(&mut unstructured) {
        structured(case);
    }
});
