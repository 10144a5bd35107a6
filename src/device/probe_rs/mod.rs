//! The probe-rs backend: real debug probes (CMSIS-DAP, ST-Link, J-Link, ...) behind the
//! [`crate::device::Target`] and [`crate::device::Fixture`] traits.
//!
//! **Invariant:** this is the only module that imports probe-rs. Its probe-rs code is kept thin
//! (`session.rs`, `fixture.rs`, the listing below), because probe-rs's fake probe cannot stand in
//! for a chip; everything that decides something is a pure, tested function: selectors and
//! ambiguity ([`selector`]), flash progress ([`progress`]), lock recipes (run from [`crate::chip::lock`]), error
//! mapping ([`errors`]), unique IDs ([`chip`]), and the watchdog thread every
//! probe call runs on ([`worker`]), which turns a stuck probe into a timeout instead of a hang.
//!
//! probe-rs is built without its default features: the CMSIS-DAP v1 (HID) backend uses hidapi's
//! pure-Rust `linux-native-basic-udev` backend and USB goes through `nusb`, so the build needs no
//! libudev, libusb or pkg-config. Where no USB bus is visible (a container, CI), listing finds
//! no probe and says why ([`ProbeListingReport::notes`]).

pub mod chip;
pub mod console_port;
pub mod errors;
pub mod fixture;
pub mod progress;
pub mod registry;
pub mod selector;
mod session;
pub mod worker;

use std::path::{Path, PathBuf};

pub use fixture::ProbeRsFixture;
pub use registry::{ChipDescriptionError, check_target_description};
pub use selector::{
    ConsolePortSelector, ProbeListing, ProbeSelector, ProbeSlotSpec, SelectorError, UnitArrival,
};
pub use session::ProbeRsTarget;

use crate::chip::{ChipIdCheck, LockRecipe};
use crate::profile::{Profile, RamSpan};

/// Why a probe-rs slot could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProbeRsError {
    /// The selector names no probe, several, or one we may not open (with the listing's notes,
    /// e.g. that no USB bus is visible).
    #[error("{error}{}", notes.iter().map(|note| format!(" (note: {note})")).collect::<String>())]
    Selector { error: SelectorError, notes: Vec<String> },
    /// The chip cannot be resolved to a probe-rs target description (checked when the slot
    /// opens, not when the profile loads: the profile layer does not know probe-rs).
    #[error("{}: {error}{}", profile_path.display(), description_path.as_ref().map(|path| format!(" (in {})", path.display())).unwrap_or_default())]
    Chip { profile_path: PathBuf, description_path: Option<PathBuf>, error: Box<ChipDescriptionError> },
    /// The slot's console port cannot be found.
    #[error("device console: {0}")]
    Console(#[from] console_port::ConsolePortError),
    /// The profile locks units but there is no recipe for this chip.
    #[error(
        "the profile locks units (lock.enabled) but there is no lock recipe for chip {chip_name}; set [lock] recipe (one of nrf52-approtect, stm32f4-rdp1, stm32l4-rdp1) or declare [[lock.writes]]"
    )]
    NoLockRecipe { chip_name: String },
}

/// Bounds on probe calls (see [`worker`]); progress resets the flash bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTimeouts {
    /// Opening the probe and attaching.
    pub attach_ms: u64,
    /// One memory read or write, reset, halt.
    pub memory_ms: u64,
    /// Between two flash progress events (one sector erased, one page programmed).
    pub flash_inactivity_ms: u64,
}

impl Default for ProbeTimeouts {
    fn default() -> ProbeTimeouts {
        // A 128 KiB STM32F4 sector takes up to 4 s to erase at x8 parallelism; a probe that
        // gives no sign of life for 30 s is gone.
        ProbeTimeouts { attach_ms: 10_000, memory_ms: 5_000, flash_inactivity_ms: 30_000 }
    }
}

/// What a probe-rs slot needs from the profile, resolved once.
#[derive(Debug, Clone)]
pub struct ProbeRsConfig {
    /// The profile file, named in errors about its chip settings.
    pub profile_path: PathBuf,
    /// Where the custom target description was read from, if any.
    pub target_description_path: Option<PathBuf>,
    /// The chip, as probe-rs names it.
    pub chip_name: String,
    /// The profile's custom target description (YAML text), if any.
    pub target_description_yaml: Option<String>,
    /// Where the unique ID is.
    pub unique_id_location: Option<RamSpan>,
    /// The identification register check, if any.
    pub chip_id_check: Option<ChipIdCheck>,
    /// How to lock (and recover).
    pub lock_recipe: Option<LockRecipe>,
    /// Whether the profile locks units.
    pub lock_enabled: bool,
    /// Where the lock proof reads (the start of the chip's flash).
    pub lock_proof_address: u64,
    /// Whether a locked unit may be recovered by mass erase.
    pub allow_unlock_by_mass_erase: bool,
    /// Bounds on probe calls.
    pub timeouts: ProbeTimeouts,
    /// How long the device's FCC may take to answer on the console port (profiles with `[fcc]`).
    pub fcc_timeouts: crate::fcc::FccTimeouts,
}

impl ProbeRsConfig {
    /// The settings of a validated profile; an FCC-only profile describes no chip.
    pub fn from_profile(profile: &Profile) -> Result<ProbeRsConfig, crate::profile::FirmwareMissing> {
        let firmware = profile.require_firmware("a probe-rs slot")?;
        Ok(ProbeRsConfig {
            profile_path: profile.path.clone(),
            target_description_path: profile
                .chip_target_description
                .as_ref()
                .map(|description| description.path.clone()),
            chip_name: profile.chip_name.clone(),
            target_description_yaml: profile
                .chip_target_description
                .as_ref()
                .map(|description| description.yaml.clone()),
            unique_id_location: profile.unique_id_location,
            chip_id_check: profile.chip_id_check,
            lock_recipe: profile.lock_recipe.clone(),
            lock_enabled: profile.lock.enabled,
            lock_proof_address: firmware.memory.chip_flash.address,
            allow_unlock_by_mass_erase: profile.lock.allow_unlock_by_mass_erase,
            timeouts: ProbeTimeouts::default(),
            fcc_timeouts: crate::device::fcc::fcc_timeouts_for(profile),
        })
    }
}

/// The attached probes, and notes on why the list may be incomplete.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProbeListingReport {
    /// Every probe probe-rs's drivers found.
    pub probes: Vec<ProbeListing>,
    /// Why probes might be missing (no USB bus visible, no permission).
    pub notes: Vec<String>,
}

/// Lists attached probes through probe-rs. Never fails: a host without a visible USB bus gives
/// an empty list with a note.
pub fn list_probes() -> ProbeListingReport {
    let mut report = ProbeListingReport::default();
    if let Some(note) = usb_visibility_note(Path::new("/sys/bus/usb/devices")) {
        // Every probe-rs driver enumerates through sysfs on Linux; asking them would only add a
        // warning per driver to the note.
        report.notes.push(note);
        return report;
    }
    let items = probe_rs::probe::list::Lister::new().list_all_with_access();
    for item in items {
        let accessible = item.accessibility == probe_rs::probe::list::Accessibility::Accessible;
        let info = item.info;
        report.probes.push(ProbeListing {
            identifier: info.identifier.clone(),
            vendor_id: info.vendor_id,
            product_id: info.product_id,
            serial_number: info.serial_number.clone(),
            interface: info.interface,
            driver: info.probe_type(),
            accessible,
        });
    }
    if report.probes.iter().any(|probe| !probe.accessible) {
        report.notes.push(
            "some probes are attached but this user may not open them: install udev rules (docs/probes.md)"
                .to_string(),
        );
    }
    report
}

/// On Linux, probes are found through sysfs; without it (containers, some CI) nothing can be
/// listed, and the user should hear why rather than see a silently empty list.
pub fn usb_visibility_note(sysfs_usb_devices: &Path) -> Option<String> {
    if cfg!(target_os = "linux") && !sysfs_usb_devices.exists() {
        Some(format!(
            "no USB bus is visible to this process ({} is missing): no probe can be listed here",
            sysfs_usb_devices.display()
        ))
    } else {
        None
    }
}
