//! Device-contract conformance: one suite of cases (docs/device-contract.md, section 3.3) run
//! against every `Target` that claims the contract — the simulated device and the reference
//! firmware on QEMU — through the `Target` trait only, as the station would.
//!
//! Each case gets a fresh unit: bootloader and application flashed, a config store written
//! (direct trust: the update certificate; delegated trust: a CA certificate), a candidate
//! staged, the mailbox request written, a reset. The verdict is what the device reports (reason
//! code, store status, running version, identifiers), whether the application slot changed,
//! and whether the console line says the same as the mailbox. Every case must give its
//! expected verdict on every device, so the two implementations agree case by case.
//!
//! Stores are built with `imprint::store`, candidates with `imprint::contract`,
//! `imprint::manifest` and `imprint::trust`; the firmware images come from the QEMU profile.

mod common;

#[path = "support/reference_board.rs"]
mod reference_board;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use imprint::contract::{self, MailboxRequest, SelfTestReport, StoreStatus, UpdateStatus, encode_candidate};
use imprint::device::Target;
use imprint::device::qemu::{QemuFixture, QemuOptions};
use imprint::device::sim::{FaultPlan, SimDevice, SimTarget};
use imprint::identity::{self, ChipUid};
use imprint::manifest::v1::{self, ManifestRequestV1};
use imprint::manifest::{self, ManifestRequest, SemanticVersion};
use imprint::profile::{MemoryMap, Profile, SimTiming};
use imprint::station::self_test::flatten_image;
use imprint::store::{ConfigStore, StoreItem, keys};
use imprint::trust::{
    Certificate, CertificateRequest, Signer, SoftwareSigner, generate_signing_key, issue_certificate,
    self_signed_certificate,
};

const FACTORY_VERSION: SemanticVersion = SemanticVersion { major: 1, minor: 0, patch: 0 };
const SERIAL: &str = "CONF-000042";
/// How long a device may take from reset to report (the firmware verifies ECDSA under TCG).
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

fn profile() -> Profile {
    Profile::load(&common::repo_root().join("profiles/qemu-mps2-an385.toml")).unwrap()
}

/// The firmware images, flattened and padded to the write alignment.
struct Images {
    bootloader: (u64, Vec<u8>),
    application: (u64, Vec<u8>),
    /// The newer application (1.0.1) the signed update installs.
    payload: Vec<u8>,
    payload_version: SemanticVersion,
}

fn flat(image: &imprint::image::FirmwareImage) -> (u64, Vec<u8>) {
    let mut bytes = flatten_image(image, 0xFF);
    bytes.resize(bytes.len().next_multiple_of(4), 0xFF);
    (image.start_address(), bytes)
}

fn images(profile: &Profile) -> Images {
    assert_eq!(
        profile.firmware.as_ref().expect("the profile flashes firmware").memory,
        reference_board::memory_map(),
        "the QEMU profile's memory map is the reference board's"
    );
    assert_eq!(
        profile.firmware.as_ref().expect("the profile flashes firmware").application_version,
        FACTORY_VERSION
    );
    Images {
        bootloader: flat(&profile.firmware.as_ref().expect("the profile flashes firmware").bootloader_image),
        application: flat(
            &profile.firmware.as_ref().expect("the profile flashes firmware").application_image,
        ),
        payload: flatten_image(
            &profile.firmware.as_ref().expect("the profile flashes firmware").self_test.payload,
            0xFF,
        ),
        payload_version: profile
            .firmware
            .as_ref()
            .expect("the profile flashes firmware")
            .self_test
            .payload_version,
    }
}

/// Trust material, made fresh for each run.
struct Trust {
    vendor_id: uuid::Uuid,
    class_id: uuid::Uuid,
    /// Direct trust: the update certificate and its key.
    update_key: SoftwareSigner,
    update_certificate: Certificate,
    /// Delegated trust: a CA, a delegate it issued, and a delegate from a CA the device does
    /// not know.
    ca_certificate: Certificate,
    delegate_key: SoftwareSigner,
    delegate_certificate: Certificate,
    foreign_delegate_key: SoftwareSigner,
    foreign_delegate_certificate: Certificate,
}

fn trust() -> Trust {
    let update_key = generate_signing_key();
    let update_certificate = self_signed_certificate(
        &update_key,
        &CertificateRequest::update_authority("conformance update", 3650),
    )
    .unwrap();
    let ca_key = generate_signing_key();
    let ca_certificate =
        self_signed_certificate(&ca_key, &CertificateRequest::certificate_authority("conformance CA", 3650))
            .unwrap();
    let delegate_key = generate_signing_key();
    let delegate_certificate = issue_certificate(
        &ca_key,
        &ca_certificate,
        &delegate_key.verifying_key(),
        &CertificateRequest::update_authority("conformance delegate", 365),
    )
    .unwrap();
    let foreign_ca_key = generate_signing_key();
    let foreign_ca_certificate = self_signed_certificate(
        &foreign_ca_key,
        &CertificateRequest::certificate_authority("conformance CA", 3650),
    )
    .unwrap();
    let foreign_delegate_key = generate_signing_key();
    let foreign_delegate_certificate = issue_certificate(
        &foreign_ca_key,
        &foreign_ca_certificate,
        &foreign_delegate_key.verifying_key(),
        &CertificateRequest::update_authority("conformance delegate", 365),
    )
    .unwrap();
    let vendor_id = identity::vendor_id_from_domain("conformance.imprint.example");
    Trust {
        vendor_id,
        class_id: identity::class_id_from_model(vendor_id, "Conformance Board"),
        update_key,
        update_certificate,
        ca_certificate,
        delegate_key,
        delegate_certificate,
        foreign_delegate_key,
        foreign_delegate_certificate,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// The update certificate signs manifests directly.
    Direct,
    /// A CA certificate; manifests are signed by a delegate it issued.
    Delegated,
    /// A direct-trust store with one byte flipped after encoding (fails its digest).
    Corrupt,
}

/// What the application slot holds after the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplicationSlot {
    /// The factory application, untouched.
    Unchanged,
    /// The update's payload.
    Payload,
    /// Something else (never expected).
    Other,
}

/// What a device did with one case: everything compared across implementations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    update_status: UpdateStatus,
    store_status: StoreStatus,
    running_version: String,
    /// The report's identifiers are the injected ones (all zero when unprovisioned).
    identifiers_as_expected: bool,
    application_slot: ApplicationSlot,
    /// The console's IMPRINT-REPORT line says what the mailbox says.
    console_agrees: bool,
}

struct Case {
    name: String,
    store: StoreKind,
    candidate: Vec<u8>,
    expected: UpdateStatus,
}

impl Case {
    fn expected_verdict(&self, images: &Images) -> Verdict {
        let installed = self.expected == UpdateStatus::Installed;
        let unprovisioned = self.store == StoreKind::Corrupt;
        Verdict {
            update_status: self.expected,
            store_status: if unprovisioned { StoreStatus::Unprovisioned } else { StoreStatus::Provisioned },
            running_version: if installed {
                images.payload_version.to_string()
            } else if unprovisioned {
                // No boot state and no readable store: the running version is unknown.
                "0.0.0".to_string()
            } else {
                FACTORY_VERSION.to_string()
            },
            identifiers_as_expected: true,
            application_slot: if installed { ApplicationSlot::Payload } else { ApplicationSlot::Unchanged },
            console_agrees: true,
        }
    }
}

fn manifest_for(trust: &Trust, signer: &dyn Signer, payload: &[u8], version: SemanticVersion) -> Vec<u8> {
    manifest_with(signer, trust.vendor_id, trust.class_id, payload, version)
}

fn manifest_with(
    signer: &dyn Signer,
    vendor_id: uuid::Uuid,
    class_id: uuid::Uuid,
    payload: &[u8],
    version: SemanticVersion,
) -> Vec<u8> {
    let request = ManifestRequest::new(vendor_id, class_id, version, payload, "imprint:conformance");
    manifest::create_manifest(&request, signer).unwrap()
}

/// `(tag, value start, value end)` of the DER element at `offset`.
fn der_element(bytes: &[u8], offset: usize) -> (u8, usize, usize) {
    let tag = bytes[offset];
    let first = bytes[offset + 1] as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        let length = bytes[offset + 2..offset + 2 + count]
            .iter()
            .fold(0usize, |value, byte| value << 8 | *byte as usize);
        (length, 2 + count)
    };
    (tag, offset + header, offset + header + length)
}

/// The value range of each field of `Manifest` inside a `SignedResource`.
fn manifest_fields(der: &[u8]) -> Vec<(u8, usize, usize)> {
    let (_, resource_start, _) = der_element(der, 0);
    let (_, _, version_end) = der_element(der, resource_start);
    let (tag, manifest_start, manifest_end) = der_element(der, version_end);
    assert_eq!(tag, 0x30, "Manifest is a SEQUENCE");
    let mut fields = Vec::new();
    let mut offset = manifest_start;
    while offset < manifest_end {
        let element = der_element(der, offset);
        fields.push(element);
        offset = element.2;
    }
    fields
}

/// The manifest with bit 0 of the last value byte of field `index` flipped (still valid DER,
/// still a valid value: the signature no longer matches).
fn flip_field(der: &[u8], index: usize) -> Vec<u8> {
    let (_, _, end) = manifest_fields(der)[index];
    let mut forged = der.to_vec();
    forged[end - 1] ^= 0x01;
    forged
}

fn cases(trust: &Trust, images: &Images) -> Vec<Case> {
    let payload = &images.payload;
    let newer = images.payload_version;
    let signed = manifest_for(trust, &trust.update_key, payload, newer);
    let case =
        |name: &str, store, candidate, expected| Case { name: name.to_string(), store, candidate, expected };
    let mut cases = vec![
        case("signed", StoreKind::Direct, encode_candidate(&signed, None, payload), UpdateStatus::Installed),
        case(
            "signed-by-delegate",
            StoreKind::Delegated,
            encode_candidate(
                &manifest_for(trust, &trust.delegate_key, payload, newer),
                Some(trust.delegate_certificate.der()),
                payload,
            ),
            UpdateStatus::Installed,
        ),
    ];
    let mut bad_signature = signed.clone();
    *bad_signature.last_mut().unwrap() ^= 0x01;
    cases.push(case(
        "bad-signature",
        StoreKind::Direct,
        encode_candidate(&bad_signature, None, payload),
        UpdateStatus::SignatureInvalid,
    ));
    // Every field the signature covers, in schema order (payload-format is left out: any
    // flipped value of it is not a known format, so the manifest fails to decode first).
    for (index, field) in [
        (0, "vendor-id"),
        (1, "class-id"),
        (2, "update-priority"),
        (3, "component-name"),
        (4, "payload-version"),
        (5, "payload-digest"),
        (6, "payload-size"),
        (7, "payload-uri"),
        (9, "installed-signature"),
    ] {
        cases.push(case(
            &format!("flipped-bit-in-{field}"),
            StoreKind::Direct,
            encode_candidate(&flip_field(&signed, index), None, payload),
            UpdateStatus::SignatureInvalid,
        ));
    }
    let untrusted = generate_signing_key();
    cases.push(case(
        "untrusted-key",
        StoreKind::Direct,
        encode_candidate(&manifest_for(trust, &untrusted, payload, newer), None, payload),
        UpdateStatus::SignatureInvalid,
    ));
    let other_vendor = identity::vendor_id_from_domain("not-this-vendor.example");
    cases.push(case(
        "wrong-vendor-id",
        StoreKind::Direct,
        encode_candidate(
            &manifest_with(&trust.update_key, other_vendor, trust.class_id, payload, newer),
            None,
            payload,
        ),
        UpdateStatus::VendorIdMismatch,
    ));
    let other_class = identity::class_id_from_model(trust.vendor_id, "Not This Board");
    cases.push(case(
        "wrong-class-id",
        StoreKind::Direct,
        encode_candidate(
            &manifest_with(&trust.update_key, trust.vendor_id, other_class, payload, newer),
            None,
            payload,
        ),
        UpdateStatus::ClassIdMismatch,
    ));
    let mut tampered = payload.clone();
    tampered[payload.len() / 2] ^= 0x40;
    cases.push(case(
        "payload-digest-mismatch",
        StoreKind::Direct,
        encode_candidate(&signed, None, &tampered),
        UpdateStatus::PayloadDigestMismatch,
    ));
    cases.push(case(
        "payload-one-byte-short",
        StoreKind::Direct,
        encode_candidate(&signed, None, &payload[..payload.len() - 1]),
        UpdateStatus::PayloadSizeMismatch,
    ));
    let mut one_long = payload.clone();
    one_long.push(0x5A);
    cases.push(case(
        "payload-one-byte-long",
        StoreKind::Direct,
        encode_candidate(&signed, None, &one_long),
        UpdateStatus::PayloadSizeMismatch,
    ));
    cases.push(case(
        "truncated-manifest",
        StoreKind::Direct,
        encode_candidate(&signed[..signed.len() - 10], None, payload),
        UpdateStatus::ManifestMalformed,
    ));
    // Signed for a payload one word larger than the application slot; only its start is
    // staged (it could not fit the candidate slot either).
    let slot_size = reference_board::memory_map().application.size_bytes as usize;
    let oversized: Vec<u8> = (0..slot_size + 4).map(|index| (index % 251) as u8).collect();
    cases.push(case(
        "payload-larger-than-slot",
        StoreKind::Direct,
        encode_candidate(
            &manifest_for(trust, &trust.update_key, &oversized, newer),
            None,
            &oversized[..4096],
        ),
        UpdateStatus::PayloadTooLarge,
    ));
    cases.push(case(
        "version-older-than-installed",
        StoreKind::Direct,
        encode_candidate(
            &manifest_for(
                trust,
                &trust.update_key,
                payload,
                SemanticVersion { major: 0, minor: 9, patch: 0 },
            ),
            None,
            payload,
        ),
        UpdateStatus::VersionRollback,
    ));
    cases.push(case(
        "version-equal-to-installed",
        StoreKind::Direct,
        encode_candidate(&manifest_for(trust, &trust.update_key, payload, FACTORY_VERSION), None, payload),
        UpdateStatus::VersionRollback,
    ));
    let garbage: Vec<u8> =
        (0..4096u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    cases.push(case("garbage-in-candidate-slot", StoreKind::Direct, garbage, UpdateStatus::CandidateGarbage));
    cases.push(case(
        "unprovisioned-store",
        StoreKind::Corrupt,
        encode_candidate(&signed, None, payload),
        UpdateStatus::StoreUnprovisioned,
    ));
    cases.push(case(
        "delegate-from-unknown-ca",
        StoreKind::Delegated,
        encode_candidate(
            &manifest_for(trust, &trust.foreign_delegate_key, payload, newer),
            Some(trust.foreign_delegate_certificate.der()),
            payload,
        ),
        UpdateStatus::DelegateUntrusted,
    ));
    cases.push(case(
        "delegate-key-did-not-sign",
        StoreKind::Delegated,
        encode_candidate(
            &manifest_for(trust, &generate_signing_key(), payload, newer),
            Some(trust.delegate_certificate.der()),
            payload,
        ),
        UpdateStatus::SignatureInvalid,
    ));
    cases.push(case(
        "delegate-missing",
        StoreKind::Delegated,
        encode_candidate(&manifest_for(trust, &trust.delegate_key, payload, newer), None, payload),
        UpdateStatus::DelegateMissing,
    ));
    cases.extend(v1_cases(trust, images));
    cases
}

fn manifest_v1_with(
    signer: &dyn Signer,
    certificate_der: &[u8],
    vendor_id: uuid::Uuid,
    class_id: uuid::Uuid,
    payload: &[u8],
    timestamp: u64,
) -> Vec<u8> {
    let request = ManifestRequestV1::new(vendor_id, class_id, timestamp, payload, "imprint:conformance-v1");
    v1::create_manifest_v1(&request, signer, certificate_der).unwrap()
}

/// The value range of the DER element at `offset`'s `index`-th child.
fn der_child(bytes: &[u8], offset: usize, index: usize) -> (u8, usize, usize) {
    let (_, mut child, _) = der_element(bytes, offset);
    for _ in 0..index {
        child = der_element(bytes, child).2;
    }
    der_element(bytes, child)
}

/// Start offsets of `Manifest`'s fields inside a v1 `SignedResource`.
fn v1_manifest_field_offsets(der: &[u8]) -> Vec<usize> {
    let (_, resource_offset, _) = der_element(der, 0);
    // Resource: [uri] resourceType manifest; manifest-tool writes no uri.
    let (_, resource_type_offset, _) = der_element(der, resource_offset);
    let manifest_offset = der_element(der, resource_type_offset).2;
    let (tag, mut offset, end) = der_element(der, manifest_offset);
    assert_eq!(tag, 0x30, "Manifest is a SEQUENCE");
    let mut offsets = Vec::new();
    while offset < end {
        offsets.push(offset);
        offset = der_element(der, offset).2;
    }
    offsets
}

/// The v1 cases (contract section 3.5): the same slot, a `manifest-tool create-v1` manifest.
fn v1_cases(trust: &Trust, images: &Images) -> Vec<Case> {
    let payload = &images.payload;
    let newer = v1::semantic_version_timestamp(images.payload_version);
    let stored = trust.update_certificate.der();
    let sign = |signer: &dyn Signer, certificate: &[u8], timestamp| {
        manifest_v1_with(signer, certificate, trust.vendor_id, trust.class_id, payload, timestamp)
    };
    let signed = sign(&trust.update_key, stored, newer);
    let case = |name: &str, manifest: &[u8], staged_payload: &[u8], expected| Case {
        name: format!("v1-{name}"),
        store: StoreKind::Direct,
        candidate: encode_candidate(manifest, None, staged_payload),
        expected,
    };
    let mut cases = vec![case("signed", &signed, payload, UpdateStatus::Installed)];
    // The signature block names another certificate (the delegate's) by its fingerprint.
    cases.push(case(
        "wrong-fingerprint",
        &sign(&trust.update_key, trust.delegate_certificate.der(), newer),
        payload,
        UpdateStatus::CertificateUnknown,
    ));
    cases.push(case(
        "untrusted-key-names-the-stored-certificate",
        &sign(&generate_signing_key(), stored, newer),
        payload,
        UpdateStatus::SignatureInvalid,
    ));
    // ResourceSignature (the SignedResource's child 1) = { hash, signatures = { block = {
    // signature, certificates } } }: flip the last byte of the DER ECDSA signature (inside s,
    // so the DER stays valid) and, apart, of the hash.
    let (_, hash_offset, _) = der_child(&signed, 0, 1);
    let (_, _, hash_end) = der_element(&signed, hash_offset);
    let (_, block_offset, _) = der_element(&signed, hash_end);
    let (_, signature_offset, _) = der_element(&signed, block_offset);
    let (_, _, signature_end) = der_element(&signed, signature_offset);
    let mut bad_signature = signed.clone();
    bad_signature[signature_end - 1] ^= 0x01;
    cases.push(case("bad-signature", &bad_signature, payload, UpdateStatus::SignatureInvalid));
    let mut bad_hash = signed.clone();
    bad_hash[hash_end - 1] ^= 0x01;
    cases.push(case("flipped-bit-in-resource-hash", &bad_hash, payload, UpdateStatus::SignatureInvalid));
    // Signed fields (manifest-tool writes no description): timestamp (1), vendorId (2),
    // classId (3), payload (last). The resource hash no longer matches.
    let fields = v1_manifest_field_offsets(&signed);
    for (index, field) in [(1, "timestamp"), (2, "vendorId"), (3, "classId"), (fields.len() - 1, "payload")] {
        let end = der_element(&signed, fields[index]).2;
        let mut forged = signed.clone();
        forged[end - 1] ^= 0x01;
        cases.push(case(
            &format!("flipped-bit-in-{field}"),
            &forged,
            payload,
            UpdateStatus::SignatureInvalid,
        ));
    }
    let older = v1::semantic_version_timestamp(SemanticVersion { major: 0, minor: 9, patch: 0 });
    cases.push(case(
        "old-timestamp",
        &sign(&trust.update_key, stored, older),
        payload,
        UpdateStatus::VersionRollback,
    ));
    cases.push(case(
        "timestamp-equal-to-installed",
        &sign(&trust.update_key, stored, v1::semantic_version_timestamp(FACTORY_VERSION)),
        payload,
        UpdateStatus::VersionRollback,
    ));
    // A plain integer timestamp is older than every --fw-migrate-ver one.
    cases.push(case(
        "plain-integer-timestamp",
        &sign(&trust.update_key, stored, 1_800_000_000),
        payload,
        UpdateStatus::VersionRollback,
    ));
    cases.push(case(
        "timestamp-not-semantic",
        &sign(&trust.update_key, stored, 1 << 56),
        payload,
        UpdateStatus::TimestampNotSemantic,
    ));
    let other_vendor = identity::vendor_id_from_domain("not-this-vendor.example");
    cases.push(case(
        "wrong-vendor-id",
        &manifest_v1_with(&trust.update_key, stored, other_vendor, trust.class_id, payload, newer),
        payload,
        UpdateStatus::VendorIdMismatch,
    ));
    let other_class = identity::class_id_from_model(trust.vendor_id, "Not This Board");
    cases.push(case(
        "wrong-class-id",
        &manifest_v1_with(&trust.update_key, stored, trust.vendor_id, other_class, payload, newer),
        payload,
        UpdateStatus::ClassIdMismatch,
    ));
    let mut tampered = payload.clone();
    tampered[payload.len() / 2] ^= 0x40;
    cases.push(case("payload-hash-mismatch", &signed, &tampered, UpdateStatus::PayloadDigestMismatch));
    cases.push(case(
        "payload-one-byte-short",
        &signed,
        &payload[..payload.len() - 1],
        UpdateStatus::PayloadSizeMismatch,
    ));
    let slot_size = reference_board::memory_map().application.size_bytes as usize;
    let oversized: Vec<u8> = (0..slot_size + 4).map(|index| (index % 251) as u8).collect();
    let oversized_manifest =
        manifest_v1_with(&trust.update_key, stored, trust.vendor_id, trust.class_id, &oversized, newer);
    cases.push(case(
        "payload-larger-than-slot",
        &oversized_manifest,
        &oversized[..4096],
        UpdateStatus::PayloadTooLarge,
    ));
    let mut trailing = signed.clone();
    trailing.push(0x00);
    cases.push(case("trailing-byte", &trailing, payload, UpdateStatus::ManifestMalformed));
    cases.push(case("truncated", &signed[..signed.len() - 10], payload, UpdateStatus::ManifestMalformed));
    let mut delta_request =
        ManifestRequestV1::new(trust.vendor_id, trust.class_id, newer, payload, "imprint:conformance-v1");
    delta_request.delta = Some(v1::DeltaFields {
        installed_size: payload.len() as u64,
        installed_digest: Sha256::digest(payload).to_vec(),
        precursor_digest: Sha256::digest(&images.application.1).to_vec(),
    });
    cases.push(case(
        "bsdiff-stream-payload",
        &v1::create_manifest_v1(&delta_request, &trust.update_key, stored).unwrap(),
        payload,
        UpdateStatus::PayloadFormatUnsupported,
    ));
    cases.push(Case {
        name: "v1-with-a-delegated-certificate".to_string(),
        store: StoreKind::Direct,
        candidate: encode_candidate(&signed, Some(trust.delegate_certificate.der()), payload),
        expected: UpdateStatus::ManifestMalformed,
    });
    cases
}

fn store_bytes(trust: &Trust, kind: StoreKind, chip_uid: &ChipUid, memory: &MemoryMap) -> Vec<u8> {
    let mut store = ConfigStore::default();
    store.set(StoreItem::binary(keys::VENDOR_ID, trust.vendor_id.as_bytes()));
    store.set(StoreItem::binary(keys::CLASS_ID, trust.class_id.as_bytes()));
    let device_id = identity::device_id_from_chip_uid(trust.class_id, chip_uid);
    store.set(StoreItem::binary(keys::DEVICE_ID, device_id.as_bytes()));
    store.set(StoreItem::text(keys::SERIAL_NUMBER, SERIAL));
    store.set(StoreItem::text(keys::MANUFACTURER_NAME, "Imprint Conformance"));
    store.set(StoreItem::text(keys::MODEL_NUMBER, "Conformance Board"));
    store.set(StoreItem::text(keys::FACTORY_APP_VERSION, &FACTORY_VERSION.to_string()));
    let certificate =
        if kind == StoreKind::Delegated { &trust.ca_certificate } else { &trust.update_certificate };
    store.set_update_certificate(certificate.der());
    let mut bytes = store.encode(chip_uid.as_bytes(), &memory.store_layout()).unwrap();
    if kind == StoreKind::Corrupt {
        // A bit flipped in the serial number's value: the store decodes but fails its digest.
        let position = bytes.windows(SERIAL.len()).position(|window| window == SERIAL.as_bytes()).unwrap();
        bytes[position] ^= 0x01;
    }
    bytes
}

fn erase_and_program(target: &mut dyn Target, address: u64, data: &[u8], memory: &MemoryMap) {
    let region = memory.flash_region_at(address).unwrap();
    let (erase_address, erase_size) = region.sectors_covering(address, data.len() as u64);
    target.erase_flash(erase_address, erase_size, &mut |_| {}).unwrap();
    let padded = contract::pad_to_alignment(data, region.write_alignment_bytes as usize, region.erased_value);
    target.program_flash(address, &padded, &mut |_| {}).unwrap();
}

fn read(target: &mut dyn Target, address: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    target.read_memory(address, &mut bytes).unwrap();
    bytes
}

/// Runs one case on a fresh unit and returns the device's verdict.
fn run_case(target: &mut dyn Target, case: &Case, trust: &Trust, images: &Images, device: &str) -> Verdict {
    let memory = reference_board::memory_map();
    target.connect().unwrap();
    let chip_uid = target.read_unique_id().unwrap();
    erase_and_program(target, images.bootloader.0, &images.bootloader.1, &memory);
    erase_and_program(target, images.application.0, &images.application.1, &memory);
    let config = memory.config;
    target.erase_flash(config.address, config.size_bytes, &mut |_| {}).unwrap();
    target
        .program_flash(config.address, &store_bytes(trust, case.store, &chip_uid, &memory), &mut |_| {})
        .unwrap();
    erase_and_program(target, memory.candidate.address, &case.candidate, &memory);

    let nonce = u32::from_le_bytes(Sha256::digest(case.name.as_bytes())[..4].try_into().unwrap()) | 1;
    target.write_ram(memory.mailbox.address, &MailboxRequest { nonce }.encode_mailbox()).unwrap();
    let _ = target.take_console_lines();
    target.reset_and_run().unwrap();

    let deadline = Instant::now() + REPORT_TIMEOUT;
    let report = loop {
        let mailbox = read(target, memory.mailbox.address, contract::MAILBOX_SIZE_BYTES);
        if let Some(report) = SelfTestReport::decode_mailbox(&mailbox).filter(|report| report.nonce == nonce)
        {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "{device}: case {}: no report within {REPORT_TIMEOUT:?}",
            case.name
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut console_lines = Vec::new();
    let console_deadline = Instant::now() + Duration::from_secs(5);
    let console_report = loop {
        console_lines.extend(target.take_console_lines().unwrap_or_default());
        let found = console_lines
            .iter()
            .filter_map(|line| SelfTestReport::parse_console_line(line))
            .find(|report| report.nonce == nonce);
        if found.is_some() || Instant::now() >= console_deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };

    let provisioned = case.store != StoreKind::Corrupt;
    let device_id = identity::device_id_from_chip_uid(trust.class_id, &chip_uid);
    let certificate =
        if case.store == StoreKind::Delegated { &trust.ca_certificate } else { &trust.update_certificate };
    let identifiers_as_expected = if provisioned {
        report.vendor_id == *trust.vendor_id.as_bytes()
            && report.class_id == *trust.class_id.as_bytes()
            && report.device_id == *device_id.as_bytes()
            && report.certificate_fingerprint == certificate.fingerprint_sha256()
            && report.serial_number == SERIAL
    } else {
        report.vendor_id == [0; 16]
            && report.class_id == [0; 16]
            && report.device_id == [0; 16]
            && report.certificate_fingerprint == [0; 32]
            && report.serial_number.is_empty()
    };
    let application = memory.application;
    let slot_length = images.application.1.len().max(images.payload.len());
    let slot = read(target, application.address, slot_length);
    let application_slot = if slot[..images.application.1.len()] == images.application.1[..] {
        ApplicationSlot::Unchanged
    } else if slot[..images.payload.len()] == images.payload[..] {
        ApplicationSlot::Payload
    } else {
        ApplicationSlot::Other
    };
    if console_report.as_ref() != Some(&report) {
        eprintln!("{device}: case {}: mailbox {report:?}, console lines {console_lines:?}", case.name);
    }
    Verdict {
        update_status: report.update_status,
        store_status: report.store_status,
        running_version: report.running_version.to_string(),
        identifiers_as_expected,
        application_slot,
        console_agrees: console_report.as_ref() == Some(&report),
    }
}

/// Runs every case on units from `fresh_unit`; returns (case name, verdict) in case order.
fn run_suite(
    device: &str,
    cases: &[Case],
    trust: &Trust,
    images: &Images,
    fresh_unit: &mut dyn FnMut() -> Box<dyn Target>,
) -> Vec<(String, Verdict)> {
    cases
        .iter()
        .map(|case| {
            let mut target = fresh_unit();
            (case.name.clone(), run_case(target.as_mut(), case, trust, images, device))
        })
        .collect()
}

fn sim_unit(index: u64) -> Box<dyn Target> {
    let unique_id = Sha256::digest(index.to_le_bytes())[..12].to_vec();
    let device = SimDevice::new(&reference_board::memory_map(), unique_id);
    Box::new(SimTarget::new(
        device,
        "mps2-an385",
        "sim-conformance",
        SimTiming::default(),
        FaultPlan::default(),
    ))
}

/// Checks every device's verdicts against each case's expectation (and so against each other).
fn check(cases: &[Case], images: &Images, results: &[(&str, Vec<(String, Verdict)>)]) {
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let expected = case.expected_verdict(images);
        let codes: Vec<String> = results
            .iter()
            .map(|(device, verdicts)| format!("{device}={:#04x}", verdicts[index].1.update_status.code()))
            .collect();
        eprintln!("{:<36} expected {:#04x}  {}", case.name, case.expected.code(), codes.join("  "));
        for (device, verdicts) in results {
            let (name, verdict) = &verdicts[index];
            assert_eq!(name, &case.name);
            if *verdict != expected {
                failures.push(format!("{device}: {}: got {verdict:?}, expected {expected:?}", case.name));
            }
        }
        if let [(first_device, first), rest @ ..] = results {
            for (device, verdicts) in rest {
                if verdicts[index].1.update_status != first[index].1.update_status {
                    failures.push(format!(
                        "{}: {first_device} says {:?}, {device} says {:?}",
                        case.name, first[index].1.update_status, verdicts[index].1.update_status
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreement(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_suite_has_a_refusal_per_reason() {
    let profile = profile();
    let images = images(&profile);
    let cases = cases(&trust(), &images);
    let refusals: std::collections::HashSet<UpdateStatus> =
        cases.iter().map(|case| case.expected).filter(|status| status.is_refusal()).collect();
    assert!(cases.iter().filter(|case| case.expected.is_refusal()).count() >= 15);
    for status in [
        UpdateStatus::CandidateGarbage,
        UpdateStatus::ManifestMalformed,
        UpdateStatus::StoreUnprovisioned,
        UpdateStatus::SignatureInvalid,
        UpdateStatus::VendorIdMismatch,
        UpdateStatus::ClassIdMismatch,
        UpdateStatus::PayloadSizeMismatch,
        UpdateStatus::PayloadDigestMismatch,
        UpdateStatus::PayloadTooLarge,
        UpdateStatus::VersionRollback,
        UpdateStatus::DelegateMissing,
        UpdateStatus::DelegateUntrusted,
        UpdateStatus::PayloadFormatUnsupported,
        UpdateStatus::CertificateUnknown,
        UpdateStatus::TimestampNotSemantic,
    ] {
        assert!(refusals.contains(&status), "no case for {status:?}");
    }
}

/// The simulated device alone against every expectation (v3 and v1), without QEMU: the
/// reference implementation's own verdicts, case by case.
#[test]
fn the_simulated_device_gives_every_expected_verdict() {
    let profile = profile();
    let images = images(&profile);
    let trust = trust();
    let cases = cases(&trust, &images);
    let mut sim_units = 1000;
    let sim = run_suite("sim", &cases, &trust, &images, &mut || {
        sim_units += 1;
        sim_unit(sim_units)
    });
    check(&cases, &images, &[("sim", sim)]);
}

#[test]
fn sim_and_qemu_firmware_give_identical_verdicts() {
    let profile = profile();
    let images = images(&profile);
    let trust = trust();
    let cases = cases(&trust, &images);

    let mut sim_units = 0;
    let sim = run_suite("sim", &cases, &trust, &images, &mut || {
        sim_units += 1;
        sim_unit(sim_units)
    });

    let mut fixture =
        QemuFixture::new("qemu-conformance", reference_board::target_config(), QemuOptions::default())
            .unwrap_or_else(|error| {
                panic!("the QEMU half needs qemu-system-arm (scripts/test installs it): {error}")
            });
    let qemu = run_suite("qemu", &cases, &trust, &images, &mut || Box::new(fixture.start_unit().unwrap()));

    check(&cases, &images, &[("sim", sim), ("qemu", qemu)]);
}
