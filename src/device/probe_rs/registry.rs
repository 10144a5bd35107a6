//! Resolving the profile's chip name to a probe-rs target description, built in or from the
//! profile's own YAML (`chip.target_description`: a probe-rs target family file, the format of
//! probe-rs's `targets/*.yaml` and of `target-gen` output).
//!
//! Custom chips go into a registry made of probe-rs's built-in families plus the profile's file
//! (`Registry::from_builtin_families` + `add_target_family_from_yaml`), so a profile can also
//! override a built-in family.

use probe_rs::config::Registry;

/// Why a chip cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipDescriptionError {
    /// The YAML is not a valid probe-rs target family.
    #[error("chip.target_description: not a usable probe-rs target family: {reason}")]
    BadYaml { reason: String },
    /// The YAML is valid but does not define the chip.
    #[error("chip.target_description defines family {family:?}, which has no chip {chip_name:?}: {reason}")]
    ChipNotInYaml { family: String, chip_name: String, reason: String },
    /// Neither probe-rs nor the profile knows the chip.
    #[error(
        "probe-rs does not know the chip {chip_name:?} ({reason}); check chip.name (probe-rs spelling, e.g. nRF52840_xxAA, STM32F429ZITx) or add chip.target_description"
    )]
    UnknownChip { chip_name: String, reason: String },
}

/// Checks a profile's target description at load time, cheaply (without probe-rs's built-in
/// families): it must parse as a target family and define `chip_name`.
pub fn check_target_description(yaml: &str, chip_name: &str) -> Result<(), ChipDescriptionError> {
    let mut registry = Registry::new();
    let family = registry
        .add_target_family_from_yaml(yaml)
        .map_err(|error| ChipDescriptionError::BadYaml { reason: super::errors::chain_text(&error) })?;
    registry.get_target_by_name(chip_name).map(|_| ()).map_err(|error| ChipDescriptionError::ChipNotInYaml {
        family,
        chip_name: chip_name.to_string(),
        reason: error.to_string(),
    })
}

/// The probe-rs target for `chip_name`: from the profile's YAML when given, else built in.
pub fn resolve_target(
    chip_name: &str,
    target_description_yaml: Option<&str>,
) -> Result<probe_rs::Target, ChipDescriptionError> {
    let mut registry = Registry::from_builtin_families();
    if let Some(yaml) = target_description_yaml {
        registry
            .add_target_family_from_yaml(yaml)
            .map_err(|error| ChipDescriptionError::BadYaml { reason: super::errors::chain_text(&error) })?;
    }
    registry.get_target_by_name(chip_name).map_err(|error| ChipDescriptionError::UnknownChip {
        chip_name: chip_name.to_string(),
        reason: error.to_string(),
    })
}
