//! Stage two of profile loading: check everything in [`super::raw::RawProfile`] and load what it
//! points at, collecting every problem (file + field + what was expected) instead of stopping at
//! the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::raw::{
    RawDeviceIdentity, RawFlashRegion, RawImage, RawProfile, RawRegisterStep, RawSigningKey, RawSpan,
};
use super::{
    ChipTargetDescription, DeviceIdentitySettings, FlashRegion, KeyOrigin, LockSettings, MemoryMap, Profile,
    RamSpan, ReportChannel, SelfTestSettings, SimTiming, SkippableStep, SubjectCommonName,
    check_endpoint_template, expand_endpoint_template,
};
use crate::device::probe_rs::chip::ChipIdCheck;
use crate::device::probe_rs::lock::{LockRecipe, LockStateCheck, RegisterStep, UnlockMethod};
use crate::image::{FirmwareImage, ImageFormat};
use crate::ledger::{ReworkPolicy, SerialScheme};
use crate::manifest::SemanticVersion;
use crate::trust::{self, Certificate, Signer};

/// One thing wrong with a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileProblem {
    /// The file the problem is in (the profile, or a file it names).
    pub file: PathBuf,
    /// The profile field, dotted (`memory.config.sector_size`).
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl std::fmt::Display for ProfileProblem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}: {}", self.file.display(), self.field, self.message)
    }
}

/// Every problem found in a profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProfileError {
    /// The problems, in the order the fields appear.
    pub problems: Vec<ProfileProblem>,
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.problems.len();
        write!(formatter, "profile has {count} problem{}", if count == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(formatter, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Collects problems while validating.
struct Checker {
    profile_path: PathBuf,
    problems: Vec<ProfileProblem>,
}

impl Checker {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(ProfileProblem {
            file: self.profile_path.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn problem_in(&mut self, file: &Path, field: &str, message: impl Into<String>) {
        self.problems.push(ProfileProblem {
            file: file.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        });
    }
}

pub(super) fn load(path: &Path) -> Result<Profile, ProfileError> {
    let single = |field: &str, message: String| ProfileError {
        problems: vec![ProfileProblem { file: path.to_path_buf(), field: field.to_string(), message }],
    };
    let bytes =
        std::fs::read(path).map_err(|error| single("(file)", format!("cannot read the profile: {error}")))?;
    parse(&bytes, path)
}

/// Validates a profile's bytes as if read from `path`: problems name `path`, and the files the
/// profile points at are resolved against `path`'s directory. Nothing is read at `path` itself.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Profile, ProfileError> {
    let single = |field: &str, message: String| ProfileError {
        problems: vec![ProfileProblem { file: path.to_path_buf(), field: field.to_string(), message }],
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| single("(file)", "expected UTF-8 TOML text".to_string()))?;
    let raw: RawProfile = toml::from_str(text).map_err(|error| {
        let location =
            error.span().map(|span| line_of(text, span.start)).map(|line| format!(" (line {line})"));
        single("(toml)", format!("{}{}", error.message(), location.unwrap_or_default()))
    })?;
    let mut checker = Checker { profile_path: path.to_path_buf(), problems: Vec::new() };
    let base_directory = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let profile = validate(raw, &base_directory, &mut checker, Sha256::digest(bytes).into());
    match profile {
        Some(profile) if checker.problems.is_empty() => Ok(profile),
        _ => Err(ProfileError { problems: checker.problems }),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn validate(raw: RawProfile, base: &Path, checker: &mut Checker, file_sha256: [u8; 32]) -> Option<Profile> {
    let mut warnings = Vec::new();
    require_text(checker, "product.name", &raw.product.name);
    require_text(checker, "product.manufacturer", &raw.product.manufacturer);
    require_text(checker, "product.model_name", &raw.product.model_name);
    require_text(checker, "chip.name", &raw.chip.name);

    let memory = check_memory(&raw, checker);
    let unique_id_location = raw.chip.unique_id.as_ref().map(|span| {
        let location = check_span(checker, "chip.unique_id", span);
        if !(1..=64).contains(&location.size_bytes) {
            checker.problem(
                "chip.unique_id.size",
                format!("expected 1 to 64 bytes, found {}", location.size_bytes),
            );
        }
        location
    });
    let chip_target_description = check_target_description(&raw, base, checker);
    let chip_id_check = check_id_register(&raw, checker);
    let lock_recipe = check_lock_recipe(&raw, checker);

    let bootloader_image = load_image(checker, base, "images.bootloader", &raw.images.bootloader);
    let application_image = load_image(checker, base, "images.application", &raw.images.application);
    if let (Some(memory), Some(image)) = (&memory, &bootloader_image) {
        check_image_placement(checker, "images.bootloader", image, &memory.bootloader);
    }
    if let (Some(memory), Some(image)) = (&memory, &application_image) {
        check_image_placement(checker, "images.application", image, &memory.application);
    }
    let application_version = match &raw.images.application.version {
        Some(text) => parse_version(checker, "images.application.version", text),
        None => {
            checker
                .problem("images.application.version", "expected the application's version, e.g. \"1.0.0\"");
            None
        }
    };

    let vendor_id = match (&raw.identity.vendor_id, &raw.identity.vendor_domain) {
        (Some(text), None) => parse_uuid(checker, "identity.vendor_id", text),
        (None, Some(domain)) if !domain.trim().is_empty() => {
            Some(crate::identity::vendor_id_from_domain(domain))
        }
        (Some(_), Some(_)) => {
            checker.problem("identity", "give either vendor_id or vendor_domain, not both");
            None
        }
        _ => {
            checker.problem(
                "identity.vendor_domain",
                "expected vendor_domain (e.g. \"example.com\") or vendor_id",
            );
            None
        }
    };
    let class_id = match (&raw.identity.class_id, vendor_id) {
        (Some(text), _) => parse_uuid(checker, "identity.class_id", text),
        (None, Some(vendor_id)) => {
            Some(crate::identity::class_id_from_model(vendor_id, &raw.product.model_name))
        }
        (None, None) => None,
    };

    let (serial_scheme, rework_policy) = check_serial(&raw, checker);
    let trust = check_trust(&raw, base, checker, &mut warnings);

    let payload = load_image(checker, base, "self_test.payload", &raw.self_test.payload);
    let payload_version = match &raw.self_test.payload.version {
        Some(text) => parse_version(checker, "self_test.payload.version", text),
        None => {
            checker.problem(
                "self_test.payload.version",
                "expected the self-test payload's version, e.g. \"1.0.1\"",
            );
            None
        }
    };
    if let (Some(payload_version), Some(application_version)) = (payload_version, application_version)
        && payload_version <= application_version
    {
        checker.problem(
            "self_test.payload.version",
            format!("expected a version newer than the application's {application_version}, found {payload_version}"),
        );
    }
    if let (Some(memory), Some(payload)) = (&memory, &payload)
        && payload.start_address() != memory.application.address
    {
        checker.problem(
            "self_test.payload",
            format!(
                "expected the payload to start at the application slot {:#x} (the device installs it there), found {:#x}",
                memory.application.address,
                payload.start_address()
            ),
        );
    }
    if let (Some(memory), Some(payload)) = (&memory, &payload) {
        let room = memory.candidate.size_bytes.min(memory.application.size_bytes);
        if payload.size_bytes() + 4096 > room {
            checker.problem(
                "self_test.payload",
                format!(
                    "payload of {} bytes does not fit the candidate and application slots ({} bytes, less room for the manifest)",
                    payload.size_bytes(),
                    room
                ),
            );
        }
    }
    let report_channel = match raw.self_test.report.as_deref().unwrap_or("mailbox") {
        "mailbox" => Some(ReportChannel::Mailbox),
        "console" => Some(ReportChannel::Console),
        other => {
            checker.problem(
                "self_test.report",
                format!("expected \"mailbox\" or \"console\", found \"{other}\""),
            );
            None
        }
    };
    let report_timeout_ms = raw.self_test.report_timeout_ms.unwrap_or(5_000);
    if report_timeout_ms == 0 {
        checker.problem("self_test.report_timeout_ms", "expected a timeout above 0 ms");
    }

    let mut skipped_steps = Vec::new();
    for (index, name) in raw.steps.skip.iter().enumerate() {
        match SkippableStep::from_name(name) {
            Some(step) => skipped_steps.push(step),
            None => checker.problem(
                &format!("steps.skip[{index}]"),
                format!("expected one of \"self-test\", \"negative-self-test\", \"lock\", found \"{name}\""),
            ),
        }
    }
    let lock = LockSettings {
        enabled: raw.lock.enabled.unwrap_or(true) && !skipped_steps.contains(&SkippableStep::Lock),
        allow_unlock_by_mass_erase: raw.lock.allow_unlock_by_mass_erase.unwrap_or(false),
    };
    let sim_timing = check_sim_timing(&raw, checker);
    let device_identity = raw.device_identity.as_ref().map(|raw_identity| {
        check_device_identity(
            raw_identity,
            base,
            checker,
            &mut warnings,
            memory.as_ref(),
            serial_scheme.as_ref(),
        )
    });
    let default_fixture = check_default_fixture(&raw, checker);

    let (update_certificate, signer, delegate_certificate) = trust?;
    Some(Profile {
        path: checker.profile_path.clone(),
        file_sha256,
        name: raw.product.name,
        manufacturer: raw.product.manufacturer,
        model_name: raw.product.model_name,
        device_type: raw.product.device_type,
        hardware_version: raw.product.hardware_version,
        chip_name: raw.chip.name,
        unique_id_location,
        chip_target_description,
        chip_id_check,
        lock_recipe,
        memory: memory?,
        bootloader_image: bootloader_image?,
        application_image: application_image?,
        application_version: application_version?,
        vendor_id: vendor_id?,
        class_id: class_id?,
        serial_scheme: serial_scheme?,
        rework_policy: rework_policy?,
        update_certificate,
        delegate_certificate,
        signer,
        self_test: SelfTestSettings {
            payload: payload?,
            payload_version: payload_version?,
            report_channel: report_channel?,
            report_timeout_ms,
        },
        lock,
        skipped_steps,
        sim_timing,
        default_fixture,
        warnings,
        device_identity: match device_identity {
            Some(checked) => Some(checked?),
            None => None,
        },
    })
}

fn require_text(checker: &mut Checker, field: &str, value: &str) {
    if value.trim().is_empty() {
        checker.problem(field, "expected a non-empty text");
    }
}

fn parse_uuid(checker: &mut Checker, field: &str, text: &str) -> Option<uuid::Uuid> {
    match crate::identity::parse_uuid(text, field) {
        Ok(uuid) => Some(uuid),
        Err(error) => {
            checker.problem(field, error.to_string());
            None
        }
    }
}

fn parse_version(checker: &mut Checker, field: &str, text: &str) -> Option<SemanticVersion> {
    match text.parse::<SemanticVersion>() {
        Ok(version) => Some(version),
        Err(_) => {
            checker.problem(field, format!("expected a version \"major.minor.patch\", found \"{text}\""));
            None
        }
    }
}

fn check_span(checker: &mut Checker, field: &str, span: &RawSpan) -> RamSpan {
    if span.size == 0 {
        checker.problem(&format!("{field}.size"), "expected a size above 0");
    }
    if span.address.checked_add(span.size).is_none() {
        checker.problem(field, "address + size overflows");
    }
    RamSpan { address: span.address, size_bytes: span.size }
}

fn check_flash_region(
    checker: &mut Checker,
    field: &str,
    raw: &RawFlashRegion,
    chip_flash: &RamSpan,
) -> FlashRegion {
    let region = FlashRegion {
        address: raw.address,
        size_bytes: raw.size,
        sector_size_bytes: raw.sector_size,
        write_alignment_bytes: raw.write_alignment,
        erased_value: raw.erased_value,
    };
    if raw.sector_size == 0 || !raw.sector_size.is_power_of_two() {
        checker.problem(
            &format!("{field}.sector_size"),
            format!("expected a power of two, found {}", raw.sector_size),
        );
        return region;
    }
    if raw.write_alignment == 0
        || !raw.write_alignment.is_power_of_two()
        || raw.write_alignment > raw.sector_size
    {
        checker.problem(
            &format!("{field}.write_alignment"),
            format!("expected a power of two no larger than the sector size, found {}", raw.write_alignment),
        );
    }
    if raw.erased_value != 0xFF && raw.erased_value != 0x00 {
        checker.problem(
            &format!("{field}.erased_value"),
            format!("expected 0xFF or 0x00 (NOR flash), found {:#04x}", raw.erased_value),
        );
    }
    if !raw.address.is_multiple_of(raw.sector_size) {
        checker.problem(
            &format!("{field}.address"),
            format!(
                "expected a multiple of the sector size {:#x}, found {:#x}",
                raw.sector_size, raw.address
            ),
        );
    }
    if raw.size == 0 || !raw.size.is_multiple_of(raw.sector_size) {
        checker.problem(
            &format!("{field}.size"),
            format!(
                "expected a non-zero multiple of the sector size {:#x}, found {:#x}",
                raw.sector_size, raw.size
            ),
        );
    }
    let end = raw.address.checked_add(raw.size);
    if raw.address < chip_flash.address
        || end.is_none_or(|end| end > chip_flash.address + chip_flash.size_bytes)
    {
        checker.problem(
            field,
            format!(
                "region {:#x}..{:#x} is outside the chip's flash {:#x}..{:#x}",
                raw.address,
                end.unwrap_or(u64::MAX),
                chip_flash.address,
                chip_flash.address + chip_flash.size_bytes
            ),
        );
    }
    region
}

fn check_memory(raw: &RawProfile, checker: &mut Checker) -> Option<MemoryMap> {
    let chip_flash = check_span(checker, "chip.flash", &raw.chip.flash);
    let chip_ram = check_span(checker, "chip.ram", &raw.chip.ram);
    let problems_before = checker.problems.len();
    let memory = MemoryMap {
        chip_flash,
        chip_ram,
        bootloader: check_flash_region(checker, "memory.bootloader", &raw.memory.bootloader, &chip_flash),
        application: check_flash_region(checker, "memory.application", &raw.memory.application, &chip_flash),
        candidate: check_flash_region(checker, "memory.candidate", &raw.memory.candidate, &chip_flash),
        config: check_flash_region(checker, "memory.config", &raw.memory.config, &chip_flash),
        mailbox: check_span(checker, "memory.mailbox", &raw.memory.mailbox),
    };
    let regions = memory.flash_regions();
    for (index, (first_name, first)) in regions.iter().enumerate() {
        for (second_name, second) in &regions[index + 1..] {
            if first.address < second.end_address() && second.address < first.end_address() {
                checker.problem(
                    &format!("memory.{second_name}"),
                    format!(
                        "overlaps memory.{first_name} ({:#x}..{:#x} and {:#x}..{:#x})",
                        first.address,
                        first.end_address(),
                        second.address,
                        second.end_address()
                    ),
                );
            }
        }
    }
    if memory.config.sector_size_bytes != 0 && memory.config.size_bytes < 2 * memory.config.sector_size_bytes
    {
        checker.problem(
            "memory.config.size",
            "expected at least two sectors (the store, and the bootloader's boot-state sector)",
        );
    }
    let mailbox_end = memory.mailbox.address.saturating_add(memory.mailbox.size_bytes);
    if memory.mailbox.address < chip_ram.address
        || mailbox_end > chip_ram.address.saturating_add(chip_ram.size_bytes)
    {
        checker.problem("memory.mailbox", "expected the mailbox inside the chip's RAM");
    }
    if memory.mailbox.size_bytes < crate::contract::MAILBOX_SIZE_BYTES as u64 {
        checker.problem(
            "memory.mailbox.size",
            format!(
                "expected at least {} bytes (device contract), found {}",
                crate::contract::MAILBOX_SIZE_BYTES,
                memory.mailbox.size_bytes
            ),
        );
    }
    (checker.problems.len() == problems_before).then_some(memory)
}

fn resolve(base: &Path, relative: &str) -> PathBuf {
    base.join(relative)
}

fn load_image(checker: &mut Checker, base: &Path, field: &str, raw: &RawImage) -> Option<FirmwareImage> {
    let path = resolve(base, &raw.path);
    let format = match raw.format.as_deref() {
        Some("elf") => Some(ImageFormat::Elf),
        Some("hex") => Some(ImageFormat::IntelHex),
        Some("bin") => Some(ImageFormat::Bin),
        Some(other) => {
            checker.problem(
                &format!("{field}.format"),
                format!("expected \"elf\", \"hex\" or \"bin\", found \"{other}\""),
            );
            return None;
        }
        None => ImageFormat::from_path(&path),
    };
    let Some(format) = format else {
        checker.problem(
            &format!("{field}.format"),
            "cannot tell the format from the file name: give format = \"elf\", \"hex\" or \"bin\"",
        );
        return None;
    };
    match FirmwareImage::load(&path, format, raw.base_address) {
        Ok(image) => Some(image),
        Err(error) => {
            checker.problem_in(&path, field, error.to_string());
            None
        }
    }
}

fn check_image_placement(checker: &mut Checker, field: &str, image: &FirmwareImage, region: &FlashRegion) {
    if let Err(error) = image.check_inside(region.address, region.size_bytes) {
        checker.problem(field, error.to_string());
        return;
    }
    if let Some(segment) =
        image.segments.iter().find(|segment| segment.address % region.write_alignment_bytes != 0)
    {
        checker.problem(
            field,
            format!(
                "segment at {:#x} is not aligned to the region's write alignment of {} bytes",
                segment.address, region.write_alignment_bytes
            ),
        );
    }
}

fn check_serial(raw: &RawProfile, checker: &mut Checker) -> (Option<SerialScheme>, Option<ReworkPolicy>) {
    let scheme = match raw.serial.scheme.as_str() {
        "counter" => match (&raw.serial.prefix, raw.serial.counter_width) {
            (Some(prefix), Some(counter_width)) if (1..=19).contains(&counter_width) => {
                Some(SerialScheme::Counter {
                    prefix: prefix.clone(),
                    counter_width,
                    first_value: raw.serial.first_value.unwrap_or(1),
                })
            }
            (Some(_), Some(width)) => {
                checker.problem("serial.counter_width", format!("expected 1 to 19 digits, found {width}"));
                None
            }
            (None, _) => {
                checker.problem("serial.prefix", "expected a prefix for the counter scheme (may be \"\")");
                None
            }
            (_, None) => {
                checker.problem("serial.counter_width", "expected the number of counter digits");
                None
            }
        },
        "scanned" => Some(SerialScheme::Scanned),
        other => {
            checker
                .problem("serial.scheme", format!("expected \"counter\" or \"scanned\", found \"{other}\""));
            None
        }
    };
    let rework = match raw.serial.rework.as_deref().unwrap_or("reuse-identity") {
        "reuse-identity" => Some(ReworkPolicy::ReuseIdentity),
        "refuse" => Some(ReworkPolicy::Refuse),
        "issue-new" => Some(ReworkPolicy::IssueNew),
        other => {
            checker.problem(
                "serial.rework",
                format!("expected \"reuse-identity\", \"refuse\" or \"issue-new\", found \"{other}\""),
            );
            None
        }
    };
    (scheme, rework)
}

fn check_trust(
    raw: &RawProfile,
    base: &Path,
    checker: &mut Checker,
    warnings: &mut Vec<String>,
) -> Option<(Certificate, Arc<dyn Signer>, Option<Certificate>)> {
    let (certificate_path, key_source) = match (
        &raw.trust.manifest_dev_tool,
        &raw.trust.certificate,
        &raw.trust.signing_key,
    ) {
        (Some(directory), None, None) => match trust::import_manifest_dev_tool_env(&resolve(base, directory))
        {
            Ok(environment) => {
                (environment.certificate_path, Some(KeySource::File(environment.signing_key_path)))
            }
            Err(error) => {
                checker.problem("trust.manifest_dev_tool", error.to_string());
                return None;
            }
        },
        (None, Some(certificate), Some(key)) => {
            (resolve(base, certificate), key_source(key, base, checker, "trust.signing_key"))
        }
        _ => {
            checker.problem(
                "trust",
                "expected either certificate + signing_key, or manifest_dev_tool (a manifest-dev-tool init directory)",
            );
            return None;
        }
    };
    let certificate = match Certificate::load(&certificate_path) {
        Ok(certificate) => Some(certificate),
        Err(error) => {
            checker.problem_in(&certificate_path, "trust.certificate", error.to_string());
            None
        }
    };
    if let Some(certificate) = &certificate
        && let Err(error) = certificate.verifying_key()
    {
        checker.problem_in(&certificate_path, "trust.certificate", error.to_string());
    }
    // A certificate outside its validity period would be injected into every unit; refuse it.
    let now = std::time::SystemTime::now();
    if let Some(certificate) = &certificate
        && (certificate.not_after() < now || certificate.not_before() > now)
    {
        checker.problem_in(
            &certificate_path,
            "trust.certificate",
            format!(
                "expected a certificate valid now, found one valid from {} to {}",
                time::OffsetDateTime::from(certificate.not_before()).date(),
                time::OffsetDateTime::from(certificate.not_after()).date()
            ),
        );
    }
    let signer = open_signer(key_source?, checker, "trust.signing_key");
    let (certificate, signer) = (certificate?, signer?);
    let delegate = check_delegate(raw, base, checker, &certificate)?;
    let (signing_certificate, signing_certificate_path) = match &delegate {
        Some((delegate, delegate_path)) => (delegate, delegate_path.clone()),
        None => (&certificate, certificate_path.clone()),
    };
    if !trust::key_matches_certificate(signer.as_ref(), signing_certificate) {
        checker.problem(
            "trust.signing_key",
            format!(
                "the key {} does not match the certificate {}",
                signer.describe(),
                signing_certificate_path.display()
            ),
        );
        return None;
    }
    if delegate.is_none() {
        for warning in trust::check_update_certificate(&certificate) {
            warnings.push(format!("{}: trust.certificate: {warning}", certificate_path.display()));
        }
    }
    Some((certificate, signer, delegate.map(|(delegate, _)| delegate)))
}

/// Trust delegation: when `trust.delegate_certificate` is given, `trust.certificate` is the CA
/// stored on the device (the ultimate source of trust) and the delegate certificate, issued by
/// it, travels with each candidate; the signing key must then match the delegate.
/// `Ok(None)` without delegation; `None` (after recording a problem) when it is broken.
fn check_delegate(
    raw: &RawProfile,
    base: &Path,
    checker: &mut Checker,
    certificate: &Certificate,
) -> Option<Option<(Certificate, PathBuf)>> {
    let Some(delegate_path) = raw.trust.delegate_certificate.as_ref().map(|path| resolve(base, path)) else {
        return Some(None);
    };
    if !certificate.is_ca() {
        checker.problem(
            "trust.certificate",
            "with trust.delegate_certificate, expected a CA certificate (basicConstraints CA:TRUE) to store on the device",
        );
        return None;
    }
    let delegate = match Certificate::load(&delegate_path) {
        Ok(delegate) => delegate,
        Err(error) => {
            checker.problem_in(&delegate_path, "trust.delegate_certificate", error.to_string());
            return None;
        }
    };
    if let Err(error) = trust::verify_chain(&delegate, certificate, std::time::SystemTime::now()) {
        checker.problem_in(
            &delegate_path,
            "trust.delegate_certificate",
            format!("expected a certificate issued by trust.certificate: {error}"),
        );
        return None;
    }
    Some(Some((delegate, delegate_path)))
}

/// The longest identity certificate validity accepted (100 years).
const MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS: u32 = 36_500;

/// Store item names the station writes itself; the CA certificate may not take one of them.
const STATION_STORE_ITEMS: [&str; 13] = [
    crate::store::keys::VENDOR_ID,
    crate::store::keys::CLASS_ID,
    crate::store::keys::UPDATE_AUTH_CERT,
    crate::store::keys::SERIAL_NUMBER,
    crate::store::keys::MANUFACTURER_NAME,
    crate::store::keys::MODEL_NUMBER,
    crate::store::keys::DEVICE_TYPE,
    crate::store::keys::HARDWARE_VERSION,
    crate::store::keys::DEVICE_ID,
    crate::store::keys::FACTORY_APP_VERSION,
    crate::store::keys::BOOTSTRAP_DEVICE_CERT,
    crate::store::keys::BOOTSTRAP_DEVICE_PRIVATE_KEY,
    crate::store::keys::ENDPOINT_NAME,
];

/// Checks `[device_identity]`: the CA certificate and its key (file or PKCS#11, like
/// `trust.signing_key`), the subject name rule, validity, the store item name, and that the
/// memory map leaves room for the identity mailbox (and the device-key sector).
fn check_device_identity(
    raw: &RawDeviceIdentity,
    base: &Path,
    checker: &mut Checker,
    warnings: &mut Vec<String>,
    memory: Option<&MemoryMap>,
    serial_scheme: Option<&SerialScheme>,
) -> Option<DeviceIdentitySettings> {
    let problems_before = checker.problems.len();
    let key_origin = match raw.key_origin.as_str() {
        "station" => Some(KeyOrigin::Station),
        "device" => Some(KeyOrigin::Device),
        other => {
            checker.problem(
                "device_identity.key_origin",
                format!("expected \"station\" or \"device\", found \"{other}\""),
            );
            None
        }
    };
    let subject_common_name = match (
        raw.subject_common_name.as_deref().unwrap_or("device-id"),
        &raw.endpoint_name,
    ) {
        ("device-id", None) => Some(SubjectCommonName::DeviceId),
        ("device-id", Some(_)) => {
            checker.problem(
                "device_identity.endpoint_name",
                "only used with subject_common_name = \"endpoint-name\"",
            );
            None
        }
        ("endpoint-name", Some(template)) => match check_endpoint_template(template) {
            Ok(_) => {
                // The CN must fit X.520's 64 characters (and the identity request). A counter
                // serial has a known length; a scanned serial and the chip UID are checked per
                // unit, when the name is made.
                if let Some(SerialScheme::Counter { prefix, counter_width, .. }) = serial_scheme {
                    let serial = format!("{prefix}{}", "9".repeat(*counter_width as usize));
                    let longest = expand_endpoint_template(template, &serial, uuid::Uuid::max(), "");
                    if longest.len() > crate::contract::IDENTITY_SUBJECT_CAPACITY_BYTES {
                        checker.problem(
                            "device_identity.endpoint_name",
                            format!(
                                "expands to {} characters (e.g. {longest:?}), expected at most {}",
                                longest.len(),
                                crate::contract::IDENTITY_SUBJECT_CAPACITY_BYTES
                            ),
                        );
                    }
                }
                Some(SubjectCommonName::EndpointName { template: template.clone() })
            }
            Err(message) => {
                checker.problem("device_identity.endpoint_name", message);
                None
            }
        },
        ("endpoint-name", None) => {
            checker.problem(
                "device_identity.endpoint_name",
                "expected an endpoint name template such as \"{serial}\" for subject_common_name = \"endpoint-name\"",
            );
            None
        }
        (other, _) => {
            checker.problem(
                "device_identity.subject_common_name",
                format!("expected \"device-id\" or \"endpoint-name\", found \"{other}\""),
            );
            None
        }
    };
    if let Some(organization) = &raw.organization
        && organization.trim().is_empty()
    {
        checker.problem("device_identity.organization", "expected a non-empty text, or leave it out");
    }
    if !(1..=MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS).contains(&raw.validity_days) {
        checker.problem(
            "device_identity.validity_days",
            format!("expected 1 to {MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS} days, found {}", raw.validity_days),
        );
    }
    let ca_certificate_item = raw
        .ca_certificate_item
        .clone()
        .unwrap_or_else(|| crate::store::keys::BOOTSTRAP_SERVER_CA_CERT.to_string());
    if ca_certificate_item.is_empty()
        || STATION_STORE_ITEMS.contains(&ca_certificate_item.as_str())
        || !ca_certificate_item.bytes().all(|byte| byte.is_ascii_graphic())
        || ca_certificate_item.len() > 64
    {
        checker.problem(
            "device_identity.ca_certificate_item",
            format!(
                "expected a store item name (1 to 64 printable ASCII characters) the station does not use for anything else, found {ca_certificate_item:?}"
            ),
        );
    }
    if let Some(memory) = memory {
        let needed = crate::contract::IDENTITY_MAILBOX_SIZE_BYTES as u64;
        if memory.mailbox.size_bytes < needed {
            checker.problem(
                "memory.mailbox.size",
                format!(
                    "expected at least {needed} bytes with [device_identity] (the identity requests and responses of the device contract, section 6), found {}",
                    memory.mailbox.size_bytes
                ),
            );
        }
        if key_origin == Some(KeyOrigin::Device)
            && memory.config.size_bytes < 3 * memory.config.sector_size_bytes
        {
            checker.problem(
                "memory.config.size",
                "expected at least three sectors with device-made keys (the store, the device-key sector, the boot-state sector)",
            );
        }
    }

    let certificate_path = resolve(base, &raw.ca_certificate);
    let ca_certificate = match Certificate::load(&certificate_path) {
        Ok(certificate) => Some(certificate),
        Err(error) => {
            checker.problem_in(&certificate_path, "device_identity.ca_certificate", error.to_string());
            None
        }
    };
    if let Some(certificate) = &ca_certificate {
        if !certificate.is_ca() {
            checker.problem_in(
                &certificate_path,
                "device_identity.ca_certificate",
                format!(
                    "certificate {} is not a CA (expected basicConstraints CA:TRUE)",
                    certificate.subject()
                ),
            );
        }
        if let Err(error) = certificate.verifying_key() {
            checker.problem_in(&certificate_path, "device_identity.ca_certificate", error.to_string());
        }
        let now = std::time::SystemTime::now();
        if now > certificate.not_after() {
            checker.problem_in(
                &certificate_path,
                "device_identity.ca_certificate",
                format!("the CA certificate {} has expired", certificate.subject()),
            );
        } else if now + std::time::Duration::from_secs(u64::from(raw.validity_days) * 86_400)
            > certificate.not_after()
        {
            warnings.push(format!(
                "{}: device_identity.ca_certificate: the CA certificate {} expires before device certificates valid for {} days would; they stop chaining when it does",
                certificate_path.display(),
                certificate.subject(),
                raw.validity_days
            ));
        }
    }
    let ca_signer = key_source(&raw.ca_key, base, checker, "device_identity.ca_key")
        .and_then(|source| open_signer(source, checker, "device_identity.ca_key"));
    if let (Some(certificate), Some(signer)) = (&ca_certificate, &ca_signer)
        && !trust::key_matches_certificate(signer.as_ref(), certificate)
    {
        checker.problem(
            "device_identity.ca_key",
            format!(
                "the key {} does not match the CA certificate {}",
                signer.describe(),
                certificate_path.display()
            ),
        );
    }
    if checker.problems.len() != problems_before {
        return None;
    }
    Some(DeviceIdentitySettings {
        key_origin: key_origin?,
        ca_certificate: ca_certificate?,
        ca_signer: ca_signer?,
        subject_common_name: subject_common_name?,
        organization: raw.organization.clone(),
        validity_days: raw.validity_days,
        ca_certificate_item,
    })
}

/// Where the signing key lives: a file, or a PKCS#11 token.
enum KeySource {
    File(PathBuf),
    Pkcs11(trust::Pkcs11KeyConfig),
}

/// Opens a key source as a signer; a problem names `field`.
fn open_signer(source: KeySource, checker: &mut Checker, field: &str) -> Option<Arc<dyn Signer>> {
    match source {
        KeySource::File(key_path) => match trust::load_signing_key(&key_path) {
            Ok(signer) => Some(Arc::new(signer)),
            Err(error) => {
                checker.problem_in(&key_path, field, error.to_string());
                None
            }
        },
        // Opening the token logs in (one PIN attempt) and reads the key's public half, so a
        // wrong PIN or a missing key is a profile problem, found before any unit is touched.
        KeySource::Pkcs11(config) => match trust::Pkcs11Signer::open(&config) {
            Ok(signer) => Some(Arc::new(signer)),
            Err(error) => {
                checker.problem(field, error.to_string());
                None
            }
        },
    }
}

/// Reads a key setting such as `trust.signing_key` (a path, a `pkcs11:` URI or a table); relative
/// module and PIN file paths are relative to the profile, like every other path in it. Problems
/// name `field`.
fn key_source(raw: &RawSigningKey, base: &Path, checker: &mut Checker, field: &str) -> Option<KeySource> {
    let mut config = match raw {
        RawSigningKey::Text(text) if !trust::is_pkcs11_uri(text) => {
            return Some(KeySource::File(resolve(base, text)));
        }
        RawSigningKey::Text(uri) => match trust::Pkcs11KeyConfig::from_uri(uri) {
            Ok(config) => config,
            Err(error) => {
                checker.problem(field, error.to_string());
                return None;
            }
        },
        RawSigningKey::Pkcs11(table) => {
            let key_id = match table.id.as_deref().map(hex::decode).transpose() {
                Ok(key_id) => key_id,
                Err(error) => {
                    checker.problem(
                        &format!("{field}.id"),
                        format!("expected the key's CKA_ID in hex ({error})"),
                    );
                    return None;
                }
            };
            let pin_source = match table.pin_source.as_deref().map(trust::PinSource::parse).transpose() {
                Ok(pin_source) => pin_source.unwrap_or(trust::PinSource::Prompt),
                Err(error) => {
                    checker.problem(&format!("{field}.pin_source"), error.to_string());
                    return None;
                }
            };
            if table.object.is_none() && key_id.is_none() {
                checker.problem(field, "expected object (the key's label) or id, found neither");
                return None;
            }
            trust::Pkcs11KeyConfig {
                module_path: PathBuf::from(&table.module_path),
                token_label: table.token.clone(),
                token_serial: table.serial.clone(),
                key_label: table.object.clone(),
                key_id,
                pin_source,
            }
        }
    };
    if config.module_path.is_relative() {
        config.module_path = base.join(&config.module_path);
    }
    if let trust::PinSource::File { path } = &mut config.pin_source
        && path.is_relative()
    {
        *path = base.join(&*path);
    }
    Some(KeySource::Pkcs11(config))
}

/// `[fixture] default`: the selector syntax only (`station::fixtures` opens it; the profile
/// layer does not know the backends).
fn check_default_fixture(raw: &RawProfile, checker: &mut Checker) -> Option<String> {
    let selector = raw.fixture.default.as_ref()?;
    let is_known = matches!(selector.as_str(), "sim" | "qemu")
        || selector.strip_prefix("gdb:").is_some_and(|address| !address.trim().is_empty());
    if !is_known {
        checker.problem(
            "fixture.default",
            format!("expected \"sim\", \"qemu\" or \"gdb:HOST:PORT\", found \"{selector}\""),
        );
        return None;
    }
    Some(selector.clone())
}

fn check_sim_timing(raw: &RawProfile, checker: &mut Checker) -> SimTiming {
    let timing = SimTiming {
        probe_bytes_per_second: raw.sim.probe_bytes_per_second.unwrap_or(0),
        sector_erase_ms: raw.sim.sector_erase_ms.unwrap_or(0.0),
        page_program_ms: raw.sim.page_program_ms.unwrap_or(0.0),
        page_size_bytes: raw.sim.page_size.unwrap_or(256),
        boot_ms: raw.sim.boot_ms.unwrap_or(0.0),
    };
    for (field, value) in [
        ("sim.sector_erase_ms", timing.sector_erase_ms),
        ("sim.page_program_ms", timing.page_program_ms),
        ("sim.boot_ms", timing.boot_ms),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            checker.problem(field, format!("expected a time of 0 ms or more, found {value}"));
        }
    }
    if timing.page_size_bytes == 0 {
        checker.problem("sim.page_size", "expected a page size above 0");
    }
    timing
}

fn check_target_description(
    raw: &RawProfile,
    base: &Path,
    checker: &mut Checker,
) -> Option<ChipTargetDescription> {
    let relative = raw.chip.target_description.as_ref()?;
    let path = resolve(base, relative);
    let yaml = match std::fs::read_to_string(&path) {
        Ok(yaml) => yaml,
        Err(error) => {
            checker.problem_in(
                &path,
                "chip.target_description",
                format!("cannot read the target description: {error}"),
            );
            return None;
        }
    };
    if let Err(error) = crate::device::probe_rs::check_target_description(&yaml, &raw.chip.name) {
        checker.problem_in(&path, "chip.target_description", error.to_string());
        return None;
    }
    Some(ChipTargetDescription { path, yaml })
}

fn check_register_address(checker: &mut Checker, field: &str, address: u64) -> bool {
    if !address.is_multiple_of(4) || address > u64::from(u32::MAX) {
        checker
            .problem(field, format!("expected a 4-byte aligned 32-bit register address, found {address:#x}"));
        return false;
    }
    true
}

fn check_masked_value(checker: &mut Checker, field: &str, mask: u32, value: u32) -> bool {
    if value & !mask != 0 {
        checker.problem(field, format!("value {value:#x} has bits outside the mask {mask:#x}"));
        return false;
    }
    true
}

fn check_id_register(raw: &RawProfile, checker: &mut Checker) -> Option<ChipIdCheck> {
    let id = raw.chip.id_register.as_ref()?;
    let mask = id.mask.unwrap_or(u32::MAX);
    let address_ok = check_register_address(checker, "chip.id_register.address", id.address);
    let value_ok = check_masked_value(checker, "chip.id_register.value", mask, id.value);
    (address_ok && value_ok).then_some(ChipIdCheck { address: id.address, mask, value: id.value })
}

/// The longest wait or delay a declared recipe step may ask for.
const MAX_REGISTER_STEP_TIMEOUT_MS: u64 = 120_000;

fn check_register_steps(
    checker: &mut Checker,
    field: &str,
    raw_steps: &[RawRegisterStep],
) -> Option<Vec<RegisterStep>> {
    let problems_before = checker.problems.len();
    let mut steps = Vec::new();
    if raw_steps.is_empty() {
        checker.problem(field, "expected at least one step");
    }
    for (index, raw) in raw_steps.iter().enumerate() {
        let here = format!("{field}[{index}]");
        let op = raw.op.as_deref().unwrap_or("write");
        let allowed: &[&str] = match op {
            "write" => &["address", "value", "link_may_drop"],
            "modify" => &["address", "mask", "value", "link_may_drop"],
            "wait" => &["address", "mask", "value", "timeout_ms"],
            "reset" => &[],
            "delay" => &["duration_ms"],
            other => {
                checker.problem(
                    &format!("{here}.op"),
                    format!(
                        "expected \"write\", \"modify\", \"wait\", \"reset\" or \"delay\", found \"{other}\""
                    ),
                );
                continue;
            }
        };
        let given = [
            ("address", raw.address.is_some()),
            ("value", raw.value.is_some()),
            ("mask", raw.mask.is_some()),
            ("timeout_ms", raw.timeout_ms.is_some()),
            ("duration_ms", raw.duration_ms.is_some()),
            ("link_may_drop", raw.link_may_drop.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                checker.problem(&format!("{here}.{name}"), format!("not used by op = \"{op}\""));
            }
        }
        let mut required = |name: &str, present: bool| {
            if !present
                && allowed.contains(&name)
                && name != "link_may_drop"
                && !(name == "mask" && op == "wait")
            {
                checker.problem(&format!("{here}.{name}"), format!("required for op = \"{op}\""));
            }
        };
        required("address", raw.address.is_some());
        required("value", raw.value.is_some());
        required("mask", raw.mask.is_some());
        required("timeout_ms", raw.timeout_ms.is_some());
        required("duration_ms", raw.duration_ms.is_some());
        if let Some(address) = raw.address {
            check_register_address(checker, &format!("{here}.address"), address);
        }
        let mask = raw.mask.unwrap_or(u32::MAX);
        if let Some(value) = raw.value
            && matches!(op, "modify" | "wait")
        {
            check_masked_value(checker, &format!("{here}.value"), mask, value);
        }
        for (name, bound) in [("timeout_ms", raw.timeout_ms), ("duration_ms", raw.duration_ms)] {
            if let Some(bound) = bound
                && !(1..=MAX_REGISTER_STEP_TIMEOUT_MS).contains(&bound)
            {
                checker.problem(
                    &format!("{here}.{name}"),
                    format!("expected 1 to {MAX_REGISTER_STEP_TIMEOUT_MS} ms, found {bound}"),
                );
            }
        }
        let (address, value) = (raw.address.unwrap_or(0), raw.value.unwrap_or(0));
        let link_may_drop = raw.link_may_drop.unwrap_or(false);
        steps.push(match op {
            "write" => RegisterStep::Write { address, value, link_may_drop },
            "modify" => RegisterStep::Modify { address, mask, value, link_may_drop },
            "wait" => RegisterStep::WaitFor { address, mask, value, timeout_ms: raw.timeout_ms.unwrap_or(1) },
            "reset" => RegisterStep::Reset,
            _ => RegisterStep::Delay { duration_ms: raw.duration_ms.unwrap_or(0) },
        });
    }
    (checker.problems.len() == problems_before).then_some(steps)
}

fn check_lock_recipe(raw: &RawProfile, checker: &mut Checker) -> Option<LockRecipe> {
    let lock = &raw.lock;
    match (&lock.recipe, &lock.writes) {
        (Some(_), Some(_)) => {
            checker.problem("lock", "give either recipe or [[lock.writes]], not both");
            None
        }
        (Some(name), None) => {
            if lock.unlocked_when.is_some() || lock.unlock_writes.is_some() {
                checker.problem(
                    "lock",
                    "unlocked_when and unlock_writes belong to a declared recipe ([[lock.writes]]), not to a built-in one",
                );
            }
            let recipe = LockRecipe::builtin(name);
            if recipe.is_none() {
                checker.problem(
                    "lock.recipe",
                    format!(
                        "expected one of {}, found \"{name}\"",
                        crate::device::probe_rs::lock::BUILTIN_RECIPE_NAMES.join(", ")
                    ),
                );
            }
            recipe
        }
        (None, Some(writes)) => {
            let lock_steps = check_register_steps(checker, "lock.writes", writes);
            let lock_state = match &lock.unlocked_when {
                Some(unlocked_when) => {
                    let mask = unlocked_when.mask.unwrap_or(u32::MAX);
                    let address_ok =
                        check_register_address(checker, "lock.unlocked_when.address", unlocked_when.address);
                    let value_ok =
                        check_masked_value(checker, "lock.unlocked_when.value", mask, unlocked_when.value);
                    (address_ok && value_ok).then_some(LockStateCheck::Register {
                        address: unlocked_when.address,
                        mask,
                        unlocked_value: unlocked_when.value,
                    })
                }
                None => {
                    checker.problem(
                        "lock.unlocked_when",
                        "a declared recipe needs { address, mask, value }: the register state that means unlocked (the lock is proven by it)",
                    );
                    None
                }
            };
            let unlock = match &lock.unlock_writes {
                Some(unlock_writes) => check_register_steps(checker, "lock.unlock_writes", unlock_writes)
                    .map(UnlockMethod::Steps),
                None => Some(UnlockMethod::ProbeRsEraseAll),
            };
            Some(LockRecipe {
                name: "profile".to_string(),
                lock_steps: lock_steps?,
                lock_state: lock_state?,
                unlock: unlock?,
            })
        }
        (None, None) => {
            if lock.unlocked_when.is_some() || lock.unlock_writes.is_some() {
                checker.problem("lock", "unlocked_when and unlock_writes need [[lock.writes]]");
            }
            LockRecipe::default_for_chip(&raw.chip.name)
        }
    }
}
