//! Stage one of profile loading: the TOML file as plain serde structs, nothing checked yet.
//!
//! Field names here are the profile file's field names; `docs/profiles.md` documents them.
//! Unknown fields are rejected so that a typo is an error, not a silently ignored setting.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub product: RawProduct,
    /// `[chip]`, `[memory]`, `[images]` and `[self_test]`: required, except in an FCC-only
    /// profile (with `[fcc]`), which may leave all four out.
    #[serde(default)]
    pub chip: Option<RawChip>,
    #[serde(default)]
    pub memory: Option<RawMemory>,
    #[serde(default)]
    pub images: Option<RawImages>,
    pub identity: RawIdentity,
    pub serial: RawSerial,
    pub trust: RawTrust,
    #[serde(default)]
    pub self_test: Option<RawSelfTest>,
    #[serde(default)]
    pub lock: RawLock,
    #[serde(default)]
    pub steps: RawSteps,
    #[serde(default)]
    pub sim: RawSim,
    #[serde(default)]
    pub device_identity: Option<RawDeviceIdentity>,
    #[serde(default)]
    pub fixture: RawFixture,
    #[serde(default)]
    pub fcc: Option<RawFcc>,
    #[serde(default)]
    pub bootloader: Option<RawBootloader>,
    #[serde(default)]
    pub block_device: Option<RawBlockDevice>,
    #[serde(default)]
    pub update_storage: Option<RawUpdateStorage>,
    #[serde(default)]
    pub scanner: Option<RawScanner>,
}

/// `[scanner]`: one regular expression per kind of scan (each matches the whole scan).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScanner {
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub work_order: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub slot: Option<String>,
}

/// `[block_device]`: an external block device (SD card or SPI NOR) only the device reaches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlockDevice {
    /// `sd-card` or `spi-nor`.
    pub kind: String,
    pub block_size: u64,
    pub erase_size: u64,
    pub size: u64,
    #[serde(default = "default_erased_value")]
    pub erased_value: u8,
}

/// `[update_storage]`: where update candidates go on the block device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdateStorage {
    pub address: u64,
    pub size: u64,
    #[serde(default = "default_storage_locations")]
    pub locations: u64,
}

fn default_storage_locations() -> u64 {
    1
}

/// `[bootloader]`: which bootloader the device runs and what it needs from the station.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBootloader {
    /// `imprint` (the contract's own bootloader, default) or `mbed-bootloader`.
    pub kind: String,
    /// mbed-bootloader: where the application's 112-byte active header goes.
    #[serde(default)]
    pub application_header_address: Option<u64>,
}

/// The sections a slot with a debug port needs (the chip, where things go, what is flashed,
/// the self-test), all present: what the firmware checks read.
pub struct RawFirmwareSections<'a> {
    pub chip: &'a RawChip,
    pub memory: &'a RawMemory,
    pub images: &'a RawImages,
    pub self_test: &'a RawSelfTest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProduct {
    pub name: String,
    pub manufacturer: String,
    pub model_name: String,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub hardware_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChip {
    pub name: String,
    pub flash: RawSpan,
    pub ram: RawSpan,
    /// Where the chip's factory-programmed unique ID is read from (debug-port backends).
    #[serde(default)]
    pub unique_id: Option<RawSpan>,
    /// A probe-rs target family file (YAML) defining the chip, for chips probe-rs does not know.
    #[serde(default)]
    pub target_description: Option<String>,
    /// A register that identifies the chip (probe-rs backends refuse a different chip).
    #[serde(default)]
    pub id_register: Option<RawIdRegister>,
    /// Whether the chip has a hardware root of trust (default true); without one the station
    /// injects a 16-byte root of trust into the device's write-once storage.
    #[serde(default)]
    pub hardware_root_of_trust: Option<bool>,
    /// Whether the chip has a true random number generator (default true); without one the
    /// station injects 48 bytes of entropy.
    #[serde(default)]
    pub trng: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdRegister {
    pub address: u64,
    #[serde(default)]
    pub mask: Option<u32>,
    pub value: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpan {
    pub address: u64,
    pub size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    pub bootloader: RawFlashRegion,
    pub application: RawFlashRegion,
    pub candidate: RawFlashRegion,
    pub config: RawFlashRegion,
    pub mailbox: RawSpan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlashRegion {
    pub address: u64,
    pub size: u64,
    pub sector_size: u64,
    pub write_alignment: u64,
    #[serde(default = "default_erased_value")]
    pub erased_value: u8,
}

fn default_erased_value() -> u8 {
    0xFF
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImages {
    pub bootloader: RawImage,
    pub application: RawImage,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub path: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub base_address: Option<u64>,
    /// Version of this image (required for the application: the rollback reference).
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub vendor_id: Option<String>,
    #[serde(default)]
    pub vendor_domain: Option<String>,
    #[serde(default)]
    pub class_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSerial {
    pub scheme: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub counter_width: Option<u32>,
    #[serde(default)]
    pub first_value: Option<u64>,
    #[serde(default)]
    pub rework: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    #[serde(default)]
    pub certificate: Option<String>,
    /// A key file path, a `pkcs11:` URI, or a table naming a key in a PKCS#11 token.
    #[serde(default)]
    pub signing_key: Option<RawSigningKey>,
    /// Trust delegation: a certificate issued by `certificate` (then a CA) for the signing key;
    /// it travels with every staged candidate.
    #[serde(default)]
    pub delegate_certificate: Option<String>,
    /// A `manifest-dev-tool init` directory (holding `.manifest-dev-tool/dev.cfg.yaml`), as an
    /// alternative to `certificate` + `signing_key`.
    #[serde(default)]
    pub manifest_dev_tool: Option<String>,
}

/// `trust.signing_key`: text (a key file or a `pkcs11:` URI) or a `[trust.signing_key]` table.
#[derive(Debug)]
pub enum RawSigningKey {
    Text(String),
    Pkcs11(RawPkcs11Key),
}

/// The table form of a PKCS#11 key (the same fields as the URI, spelled as TOML keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPkcs11Key {
    pub module_path: String,
    pub token: String,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    /// Hex (`"01a2"`).
    #[serde(default)]
    pub id: Option<String>,
    /// `env:VARIABLE`, `file:PATH` or `prompt`.
    #[serde(default)]
    pub pin_source: Option<String>,
}

impl<'de> Deserialize<'de> for RawSigningKey {
    // Hand-written rather than `#[serde(untagged)]`, so that a typo inside the table is reported
    // as the unknown field it is, not as "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SigningKeyVisitor;
        impl<'de> serde::de::Visitor<'de> for SigningKeyVisitor {
            type Value = RawSigningKey;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(
                    "a key file path, a pkcs11: URI, or a table with module_path, token and object/id",
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawSigningKey, E> {
                Ok(RawSigningKey::Text(text.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawSigningKey, A::Error> {
                RawPkcs11Key::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawSigningKey::Pkcs11)
            }
        }
        deserializer.deserialize_any(SigningKeyVisitor)
    }
}

/// `[device_identity]`: a per-device key and certificate from the factory CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeviceIdentity {
    /// `"station"` or `"device"`.
    pub key_origin: String,
    /// The factory CA's certificate file (DER or PEM).
    pub ca_certificate: String,
    /// The CA's key: a file, a `pkcs11:` URI or a table (as `trust.signing_key`).
    pub ca_key: RawSigningKey,
    /// `"device-id"` (the default) or `"endpoint-name"`.
    #[serde(default)]
    pub subject_common_name: Option<String>,
    /// The endpoint name template, e.g. `"{serial}"`.
    #[serde(default)]
    pub endpoint_name: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    pub validity_days: u32,
    /// The config store item name for the CA certificate.
    #[serde(default)]
    pub ca_certificate_item: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfTest {
    pub payload: RawImage,
    #[serde(default)]
    pub report: Option<String>,
    #[serde(default)]
    pub report_timeout_ms: Option<u64>,
    /// `v1` or `v3` (the default): the schema of the self-test's manifests.
    #[serde(default)]
    pub manifest_schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLock {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub allow_unlock_by_mass_erase: Option<bool>,
    /// A built-in lock recipe for probe-rs backends (`nrf52-approtect`, `stm32f4-rdp1`,
    /// `stm32l4-rdp1`).
    #[serde(default)]
    pub recipe: Option<String>,
    /// A declared lock recipe: register steps.
    #[serde(default)]
    pub writes: Option<Vec<RawRegisterStep>>,
    /// For a declared recipe: the register state that means unlocked.
    #[serde(default)]
    pub unlocked_when: Option<RawUnlockedWhen>,
    /// For a declared recipe: the register steps that recover a locked chip by mass erase.
    #[serde(default)]
    pub unlock_writes: Option<Vec<RawRegisterStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterStep {
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub address: Option<u64>,
    #[serde(default)]
    pub value: Option<u32>,
    #[serde(default)]
    pub mask: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub link_may_drop: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnlockedWhen {
    pub address: u64,
    #[serde(default)]
    pub mask: Option<u32>,
    pub value: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSteps {
    #[serde(default)]
    pub skip: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSim {
    #[serde(default)]
    pub probe_bytes_per_second: Option<u64>,
    #[serde(default)]
    pub sector_erase_ms: Option<f64>,
    #[serde(default)]
    pub page_program_ms: Option<f64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    #[serde(default)]
    pub boot_ms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixture {
    /// The fixture `imprint run` uses when neither --sim nor --probe is given: one selector,
    /// or a list (one slot each).
    #[serde(default)]
    pub default: Option<RawFixtureDefault>,
}

/// `[fixture] default`: `"qemu"`, or `["fcc:10.0.0.7:7000", "fcc:10.0.0.8:7000"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawFixtureDefault {
    One(String),
    Many(Vec<String>),
}

/// `[fcc]`: the unit's identity goes in through the device's Factory Configurator Client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFcc {
    /// `mbed.BootstrapServerURI`.
    pub bootstrap_server_uri: String,
    /// The bootstrap server's CA certificate file (DER or PEM): `mbed.BootstrapServerCACert`.
    pub bootstrap_server_ca_certificate: String,
    /// `mbed.MemoryTotalKB`.
    pub memory_total_kb: u32,
    /// Send `mbed.CurrentTime` (default true).
    #[serde(default)]
    pub current_time: Option<bool>,
    /// Ask the device to run its own verification (default true).
    #[serde(default)]
    pub verify: Option<bool>,
    /// Disable the device's factory flow once everything passed (default false).
    #[serde(default)]
    pub disable: Option<bool>,
    /// Send 48 bytes of entropy (chips without a TRNG; default false).
    #[serde(default)]
    pub entropy: Option<bool>,
    /// Send a 16-byte root of trust (chips without a hardware RoT; default false).
    #[serde(default)]
    pub root_of_trust: Option<bool>,
    /// How long the device may take to answer one bundle (default 30000).
    #[serde(default)]
    pub response_timeout_ms: Option<u64>,
    /// Where the device keeps its FCC storage in flash, erased through the probe before a unit
    /// is flashed (not for a returning chip under `reuse-identity`).
    #[serde(default)]
    pub storage: Option<RawSpan>,
}
