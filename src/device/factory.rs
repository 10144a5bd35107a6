//! The backend factory: parsing slot selectors (`--probe`, a profile's `[fixture] default`) and
//! opening fixtures for them.
//!
//! This is the one place that knows every backend's name; the station's line session opens
//! every slot through [`open_fixtures`], so a new backend is added here and nowhere else.
//!
//! Selectors: `sim`; `qemu` (a fresh QEMU `mps2-an385` per unit, see `device::qemu`);
//! `gdb:HOST:PORT` and `gdb:/dev/ttyACM0`, optionally `,console=PORT[,baud=N]` (a GDB server in
//! front of a fixture, the device's UART beside it; a new unit is recognised by a unique ID
//! different from the last one); `probe-rs:VID:PID[:SERIAL]` (a real
//! probe through probe-rs, see `device::probe_rs`); `fcc:HOST:PORT` (a device that runs the
//! Izuma client's Factory Configurator Client, no debug probe; one unit per endpoint, see
//! `device::fcc`); `sim,console=PORT[,baud=N]` (a simulated chip flashed through its simulated
//! probe, with a real serial port as its console: the FCC bundles of an `[fcc]` profile go
//! there, as on a probe-rs slot's `,console=`).

use crate::device::Fixture;
use crate::device::fcc::{FccFixture, fcc_timeouts_for};
use crate::device::gdb::{GdbAddress, GdbFixture, GdbOptions, GdbTargetConfig};
use crate::device::probe_rs::fixture::find_shared_probe;
use crate::device::probe_rs::{
    ProbeListing, ProbeRsConfig, ProbeRsError, ProbeRsFixture, ProbeSlotSpec, SelectorError,
};
use crate::device::qemu::{QemuFixture, QemuOptions};
use crate::device::sim::{FaultSchedule, SimConsolePort, SimFixture};
use crate::profile::{Profile, SimTiming};

/// One slot's fixture, as the user selected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixtureSelector {
    /// A simulated fixture (the embedded default).
    Sim,
    /// A simulated fixture whose units have a real serial port as their console:
    /// `sim,console=PORT[,baud=N]` (one slot; the FCC bundles of `[fcc]` profiles go there).
    SimWithConsole { port_name: String, baud_rate: u32 },
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
            sim if sim.starts_with("sim,") => parse_sim_console(&sim["sim,".len()..]).map_err(bad),
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
                    parse_gdb_address(address).map_err(bad)?;
                    Ok(FixtureSelector::Gdb { address: address.to_string() })
                }
                None => Err(bad(
                    "expected \"sim\", \"qemu\", \"gdb:HOST:PORT\", \"gdb:/dev/ttyACM0\", \"probe-rs:VID:PID[:SERIAL]\" or \"fcc:HOST:PORT\" (see `imprint probes`)".to_string()
                )),
            },
        }
    }
}

/// What follows `sim,`: `console=PORT[,baud=N]`.
fn parse_sim_console(options: &str) -> Result<FixtureSelector, String> {
    let (port_name, baud_rate) = parse_console_options(options, "sim")?;
    Ok(FixtureSelector::SimWithConsole { port_name, baud_rate })
}

/// What follows `gdb:`: the server's address, then optionally `,console=PORT[,baud=N]` (the
/// device's UART beside the GDB server, e.g. a USB-UART on the fixture).
fn parse_gdb_address(text: &str) -> Result<(GdbAddress, Option<(String, u32)>), String> {
    let (server, options) = match text.split_once(',') {
        Some((server, options)) => (server, Some(options)),
        None => (text, None),
    };
    let address = GdbAddress::parse(server)?;
    let console =
        options.map(|options| parse_console_options(options, &format!("gdb:{server}"))).transpose()?;
    Ok((address, console))
}

/// `console=PORT[,baud=N]` after a selector's `prefix`: the port and its baud rate (8N1).
fn parse_console_options(options: &str, prefix: &str) -> Result<(String, u32), String> {
    let expected = || {
        format!(
            "expected {prefix},console=PORT[,baud=N] (e.g. {prefix},console=/dev/ttyUSB0), found \"{prefix},{options}\""
        )
    };
    let mut port_name = None;
    let mut baud_rate = crate::device::fcc::FCC_SERIAL_BAUD_DEFAULT;
    for option in options.split(',') {
        match option.split_once('=') {
            Some(("console", port)) if !port.is_empty() && !port.chars().any(char::is_whitespace) => {
                port_name = Some(port.to_string());
            }
            Some(("baud", value)) => {
                baud_rate = value
                    .parse::<u32>()
                    .ok()
                    .filter(|baud| (1..=4_000_000).contains(baud))
                    .ok_or_else(expected)?;
            }
            _ => return Err(expected()),
        }
    }
    let port_name = port_name.ok_or_else(expected)?;
    Ok((port_name, baud_rate))
}

/// `HOST:PORT` of an FCC device (a host: a name, an IPv4 address, or `[IPv6]`, and a port), or
/// its serial port (`/dev/ttyUSB0[,baud=N]`).
fn check_fcc_endpoint(endpoint: &str) -> Result<(), String> {
    crate::device::fcc::FccEndpoint::parse(endpoint).map(|_| ())
}

/// Whether the slot has a channel to the device's FCC besides its debug probe: a console port
/// (a probe-rs slot's `,console=`, QEMU's UART, `sim,console=`).
fn has_console_port(selector: &FixtureSelector) -> bool {
    match selector {
        FixtureSelector::ProbeRs { selector } => selector.console.is_some(),
        FixtureSelector::Qemu | FixtureSelector::SimWithConsole { .. } => true,
        FixtureSelector::Gdb { address } => {
            parse_gdb_address(address).is_ok_and(|(_, console)| console.is_some())
        }
        FixtureSelector::Sim | FixtureSelector::Fcc { .. } => false,
    }
}

/// Whether the profile and the slot agree: `[fcc]` profiles put identity in through the
/// device's FCC, which `fcc:` slots reach, and slots with a debug probe through their console
/// port (the profile then needs its firmware sections: the unit is flashed first); an `fcc:`
/// slot can do nothing else.
fn check_fcc_pairing(selector: &FixtureSelector, profile: &Profile) -> Result<(), FixtureError> {
    let is_fcc_slot = matches!(selector, FixtureSelector::Fcc { .. });
    if !is_fcc_slot && profile.fcc.is_some() && profile.firmware.is_some() && !has_console_port(selector) {
        return Err(FixtureError::Unavailable {
            selector: selector.to_string(),
            reason: format!(
                "the profile {} has an [fcc] section: its units get their FCC bundles over the slot's console port, and this slot has none (give the probe one: probe-rs:VID:PID,console=PORT, gdb:HOST:PORT,console=PORT or sim,console=PORT)",
                profile.path.display()
            ),
        });
    }
    let reason = match (is_fcc_slot, profile.fcc.is_some()) {
        (true, false) => format!(
            "the profile {} has no [fcc] section: an fcc: slot is reached only through the Factory Configurator Client",
            profile.path.display()
        ),
        // An FCC-only profile: name the sections the slot would need.
        (false, true) => match profile.require_firmware(&format!("a {selector} slot")) {
            Err(missing) => format!(
                "{missing}; its units are provisioned through the Factory Configurator Client, which only fcc:HOST:PORT slots reach"
            ),
            Ok(_) => return Ok(()),
        },
        _ => return Ok(()),
    };
    Err(FixtureError::Unavailable { selector: selector.to_string(), reason })
}

impl std::fmt::Display for FixtureSelector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FixtureSelector::Sim => formatter.write_str("sim"),
            FixtureSelector::SimWithConsole { port_name, baud_rate } => {
                write!(formatter, "sim,console={port_name}")?;
                if *baud_rate != crate::device::fcc::FCC_SERIAL_BAUD_DEFAULT {
                    write!(formatter, ",baud={baud_rate}")?;
                }
                Ok(())
            }
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
            FixtureSelector::Sim | FixtureSelector::SimWithConsole { .. } => {
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
                if let FixtureSelector::SimWithConsole { port_name, baud_rate } = selector {
                    fixture = fixture.with_console_port(SimConsolePort {
                        port_name: port_name.clone(),
                        baud_rate: *baud_rate,
                        fcc_timeouts: fcc_timeouts_for(profile),
                    });
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
                let (parsed, console) = parse_gdb_address(address).map_err(|reason| {
                    FixtureError::BadSelector { selector: format!("gdb:{address}"), reason }
                })?;
                let config =
                    GdbTargetConfig::from_profile(profile).map_err(|error| FixtureError::Unavailable {
                        selector: format!("gdb:{address}"),
                        reason: error.to_string(),
                    })?;
                let mut fixture = GdbFixture::new(parsed, GdbOptions::default(), config);
                if let Some((port_name, baud_rate)) = console {
                    fixture = fixture.with_console_port(port_name, baud_rate, fcc_timeouts_for(profile));
                }
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
                }
                .with_fcc_timeouts(fcc_timeouts_for(profile));
                fixtures.push(Box::new(fixture));
            }
            FixtureSelector::Fcc { endpoint } => {
                let fixture = FccFixture::open(endpoint, fcc_timeouts_for(profile)).map_err(|error| {
                    FixtureError::Unavailable {
                        selector: selector.to_string(),
                        reason: format!("the device is not reachable: {error}"),
                    }
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
        check(
            "gdb:127.0.0.1:3333,console=/dev/ttyUSB1",
            Some(FixtureSelector::Gdb { address: "127.0.0.1:3333,console=/dev/ttyUSB1".to_string() }),
        );
        check(
            "gdb:/dev/ttyACM0,console=/dev/ttyACM1,baud=9600",
            Some(FixtureSelector::Gdb { address: "/dev/ttyACM0,console=/dev/ttyACM1,baud=9600".to_string() }),
        );
        check("gdb:127.0.0.1:3333,console=", None);
        check("gdb:127.0.0.1:3333,speed=4000", None);
        for (selector, has_console) in [
            ("gdb:127.0.0.1:3333", false),
            ("gdb:127.0.0.1:3333,console=/dev/ttyUSB1", true),
            ("sim", false),
            ("sim,console=/dev/pts/3", true),
            ("qemu", true),
            ("probe-rs:1366:1015", false),
            ("probe-rs:1366:1015,console=/dev/ttyACM0", true),
            ("fcc:127.0.0.1:7000", false),
        ] {
            let parsed = FixtureSelector::parse(selector).expect(selector);
            assert_eq!(has_console_port(&parsed), has_console, "{selector}");
        }
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
        let sim_console = |port: &str, baud_rate| {
            Some(FixtureSelector::SimWithConsole { port_name: port.to_string(), baud_rate })
        };
        check("sim,console=/dev/pts/3", sim_console("/dev/pts/3", 115_200));
        check("sim,console=/dev/ttyUSB0,baud=921600", sim_console("/dev/ttyUSB0", 921_600));
        check("sim,console=", None);
        check("sim,baud=9600", None);
        check("sim,console=/dev/pts/3,baud=0", None);
        check("sim,console=/dev/pts/3,parity=even", None);
        assert_eq!(
            FixtureSelector::parse("sim,console=/dev/pts/3,baud=9600")
                .map(|selector| selector.to_string())
                .ok(),
            Some("sim,console=/dev/pts/3,baud=9600".to_string())
        );
    }
}
