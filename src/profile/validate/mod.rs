//! Stage two of profile loading: check everything in [`super::raw::RawProfile`] and load what it
//! points at, collecting every problem (file + field + what was expected) instead of stopping at
//! the first.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod chip;
mod device_identity;
mod fcc;
mod hardware;
mod keys;
mod scanner;

use chip::{check_id_register, check_lock_recipe, check_target_description};
use device_identity::check_device_identity;
use fcc::check_fcc;
use hardware::{check_device_hardware, check_update_storage};
use keys::check_trust;
use scanner::check_scanner;

use super::raw::{
    RawFirmwareSections, RawFixtureDefault, RawFlashRegion, RawImage, RawProfile, RawSelfTest, RawSpan,
};
use super::{
    ChipTargetDescription, FirmwareSettings, FlashRegion, LockSettings, MemoryMap, Profile, RamSpan,
    ReportChannel, SelfTestSettings, SimTiming, SkippableStep,
};
use crate::identity::{ReworkPolicy, SerialScheme, SerialSchemeError};
use crate::image::{FirmwareImage, ImageFormat};
use crate::manifest::{ManifestSchema, SemanticVersion};

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
    let firmware_sections = firmware_sections(&raw, checker);
    let chip = firmware_sections.as_ref().map(|sections| check_chip(sections, base, checker));
    let chip_name = raw.chip.as_ref().map(|chip| chip.name.as_str());
    let lock_recipe = check_lock_recipe(&raw, chip_name, checker);
    let firmware = firmware_sections.as_ref().map(|sections| check_firmware(sections, base, checker));
    let (vendor_id, class_id) = check_ids(&raw, checker);
    let (serial_scheme, rework_policy) = check_serial(&raw, checker);
    let trust = check_trust(&raw, base, checker, &mut warnings);
    let memory = firmware.as_ref().and_then(|firmware| firmware.as_ref().map(|firmware| &firmware.memory));
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
    // With [fcc] the identity goes through the device's FCC, not the mailbox or the device-key
    // sector: the memory map need not make room for them.
    let identity_memory = memory.filter(|_| raw.fcc.is_none());
    let device_identity = raw.device_identity.as_ref().map(|raw_identity| {
        check_device_identity(
            raw_identity,
            base,
            checker,
            &mut warnings,
            identity_memory,
            serial_scheme.as_ref(),
        )
    });
    let default_fixtures = check_default_fixtures(&raw, checker);
    let scanner = check_scanner(&raw, checker);
    let fcc = raw.fcc.as_ref().map(|raw_fcc| check_fcc(&raw, raw_fcc, base, memory, checker));

    let checked_firmware = firmware.as_ref().and_then(Option::as_ref);
    check_schema_against_trust(
        &raw,
        checked_firmware.map(|firmware| firmware.self_test.manifest_schema),
        checker,
    );
    let mut device_hardware = check_device_hardware(
        &raw,
        checker,
        memory,
        checked_firmware.map(|firmware| &firmware.bootloader_image),
    );
    device_hardware.update_storage = check_update_storage(
        &raw,
        checker,
        &device_hardware,
        memory,
        checked_firmware.map(|firmware| &firmware.self_test.payload),
    );

    let (update_certificate, signer, delegate_certificate) = trust?;
    Some(Profile {
        path: checker.profile_path.clone(),
        file_sha256,
        name: raw.product.name,
        manufacturer: raw.product.manufacturer,
        model_name: raw.product.model_name,
        device_type: raw.product.device_type,
        hardware_version: raw.product.hardware_version,
        chip_name: chip_name.unwrap_or_default().to_string(),
        unique_id_location: chip.as_ref().and_then(|chip| chip.unique_id_location),
        chip_target_description: chip.as_ref().and_then(|chip| chip.target_description.clone()),
        chip_id_check: chip.as_ref().and_then(|chip| chip.id_check),
        lock_recipe,
        firmware: match firmware {
            Some(checked) => Some(checked?),
            None => None,
        },
        vendor_id: vendor_id?,
        class_id: class_id?,
        serial_scheme: serial_scheme?,
        rework_policy: rework_policy?,
        update_certificate,
        delegate_certificate,
        signer,
        lock,
        skipped_steps,
        sim_timing,
        default_fixtures,
        warnings,
        device_identity: match device_identity {
            Some(checked) => Some(checked?),
            None => None,
        },
        fcc: match fcc {
            Some(checked) => Some(checked?),
            None => None,
        },
        device_hardware,
        scanner,
    })
}

/// `[chip]`, `[memory]`, `[images]` and `[self_test]`, when the profile has them all. An
/// FCC-only profile (with `[fcc]`) may leave out all four; any other profile needs them, and
/// a profile that has some needs all.
fn firmware_sections<'a>(raw: &'a RawProfile, checker: &mut Checker) -> Option<RawFirmwareSections<'a>> {
    let sections = [
        ("chip", raw.chip.is_some()),
        ("memory", raw.memory.is_some()),
        ("images", raw.images.is_some()),
        ("self_test", raw.self_test.is_some()),
    ];
    if let (Some(chip), Some(memory), Some(images), Some(self_test)) =
        (&raw.chip, &raw.memory, &raw.images, &raw.self_test)
    {
        return Some(RawFirmwareSections { chip, memory, images, self_test });
    }
    let present: Vec<&str> = sections.iter().filter(|(_, present)| *present).map(|(name, _)| *name).collect();
    if raw.fcc.is_some() && present.is_empty() {
        // An FCC-only profile: nothing is flashed or self-tested through a debug port.
        return None;
    }
    for (name, _) in sections.iter().filter(|(_, present)| !*present) {
        let message = if raw.fcc.is_some() {
            format!(
                "expected [{name}]: with [fcc], give all of [chip], [memory], [images] and [self_test] (a device the station flashes) or none (an FCC-only device), found [{}]",
                present.join("], [")
            )
        } else {
            format!(
                "expected a [{name}] section (only an FCC-only profile, with [fcc], may leave out [chip], [memory], [images] and [self_test])"
            )
        };
        checker.problem(name, message);
    }
    None
}

/// What `[chip]` says besides its name and memory.
struct CheckedChip {
    unique_id_location: Option<RamSpan>,
    target_description: Option<ChipTargetDescription>,
    id_check: Option<crate::chip::ChipIdCheck>,
}

fn check_chip(raw: &RawFirmwareSections, base: &Path, checker: &mut Checker) -> CheckedChip {
    require_text(checker, "chip.name", &raw.chip.name);
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
    CheckedChip {
        unique_id_location,
        target_description: check_target_description(raw, base, checker),
        id_check: check_id_register(raw, checker),
    }
}

/// The memory map, the images placed in it and the self-test: what a slot with a debug port
/// flashes and tests.
fn check_firmware(raw: &RawFirmwareSections, base: &Path, checker: &mut Checker) -> Option<FirmwareSettings> {
    let memory = check_memory(raw, checker);
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
    let self_test = check_self_test(raw, base, checker, memory.as_ref(), application_version);
    Some(FirmwareSettings {
        memory: memory?,
        bootloader_image: bootloader_image?,
        application_image: application_image?,
        application_version: application_version?,
        self_test: self_test?,
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

/// The largest chip flash or RAM a profile may declare (256 MiB): far above any
/// microcontroller's, and small enough that the simulator can hold it in memory.
const CHIP_MEMORY_SIZE_MAX_BYTES: u64 = 256 * 1024 * 1024;

fn check_memory(raw: &RawFirmwareSections, checker: &mut Checker) -> Option<MemoryMap> {
    let chip_flash = check_span(checker, "chip.flash", &raw.chip.flash);
    let chip_ram = check_span(checker, "chip.ram", &raw.chip.ram);
    for (field, span) in [("chip.flash.size", chip_flash), ("chip.ram.size", chip_ram)] {
        if span.size_bytes > CHIP_MEMORY_SIZE_MAX_BYTES {
            checker.problem(
                field,
                format!(
                    "expected at most {CHIP_MEMORY_SIZE_MAX_BYTES} bytes (256 MiB), found {}",
                    span.size_bytes
                ),
            );
        }
    }
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
            (Some(prefix), Some(counter_width)) => {
                let scheme = SerialScheme::Counter {
                    prefix: prefix.clone(),
                    counter_width,
                    first_value: raw.serial.first_value.unwrap_or(1),
                };
                // The identity module's rule is the ledger's: what passes here can be issued.
                match scheme.check() {
                    Ok(()) => Some(scheme),
                    Err(SerialSchemeError::Invalid { field, expected, found }) => {
                        checker.problem(
                            &format!("serial.{field}"),
                            format!("expected {expected}, found {found:?}"),
                        );
                        None
                    }
                    Err(other) => {
                        checker.problem("serial", other.to_string());
                        None
                    }
                }
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

/// `[fixture] default`: the selector syntax only (`device::factory` opens them; the profile
/// layer does not know the backends). One selector, or a non-empty list (one slot each).
fn check_default_fixtures(raw: &RawProfile, checker: &mut Checker) -> Vec<String> {
    let selectors = match &raw.fixture.default {
        None => return Vec::new(),
        Some(RawFixtureDefault::One(selector)) => vec![selector.clone()],
        Some(RawFixtureDefault::Many(selectors)) => {
            if selectors.is_empty() {
                checker.problem("fixture.default", "expected at least one selector, found an empty list");
            }
            selectors.clone()
        }
    };
    let mut known = Vec::new();
    for selector in selectors {
        if is_known_fixture_selector(&selector) {
            known.push(selector);
        } else {
            checker.problem(
                "fixture.default",
                format!(
                    "expected \"sim\", \"sim,console=PORT\", \"qemu\", \"gdb:HOST:PORT\", \"fcc:HOST:PORT\" or \"fcc:/dev/PORT\", found \"{selector}\""
                ),
            );
        }
    }
    known
}

fn is_known_fixture_selector(selector: &str) -> bool {
    if matches!(selector, "sim" | "qemu") {
        return true;
    }
    if let Some(address) = selector.strip_prefix("gdb:") {
        return !address.trim().is_empty();
    }
    // sim,console=PORT[,baud=N]: the options are judged when the slot opens.
    if let Some(options) = selector.strip_prefix("sim,console=") {
        return !options.trim().is_empty();
    }
    // fcc:/dev/ttyUSB0[,baud=N] (judged when the slot opens), or fcc:HOST:PORT, the port a
    // number from 1 to 65535.
    if selector.strip_prefix("fcc:").is_some_and(|endpoint| endpoint.starts_with('/') && endpoint.len() > 1) {
        return true;
    }
    selector.strip_prefix("fcc:").and_then(|endpoint| endpoint.rsplit_once(':')).is_some_and(
        |(host, port)| !host.trim().is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0),
    )
}

/// The longest simulated time a profile may ask for (one minute): slot threads sleep for it, and
/// a time that does not fit a `Duration` would panic them.
const SIM_TIME_MAX_MS: f64 = 60_000.0;
/// The largest simulated program page.
const SIM_PAGE_SIZE_MAX_BYTES: u64 = 1024 * 1024;

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
        if !(value.is_finite() && (0.0..=SIM_TIME_MAX_MS).contains(&value)) {
            checker.problem(field, format!("expected a time of 0 to {SIM_TIME_MAX_MS} ms, found {value:?}"));
        }
    }
    if !(1..=SIM_PAGE_SIZE_MAX_BYTES).contains(&timing.page_size_bytes) {
        checker.problem(
            "sim.page_size",
            format!(
                "expected a page size of 1 to {SIM_PAGE_SIZE_MAX_BYTES} bytes, found {}",
                timing.page_size_bytes
            ),
        );
    }
    timing
}

/// `identity`: the vendor ID (explicit, or derived from the vendor's domain) and the class ID
/// (explicit, or derived from the model name).
fn check_ids(raw: &RawProfile, checker: &mut Checker) -> (Option<uuid::Uuid>, Option<uuid::Uuid>) {
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

    (vendor_id, class_id)
}

/// `self_test`: the payload (newer than the application, starting at the application slot,
/// fitting both slots with its manifest), the report channel and its timeout.
fn check_self_test(
    raw: &RawFirmwareSections,
    base: &Path,
    checker: &mut Checker,
    memory: Option<&MemoryMap>,
    application_version: Option<SemanticVersion>,
) -> Option<SelfTestSettings> {
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
    if let (Some(memory), Some(payload)) = (memory, &payload)
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
    if let (Some(memory), Some(payload)) = (memory, &payload) {
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
    let manifest_schema = check_manifest_schema(raw.self_test, checker);

    Some(SelfTestSettings {
        payload: payload?,
        payload_version: payload_version?,
        report_channel: report_channel?,
        report_timeout_ms,
        manifest_schema: manifest_schema?,
    })
}

/// `self_test.manifest_schema`: `v3` (the default) or `v1` (whether it fits the trust settings is
/// [`check_schema_against_trust`]).
fn check_manifest_schema(raw: &RawSelfTest, checker: &mut Checker) -> Option<ManifestSchema> {
    match raw.manifest_schema.as_deref().unwrap_or("v3") {
        "v3" => Some(ManifestSchema::V3),
        "v1" => Some(ManifestSchema::V1),
        other => {
            checker.problem(
                "self_test.manifest_schema",
                format!("expected \"v1\" or \"v3\", found \"{other}\""),
            );
            None
        }
    }
}

/// A v1 manifest names its signer by fingerprint and has no delegated certificate, so v1 and
/// `trust.delegate_certificate` exclude each other.
fn check_schema_against_trust(raw: &RawProfile, schema: Option<ManifestSchema>, checker: &mut Checker) {
    if schema == Some(ManifestSchema::V1) && raw.trust.delegate_certificate.is_some() {
        checker.problem(
            "self_test.manifest_schema",
            "expected \"v3\" with trust.delegate_certificate: a v1 manifest names the stored certificate itself and carries no delegated certificate",
        );
    }
}
