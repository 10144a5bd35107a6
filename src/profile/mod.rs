//! Product profiles: one TOML file describes one product the station provisions.
//!
//! Loading has two stages (the ripgrep `lowargs` -> `hiargs` pattern): [`raw`] parses the TOML
//! into serde structs, then [`Profile::load`] validates everything at once into a [`Profile`]
//! whose fields are already checked and loaded — images read and placed, certificate parsed,
//! key matched to it, regions proven disjoint. Code downstream never re-validates.
//!
//! Every problem found is reported, not just the first, each naming the file and the field.
//!
//! **Invariant:** no device I/O and no database access; reading the profile's own files
//! (images, certificate, key) is the only I/O.

mod hardware;
mod raw;
mod scanner;
mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use crate::identity::{ReworkPolicy, SerialScheme};
use crate::image::FirmwareImage;
use crate::manifest::SemanticVersion;
use crate::trust::{Certificate, KeySource, KeySourceError, Signer};

pub use hardware::{
    BlockDeviceGeometry, BlockDeviceKind, BootloaderKind, DeviceHardware, UpdateStorage,
    application_firmware_bytes, application_header, firmware_details, header_firmware_version,
    version_from_header_firmware_version,
};
pub use scanner::{
    ClassifiedScan, DEFAULT_SLOT_PATTERN, ScanKind, ScanPattern, ScanRefusal, ScannerSettings, SlotPattern,
};
pub use validate::{ProfileError, ProfileProblem};

/// A validated product profile.
#[derive(Clone)]
pub struct Profile {
    /// Where the profile was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the profile file's bytes, recorded with every run.
    pub file_sha256: [u8; 32],
    /// Short product name (the ledger groups units by it).
    pub name: String,
    /// `mbed.ManufacturerName`.
    pub manufacturer: String,
    /// `mbed.ModelNumber`; also the name the class ID derives from.
    pub model_name: String,
    /// `mbed.DeviceType`.
    pub device_type: Option<String>,
    /// `mbed.HardwareVersion`.
    pub hardware_version: Option<String>,
    /// The chip, as probe-rs names it; empty in an FCC-only profile (no `[chip]`).
    pub chip_name: String,
    /// Where debug-port backends read the chip's unique ID (the sim knows its own).
    pub unique_id_location: Option<RamSpan>,
    /// A custom probe-rs target description for the chip (`chip.target_description`).
    pub chip_target_description: Option<ChipTargetDescription>,
    /// A register that identifies the chip (`chip.id_register`); probe-rs backends check it.
    pub chip_id_check: Option<crate::chip::ChipIdCheck>,
    /// How probe-rs backends lock (and recover) the chip: the profile's `lock.recipe` or
    /// `[[lock.writes]]`, else the built-in recipe for the chip's family, if there is one.
    pub lock_recipe: Option<crate::chip::LockRecipe>,
    /// The memory map, images and self-test a slot with a debug port flashes and runs; `None`
    /// in an FCC-only profile ([`Profile::require_firmware`] says so by name).
    pub firmware: Option<FirmwareSettings>,
    /// Vendor ID (explicit, or UUIDv5 of the vendor's domain name).
    pub vendor_id: Uuid,
    /// Device class ID (explicit, or UUIDv5 of the model name in the vendor namespace).
    pub class_id: Uuid,
    /// How serial numbers are made.
    pub serial_scheme: SerialScheme,
    /// What happens when a chip is seen again.
    pub rework_policy: ReworkPolicy,
    /// The update-authenticity certificate injected into every unit.
    pub update_certificate: Certificate,
    /// With trust delegation: the certificate of the signing key, issued by `update_certificate`
    /// (then a CA), shipped with every staged candidate.
    pub delegate_certificate: Option<Certificate>,
    /// The key that signs self-test manifests; matches `delegate_certificate` when there is one,
    /// else `update_certificate`.
    /// It is named here, not opened: a token key opens when a line starts
    /// ([`Profile::open_signers`]), or at its first signature.
    pub signer: Arc<KeySource>,
    /// Lock settings.
    pub lock: LockSettings,
    /// Steps the profile asks to skip (recorded with each run).
    pub skipped_steps: Vec<SkippableStep>,
    /// The simulated device's timing model for this product.
    pub sim_timing: SimTiming,
    /// The fixture selectors `imprint run` uses when neither --sim nor --probe is given
    /// (`[fixture] default`, e.g. `qemu`, or a list of `fcc:HOST:PORT`, one slot each; empty
    /// when not given); syntax-checked, opened by `device::factory`.
    pub default_fixtures: Vec<String>,
    /// Warnings found while loading (shown by `profile check`, logged by `run`).
    pub warnings: Vec<String>,
    /// A per-device identity certificate from the factory CA (`[device_identity]`), if asked for.
    pub device_identity: Option<DeviceIdentitySettings>,
    /// The identity goes in through the device's Factory Configurator Client (`[fcc]`),
    /// instead of Imprint's config store.
    pub fcc: Option<FccSettings>,
    /// The bootloader the device runs and whether the station injects a root of trust and
    /// entropy (`[bootloader]`, `chip.hardware_root_of_trust`, `chip.trng`).
    pub device_hardware: DeviceHardware,
    /// What a scan is (`[scanner]`, else the defaults for the serial scheme).
    pub scanner: ScannerSettings,
}

/// What a slot with a debug port flashes and tests: `[memory]` (with `[chip]`'s flash and RAM),
/// `[images]` and `[self_test]`. An FCC-only profile has none.
#[derive(Clone)]
pub struct FirmwareSettings {
    /// Where everything goes on the chip.
    pub memory: MemoryMap,
    /// The bootloader image, checked to lie inside the bootloader region.
    pub bootloader_image: FirmwareImage,
    /// The application image, checked to lie inside the application region.
    pub application_image: FirmwareImage,
    /// The application image's version: the device's rollback reference.
    pub application_version: SemanticVersion,
    /// Self-test settings.
    pub self_test: SelfTestSettings,
}

/// An FCC-only profile met something that needs a debug port's sections.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the profile {} is FCC-only (it has no [chip], [memory], [images] or [self_test]): {needed_by} needs them",
    profile.display()
)]
pub struct FirmwareMissing {
    /// The profile file.
    pub profile: PathBuf,
    /// What needed them (a step, a slot).
    pub needed_by: String,
}

/// The profile's `[fcc]`, validated: what the FCC bundle holds besides what the profile says
/// elsewhere (vendor and class IDs, product metadata, the update certificate, and the
/// `[device_identity]` the identity certificate and endpoint name come from). Plain data: the
/// station builds the bundle (docs/profiles.md, docs/fcc.md). The device bootstraps
/// (`mbed.UseBootstrap` 1): the server items are the bootstrap server's.
#[derive(Debug, Clone)]
pub struct FccSettings {
    /// `mbed.BootstrapServerURI` (`coaps://HOST:PORT?aid=...`).
    pub bootstrap_server_uri: String,
    /// `mbed.BootstrapServerCACert`.
    pub bootstrap_server_ca_certificate: Certificate,
    /// `mbed.MemoryTotalKB`.
    pub memory_total_kb: u32,
    /// Send `mbed.CurrentTime` (the station's clock, in seconds since 1970).
    pub send_current_time: bool,
    /// Ask the device to run `fcc_verify_device_configured_4mbed_cloud()` (`Verify`).
    pub verify: bool,
    /// End the device's factory flow after everything passed (`Disable`).
    pub disable: bool,
    /// Send 48 random bytes as `Entropy` (chips without a TRNG).
    pub send_entropy: bool,
    /// Send 16 random bytes as `ROT` (chips without a hardware root of trust).
    pub send_root_of_trust: bool,
    /// How long the device may take to answer one bundle.
    pub response_timeout_ms: u64,
    /// Where the device keeps its FCC storage (inside one of `[memory]`'s flash regions, whole
    /// sectors): the station erases it through the probe before flashing, which wipes the
    /// items a returning device holds; `None` when the profile names none.
    pub storage: Option<FccStorage>,
}

/// The flash range that holds a device's FCC storage (`[fcc] storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FccStorage {
    /// First byte.
    pub address: u64,
    /// Length, whole sectors of `region`.
    pub size_bytes: u64,
    /// The `[memory]` region it lies in (its geometry).
    pub region: FlashRegion,
}

/// Where a unit's identity key is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrigin {
    /// The station makes the key and writes it into the config store with the certificate.
    Station,
    /// The device makes the key (it needs an entropy source) and hands the station a CSR; the
    /// private key never leaves the device.
    Device,
}

impl KeyOrigin {
    /// The profile's spelling.
    pub fn name(self) -> &'static str {
        match self {
            KeyOrigin::Station => "station",
            KeyOrigin::Device => "device",
        }
    }
}

/// What the identity certificate's subject CN is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectCommonName {
    /// The device ID, as a lowercase hyphenated UUID.
    DeviceId,
    /// The endpoint name made from the profile's template.
    EndpointName {
        /// Literal text and `{serial}`, `{device_id}`, `{device_id_hex}`, `{chip_uid}`.
        template: String,
    },
}

/// The profile's `[device_identity]`, validated: the CA is loaded and its key opened and
/// matched.
#[derive(Clone)]
pub struct DeviceIdentitySettings {
    /// Station-made or device-made keys.
    pub key_origin: KeyOrigin,
    /// The factory CA that issues the certificates (CA:TRUE, ECDSA P-256).
    pub ca_certificate: Certificate,
    /// Its key (a file or a PKCS#11 token); matches `ca_certificate` (a token key is proven to
    /// when it opens).
    pub ca_signer: Arc<KeySource>,
    /// What the subject CN is.
    pub subject_common_name: SubjectCommonName,
    /// The subject O, if any.
    pub organization: Option<String>,
    /// Validity of each certificate, from the moment it is issued.
    pub validity_days: u32,
    /// The config store item the CA certificate is stored under.
    pub ca_certificate_item: String,
}

impl std::fmt::Debug for DeviceIdentitySettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeviceIdentitySettings")
            .field("key_origin", &self.key_origin)
            .field("ca_certificate", &self.ca_certificate)
            .field("ca_signer", &self.ca_signer.describe())
            .field("subject_common_name", &self.subject_common_name)
            .finish_non_exhaustive()
    }
}

/// The placeholders an endpoint name template may use.
pub const ENDPOINT_NAME_PLACEHOLDERS: [&str; 4] = ["serial", "device_id", "device_id_hex", "chip_uid"];

impl DeviceIdentitySettings {
    /// The subject CN of one unit's certificate (also its `mbed.EndpointName`).
    pub fn common_name_for(&self, serial: &str, device_id: Uuid, chip_uid_hex: &str) -> String {
        match &self.subject_common_name {
            SubjectCommonName::DeviceId => device_id.hyphenated().to_string(),
            SubjectCommonName::EndpointName { template } => {
                expand_endpoint_template(template, serial, device_id, chip_uid_hex)
            }
        }
    }
}

/// Replaces the placeholders of an endpoint name template in one pass (a serial that happens
/// to contain `{chip_uid}` stays as it is). Unknown placeholders and unbalanced braces are kept
/// literally; the profile check refuses them before any unit is touched.
pub fn expand_endpoint_template(template: &str, serial: &str, device_id: Uuid, chip_uid_hex: &str) -> String {
    let mut expanded = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        expanded.push_str(&rest[..open]);
        let after_open = &rest[open + 1..];
        let Some(close) = after_open.find('}') else {
            expanded.push_str(&rest[open..]);
            return expanded;
        };
        match &after_open[..close] {
            "serial" => expanded.push_str(serial),
            "device_id" => expanded.push_str(&device_id.hyphenated().to_string()),
            "device_id_hex" => expanded.push_str(&device_id.simple().to_string()),
            "chip_uid" => expanded.push_str(chip_uid_hex),
            other => {
                expanded.push('{');
                expanded.push_str(other);
                expanded.push('}');
            }
        }
        rest = &after_open[close + 1..];
    }
    expanded.push_str(rest);
    expanded
}

/// Checks an endpoint name template: braces only around known placeholders, literal text of
/// printable ASCII. Returns the placeholders used, in order.
pub fn check_endpoint_template(template: &str) -> Result<Vec<&str>, String> {
    let mut used = Vec::new();
    let mut rest = template;
    if template.is_empty() {
        return Err("expected a template such as \"{serial}\", found an empty text".to_string());
    }
    loop {
        let literal_end = rest.find(['{', '}']).unwrap_or(rest.len());
        if let Some(bad) = rest[..literal_end].chars().find(|character| !character.is_ascii_graphic()) {
            return Err(format!("expected printable ASCII without spaces, found {bad:?}"));
        }
        rest = &rest[literal_end..];
        if rest.is_empty() {
            return Ok(used);
        }
        if rest.starts_with('}') {
            return Err("found a '}' without its '{'".to_string());
        }
        let Some(close) = rest.find('}') else {
            return Err("found a '{' without its '}'".to_string());
        };
        let name = &rest[1..close];
        if !ENDPOINT_NAME_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "found placeholder {{{name}}}, expected one of {}",
                ENDPOINT_NAME_PLACEHOLDERS.map(|known| format!("{{{known}}}")).join(", ")
            ));
        }
        used.push(name);
        rest = &rest[close + 1..];
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Profile")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("chip_name", &self.chip_name)
            .field("signer", &self.signer.describe())
            .field("device_identity", &self.device_identity)
            .finish_non_exhaustive()
    }
}

/// A probe-rs target family file the profile ships for its chip (read, not interpreted here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipTargetDescription {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text (YAML), loaded into a probe-rs registry (and checked to define the chip) when a
    /// probe-rs slot opens.
    pub yaml: String,
}

/// A region of NOR flash the profile assigns a purpose to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashRegion {
    /// First byte.
    pub address: u64,
    /// Length; a multiple of `sector_size_bytes`.
    pub size_bytes: u64,
    /// Erase granularity.
    pub sector_size_bytes: u64,
    /// Programming granularity.
    pub write_alignment_bytes: u64,
    /// What an erased byte reads as (0xFF on most parts, 0x00 on some).
    pub erased_value: u8,
}

impl FlashRegion {
    /// One past the last byte.
    pub fn end_address(&self) -> u64 {
        self.address + self.size_bytes
    }

    /// Whether `address` lies inside the region.
    pub fn contains(&self, address: u64) -> bool {
        address >= self.address && address < self.end_address()
    }

    /// The sector-aligned span covering `[address, address + size_bytes)`.
    pub fn sectors_covering(&self, address: u64, size_bytes: u64) -> (u64, u64) {
        let start = address - (address - self.address) % self.sector_size_bytes;
        let end =
            (address + size_bytes - self.address).next_multiple_of(self.sector_size_bytes) + self.address;
        (start, end - start)
    }
}

/// A span of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamSpan {
    /// First byte.
    pub address: u64,
    /// Length.
    pub size_bytes: u64,
}

/// The profile's memory map: four flash regions and the RAM mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    /// The chip's whole flash.
    pub chip_flash: RamSpan,
    /// The chip's whole RAM.
    pub chip_ram: RamSpan,
    /// Where the bootloader goes.
    pub bootloader: FlashRegion,
    /// The application slot the device boots.
    pub application: FlashRegion,
    /// The candidate (staging) slot for updates.
    pub candidate: FlashRegion,
    /// The protected config store; its last sector is the bootloader's boot-state record.
    pub config: FlashRegion,
    /// The RAM mailbox (station request + device report).
    pub mailbox: RamSpan,
}

impl MemoryMap {
    /// The four flash regions with their names.
    pub fn flash_regions(&self) -> [(&'static str, FlashRegion); 4] {
        [
            ("bootloader", self.bootloader),
            ("application", self.application),
            ("candidate", self.candidate),
            ("config", self.config),
        ]
    }

    /// The flash region containing `address`, if any.
    pub fn flash_region_at(&self, address: u64) -> Option<FlashRegion> {
        self.flash_regions().into_iter().map(|(_, region)| region).find(|region| region.contains(address))
    }

    /// The store's layout: the config region less its last sector (the boot-state record).
    pub fn store_layout(&self) -> crate::store::StoreLayout {
        crate::store::StoreLayout {
            capacity_bytes: (self.config.size_bytes - self.config.sector_size_bytes) as usize,
            write_alignment_bytes: self.config.write_alignment_bytes as usize,
            erased_value: self.config.erased_value,
        }
    }

    /// Address of the boot-state sector (the config region's last sector).
    pub fn boot_state_address(&self) -> u64 {
        self.config.end_address() - self.config.sector_size_bytes
    }

    /// Address of the device-key sector (the config region's second-to-last sector): where a
    /// device that makes its own identity key may keep it. The station never writes it when the
    /// profile's device identity uses device-made keys (docs/device-contract.md, section 6.3).
    pub fn device_key_sector_address(&self) -> u64 {
        self.boot_state_address() - self.config.sector_size_bytes
    }

    /// The store's layout when the device-key sector is reserved: the config region less its
    /// last two sectors.
    pub fn store_layout_reserving_device_key_sector(&self) -> crate::store::StoreLayout {
        crate::store::StoreLayout {
            capacity_bytes: (self.config.size_bytes - 2 * self.config.sector_size_bytes) as usize,
            ..self.store_layout()
        }
    }
}

/// How the device reports its self-test result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportChannel {
    /// The station reads the report from the RAM mailbox.
    Mailbox,
    /// The station parses the report line from the device's console.
    Console,
}

/// Self-test settings.
#[derive(Debug, Clone)]
pub struct SelfTestSettings {
    /// The payload staged in the candidate slot (a newer application).
    pub payload: FirmwareImage,
    /// Its version; must be newer than the application's.
    pub payload_version: SemanticVersion,
    /// Where the report comes from.
    pub report_channel: ReportChannel,
    /// How long to wait for a report after reset.
    pub report_timeout_ms: u64,
    /// The schema of the manifests the self-test stages (v3 unless the profile says v1).
    pub manifest_schema: crate::manifest::ManifestSchema,
}

/// Lock settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSettings {
    /// Lock the device at the end (production). `false` only for development boards.
    pub enabled: bool,
    /// Whether a locked unit may be recovered by mass erase (an explicit, recorded step).
    pub allow_unlock_by_mass_erase: bool,
}

/// Steps a profile may skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkippableStep {
    /// The positive self-test update (also skips the negative one).
    SelfTest,
    /// The negative self-test (forged manifests must be refused).
    NegativeSelfTest,
    /// Lock and verify-lock.
    Lock,
}

impl SkippableStep {
    /// The name used in profiles and records.
    pub fn name(self) -> &'static str {
        match self {
            SkippableStep::SelfTest => "self-test",
            SkippableStep::NegativeSelfTest => "negative-self-test",
            SkippableStep::Lock => "lock",
        }
    }

    /// Parses a profile's `steps.skip` entry.
    pub fn from_name(name: &str) -> Option<SkippableStep> {
        [SkippableStep::SelfTest, SkippableStep::NegativeSelfTest, SkippableStep::Lock]
            .into_iter()
            .find(|step| step.name() == name)
    }
}

/// The simulated device's timing model (all zero by default: as fast as the host allows).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimTiming {
    /// Debug-probe transfer rate; 0 means unlimited.
    pub probe_bytes_per_second: u64,
    /// Time to erase one sector.
    pub sector_erase_ms: f64,
    /// Time to program one page.
    pub page_program_ms: f64,
    /// Page size for the program time.
    pub page_size_bytes: u64,
    /// Time from reset to the application's report.
    pub boot_ms: f64,
}

impl Profile {
    /// The firmware settings, or an error naming the profile and `needed_by` when the profile
    /// is FCC-only.
    pub fn require_firmware(&self, needed_by: &str) -> Result<&FirmwareSettings, FirmwareMissing> {
        self.firmware
            .as_ref()
            .ok_or_else(|| FirmwareMissing { profile: self.path.clone(), needed_by: needed_by.to_string() })
    }

    /// Loads and validates a profile, reporting every problem found.
    pub fn load(path: &std::path::Path) -> Result<Profile, ProfileError> {
        validate::load(path)
    }

    /// Validates a profile's bytes as if they had been read from `profile_path`: problems name
    /// that path and the files the profile points at resolve against its directory, exactly as
    /// [`Profile::load`] does; nothing is read at `profile_path` itself. For profiles that do
    /// not live in a file of their own (the fuzzer, tests, a profile received over the wire).
    pub fn from_toml_bytes(bytes: &[u8], profile_path: &std::path::Path) -> Result<Profile, ProfileError> {
        validate::parse(bytes, profile_path)
    }

    /// Whether the profile skips `step`.
    pub fn skips(&self, step: SkippableStep) -> bool {
        self.skipped_steps.contains(&step)
    }

    /// Whether the station leaves the config region's device-key sector alone (device-made
    /// identity keys).
    pub fn reserves_device_key_sector(&self) -> bool {
        self.device_identity.as_ref().is_some_and(|identity| identity.key_origin == KeyOrigin::Device)
    }

    /// Where the station writes the config store: the config region less its boot-state
    /// sector, and less the device-key sector when the device keeps its key there. An
    /// FCC-only profile has no config store.
    pub fn store_layout(&self) -> Result<crate::store::StoreLayout, FirmwareMissing> {
        let memory = &self.require_firmware("the config store")?.memory;
        Ok(if self.reserves_device_key_sector() {
            memory.store_layout_reserving_device_key_sector()
        } else {
            memory.store_layout()
        })
    }

    /// Opens every key the profile names (the signing key, and the factory CA's key with
    /// `[device_identity]`): what a line does before its first unit, so that a wrong PIN or a
    /// missing token stops it with the profile file and field named. A token is logged into
    /// once per loaded profile; later calls (and signatures) reuse it.
    pub fn open_signers(&self) -> Result<(), KeySourceError> {
        self.signer.open_signer()?;
        if let Some(identity) = &self.device_identity {
            identity.ca_signer.open_signer()?;
        }
        Ok(())
    }

    /// The keys the profile names, with the field that names each.
    pub fn key_sources(&self) -> Vec<&KeySource> {
        let mut sources = vec![self.signer.as_ref()];
        if let Some(identity) = &self.device_identity {
            sources.push(identity.ca_signer.as_ref());
        }
        sources
    }

    /// The profile's SHA-256 in lowercase hex.
    pub fn file_sha256_hex(&self) -> String {
        hex::encode(self.file_sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, expected: Result<&str, &str>) {
        let device_id = Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        match (check_endpoint_template(template), expected) {
            (Ok(_), Ok(expanded)) => {
                assert_eq!(
                    expand_endpoint_template(template, "DS1-{chip_uid}", device_id, "c0ffee"),
                    expanded
                )
            }
            (Err(error), Err(fragment)) => assert!(error.contains(fragment), "{template}: {error}"),
            (outcome, expected) => panic!("{template}: got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn endpoint_templates_expand_placeholders_once() {
        check("{serial}", Ok("DS1-{chip_uid}"));
        check("sensor-{device_id_hex}", Ok("sensor-0f8fad5bd9cb469fa16570867728950e"));
        check("{device_id}", Ok("0f8fad5b-d9cb-469f-a165-70867728950e"));
        check("{chip_uid}.{serial}", Ok("c0ffee.DS1-{chip_uid}"));
        check("", Err("empty"));
        check("{model}", Err("found placeholder {model}"));
        check("a{serial", Err("without its '}'"));
        check("a}b", Err("without its '{'"));
        check("two words", Err("printable ASCII"));
    }
}

#[cfg(test)]
mod from_toml_bytes_tests {
    use std::path::Path;

    use super::Profile;

    /// `from_toml_bytes` is `load` without the read: same profile, same problems, named after the
    /// given path, files resolved against its directory.
    fn check(replacements: &[(&str, &str)], expected_problem_fields: &[&str]) {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/demo.toml"));
        let mut text = std::fs::read_to_string(path).unwrap();
        for (old, new) in replacements {
            assert!(text.contains(old), "the demo profile no longer contains {old:?}");
            text = text.replace(old, new);
        }
        match Profile::from_toml_bytes(text.as_bytes(), path) {
            Ok(profile) => {
                assert!(expected_problem_fields.is_empty(), "accepted; expected {expected_problem_fields:?}");
                let loaded = Profile::load(path).unwrap();
                assert_eq!(profile.file_sha256, loaded.file_sha256);
                assert_eq!(profile.path, loaded.path);
                let firmware =
                    |profile: &Profile| profile.firmware.clone().expect("the demo flashes firmware");
                assert_eq!(
                    firmware(&profile).bootloader_image.content_sha256(),
                    firmware(&loaded).bootloader_image.content_sha256()
                );
            }
            Err(error) => {
                let fields: Vec<&str> = error.problems.iter().map(|problem| problem.field.as_str()).collect();
                assert_eq!(fields, expected_problem_fields, "{error}");
                assert!(
                    error.problems.iter().all(|problem| problem.file.starts_with(path.parent().unwrap()))
                );
            }
        }
    }

    #[test]
    fn profiles_from_bytes() {
        check(&[], &[]);
        check(&[("[product]", "[product")], &["(toml)"]);
        check(&[("name = \"demo-sensor\"", "name = \"\"")], &["product.name"]);
        check(&[("application-1.0.1.bin", "no-such-payload.bin")], &["self_test.payload"]);
    }
}
