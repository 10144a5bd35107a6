//! Makes device-contract cases for the reference firmware and runs each on the simulated device,
//! so the same cases can be replayed on QEMU (`firmware/tools/qemu_cases.py`) and the two
//! devices' reports compared byte for byte.
//!
//! Each case is a directory with `steps.txt` (what a station would do: write images, a config
//! store and a candidate, write the mailbox request, reset, dump memory) and the files it names;
//! this program also executes the steps on the station's simulated device (`device::sim`, whose
//! update client is `contract::evaluate_candidate`) and writes the results beside them as
//! `*.sim.*` files. Keys are fixed test scalars: nothing here is secret.
//!
//! ```text
//! cargo run --example firmware_fixture -- /tmp/imprint-firmware-cases
//! python3 firmware/tools/qemu_cases.py /tmp/imprint-firmware-cases
//! ```

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use imprint::contract::{self, MailboxRequest};
use imprint::device::Target;
use imprint::device::sim::{FaultPlan, SimDevice, SimTarget};
use imprint::identity::{self, ChipUid};
use imprint::manifest::{self, ManifestRequest, SemanticVersion};
use imprint::profile::{FlashRegion, MemoryMap, RamSpan, SimTiming};
use imprint::store::{ConfigStore, StoreItem, StoreLayout, keys};
use imprint::trust::{
    Certificate, CertificateRequest, SignError, Signer, SoftwareSigner, issue_certificate,
    self_signed_certificate,
};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// The QEMU profile's memory map (the station's `profiles/qemu-mps2-an385.toml`).
fn memory_map() -> MemoryMap {
    let region = |address: u64, size_bytes: u64| FlashRegion {
        address,
        size_bytes,
        sector_size_bytes: 0x1000,
        write_alignment_bytes: 4,
        erased_value: 0xFF,
    };
    MemoryMap {
        chip_flash: RamSpan { address: 0, size_bytes: 0x40_0000 },
        chip_ram: RamSpan { address: 0x2000_0000, size_bytes: 0x40_0000 },
        bootloader: region(0x0000_0000, 0x2_0000),
        application: region(0x0002_0000, 0xE_0000),
        candidate: region(0x0010_0000, 0xE_0000),
        config: region(0x001E_0000, 0x1_0000),
        mailbox: RamSpan { address: 0x2000_0000, size_bytes: 0x100 },
    }
}

const UNIQUE_ID_ADDRESS: u64 = 0x003F_F000;
const UNIQUE_ID: [u8; 12] = [0x51, 0x45, 0x4d, 0x55, 0x00, 0x01, 0x02, 0x03, 0xa0, 0xb1, 0xc2, 0xd3];
const NONCE: u32 = 0x1a2b_3c4d;
const SECOND_NONCE: u32 = 0x5e6f_7081;
const SERIAL: &str = "QEMU-000001";

fn signer(scalar: u8, name: &str) -> SoftwareSigner {
    let signing_key = SigningKey::from_slice(&[scalar; 32]).expect("a fixed scalar below the group order");
    SoftwareSigner::new(signing_key, name)
}

/// Signs the installed digest with a corrupted digest and everything else faithfully: a manifest
/// whose outer signature verifies but whose installed-signature does not.
struct BadInstalledSignatureSigner {
    inner: SoftwareSigner,
    calls: std::sync::atomic::AtomicU32,
}

impl Signer for BadInstalledSignatureSigner {
    fn verifying_key(&self) -> VerifyingKey {
        self.inner.verifying_key()
    }

    fn sign_digest(&self, sha256_digest: &[u8; 32]) -> Result<Signature, SignError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut digest = *sha256_digest;
        if call == 0 {
            digest[0] ^= 0x01;
        }
        self.inner.sign_digest(&digest)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Trust material and identity shared by all cases.
struct World {
    vendor_id: uuid::Uuid,
    class_id: uuid::Uuid,
    device_id: uuid::Uuid,
    update_signer: SoftwareSigner,
    update_certificate: Certificate,
    other_signer: SoftwareSigner,
    ca_certificate: Certificate,
    delegate_signer: SoftwareSigner,
    delegate_certificate: Certificate,
    unknown_ca_delegate_certificate: Certificate,
    forged_delegate_certificate: Certificate,
    expired_delegate_certificate: Certificate,
    payload: Vec<u8>,
}

fn build_world(blob_dir: &Path) -> Outcome<World> {
    let vendor_id = identity::vendor_id_from_domain("qemu.imprint.example");
    let class_id = identity::class_id_from_model(vendor_id, "QEMU Reference Board");
    let device_id = identity::device_id_from_chip_uid(class_id, &ChipUid::new(UNIQUE_ID.to_vec())?);
    let update_signer = signer(0x11, "fixture update key");
    let update_certificate = self_signed_certificate(
        &update_signer,
        &CertificateRequest::update_authority("Fixture update", 3650),
    )?;
    let ca_signer = signer(0x33, "fixture CA key");
    let ca_certificate =
        self_signed_certificate(&ca_signer, &CertificateRequest::certificate_authority("Fixture CA", 7300))?;
    let delegate_signer = signer(0x44, "fixture delegate key");
    let delegate_request = CertificateRequest::update_authority("Fixture delegate", 3650);
    let delegate_certificate =
        issue_certificate(&ca_signer, &ca_certificate, &delegate_signer.verifying_key(), &delegate_request)?;
    // A CA the device does not know, under another name, and one that copies the known CA's name.
    let unknown_ca_signer = signer(0x55, "fixture unknown CA key");
    let unknown_ca_certificate = self_signed_certificate(
        &unknown_ca_signer,
        &CertificateRequest::certificate_authority("Unknown CA", 7300),
    )?;
    let unknown_ca_delegate_certificate = issue_certificate(
        &unknown_ca_signer,
        &unknown_ca_certificate,
        &delegate_signer.verifying_key(),
        &delegate_request,
    )?;
    let forger_certificate = self_signed_certificate(
        &unknown_ca_signer,
        &CertificateRequest::certificate_authority("Fixture CA", 7300),
    )?;
    let forged_delegate_certificate = issue_certificate(
        &unknown_ca_signer,
        &forger_certificate,
        &delegate_signer.verifying_key(),
        &delegate_request,
    )?;
    let mut expired_request = CertificateRequest::update_authority("Fixture delegate", 1);
    expired_request.not_before = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    let expired_delegate_certificate =
        issue_certificate(&ca_signer, &ca_certificate, &delegate_signer.verifying_key(), &expired_request)?;
    let payload_path = blob_dir.join("application-1.0.1.bin");
    let payload =
        std::fs::read(&payload_path).map_err(|error| format!("{}: {error}", payload_path.display()))?;
    Ok(World {
        vendor_id,
        class_id,
        device_id,
        update_signer,
        update_certificate,
        other_signer: signer(0x22, "fixture untrusted key"),
        ca_certificate,
        delegate_signer,
        delegate_certificate,
        unknown_ca_delegate_certificate,
        forged_delegate_certificate,
        expired_delegate_certificate,
        payload,
    })
}

impl World {
    fn store(&self, certificate: Option<&Certificate>) -> ConfigStore {
        let mut store = ConfigStore::default();
        store.set(StoreItem::binary(keys::VENDOR_ID, self.vendor_id.as_bytes()));
        store.set(StoreItem::binary(keys::CLASS_ID, self.class_id.as_bytes()));
        store.set(StoreItem::binary(keys::DEVICE_ID, self.device_id.as_bytes()));
        store.set(StoreItem::text(keys::SERIAL_NUMBER, SERIAL));
        store.set(StoreItem::text(keys::MANUFACTURER_NAME, "Imprint Fixture Devices"));
        store.set(StoreItem::text(keys::MODEL_NUMBER, "QEMU Reference Board"));
        store.set(StoreItem::text(keys::FACTORY_APP_VERSION, "1.0.0"));
        if let Some(certificate) = certificate {
            store.set_update_certificate(certificate.der());
        }
        store
    }

    fn manifest_request(&self, version: SemanticVersion) -> ManifestRequest<'_> {
        ManifestRequest::new(
            self.vendor_id,
            self.class_id,
            version,
            &self.payload,
            "file:///application-1.0.1.bin",
        )
    }

    fn manifest(&self, request: &ManifestRequest, signer: &dyn Signer) -> Vec<u8> {
        manifest::create_manifest(request, signer).expect("fixture manifests are valid")
    }

    fn good_manifest(&self) -> Vec<u8> {
        self.manifest(&self.manifest_request(SemanticVersion::new(1, 0, 1)), &self.update_signer)
    }
}

fn encode_store(store: &ConfigStore, chip_uid: &[u8]) -> Vec<u8> {
    let layout = StoreLayout { capacity_bytes: 0xF000, write_alignment_bytes: 4, erased_value: 0xFF };
    store.encode(chip_uid, &layout).expect("the fixture store fits")
}

/// One operation of a case, as both devices execute it.
enum Step {
    /// Erase the sectors covering the file, then program it.
    Program { address: u64, file: String, bytes: Vec<u8> },
    /// Write the mailbox request (and zero the report area).
    Request { nonce: u32 },
    /// Reset and let the device boot; then dump the mailbox and collect console lines.
    Reset,
    /// Read memory for comparison.
    Snapshot { name: String, address: u64, size_bytes: usize },
}

struct Case {
    name: String,
    /// The reason code the contract expects at the first boot (checked against the sim here).
    expected_first_update_status: u32,
    steps: Vec<Step>,
}

fn program(address: u64, file: &str, bytes: Vec<u8>) -> Step {
    Step::Program { address, file: file.to_string(), bytes }
}

fn snapshot(name: &str, address: u64, size_bytes: usize) -> Step {
    Step::Snapshot { name: name.to_string(), address, size_bytes }
}

/// The station's flashing, then the candidate, a request and a reset; then the snapshots.
fn case_with(
    name: &str,
    expected: u32,
    store: Vec<u8>,
    candidate: Option<Vec<u8>>,
    extra: Vec<Step>,
) -> Case {
    let mut steps = vec![program(0x001E_0000, "store.bin", store)];
    if let Some(candidate) = candidate {
        steps.push(program(0x0010_0000, "candidate.bin", contract::pad_to_alignment(&candidate, 4, 0xFF)));
    }
    steps.push(Step::Request { nonce: NONCE });
    steps.push(Step::Reset);
    steps.extend(extra);
    steps.push(snapshot("application-head", 0x0002_0000, 0x4000));
    steps.push(snapshot("boot-state", 0x001E_F000, 64));
    steps.push(snapshot("candidate-head", 0x0010_0000, 64));
    Case { name: name.to_string(), expected_first_update_status: expected, steps }
}

/// Flips one bit inside the first occurrence of `needle` in `bytes` (at `offset` within it).
fn flip_inside(bytes: &[u8], needle: &[u8], offset: usize) -> Vec<u8> {
    let position =
        bytes.windows(needle.len()).position(|window| window == needle).expect("needle is present");
    let mut flipped = bytes.to_vec();
    flipped[position + offset] ^= 0x01;
    flipped
}

/// The manifest with its `payload-format` ENUMERATED (`0A 01 01`, raw-binary) set to `format`,
/// re-signed by `signer` (the raw r||s signature is the last 64 bytes of the SignedResource).
fn with_payload_format(manifest_der: &[u8], format: u8, signer: &dyn Signer) -> Vec<u8> {
    let signed_bytes = manifest::decode_manifest(manifest_der).expect("a valid manifest").signed_bytes;
    let manifest_start = manifest_der
        .windows(signed_bytes.len())
        .position(|window| window == signed_bytes.as_slice())
        .expect("the Manifest is inside the SignedResource");
    let mut modified = manifest_der.to_vec();
    let format_offset = flip_target(&signed_bytes, &[0x0A, 0x01, 0x01]) + 2;
    modified[manifest_start + format_offset] = format;
    let new_signed_bytes = &modified[manifest_start..manifest_start + signed_bytes.len()];
    let digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        new_signed_bytes,
    ))
    .into();
    let signature = signer.sign_digest(&digest).expect("the fixture key signs").to_bytes();
    let signature_start = modified.len() - 64;
    modified[signature_start..].copy_from_slice(&signature);
    modified
}

/// Offset of the only occurrence of `needle` in `bytes`.
fn flip_target(bytes: &[u8], needle: &[u8]) -> usize {
    let mut positions = bytes.windows(needle.len()).enumerate().filter(|(_, window)| *window == needle);
    let (position, _) = positions.next().expect("needle is present");
    assert!(positions.next().is_none(), "needle {needle:02x?} is not unique");
    position
}

fn cases(world: &World) -> Vec<Case> {
    let direct_store = encode_store(&world.store(Some(&world.update_certificate)), &UNIQUE_ID);
    let ca_store = encode_store(&world.store(Some(&world.ca_certificate)), &UNIQUE_ID);
    let good_manifest = world.good_manifest();
    let good_candidate = contract::encode_candidate(&good_manifest, None, &world.payload);
    let candidate = |manifest: &[u8]| Some(contract::encode_candidate(manifest, None, &world.payload));
    let mut cases = Vec::new();

    cases.push(case_with("no-candidate", 0x00, direct_store.clone(), None, vec![]));
    cases.push(case_with(
        "installed",
        0x01,
        direct_store.clone(),
        Some(good_candidate.clone()),
        vec![
            // The next boot finds no candidate and runs the new application.
            Step::Request { nonce: SECOND_NONCE },
            Step::Reset,
            // The same candidate staged again is now a rollback (boot state says 1.0.1).
            program(0x0010_0000, "candidate.bin", contract::pad_to_alignment(&good_candidate, 4, 0xFF)),
            Step::Request { nonce: NONCE },
            Step::Reset,
        ],
    ));

    // Signature and signed fields.
    let mut bad_signature = good_manifest.clone();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    cases.push(case_with("bad-signature", 0x14, direct_store.clone(), candidate(&bad_signature), vec![]));
    let signed_fields: [(&str, Vec<u8>, usize); 5] = [
        ("vendor-id", world.vendor_id.as_bytes().to_vec(), 3),
        ("class-id", world.class_id.as_bytes().to_vec(), 9),
        ("payload-version", b"1.0.1".to_vec(), 4),
        ("payload-uri", b"file:///application".to_vec(), 10),
        ("component-name", b"MAIN".to_vec(), 0),
    ];
    for (field, needle, offset) in signed_fields {
        let flipped = flip_inside(&good_manifest, &needle, offset);
        cases.push(case_with(
            &format!("flipped-{field}"),
            0x14,
            direct_store.clone(),
            candidate(&flipped),
            vec![],
        ));
    }
    let payload_digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &world.payload,
    ))
    .into();
    let flipped_digest = flip_inside(&good_manifest, &payload_digest, 17);
    cases.push(case_with(
        "flipped-payload-digest",
        0x14,
        direct_store.clone(),
        candidate(&flipped_digest),
        vec![],
    ));
    let untrusted =
        world.manifest(&world.manifest_request(SemanticVersion::new(1, 0, 1)), &world.other_signer);
    cases.push(case_with("untrusted-key", 0x14, direct_store.clone(), candidate(&untrusted), vec![]));
    let bad_installed_signer = BadInstalledSignatureSigner {
        inner: signer(0x11, "fixture update key"),
        calls: std::sync::atomic::AtomicU32::new(0),
    };
    let bad_installed =
        world.manifest(&world.manifest_request(SemanticVersion::new(1, 0, 1)), &bad_installed_signer);
    cases.push(case_with(
        "installed-signature-invalid",
        0x1C,
        direct_store.clone(),
        candidate(&bad_installed),
        vec![],
    ));

    // Payload formats the station cannot make: the good manifest with payload-format rewritten
    // in place (same length) and the outer signature made again over the new bytes.
    for (name, format, expected) in [
        ("payload-format-combined", 6u8, 0x1B),
        ("payload-format-patch-without-metadata", 5, 0x14),
        ("payload-format-unknown", 7, 0x11),
    ] {
        let manifest = with_payload_format(&good_manifest, format, &world.update_signer);
        cases.push(case_with(name, expected, direct_store.clone(), candidate(&manifest), vec![]));
    }

    // Identity.
    let mut request = world.manifest_request(SemanticVersion::new(1, 0, 1));
    request.vendor_id = uuid::Uuid::from_bytes([0x5A; 16]);
    let wrong_vendor = world.manifest(&request, &world.update_signer);
    cases.push(case_with("wrong-vendor-id", 0x15, direct_store.clone(), candidate(&wrong_vendor), vec![]));
    let mut request = world.manifest_request(SemanticVersion::new(1, 0, 1));
    request.class_id = uuid::Uuid::from_bytes([0xC1; 16]);
    let wrong_class = world.manifest(&request, &world.update_signer);
    cases.push(case_with("wrong-class-id", 0x16, direct_store.clone(), candidate(&wrong_class), vec![]));

    // Payload.
    let mut tampered_payload = world.payload.clone();
    tampered_payload[100] ^= 0x80;
    cases.push(case_with(
        "payload-digest-mismatch",
        0x18,
        direct_store.clone(),
        Some(contract::encode_candidate(&good_manifest, None, &tampered_payload)),
        vec![],
    ));
    let short_payload = &world.payload[..world.payload.len() - 1];
    cases.push(case_with(
        "payload-one-short",
        0x17,
        direct_store.clone(),
        Some(contract::encode_candidate(&good_manifest, None, short_payload)),
        vec![],
    ));
    let mut long_payload = world.payload.clone();
    long_payload.push(0);
    cases.push(case_with(
        "payload-one-long",
        0x17,
        direct_store.clone(),
        Some(contract::encode_candidate(&good_manifest, None, &long_payload)),
        vec![],
    ));
    let huge_payload = vec![0x5Au8; 0xE_0004];
    let huge_request = ManifestRequest::new(
        world.vendor_id,
        world.class_id,
        SemanticVersion::new(1, 0, 1),
        &huge_payload,
        "file:///huge.bin",
    );
    let huge_manifest = world.manifest(&huge_request, &world.update_signer);
    let mut huge_candidate = contract::encode_candidate(&huge_manifest, None, &huge_payload);
    huge_candidate.truncate(0xE_0000);
    cases.push(case_with(
        "payload-larger-than-slot",
        0x19,
        direct_store.clone(),
        Some(huge_candidate),
        vec![],
    ));

    // Manifest shape and candidate header.
    let mut truncated =
        contract::encode_candidate(&good_manifest[..good_manifest.len() - 10], None, &world.payload);
    truncated[8..12].copy_from_slice(&((good_manifest.len() - 10) as u32).to_le_bytes());
    cases.push(case_with("truncated-manifest", 0x11, direct_store.clone(), Some(truncated), vec![]));
    let mut manifest_past_slot = good_candidate.clone();
    manifest_past_slot[8..12].copy_from_slice(&0x00F0_0000u32.to_le_bytes());
    cases.push(case_with("manifest-past-slot", 0x11, direct_store.clone(), Some(manifest_past_slot), vec![]));
    let garbage: Vec<u8> = (0..64u32).map(|index| (index * 37 + 11) as u8).collect();
    cases.push(case_with("candidate-garbage", 0x10, direct_store.clone(), Some(garbage), vec![]));
    let mut wrong_header_version = good_candidate.clone();
    wrong_header_version[4] = 2;
    cases.push(case_with(
        "candidate-header-version",
        0x10,
        direct_store.clone(),
        Some(wrong_header_version),
        vec![],
    ));

    // Version policy.
    for (name, version) in
        [("version-equal", SemanticVersion::new(1, 0, 0)), ("version-older", SemanticVersion::new(0, 9, 9))]
    {
        let manifest = world.manifest(&world.manifest_request(version), &world.update_signer);
        cases.push(case_with(name, 0x1A, direct_store.clone(), candidate(&manifest), vec![]));
    }

    // Store.
    let mut corrupt_store = direct_store.clone();
    corrupt_store[40] ^= 0x04;
    cases.push(case_with("store-corrupt", 0x12, corrupt_store.clone(), Some(good_candidate.clone()), vec![]));
    cases.push(case_with("store-corrupt-no-candidate", 0x00, corrupt_store, None, vec![]));
    let other_chip_store = encode_store(&world.store(Some(&world.update_certificate)), &[0x99; 12]);
    cases.push(case_with(
        "store-for-another-chip",
        0x12,
        other_chip_store,
        Some(good_candidate.clone()),
        vec![],
    ));
    let no_certificate_store = encode_store(&world.store(None), &UNIQUE_ID);
    cases.push(case_with(
        "certificate-missing",
        0x13,
        no_certificate_store,
        Some(good_candidate.clone()),
        vec![],
    ));
    let mut no_vendor = world.store(Some(&world.update_certificate));
    no_vendor.items.retain(|item| item.key != keys::VENDOR_ID.as_bytes());
    cases.push(case_with(
        "store-without-vendor-id",
        0x12,
        encode_store(&no_vendor, &UNIQUE_ID),
        Some(good_candidate.clone()),
        vec![],
    ));

    // Trust delegation.
    let delegate_manifest =
        world.manifest(&world.manifest_request(SemanticVersion::new(1, 0, 1)), &world.delegate_signer);
    let delegated = |certificate: &Certificate, manifest: &[u8]| {
        Some(contract::encode_candidate(manifest, Some(certificate.der()), &world.payload))
    };
    cases.push(case_with(
        "delegate-installed",
        0x01,
        ca_store.clone(),
        delegated(&world.delegate_certificate, &delegate_manifest),
        vec![],
    ));
    cases.push(case_with("delegate-missing", 0x1D, ca_store.clone(), candidate(&delegate_manifest), vec![]));
    cases.push(case_with(
        "delegate-from-unknown-ca",
        0x1E,
        ca_store.clone(),
        delegated(&world.unknown_ca_delegate_certificate, &delegate_manifest),
        vec![],
    ));
    cases.push(case_with(
        "delegate-forged-issuer-name",
        0x1E,
        ca_store.clone(),
        delegated(&world.forged_delegate_certificate, &delegate_manifest),
        vec![],
    ));
    cases.push(case_with(
        "delegate-expired",
        0x1E,
        ca_store.clone(),
        delegated(&world.expired_delegate_certificate, &delegate_manifest),
        vec![],
    ));
    cases.push(case_with(
        "delegate-did-not-sign",
        0x14,
        ca_store.clone(),
        delegated(&world.delegate_certificate, &good_manifest),
        vec![],
    ));
    let oversized_delegate = vec![0x30u8; 20 * 1024];
    cases.push(case_with(
        "delegate-oversized",
        0x1E,
        ca_store.clone(),
        Some(contract::encode_candidate(&delegate_manifest, Some(&oversized_delegate), &world.payload)),
        vec![],
    ));
    let mut garbage_delegate = world.delegate_certificate.der().to_vec();
    garbage_delegate.truncate(garbage_delegate.len() - 3);
    cases.push(case_with(
        "delegate-not-der",
        0x1E,
        ca_store,
        Some(contract::encode_candidate(&delegate_manifest, Some(&garbage_delegate), &world.payload)),
        vec![],
    ));
    cases
}

/// The steps every case starts with: bootloader and factory application.
fn base_steps(blob_dir: &Path) -> Outcome<Vec<Step>> {
    let read = |name: &str| -> Outcome<Vec<u8>> {
        let path = blob_dir.join(name);
        std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()).into())
    };
    Ok(vec![
        program(0x0000_0000, "../bootloader.bin", read("bootloader.bin")?),
        program(0x0002_0000, "../application-1.0.0.bin", read("application-1.0.0.bin")?),
    ])
}

fn run_case(case_dir: &Path, base: &[Step], case: &Case) -> Outcome<u32> {
    let memory = memory_map();
    let device = SimDevice::new(&memory, UNIQUE_ID.to_vec());
    let mut target =
        SimTarget::new(device, "mps2-an385", "fixture", SimTiming::default(), FaultPlan::default());
    let mut script = String::new();
    writeln!(script, "# {}: written by examples/firmware_fixture.rs", case.name)?;
    writeln!(script, "uid {:#010x} ../uid.bin", UNIQUE_ID_ADDRESS)?;
    let mut boot_count = 0;
    let mut first_status = None;
    for step in base.iter().chain(&case.steps) {
        match step {
            Step::Program { address, file, bytes } => {
                if !file.starts_with("../") {
                    std::fs::write(case_dir.join(file), bytes)?;
                }
                let region = memory.flash_region_at(*address).ok_or("program outside flash")?;
                let (erase_start, erase_size) = region.sectors_covering(*address, bytes.len() as u64);
                target.erase_flash(erase_start, erase_size, &mut |_| {})?;
                target.program_flash(*address, bytes, &mut |_| {})?;
                writeln!(script, "program {address:#010x} {file}")?;
            }
            Step::Request { nonce } => {
                target
                    .write_ram(memory.mailbox.address, &MailboxRequest { nonce: *nonce }.encode_mailbox())?;
                writeln!(script, "request {nonce:#010x}")?;
            }
            Step::Reset => {
                boot_count += 1;
                target.reset_and_run()?;
                let mut mailbox = vec![0u8; contract::MAILBOX_SIZE_BYTES];
                target.read_memory(memory.mailbox.address, &mut mailbox)?;
                std::fs::write(case_dir.join(format!("boot-{boot_count}.mailbox.sim.bin")), &mailbox)?;
                let lines = target.take_console_lines().unwrap_or_default();
                let report_lines: Vec<&String> =
                    lines.iter().filter(|line| line.starts_with("IMPRINT-REPORT ")).collect();
                let console: String = report_lines.iter().map(|line| format!("{line}\n")).collect();
                std::fs::write(case_dir.join(format!("boot-{boot_count}.console.sim.txt")), console)?;
                if first_status.is_none() {
                    let report = contract::SelfTestReport::decode_mailbox(&mailbox).ok_or("no report")?;
                    first_status = Some(report.update_status.code());
                }
                writeln!(script, "reset boot-{boot_count}")?;
            }
            Step::Snapshot { name, address, size_bytes } => {
                let mut bytes = vec![0u8; *size_bytes];
                target.read_memory(*address, &mut bytes)?;
                std::fs::write(case_dir.join(format!("{name}.sim.bin")), &bytes)?;
                writeln!(script, "snapshot {address:#010x} {size_bytes:#x} {name}")?;
            }
        }
    }
    std::fs::write(case_dir.join("steps.txt"), script)?;
    first_status.ok_or_else(|| "the case never resets".into())
}

fn main() -> Outcome<()> {
    let mut arguments = std::env::args().skip(1);
    let out_dir = PathBuf::from(arguments.next().ok_or("usage: firmware_fixture OUT_DIR [BLOB_DIR]")?);
    let blob_dir = arguments
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-blobs/mps2-an385"));
    std::fs::create_dir_all(&out_dir)?;
    for name in ["bootloader.bin", "application-1.0.0.bin", "application-1.0.1.bin"] {
        std::fs::copy(blob_dir.join(name), out_dir.join(name))?;
    }
    std::fs::write(out_dir.join("uid.bin"), UNIQUE_ID)?;
    let world = build_world(&blob_dir)?;
    let base = base_steps(&blob_dir)?;
    let mut mismatches = 0;
    for case in cases(&world) {
        let case_dir = out_dir.join(&case.name);
        std::fs::create_dir_all(&case_dir)?;
        let status = run_case(&case_dir, &base, &case)?;
        let verdict = if status == case.expected_first_update_status { "ok" } else { "UNEXPECTED" };
        if status != case.expected_first_update_status {
            mismatches += 1;
        }
        println!(
            "{:<32} sim update={status:#04x} expected={:#04x} {verdict}",
            case.name, case.expected_first_update_status
        );
    }
    if mismatches > 0 {
        return Err(format!("{mismatches} cases gave an unexpected reason code on the sim").into());
    }
    Ok(())
}
