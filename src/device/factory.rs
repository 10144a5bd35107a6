//! The backend factory: parsing slot selectors (`--probe`, a profile's `[fixture] default`) and
//! opening fixtures for them.
//!
//! This is the one place that knows every backend's name; the station's line session opens
//! every slot through [`open_fixtures`], so a new backend is added here and nowhere else.
//!
//! Selectors: `sim`; `qemu` (a fresh QEMU `mps2-an385` per unit, see `device::qemu`);
//! `gdb:HOST:PORT` and `gdb:/dev/ttyACM0` (a GDB server in front of a fixture; a new unit is
//! recognised by a unique ID different from the last one); `probe-rs:VID:PID[:SERIAL]` (a real
//! probe through probe-rs, see `device::probe_rs`); `fcc:HOST:PORT` (a device that runs the
//! Izuma client's Factory Configurator Client, no debug probe; one unit per endpoint, see
//! `device::fcc`).

use crate::device::Fixture;
use crate::device::fcc::FccFixture;
use crate::device::gdb::{GdbAddress, GdbFixture, GdbOptions, GdbTargetConfig};
use crate::device::probe_rs::fixture::find_shared_probe;
use crate::device::probe_rs::{
    ProbeListing, ProbeRsConfig, ProbeRsError, ProbeRsFixture, ProbeSlotSpec, SelectorError,
};
use crate::device::qemu::{QemuFixture, QemuOptions};
use crate::device::sim::{FaultSchedule, SimFixture};
use crate::fcc::FccTimeouts;
use crate::profile::{Profile, SimTiming};
use std::time::Duration;

/// One slot's fixture, as the user selected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixtureSelector {
    /// A simulated fixture (the embedded default).
    Sim,
    /// A real probe through probe-rs: `probe-rs:VID:PID[:SERIAL][,console=PORT][,baud=N][,swap=no]`.
    ProbeRs { selector: ProbeSlotSpec },
    /// A GDB server: `gdb:HOST:PORT` (OpenOCD, J-Link GDB Server, pyOCD, QEMU) or
    /// `gdb:/dev/ttyACM0` (a Black Magic Probe's GDB port); `address` is what follows `gdb:`.
    Gdb { address: String },
    /// A QEMU `mps2-an385` virtual fixture: every unit a fresh emulator process.
    Qemu,
    /// An FCC-only device on the network: `fcc:HOST:PORT` (`endpoint` is what follows `fcc:`).
    Fcc { endpoint: String },
}

/// Why a selection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The selector text is not understood.
    #[error("probe selector {selector:?}: {reason}")]
    BadSelector { selector: String, reason: String },
    /// A probe-rs slot could not be opened (no such probe, ambiguous, unknown chip, ...).
    #[error("probe selector {selector:?}: {error}")]
    ProbeRs { selector: String, error: ProbeRsError },
    /// The selected fixture cannot be used (a tool is missing, the profile lacks a setting).
    #[error("fixture {selector:?}: {reason}")]
    Unavailable { selector: String, reason: String },
}

impl FixtureSelector {
    /// Parses a `--probe` value: `sim`, `qemu`, `gdb:HOST:PORT`, `gdb:SERIAL-PORT`, or
    /// `probe-rs:VID:PID[:SERIAL]` with optional `,console=PORT`, `,baud=N`, `,swap=no`
    /// (docs/probes.md).
    pub fn parse(selector: &str) -> Result<FixtureSelector, FixtureError> {
        let bad = |reason: String| FixtureError::BadSelector { selector: selector.to_string(), reason };
        match selector {
            "sim" => Ok(FixtureSelector::Sim),
            probe_rs if probe_rs.starts_with("probe-rs:") => {
                ProbeSlotSpec::parse(&probe_rs["probe-rs:".len()..])
                    .map(|selector| FixtureSelector::ProbeRs { selector })
                    .map_err(|error| FixtureError::BadSelector {
                        selector: selector.to_string(),
                        reason: match error {
                            SelectorError::Malformed { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })
            }
            "qemu" => Ok(FixtureSelector::Qemu),
            fcc if fcc.starts_with("fcc:") => {
                let endpoint = &fcc["fcc:".len()..];
                check_fcc_endpoint(endpoint).map_err(bad)?;
                Ok(FixtureSelector::Fcc { endpoint: endpoint.to_string() })
            }
            _ => match selector.strip_prefix("gdb:") {
                Some(address) => {
                    GdbAddress::parse(address).map_err(bad)?;
                    Ok(FixtureSelector::Gdb { address: address.to_string() })
                }
                None => Err(bad(
                    "expected \"sim\", \"qemu\", \"gdb:HOST:PORT\", \"gdb:/dev/ttyACM0\", \"probe-rs:VID:PID[:SERIAL]\" or \"fcc:HOST:PORT\" (see `imprint probes`)".to_string()
                )),
            },
        }
    }
}

/// `HOST:PORT` of an FCC device (a host: a name, an IPv4 address, or `[IPv6]`, and a port), or
/// its serial port (`/dev/ttyUSB0[,baud=N]`).
fn check_fcc_endpoint(endpoint: &str) -> Result<(), String> {
    crate::device::fcc::FccEndpoint::parse(endpoint).map(|_| ())
}

/// Whether the profile and the slot agree: `[fcc]` profiles put identity in through the
/// device's FCC, which only `fcc:` slots reach; an `fcc:` slot can do nothing else.
fn check_fcc_pairing(selector: &FixtureSelector, profile: &Profile) -> Result<(), FixtureError> {
    let is_fcc_slot = matches!(selector, FixtureSelector::Fcc { .. });
    let reason = match (is_fcc_slot, profile.fcc.is_some()) {
        (true, false) => format!(
            "the profile {} has no [fcc] section: an fcc: slot is reached only through the Factory Configurator Client",
            profile.path.display()
        ),
        (false, true) => match profile.require_firmware(&format!("a {selector} slot")) {
            // An FCC-only profile: name the sections the slot would need.
            Err(missing) => format!(
                "{missing}; its units are provisioned through the Factory Configurator Client, which only fcc:HOST:PORT slots reach"
            ),
            Ok(_) => format!(
                "the profile {} has an [fcc] section: its units are provisioned through the Factory Configurator Client, which only fcc:HOST:PORT slots reach",
                profile.path.display()
            ),
        },
        _ => return Ok(()),
    };
    Err(FixtureError::Unavailable { selector: selector.to_string(), reason })
}

impl std::fmt::Display for FixtureSelector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FixtureSelector::Sim => formatter.write_str("sim"),
            FixtureSelector::Qemu => formatter.write_str("qemu"),
            FixtureSelector::Gdb { address } => write!(formatter, "gdb:{address}"),
            FixtureSelector::ProbeRs { selector } => write!(formatter, "probe-rs:{selector}"),
            FixtureSelector::Fcc { endpoint } => write!(formatter, "fcc:{endpoint}"),
        }
    }
}

/// Options that shape simulated fixtures.
#[derive(Default)]
pub struct SimOptions {
    /// The timing model (the profile's, or zero).
    pub timing: SimTiming,
    /// Repeatable unique IDs from this seed; random when `None` (also used by QEMU fixtures).
    pub uid_seed: Option<u64>,
    /// Per-slot fault schedules (slot index -> schedule).
    pub fault_schedules: Vec<(usize, FaultSchedule)>,
}

/// Opens one fixture per selector, in slot order.
pub fn open_fixtures(
    selectors: &[FixtureSelector],
    profile: &Profile,
    mut sim_options: SimOptions,
) -> Result<Vec<Box<dyn Fixture>>, FixtureError> {
    let mut fixtures: Vec<Box<dyn Fixture>> = Vec::with_capacity(selectors.len());
    // Each slot owns its probe: the probes probe-rs slots resolved to, by slot.
    let mut probe_owners: Vec<(usize, ProbeListing)> = Vec::new();
    for (slot, selector) in selectors.iter().enumerate() {
        check_fcc_pairing(selector, profile)?;
        match selector {
            FixtureSelector::Sim => {
                let firmware = profile.require_firmware("a sim slot").map_err(|error| {
                    FixtureError::Unavailable { selector: selector.to_string(), reason: error.to_string() }
                })?;
                let mut fixture = SimFixture::new(
                    &format!("sim-{slot}"),
                    &profile.chip_name,
                    &firmware.memory,
                    sim_options.timing,
                    sim_options.uid_seed,
                )
                .with_hardware(profile.device_hardware);
                if let Some(index) =
                    sim_options.fault_schedules.iter().position(|(fault_slot, _)| *fault_slot == slot)
                {
                    let (_, schedule) = sim_options.fault_schedules.swap_remove(index);
                    fixture = fixture.with_fault_schedule(schedule);
                }
                fixtures.push(Box::new(fixture));
            }
            FixtureSelector::ProbeRs { selector } => {
                let config =
                    ProbeRsConfig::from_profile(profile).map_err(|error| FixtureError::Unavailable {
                        selector: format!("probe-rs:{selector}"),
                        reason: error.to_string(),
                    })?;
                let fixture =
                    ProbeRsFixture::open(&format!("probe-rs-{slot}"), selector.clone(), config).map_err(
                        |error| FixtureError::ProbeRs { selector: format!("probe-rs:{selector}"), error },
                    )?;
                probe_owners.push((slot, fixture.probe().clone()));
                let owners: Vec<(usize, &ProbeListing)> =
                    probe_owners.iter().map(|(slot, probe)| (*slot, probe)).collect();
                if let Some((earlier_slot, _)) = find_shared_probe(&owners) {
                    return Err(FixtureError::BadSelector {
                        selector: format!("probe-rs:{selector}"),
                        reason: format!(
                            "slot {slot} names the probe slot {earlier_slot} already owns; each slot needs its own probe"
                        ),
                    });
                }
                fixtures.push(Box::new(fixture));
            }
            FixtureSelector::Gdb { address } => {
                let parsed = GdbAddress::parse(address).map_err(|reason| FixtureError::BadSelector {
                    selector: format!("gdb:{address}"),
                    reason,
                })?;
                let config =
                    GdbTargetConfig::from_profile(profile).map_err(|error| FixtureError::Unavailable {
                        selector: format!("gdb:{address}"),
                        reason: error.to_string(),
                    })?;
                let fixture = GdbFixture::new(parsed, GdbOptions::default(), config);
                // Refused at start like a probe-rs probe that is not there: a server that does
                // not answer now is a wrong selector or a server not started, not a unit problem.
                fixture.check_reachable().map_err(|error| FixtureError::Unavailable {
                    selector: format!("gdb:{address}"),
                    reason: format!("the GDB server does not answer: {error} (is it started?)"),
                })?;
                fixtures.push(Box::new(fixture));
            }
            FixtureSelector::Qemu => {
                let config = GdbTargetConfig::from_profile(profile).map_err(|error| {
                    FixtureError::Unavailable { selector: "qemu".to_string(), reason: error.to_string() }
                })?;
                let fixture = QemuFixture::new(&format!("qemu-{slot}"), config, QemuOptions::default())
                    .map_err(|error| FixtureError::Unavailable {
                        selector: "qemu".to_string(),
                        reason: error.to_string(),
                    })?;
                let fixture = match sim_options.uid_seed {
                    Some(seed) => fixture.with_uid_seed(seed),
                    None => fixture,
                };
                fixtures.push(Box::new(fixture));
            }
            FixtureSelector::Fcc { endpoint } => {
                let timeouts = FccTimeouts {
                    response: Duration::from_millis(
                        profile.fcc.as_ref().map_or(30_000, |fcc| fcc.response_timeout_ms),
                    ),
                    ..FccTimeouts::default()
                };
                let fixture =
                    FccFixture::open(endpoint, timeouts).map_err(|error| FixtureError::Unavailable {
                        selector: selector.to_string(),
                        reason: format!("the device is not reachable: {error}"),
                    })?;
                fixtures.push(Box::new(fixture));
            }
        }
    }
    Ok(fixtures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(selector: &str, expected: Option<FixtureSelector>) {
        assert_eq!(FixtureSelector::parse(selector).ok(), expected, "{selector}");
    }

    #[test]
    fn selectors() {
        check("sim", Some(FixtureSelector::Sim));
        check("qemu", Some(FixtureSelector::Qemu));
        check("gdb:127.0.0.1:3333", Some(FixtureSelector::Gdb { address: "127.0.0.1:3333".to_string() }));
        check("gdb:/dev/ttyACM0", Some(FixtureSelector::Gdb { address: "/dev/ttyACM0".to_string() }));
        check("gdb:", None);
        check("gdb:localhost", None);
        check("jlink", None);
        check("fcc:127.0.0.1:7000", Some(FixtureSelector::Fcc { endpoint: "127.0.0.1:7000".to_string() }));
        check(
            "fcc:device-7.line:7000",
            Some(FixtureSelector::Fcc { endpoint: "device-7.line:7000".to_string() }),
        );
        check("fcc:127.0.0.1", None);
        check("fcc::7000", None);
        check("fcc:127.0.0.1:0", None);
        check("fcc:127.0.0.1:70000", None);
        check("fcc:/dev/ttyUSB0", Some(FixtureSelector::Fcc { endpoint: "/dev/ttyUSB0".to_string() }));
        check(
            "fcc:/dev/ttyUSB0,baud=921600",
            Some(FixtureSelector::Fcc { endpoint: "/dev/ttyUSB0,baud=921600".to_string() }),
        );
        check("fcc:COM4", Some(FixtureSelector::Fcc { endpoint: "COM4".to_string() }));
        check("fcc:/dev/ttyUSB0,baud=0", None);
        check("fcc:/dev/ttyUSB0,parity=even", None);
    }
}
