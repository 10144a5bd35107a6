//! Stage one of profile loading: the TOML file as plain serde structs, nothing checked yet.
//!
//! Field names here are the profile file's field names; `docs/profiles.md` documents them.
//! Unknown fields are rejected so that a typo is an error, not a silently ignored setting.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub product: RawProduct,
    pub chip: RawChip,
    pub memory: RawMemory,
    pub images: RawImages,
    pub identity: RawIdentity,
    pub serial: RawSerial,
    pub trust: RawTrust,
    pub self_test: RawSelfTest,
    #[serde(default)]
    pub lock: RawLock,
    #[serde(default)]
    pub steps: RawSteps,
    #[serde(default)]
    pub sim: RawSim,
    #[serde(default)]
    pub fixture: RawFixture,
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
    #[serde(default)]
    pub signing_key: Option<String>,
    /// A `manifest-dev-tool init` directory (holding `.manifest-dev-tool/dev.cfg.yaml`), as an
    /// alternative to `certificate` + `signing_key`.
    #[serde(default)]
    pub manifest_dev_tool: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfTest {
    pub payload: RawImage,
    #[serde(default)]
    pub report: Option<String>,
    #[serde(default)]
    pub report_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLock {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub allow_unlock_by_mass_erase: Option<bool>,
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
    /// The fixture `imprint run` uses when neither --sim nor --probe is given.
    #[serde(default)]
    pub default: Option<String>,
}
