//! The probe-rs backend's logic, without hardware: probe selectors and their ambiguity, slot
//! options, flash progress mapping, lock recipes (checked step by step against the vendors'
//! reference-manual sequences and run on a register model), unique-ID and chip-ID handling, the
//! profile additions (`chip.target_description` with a real probe-rs target file,
//! `chip.id_register`, `[lock] recipe` / `[[lock.writes]]`), the example board profiles, and
//! `imprint probes` / `imprint run --probe probe-rs:...` through the real binary.
//!
//! What needs a chip (attach, flash, lock proof on silicon) is in tests/hil.rs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imprint::chip::ChipIdCheck;
use imprint::chip::lock::{
    LockRecipe, LockStateCheck, RegisterBus, RegisterStep, UnlockMethod, judge_lock_proof,
    run_register_steps, steps_time_bound_ms,
};
use imprint::device::TargetError;
use imprint::device::factory::{FixtureError, FixtureSelector};
use imprint::device::probe_rs::chip::{
    UniqueIdRead, plan_unique_id_read, reported_chip_name, unique_id_bytes_from_words, unique_id_from_bytes,
};
use imprint::device::probe_rs::console_port::{
    ConsolePortError, SerialPortListing, UsbSerialIdentity, choose_console_port, open_console,
};
use imprint::device::probe_rs::fixture::{
    ArrivalDecision, ArrivalTracker, board_presence, find_shared_probe, poll_backoff,
    resolve_configured_target,
};
use imprint::device::probe_rs::progress::{FlashEvent, FlashPhase, FlashProgressTally};
use imprint::device::probe_rs::registry::{ChipDescriptionError, check_target_description, resolve_target};
use imprint::device::probe_rs::selector::{
    ConsolePortSelector, ProbeListing, ProbeSelector, ProbeSlotSpec, SelectorError, UnitArrival, choose_probe,
};
use imprint::device::probe_rs::{ProbeRsConfig, usb_visibility_note};
use imprint::profile::{Profile, RamSpan};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Selectors

fn check_selector(text: &str, expected: Option<(u16, u16, Option<&str>)>) {
    let parsed = ProbeSelector::parse(text);
    match (parsed, expected) {
        (Ok(selector), Some((vendor_id, product_id, serial))) => {
            assert_eq!(
                (selector.vendor_id, selector.product_id, selector.serial_number.as_deref()),
                (vendor_id, product_id, serial),
                "{text}"
            );
        }
        (Err(SelectorError::Malformed { text: named, reason }), None) => {
            assert_eq!(named, text);
            assert!(reason.contains("expected VID:PID[:SERIAL]"), "{reason}");
        }
        (outcome, expected) => panic!("{text}: got {outcome:?}, expected {expected:?}"),
    }
}

#[test]
fn selectors_parse_vid_pid_and_serial() {
    check_selector("0483:374b", Some((0x0483, 0x374b, None)));
    check_selector(
        "0483:374B:066DFF485550755187121931",
        Some((0x0483, 0x374b, Some("066DFF485550755187121931"))),
    );
    check_selector("1366:1015:000683123456", Some((0x1366, 0x1015, Some("000683123456"))));
    check_selector("0x0d28:0x0204", Some((0x0d28, 0x0204, None)));
    // An empty serial selects a probe without one.
    check_selector("c251:f002:", Some((0xc251, 0xf002, Some(""))));
    // Serial numbers may contain colons (ESP USB-JTAG uses the MAC address).
    check_selector("303a:1001:7C:DF:A1:00:00:01", Some((0x303a, 0x1001, Some("7C:DF:A1:00:00:01"))));
    check_selector("", None);
    check_selector("0483", None);
    check_selector("zz83:374b", None);
    check_selector("12345:1", None);
    check_selector("0483:", None);
    check_selector("0483:374b:has space", None);
}

fn listing(identifier: &str, vendor_id: u16, product_id: u16, serial: Option<&str>) -> ProbeListing {
    ProbeListing {
        identifier: identifier.to_string(),
        vendor_id,
        product_id,
        serial_number: serial.map(str::to_string),
        interface: None,
        driver: "test".to_string(),
        accessible: true,
    }
}

#[test]
fn choosing_a_probe_refuses_none_ambiguity_and_no_access() {
    let attached = vec![
        listing("STLink V2-1", 0x0483, 0x374b, Some("066DFF485550755187121931")),
        listing("STLink V2-1", 0x0483, 0x374b, Some("0670FF555051897267154525")),
        listing("J-Link", 0x1366, 0x1015, Some("000683123456")),
        listing("CMSIS-DAP", 0xc251, 0xf002, None),
    ];
    let choose = |text: &str| choose_probe(&ProbeSelector::parse(text).unwrap(), &attached).cloned();

    // Exactly one: by full serial, in either case, or by VID:PID when only one such probe is there.
    assert_eq!(choose("0483:374b:066DFF485550755187121931").unwrap(), attached[0]);
    assert_eq!(choose("0483:374b:066dff485550755187121931").unwrap(), attached[0]);
    assert_eq!(choose("1366:1015").unwrap(), attached[2]);
    assert_eq!(choose("c251:f002:").unwrap(), attached[3]);

    // Two ST-Links and no serial: refused, naming both so the operator can pick.
    match choose("0483:374b") {
        Err(SelectorError::Ambiguous { selector, candidates }) => {
            assert_eq!(selector, "0483:374b");
            assert_eq!(candidates.len(), 2);
            assert!(candidates[0].contains("066DFF485550755187121931"), "{candidates:?}");
            assert!(candidates[1].contains("0670FF555051897267154525"), "{candidates:?}");
            let message = choose("0483:374b").unwrap_err().to_string();
            assert!(message.contains("ambiguous") && message.contains("VID:PID:SERIAL"), "{message}");
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }

    // None: the error lists what is attached.
    match choose("0483:374b:NOPE") {
        Err(SelectorError::NoMatch { attached: described, .. }) => assert_eq!(described.len(), 4),
        other => panic!("expected no match, got {other:?}"),
    }
    // A serial given for a probe that has none does not match it.
    assert!(matches!(choose("c251:f002:123"), Err(SelectorError::NoMatch { .. })));
    assert!(
        choose_probe(&ProbeSelector::parse("0483:374b").unwrap(), &[])
            .unwrap_err()
            .to_string()
            .contains("attached: none")
    );

    // Attached but not ours to open (no udev rule).
    let mut locked_down = attached.clone();
    locked_down[2].accessible = false;
    assert!(matches!(
        choose_probe(&ProbeSelector::parse("1366:1015").unwrap(), &locked_down),
        Err(SelectorError::NoAccess { .. })
    ));
}

#[test]
fn two_slots_never_share_a_probe() {
    let first = listing("STLink V2-1", 0x0483, 0x374b, Some("066DFF485550755187121931"));
    let second = listing("STLink V2-1", 0x0483, 0x374b, Some("0670FF555051897267154525"));
    assert_eq!(find_shared_probe(&[(0, &first), (1, &second)]), None);
    // Slot 2 resolved (e.g. through a differently spelled selector) to slot 0's probe.
    assert_eq!(find_shared_probe(&[(0, &first), (1, &second), (2, &first.clone())]), Some((0, 2)));
    // The other interface of a composite probe is another probe.
    let mut other_interface = first.clone();
    other_interface.interface = Some(1);
    assert_eq!(find_shared_probe(&[(0, &first), (1, &other_interface)]), None);
}

#[test]
fn exact_selectors_name_one_probe_and_round_trip() {
    let probe = listing("J-Link", 0x1366, 0x1015, Some("000683123456"));
    assert_eq!(probe.exact_selector().to_string(), "1366:1015:000683123456");
    assert_eq!(listing("CMSIS-DAP", 0xc251, 0xf002, None).exact_selector().to_string(), "c251:f002:");
    for text in ["0483:374b", "0483:374b:066DFF485550755187121931", "c251:f002:"] {
        assert_eq!(ProbeSelector::parse(text).unwrap().to_string(), text);
    }
}

fn check_slot(text: &str, expected: Result<(Option<ConsolePortSelector>, u32, UnitArrival), &str>) {
    match (ProbeSlotSpec::parse(text), expected) {
        (Ok(spec), Ok((console, baud, arrival))) => {
            assert_eq!(
                (spec.console.clone(), spec.console_baud_rate, spec.unit_arrival),
                (console, baud, arrival),
                "{text}"
            );
            // Display gives the same specification back.
            assert_eq!(ProbeSlotSpec::parse(&spec.to_string()).unwrap(), spec, "{text}");
        }
        (Err(error), Err(fragment)) => assert!(error.to_string().contains(fragment), "{text}: {error}"),
        (outcome, expected) => panic!("{text}: got {outcome:?}, expected {expected:?}"),
    }
}

#[test]
fn slot_options_choose_console_baud_and_arrival() {
    check_slot("0483:374b:066D", Ok((None, 115_200, UnitArrival::WaitForSwap)));
    check_slot(
        "0483:374b:066D,console=probe",
        Ok((Some(ConsolePortSelector::ProbeVirtualComPort), 115_200, UnitArrival::WaitForSwap)),
    );
    check_slot(
        "0483:374b,console=/dev/ttyACM3,baud=921600,swap=no",
        Ok((Some(ConsolePortSelector::Name("/dev/ttyACM3".into())), 921_600, UnitArrival::SameBoard)),
    );
    check_slot(
        "1366:1015,console=usb:0403:6001:A50285BI",
        Ok((
            Some(ConsolePortSelector::Usb(ProbeSelector::parse("0403:6001:A50285BI").unwrap())),
            115_200,
            UnitArrival::WaitForSwap,
        )),
    );
    check_slot("0483:374b,swap=wait", Ok((None, 115_200, UnitArrival::WaitForSwap)));
    check_slot("0483:374b,baud=0", Err("expected a positive number"));
    check_slot("0483:374b,baud=fast", Err("expected a positive number"));
    check_slot("0483:374b,swap=maybe", Err("expected \"wait\" or \"no\""));
    check_slot("0483:374b,speed=4000", Err("unknown option \"speed\""));
    check_slot("0483:374b,console", Err("expected KEY=VALUE"));
    check_slot("0483:374b,console=", Err("console= needs a port name"));
    check_slot("0483:374b,console=usb:zz", Err("expected VID:PID[:SERIAL]"));
}

#[test]
fn fixture_selectors_name_probe_rs_slots() {
    match FixtureSelector::parse("probe-rs:0483:374b:066D,console=probe").unwrap() {
        FixtureSelector::ProbeRs { selector } => {
            assert_eq!(selector.probe, ProbeSelector::parse("0483:374b:066D").unwrap());
            assert_eq!(selector.console, Some(ConsolePortSelector::ProbeVirtualComPort));
        }
        other => panic!("expected a probe-rs slot, got {other:?}"),
    }
    match FixtureSelector::parse("probe-rs:0483") {
        Err(FixtureError::BadSelector { selector, reason }) => {
            assert_eq!(selector, "probe-rs:0483");
            assert!(reason.contains("missing the product ID"), "{reason}");
        }
        other => panic!("expected a bad selector, got {other:?}"),
    }
    assert!(FixtureSelector::parse("stlink").unwrap_err().to_string().contains("probe-rs:VID:PID[:SERIAL]"));
}

// ---------------------------------------------------------------------------------------------
// Console ports

fn serial_port(name: &str, usb: Option<(u16, u16, Option<&str>)>) -> SerialPortListing {
    SerialPortListing {
        port_name: name.to_string(),
        usb: usb.map(|(vendor_id, product_id, serial)| UsbSerialIdentity {
            vendor_id,
            product_id,
            serial_number: serial.map(str::to_string),
        }),
    }
}

#[test]
fn console_ports_are_found_by_name_usb_identity_or_as_the_probes_own() {
    let ports = vec![
        serial_port("/dev/ttyS0", None),
        serial_port("/dev/ttyACM0", Some((0x0483, 0x374b, Some("066DFF485550755187121931")))),
        serial_port("/dev/ttyACM1", Some((0x0483, 0x374b, Some("0670FF555051897267154525")))),
        serial_port("/dev/ttyUSB0", Some((0x0403, 0x6001, Some("A50285BI")))),
        serial_port("/dev/ttyUSB1", Some((0x0403, 0x6001, Some("A9XQ2C1M")))),
    ];
    let nucleo = listing("STLink V2-1", 0x0483, 0x374b, Some("0670FF555051897267154525"));
    let choose = |selector: ConsolePortSelector| choose_console_port(&selector, &nucleo, &ports);

    assert_eq!(choose(ConsolePortSelector::ProbeVirtualComPort).unwrap(), "/dev/ttyACM1");
    assert_eq!(choose(ConsolePortSelector::Name("/dev/ttyS0".into())).unwrap(), "/dev/ttyS0");
    let usb = |text: &str| ConsolePortSelector::Usb(ProbeSelector::parse(text).unwrap());
    assert_eq!(choose(usb("0403:6001:a9xq2c1m")).unwrap(), "/dev/ttyUSB1");
    match choose(usb("0403:6001")) {
        Err(error @ ConsolePortError::Ambiguous { .. }) => {
            let message = error.to_string();
            assert!(message.contains("/dev/ttyUSB0") && message.contains("/dev/ttyUSB1"), "{message}");
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    match choose(usb("10c4:ea60")) {
        Err(error @ ConsolePortError::NoMatch { .. }) => {
            assert!(error.to_string().contains("/dev/ttyACM0"), "{error}")
        }
        other => panic!("expected no match, got {other:?}"),
    }
    // A probe without a virtual COM port (a J-Link without VCOM enabled).
    let jlink = listing("J-Link", 0x1366, 0x0101, Some("000260012345"));
    assert!(matches!(
        choose_console_port(&ConsolePortSelector::ProbeVirtualComPort, &jlink, &ports),
        Err(ConsolePortError::NoMatch { .. })
    ));
}

#[test]
fn a_named_console_port_is_read_through_the_shared_console() {
    // A pty pair stands in for the USB-UART: the device writes to one end, the slot's console
    // opens the other by name, as `console=/dev/pts/N` would.
    use serialport::SerialPort;
    use std::io::Write;
    let (mut device_end, station_end) = serialport::TTYPort::pair().expect("a pty pair");
    let port_name = station_end.name().expect("the pty has a name");
    let probe = listing("STLink V2-1", 0x0483, 0x374b, Some("066D"));
    let console = open_console(&ConsolePortSelector::Name(port_name.clone()), &probe, 115_200).unwrap();
    assert_eq!(console.port_name(), port_name);
    device_end.write_all(b"imprint: self-test report\r\npartial").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    while lines.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lines = console.take_lines();
    }
    assert_eq!(lines, vec!["imprint: self-test report".to_string()]);

    let missing =
        open_console(&ConsolePortSelector::Name("/dev/imprint-no-such-port".into()), &probe, 115_200);
    assert!(
        matches!(missing, Err(ConsolePortError::Open(reason)) if reason.contains("/dev/imprint-no-such-port"))
    );
}

// ---------------------------------------------------------------------------------------------
// Flash progress

fn feed(tally: &mut FlashProgressTally, events: Vec<FlashEvent>) -> Vec<u64> {
    events.into_iter().filter_map(|event| tally.observe(event)).collect()
}

#[test]
fn erase_progress_counts_sectors_and_checks_coverage() {
    use FlashEvent::*;
    let mut tally = FlashProgressTally::new(FlashPhase::Erase, 3 * 4096);
    let reported = feed(
        &mut tally,
        vec![
            Started(FlashPhase::Erase),
            Progress { phase: FlashPhase::Erase, size_bytes: 4096 },
            Progress { phase: FlashPhase::Erase, size_bytes: 4096 },
            Progress { phase: FlashPhase::Erase, size_bytes: 4096 },
            Finished(FlashPhase::Erase),
        ],
    );
    assert_eq!(reported, vec![4096, 8192, 12288]);
    assert_eq!(tally.check_erase_covered(0x8000), Ok(()));

    // The chip's sectors did not tile the request (a profile sector size of 16 KiB over 128 KiB
    // sectors): probe-rs erased only what lay wholly inside. Refused, not silently short.
    let mut short = FlashProgressTally::new(FlashPhase::Erase, 0x2_0000);
    feed(&mut short, vec![Progress { phase: FlashPhase::Erase, size_bytes: 0x4000 }]);
    match short.check_erase_covered(0x0802_0000) {
        Err(TargetError::Refused { operation: "erase", address: 0x0802_0000, reason }) => {
            assert!(
                reason.contains("16384 of the 131072 bytes") && reason.contains("sector_size"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn program_progress_is_capped_at_the_data_and_ignores_other_phases() {
    use FlashEvent::*;
    // 600 bytes programmed in 256-byte pages: the third page overshoots; fill and verify do not
    // move the programmed count.
    let mut tally = FlashProgressTally::new(FlashPhase::Program, 600);
    let reported = feed(
        &mut tally,
        vec![
            Started(FlashPhase::Fill),
            Progress { phase: FlashPhase::Fill, size_bytes: 1024 },
            Started(FlashPhase::Program),
            Progress { phase: FlashPhase::Program, size_bytes: 256 },
            Progress { phase: FlashPhase::Program, size_bytes: 256 },
            Progress { phase: FlashPhase::Program, size_bytes: 256 },
            Finished(FlashPhase::Program),
            Started(FlashPhase::Verify),
            Progress { phase: FlashPhase::Verify, size_bytes: 768 },
            Finished(FlashPhase::Verify),
        ],
    );
    assert_eq!(reported, vec![256, 512, 600]);
    assert_eq!(tally.bytes_in(FlashPhase::Verify), 768);
    assert_eq!(tally.check_program_covered(0x8000, true), Ok(()));

    // A loader that claims success without programming everything, or without its verify.
    let mut partial = FlashProgressTally::new(FlashPhase::Program, 600);
    feed(&mut partial, vec![Progress { phase: FlashPhase::Program, size_bytes: 256 }]);
    assert!(matches!(partial.check_program_covered(0x8000, false), Err(TargetError::Refused { .. })));
    let mut unverified = FlashProgressTally::new(FlashPhase::Program, 256);
    feed(&mut unverified, vec![Progress { phase: FlashPhase::Program, size_bytes: 256 }]);
    assert_eq!(unverified.check_program_covered(0x8000, false), Ok(()));
    assert!(unverified.check_program_covered(0x8000, true).is_err());
}

#[test]
fn a_failed_phase_and_the_algorithms_message_go_into_the_error() {
    use FlashEvent::*;
    let mut tally = FlashProgressTally::new(FlashPhase::Program, 256);
    feed(
        &mut tally,
        vec![
            Started(FlashPhase::Program),
            Message("flash busy".to_string()),
            Failed(FlashPhase::Program),
            Failed(FlashPhase::Verify),
        ],
    );
    assert_eq!(tally.failed_phase(), Some(FlashPhase::Program));
    assert_eq!(tally.failure_context(), "during the program phase; flash algorithm said: flash busy");
    assert_eq!(FlashProgressTally::new(FlashPhase::Erase, 1).failure_context(), "");
}

// ---------------------------------------------------------------------------------------------
// Lock recipes

#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    Write(u64, u32),
    Reset,
    LinkDropped,
}

/// A register file with just enough behaviour of the flash controllers the recipes drive to
/// catch a wrong sequence: option registers ignore writes until the key sequence was written,
/// OPTSTRT keeps BSY set for a few reads and is cleared by the hardware, and writes marked as
/// dropping the link (OBL_LAUNCH) fail like the real reset does.
#[derive(Default)]
struct RegisterModel {
    registers: HashMap<u64, u32>,
    accesses: Vec<Access>,
    busy_reads_left: u32,
    f4_keys_seen: u32,
    l4_keys_seen: u32,
    l4_option_keys_seen: u32,
    fail_writes_at: Option<u64>,
}

const F4_OPTKEYR: u64 = 0x4002_3C08;
const F4_SR: u64 = 0x4002_3C0C;
const F4_OPTCR: u64 = 0x4002_3C14;
const L4_KEYR: u64 = 0x4002_2008;
const L4_OPTKEYR: u64 = 0x4002_200C;
const L4_SR: u64 = 0x4002_2010;
const L4_CR: u64 = 0x4002_2014;
const L4_OPTR: u64 = 0x4002_2020;

impl RegisterModel {
    fn with(registers: &[(u64, u32)]) -> RegisterModel {
        RegisterModel { registers: registers.iter().copied().collect(), ..Default::default() }
    }

    fn writes(&self) -> Vec<Access> {
        self.accesses.clone()
    }
}

impl RegisterBus for RegisterModel {
    fn read_u32(&mut self, address: u64) -> Result<u32, TargetError> {
        let value = self.registers.get(&address).copied().unwrap_or(0);
        if (address == F4_SR || address == L4_SR) && self.busy_reads_left > 0 {
            self.busy_reads_left -= 1;
            return Ok(value | 1 << 16);
        }
        Ok(value)
    }

    fn write_u32(&mut self, address: u64, value: u32) -> Result<(), TargetError> {
        self.accesses.push(Access::Write(address, value));
        if self.fail_writes_at == Some(address) {
            return Err(TargetError::ProbeLost { reason: "the link dropped".into() });
        }
        let stored = self.registers.entry(address).or_insert(0);
        match address {
            F4_OPTKEYR => {
                // KEY1 then KEY2, in that order; anything else starts over.
                self.f4_keys_seen = match (self.f4_keys_seen, value) {
                    (0, 0x0819_2A3B) => 1,
                    (1, 0x4C5D_6E7F) => 2,
                    _ => 0,
                };
                if self.f4_keys_seen == 2 {
                    self.f4_keys_seen = 0;
                    let optcr = self.registers.entry(F4_OPTCR).or_insert(0);
                    *optcr &= !1; // OPTLOCK cleared by the key sequence
                }
            }
            F4_OPTCR => {
                let locked = *stored & 1 == 1;
                if locked && value & 1 == 1 {
                    return Ok(()); // writes are ignored while OPTLOCK is set
                }
                *stored = value & !(1 << 1); // the hardware clears OPTSTRT...
                if value & (1 << 1) != 0 {
                    self.busy_reads_left = 3; // ...after programming the option bytes
                }
            }
            L4_KEYR => {
                self.l4_keys_seen += 1;
                if self.l4_keys_seen == 2 {
                    *self.registers.entry(L4_CR).or_insert(0) &= !(1 << 31);
                }
            }
            L4_OPTKEYR => {
                self.l4_option_keys_seen += 1;
                if self.l4_option_keys_seen == 2 {
                    *self.registers.entry(L4_CR).or_insert(0) &= !(1 << 30);
                }
            }
            L4_OPTR => {
                let option_locked = self.registers.get(&L4_CR).copied().unwrap_or(0) & (1 << 30) != 0;
                if !option_locked {
                    *self.registers.entry(L4_OPTR).or_insert(0) = value;
                }
            }
            L4_CR => {
                *stored = value & !(1 << 17);
                if value & (1 << 17) != 0 {
                    self.busy_reads_left = 2;
                }
                if value & (1 << 27) != 0 {
                    // OBL_LAUNCH resets the chip: the debug link drops with the write.
                    return Err(TargetError::ProbeLost { reason: "target reset".into() });
                }
            }
            _ => *stored = value,
        }
        Ok(())
    }

    fn system_reset(&mut self) -> Result<(), TargetError> {
        self.accesses.push(Access::Reset);
        Err(TargetError::Locked)
    }

    fn link_dropped(&mut self) {
        self.accesses.push(Access::LinkDropped);
    }

    fn sleep(&mut self, _duration: Duration) {}
}

#[test]
fn nrf52_approtect_writes_uicr_through_the_nvmc_then_resets() {
    // nRF52840 Product Specification: NVMC.CONFIG = Wen, UICR.APPROTECT = 0xFFFFFF00 (PALL =
    // Enabled), NVMC.CONFIG = Ren, waiting for NVMC.READY; protection takes effect at reset.
    let recipe = LockRecipe::builtin("nrf52-approtect").unwrap();
    let mut model = RegisterModel::with(&[(0x4001_E400, 1)]);
    run_register_steps(&mut model, "lock", &recipe.lock_steps).unwrap();
    assert_eq!(
        model.writes(),
        vec![
            Access::Write(0x4001_E504, 1),
            Access::Write(0x1000_1208, 0xFFFF_FF00),
            Access::Write(0x4001_E504, 0),
            Access::Reset,
            Access::LinkDropped,
        ]
    );
    assert_eq!(recipe.lock_state, LockStateCheck::NordicCtrlAp);
    assert_eq!(recipe.unlock, UnlockMethod::ProbeRsEraseAll);
    assert!(!LockStateCheck::nordic_status_means_unlocked(0));
    assert!(LockStateCheck::nordic_status_means_unlocked(1));
}

#[test]
fn stm32f4_rdp1_programs_the_option_bytes_after_the_key_sequence() {
    // RM0090 3.6.2: check BSY, write OPTKEY1/OPTKEY2 to FLASH_OPTKEYR, write the new RDP byte
    // to FLASH_OPTCR, set OPTSTRT, wait for BSY to clear. 0x0FFFAAED is OPTCR's reset value.
    let recipe = LockRecipe::builtin("stm32f4-rdp1").unwrap();
    let mut model = RegisterModel::with(&[(F4_OPTCR, 0x0FFF_AAED), (F4_SR, 0)]);
    let unlocked_check = recipe.lock_state.register_value_means_unlocked(0x0FFF_AAED);
    assert_eq!(unlocked_check, Some(true));
    run_register_steps(&mut model, "lock", &recipe.lock_steps).unwrap();
    assert_eq!(
        model.writes(),
        vec![
            Access::Write(F4_OPTKEYR, 0x0819_2A3B),
            Access::Write(F4_OPTKEYR, 0x4C5D_6E7F),
            Access::Write(F4_OPTCR, 0x0FFF_55EC),
            Access::Write(F4_OPTCR, 0x0FFF_55EE),
            Access::Write(F4_OPTCR, 0x0FFF_55ED),
        ]
    );
    let optcr = model.registers[&F4_OPTCR];
    assert_eq!(optcr, 0x0FFF_55ED, "RDP level 1, other option bits unchanged, OPTLOCK set again");
    assert_eq!(recipe.lock_state.register_value_means_unlocked(optcr), Some(false));

    // Recovery sets RDP back to 0xAA (the chip mass-erases), with a mass-erase-sized timeout.
    let UnlockMethod::Steps(unlock) = &recipe.unlock else { panic!("F4 unlocks by option bytes") };
    run_register_steps(&mut model, "unlock", unlock).unwrap();
    assert_eq!(model.registers[&F4_OPTCR], 0x0FFF_AAED);
    assert!(steps_time_bound_ms(unlock) >= 60_000);
}

#[test]
fn stm32l4_rdp1_unlocks_flash_and_options_then_reloads_them() {
    // RM0351 3.4.2: unlock FLASH_CR (KEYR), unlock the options (OPTKEYR), clear errors, write
    // FLASH_OPTR, set OPTSTRT, wait for BSY, then OBL_LAUNCH (which resets the chip).
    let recipe = LockRecipe::builtin("stm32l4-rdp1").unwrap();
    let mut model = RegisterModel::with(&[(L4_OPTR, 0xFFEF_F8AA), (L4_CR, 0xC000_0000), (L4_SR, 0)]);
    run_register_steps(&mut model, "lock", &recipe.lock_steps).unwrap();
    assert_eq!(
        model.writes(),
        vec![
            Access::Write(L4_KEYR, 0x4567_0123),
            Access::Write(L4_KEYR, 0xCDEF_89AB),
            Access::Write(L4_OPTKEYR, 0x0819_2A3B),
            Access::Write(L4_OPTKEYR, 0x4C5D_6E7F),
            Access::Write(L4_SR, 0x0000_C3FB),
            Access::Write(L4_OPTR, 0xFFEF_F8BB),
            Access::Write(L4_CR, 0x0002_0000),
            Access::Write(L4_CR, 0x0800_0000),
            Access::LinkDropped,
        ]
    );
    assert_eq!(recipe.lock_state.register_value_means_unlocked(model.registers[&L4_OPTR]), Some(false));
}

#[test]
fn the_recipe_runner_waits_with_a_bound_and_names_the_failing_step() {
    // A wait that never comes true fails after its timeout, saying what it waited for.
    let steps = vec![
        RegisterStep::Write { address: 0x4000_0000, value: 1, link_may_drop: false },
        RegisterStep::WaitFor { address: 0x4000_0004, mask: 0x1, value: 0x1, timeout_ms: 20 },
    ];
    let mut model = RegisterModel::default();
    match run_register_steps(&mut model, "lock", &steps) {
        Err(TargetError::Refused { operation: "lock", address: 0x4000_0004, reason }) => {
            assert!(reason.contains("timed out after 20 ms") && reason.contains("(step 2 of 2)"), "{reason}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A failing write that is not expected to drop the link stops the recipe.
    let mut model = RegisterModel { fail_writes_at: Some(0x4000_0000), ..Default::default() };
    assert!(matches!(run_register_steps(&mut model, "lock", &steps), Err(TargetError::ProbeLost { .. })));
    // Modify keeps the bits outside the mask.
    let mut model = RegisterModel::with(&[(0x4000_0008, 0xFFFF_0000)]);
    run_register_steps(
        &mut model,
        "lock",
        &[RegisterStep::Modify {
            address: 0x4000_0008,
            mask: 0x0000_FF00,
            value: 0x0000_5500,
            link_may_drop: false,
        }],
    )
    .unwrap();
    assert_eq!(model.registers[&0x4000_0008], 0xFFFF_5500);
}

#[test]
fn a_lock_is_proven_only_by_a_locked_state_and_a_refused_read() {
    assert!(judge_lock_proof("stm32f4-rdp1", true, 0x0800_0000, Err(TargetError::Locked)).is_ok());
    let not_locked = judge_lock_proof("stm32f4-rdp1", false, 0x0800_0000, Err(TargetError::Locked));
    assert!(not_locked.unwrap_err().to_string().contains("does not report itself locked"));
    let still_readable = judge_lock_proof("stm32f4-rdp1", true, 0x0800_0000, Ok(()));
    assert!(still_readable.unwrap_err().to_string().contains("still succeeds"));
    // A lost probe proves nothing.
    let lost = judge_lock_proof(
        "nrf52-approtect",
        true,
        0x0,
        Err(TargetError::ProbeLost { reason: "unplugged".into() }),
    );
    assert!(lost.unwrap_err().to_string().contains("another reason than the lock"));
}

#[test]
fn chips_get_their_familys_recipe_by_default() {
    let name_for = |chip: &str| LockRecipe::default_for_chip(chip).map(|recipe| recipe.name);
    assert_eq!(name_for("nRF52840_xxAA").as_deref(), Some("nrf52-approtect"));
    assert_eq!(name_for("nRF52832_xxAA").as_deref(), Some("nrf52-approtect"));
    assert_eq!(name_for("STM32F429ZITx").as_deref(), Some("stm32f4-rdp1"));
    assert_eq!(name_for("STM32L476RGTx").as_deref(), Some("stm32l4-rdp1"));
    assert_eq!(name_for("STM32L4R5ZITx"), None);
    assert_eq!(name_for("STM32H743ZITx"), None);
    assert_eq!(name_for("nRF5340_xxAA"), None);
    assert_eq!(LockRecipe::builtin("nope"), None);
}

// ---------------------------------------------------------------------------------------------
// Chip identity and unique IDs

#[test]
fn unique_ids_are_read_as_words_when_aligned_and_refused_when_blank() {
    let stm32 = RamSpan { address: 0x1FFF_7A10, size_bytes: 12 };
    assert_eq!(plan_unique_id_read(&stm32), UniqueIdRead::Words { address: 0x1FFF_7A10, count: 3 });
    let odd = RamSpan { address: 0x1FFF_7A11, size_bytes: 6 };
    assert_eq!(plan_unique_id_read(&odd), UniqueIdRead::Bytes { address: 0x1FFF_7A11, count: 6 });

    // Words land in memory order (little-endian): U_ID[31:0] first.
    let bytes = unique_id_bytes_from_words(&[0x0033_0021, 0x3438_5108, 0x3735_3733]);
    assert_eq!(hex::encode(&bytes), "210033000851383433373537");
    let uid = unique_id_from_bytes(bytes, &stm32).unwrap();
    assert_eq!(uid.to_hex(), "210033000851383433373537");

    for blank in [vec![0xFF; 8], vec![0x00; 8]] {
        match unique_id_from_bytes(blank, &RamSpan { address: 0x1000_0060, size_bytes: 8 }) {
            Err(TargetError::Refused { operation: "read unique id", address: 0x1000_0060, reason }) => {
                assert!(reason.contains("not a unique ID"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn the_id_register_catches_the_wrong_chip() {
    let f42x = ChipIdCheck { address: 0xE004_2000, mask: 0xFFF, value: 0x419 };
    assert_eq!(f42x.check("STM32F429ZITx", 0x2003_6419), Ok(()));
    match f42x.check("STM32F429ZITx", 0x1000_6421) {
        Err(TargetError::WrongChip { expected, found }) => {
            assert!(expected.contains("STM32F429ZITx") && expected.contains("0x419"), "{expected}");
            assert_eq!(found, "id register value 0x421");
        }
        other => panic!("expected the wrong chip, got {other:?}"),
    }
    assert_eq!(reported_chip_name("nrf52840_xxaa", "nRF52840_xxAA"), "nrf52840_xxaa");
    assert_eq!(reported_chip_name("nRF52840", "nRF52840_xxAA"), "nRF52840_xxAA");
}

#[test]
fn units_are_handed_out_once_per_swap() {
    let mut production = ArrivalTracker::new(UnitArrival::WaitForSwap);
    let decisions: Vec<ArrivalDecision> = [false, true, true, true, false, false, true]
        .into_iter()
        .map(|present| production.observe(present))
        .collect();
    use ArrivalDecision::*;
    assert_eq!(
        decisions,
        vec![KeepPolling, HandOut, AwaitRemoval, AwaitRemoval, KeepPolling, KeepPolling, HandOut]
    );

    let mut bench = ArrivalTracker::new(UnitArrival::SameBoard);
    assert_eq!(bench.observe(true), HandOut);
    assert_eq!(bench.observe(true), HandOut);
    assert_eq!(bench.observe(false), KeepPolling);

    let pauses: Vec<u64> = (0..7).map(|polls| poll_backoff(polls).as_millis() as u64).collect();
    assert_eq!(pauses, vec![100, 200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn an_attach_attempt_tells_a_board_on_the_fixture_from_none_and_from_a_broken_probe() {
    // What a latched slot learns from one attach: the failed board still answers, nothing
    // answers (taken off), or the probe failed and the board cannot be told about.
    assert_eq!(board_presence(&Ok::<(), TargetError>(())), Some(true));
    assert_eq!(board_presence::<()>(&Err(TargetError::PowerLost)), Some(false));
    for broken in [
        TargetError::ProbeLost { reason: "unplugged".to_string() },
        TargetError::Transient { reason: "NACK".to_string() },
        TargetError::Other("USB error".to_string()),
    ] {
        assert_eq!(board_presence::<()>(&Err(broken.clone())), None, "{broken}");
    }
}

#[test]
fn a_host_without_a_usb_bus_says_so() {
    let missing = Path::new("/nonexistent/sys/bus/usb/devices");
    let note = usb_visibility_note(missing).expect("a note on Linux");
    assert!(note.contains("no USB bus is visible"), "{note}");
    assert_eq!(usb_visibility_note(Path::new("/")), None);
}

// ---------------------------------------------------------------------------------------------
// Target descriptions (probe-rs's own W7500 family file as the outside reference)

fn custom_chip_yaml() -> String {
    std::fs::read_to_string(repository().join("tests/data/probe_rs/custom-chip.yaml")).unwrap()
}

#[test]
fn target_descriptions_are_checked_to_define_the_chip() {
    let yaml = custom_chip_yaml();
    assert_eq!(check_target_description(&yaml, "ImprintCustom_M0"), Ok(()));
    assert!(matches!(
        check_target_description(&yaml, "ImprintOther_M4"),
        Err(ChipDescriptionError::ChipNotInYaml { family, .. }) if family == "Imprint Test Family"
    ));
    assert!(matches!(
        check_target_description("name: [unclosed", "x"),
        Err(ChipDescriptionError::BadYaml { .. })
    ));
    // A family without cores is valid YAML but not a usable target.
    let coreless = "name: Broken\nvariants:\n- name: Broken_1\n  cores: []\n  memory_map: []\n  flash_algorithms: []\nflash_algorithms: []\n";
    assert!(matches!(
        check_target_description(coreless, "Broken_1"),
        Err(ChipDescriptionError::BadYaml { .. })
    ));
}

#[test]
fn chips_resolve_from_probe_rs_or_the_profiles_description() {
    assert_eq!(resolve_target("nRF52840_xxAA", None).unwrap().name, "nRF52840_xxAA");
    assert_eq!(resolve_target("STM32F429ZITx", None).unwrap().name, "STM32F429ZITx");
    let custom = resolve_target("ImprintCustom_M0", Some(&custom_chip_yaml())).unwrap();
    assert_eq!(custom.name, "ImprintCustom_M0");
    match resolve_target("NoSuchChip_9000", None) {
        Err(error @ ChipDescriptionError::UnknownChip { .. }) => {
            assert!(error.to_string().contains("chip.target_description"), "{error}");
        }
        other => panic!("expected an unknown chip, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Profile additions

/// The demo profile with every path made absolute (so it can be written anywhere), `chip_lines`
/// added to `[chip]`, `lock_lines` to `[lock]` and `tail` appended.
fn demo_profile_text(chip_lines: &str, lock_lines: &str, tail: &str) -> String {
    let profiles = repository().join("profiles");
    let text = std::fs::read_to_string(profiles.join("demo.toml")).unwrap();
    let text = text
        .replace("\"../firmware-blobs/", &format!("\"{}/../firmware-blobs/", profiles.display()))
        .replace("\"demo-credentials/", &format!("\"{}/demo-credentials/", profiles.display()))
        .replace("[chip]\n", &format!("[chip]\n{chip_lines}\n"))
        .replace("[lock]\n", &format!("[lock]\n{lock_lines}\n"));
    format!("{text}\n{tail}\n")
}

/// Loads a profile variant; on failure returns `field: message` lines.
fn load_variant(directory: &Path, text: &str) -> Result<Profile, Vec<String>> {
    let path = directory.join("variant.toml");
    std::fs::write(&path, text).unwrap();
    Profile::load(&path).map_err(|error| {
        error.problems.iter().map(|problem| format!("{}: {}", problem.field, problem.message)).collect()
    })
}

fn check_profile_problem(directory: &Path, text: &str, field: &str, fragment: &str) {
    match load_variant(directory, text) {
        Ok(_) => panic!("expected a problem at {field}"),
        Err(problems) => assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with(&format!("{field}: ")) && problem.contains(fragment)),
            "expected {field}: ...{fragment}..., got {problems:#?}"
        ),
    }
}

#[test]
fn profiles_choose_a_lock_recipe() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    // No recipe given: the chip family's (the demo is an nRF52840).
    let profile = load_variant(directory, &demo_profile_text("", "", "")).unwrap();
    assert_eq!(profile.lock_recipe.as_ref().map(|recipe| recipe.name.as_str()), Some("nrf52-approtect"));
    // A built-in by name.
    let profile = load_variant(directory, &demo_profile_text("", "recipe = \"stm32l4-rdp1\"", "")).unwrap();
    assert_eq!(profile.lock_recipe, LockRecipe::builtin("stm32l4-rdp1"));
    // A declared recipe.
    let declared = r#"
[[lock.writes]]
address = 0x4000_1000
value = 0xA5
[[lock.writes]]
op = "modify"
address = 0x4000_1004
mask = 0xFF00
value = 0x5500
[[lock.writes]]
op = "wait"
address = 0x4000_1008
mask = 0x1
value = 0x0
timeout_ms = 500
[[lock.writes]]
op = "reset"
[[lock.writes]]
op = "delay"
duration_ms = 50
[lock.unlocked_when]
address = 0x4000_1004
mask = 0xFF00
value = 0xAA00
[[lock.unlock_writes]]
address = 0x4000_1000
value = 0x5A
link_may_drop = true
"#;
    let profile = load_variant(directory, &demo_profile_text("", "", declared)).unwrap();
    let recipe = profile.lock_recipe.unwrap();
    assert_eq!(recipe.name, "profile");
    assert_eq!(
        recipe.lock_steps,
        vec![
            RegisterStep::Write { address: 0x4000_1000, value: 0xA5, link_may_drop: false },
            RegisterStep::Modify { address: 0x4000_1004, mask: 0xFF00, value: 0x5500, link_may_drop: false },
            RegisterStep::WaitFor { address: 0x4000_1008, mask: 0x1, value: 0x0, timeout_ms: 500 },
            RegisterStep::Reset,
            RegisterStep::Delay { duration_ms: 50 },
        ]
    );
    assert_eq!(
        recipe.lock_state,
        LockStateCheck::Register { address: 0x4000_1004, mask: 0xFF00, unlocked_value: 0xAA00 }
    );
    assert_eq!(
        recipe.unlock,
        UnlockMethod::Steps(vec![RegisterStep::Write {
            address: 0x4000_1000,
            value: 0x5A,
            link_may_drop: true
        }])
    );
}

#[test]
fn bad_lock_recipes_are_reported_by_field() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    let text = |lock_lines: &str, tail: &str| demo_profile_text("", lock_lines, tail);
    check_profile_problem(
        directory,
        &text("recipe = \"stm32h7-rdp1\"", ""),
        "lock.recipe",
        "expected one of nrf52-approtect",
    );
    let one_write = "[[lock.writes]]\naddress = 0x4000_0000\nvalue = 1\n[lock.unlocked_when]\naddress = 0x4000_0000\nvalue = 0\n";
    check_profile_problem(directory, &text("recipe = \"stm32f4-rdp1\"", one_write), "lock", "not both");
    check_profile_problem(
        directory,
        &text("", "[[lock.writes]]\naddress = 0x4000_0000\nvalue = 1\n"),
        "lock.unlocked_when",
        "register state that means unlocked",
    );
    let with_check =
        |step: &str| text("", &format!("{step}\n[lock.unlocked_when]\naddress = 0x4000_0000\nvalue = 0\n"));
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\nop = \"poke\"\naddress = 0x4000_0000"),
        "lock.writes[0].op",
        "expected \"write\"",
    );
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\naddress = 0x4000_0002\nvalue = 1"),
        "lock.writes[0].address",
        "4-byte aligned",
    );
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\nop = \"wait\"\naddress = 0x4000_0000\nvalue = 1"),
        "lock.writes[0].timeout_ms",
        "required",
    );
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\nop = \"modify\"\naddress = 0x4000_0000\nmask = 0xF\nvalue = 0x10"),
        "lock.writes[0].value",
        "outside the mask",
    );
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\nop = \"reset\"\naddress = 0x4000_0000"),
        "lock.writes[0].address",
        "not used by op = \"reset\"",
    );
    check_profile_problem(
        directory,
        &with_check("[[lock.writes]]\nop = \"delay\"\nduration_ms = 0"),
        "lock.writes[0].duration_ms",
        "expected 1 to 120000 ms",
    );
    check_profile_problem(
        directory,
        &text("", "[lock.unlocked_when]\naddress = 0x4000_0000\nvalue = 0\n"),
        "lock",
        "need [[lock.writes]]",
    );
}

#[test]
fn profiles_may_name_an_id_register_and_ship_a_target_description() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    let profile = load_variant(
        directory,
        &demo_profile_text("id_register = { address = 0x1000_0100, value = 0x52840 }", "", ""),
    )
    .unwrap();
    assert_eq!(
        profile.chip_id_check,
        Some(ChipIdCheck { address: 0x1000_0100, mask: u32::MAX, value: 0x52840 })
    );
    check_profile_problem(
        directory,
        &demo_profile_text("id_register = { address = 0xE004_2001, mask = 0xFFF, value = 0x419 }", "", ""),
        "chip.id_register.address",
        "4-byte aligned",
    );
    check_profile_problem(
        directory,
        &demo_profile_text("id_register = { address = 0xE004_2000, mask = 0xFFF, value = 0x1419 }", "", ""),
        "chip.id_register.value",
        "outside the mask",
    );

    // A target description next to the profile, defining the profile's chip.
    std::fs::copy(
        repository().join("tests/data/probe_rs/custom-chip.yaml"),
        directory.join("custom-chip.yaml"),
    )
    .unwrap();
    let custom = demo_profile_text("target_description = \"custom-chip.yaml\"", "", "")
        .replace("name = \"nRF52840_xxAA\"", "name = \"ImprintCustom_M0\"")
        .replace("enabled = true", "enabled = false");
    let profile = load_variant(directory, &custom).unwrap();
    let description = profile.chip_target_description.as_ref().unwrap();
    assert_eq!(description.path, directory.join("custom-chip.yaml"));
    assert!(description.yaml.contains("ImprintCustom_M0"));
    let config = ProbeRsConfig::from_profile(&profile).expect("a profile with [chip]");
    assert_eq!(config.target_description_yaml.as_deref(), Some(description.yaml.as_str()));
    assert_eq!(config.lock_recipe, None, "no built-in recipe for an unknown family");

    // The description must define the profile's chip: probe-rs judges that when a probe-rs
    // slot opens (loading a profile runs no backend), naming the profile file and the field.
    let wrong_chip =
        load_variant(directory, &demo_profile_text("target_description = \"custom-chip.yaml\"", "", ""))
            .expect("the profile layer does not ask probe-rs");
    let error =
        resolve_configured_target(&ProbeRsConfig::from_profile(&wrong_chip).expect("a profile with [chip]"))
            .expect_err("a description without the profile's chip is refused when the slot opens");
    let message = error.to_string();
    for fragment in [
        wrong_chip.path.to_str().unwrap(),
        "chip.target_description",
        "has no chip \"nRF52840_xxAA\"",
        "custom-chip.yaml",
    ] {
        assert!(message.contains(fragment), "expected {fragment:?} in {message}");
    }
    assert!(
        resolve_configured_target(&ProbeRsConfig::from_profile(&profile).expect("a profile with [chip]"))
            .is_ok()
    );
    // It must exist (reading it is the profile's own file I/O).
    check_profile_problem(
        directory,
        &demo_profile_text("target_description = \"missing.yaml\"", "", ""),
        "chip.target_description",
        "cannot read",
    );
}

// ---------------------------------------------------------------------------------------------
// The example board profiles

/// Writes an Intel HEX file of `data` at `address` (extended linear address records, 16-byte
/// data records), the format the board ports' build produces.
fn write_intel_hex(path: &Path, address: u32, data: &[u8]) {
    fn record(kind: u8, offset: u16, payload: &[u8]) -> String {
        let mut bytes = vec![payload.len() as u8, (offset >> 8) as u8, offset as u8, kind];
        bytes.extend_from_slice(payload);
        let checksum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)).wrapping_neg();
        format!(":{}{:02X}\n", hex::encode_upper(&bytes), checksum)
    }
    let mut text = String::new();
    let mut upper = None;
    for (index, chunk) in data.chunks(16).enumerate() {
        let at = address + (index * 16) as u32;
        if upper != Some(at >> 16) {
            upper = Some(at >> 16);
            text += &record(4, 0, &((at >> 16) as u16).to_be_bytes());
        }
        text += &record(0, at as u16, chunk);
    }
    text += &record(1, 0, &[]);
    std::fs::write(path, text).unwrap();
}

/// Lays out `board`'s profile in a temporary tree with stand-in images where the board port's
/// build would put them.
fn board_profile(
    board: &str,
    bootloader_address: u32,
    application_address: u32,
) -> (tempfile::TempDir, Profile) {
    let root = tempfile::tempdir().unwrap();
    let profiles = root.path().join("profiles");
    let blobs = root.path().join("firmware-blobs").join(board);
    std::fs::create_dir_all(profiles.join("demo-credentials")).unwrap();
    std::fs::create_dir_all(&blobs).unwrap();
    for file in ["dev.cert.der", "dev.key.pem"] {
        let target = profiles.join("demo-credentials").join(file);
        std::fs::copy(repository().join("profiles/demo-credentials").join(file), &target).unwrap();
    }
    std::fs::copy(
        repository().join(format!("profiles/{board}.toml")),
        profiles.join(format!("{board}.toml")),
    )
    .unwrap();
    let image = |label: &str, size: usize| -> Vec<u8> {
        (0..size).map(|index| (index as u8) ^ label.len() as u8).collect()
    };
    write_intel_hex(&blobs.join("bootloader.hex"), bootloader_address, &image("bootloader", 12 * 1024));
    write_intel_hex(&blobs.join("application.hex"), application_address, &image("application", 48 * 1024));
    std::fs::write(blobs.join("application-1.0.1.bin"), image("application-1.0.1", 48 * 1024 + 512)).unwrap();
    let profile = Profile::load(&profiles.join(format!("{board}.toml")))
        .unwrap_or_else(|error| panic!("{board}: {error}"));
    (root, profile)
}

#[test]
fn the_example_board_profiles_are_complete_but_for_the_board_firmware() {
    // As shipped, only the port's images are missing.
    for board in ["nrf52840-dk", "nucleo-f429zi"] {
        let error = Profile::load(&repository().join(format!("profiles/{board}.toml"))).unwrap_err();
        let fields: Vec<&str> = error.problems.iter().map(|problem| problem.field.as_str()).collect();
        assert_eq!(fields, vec!["images.bootloader", "images.application", "self_test.payload"], "{error}");
        assert!(
            error.problems.iter().all(|problem| problem.file.to_string_lossy().contains(board)),
            "{error}"
        );
    }

    let (_root, nrf) = board_profile("nrf52840-dk", 0x0, 0x8000);
    let config = ProbeRsConfig::from_profile(&nrf).expect("a profile with [chip]");
    assert_eq!(config.chip_name, "nRF52840_xxAA");
    assert_eq!(config.unique_id_location, Some(RamSpan { address: 0x1000_0060, size_bytes: 8 }));
    assert_eq!(
        config.chip_id_check,
        Some(ChipIdCheck { address: 0x1000_0100, mask: u32::MAX, value: 0x52840 })
    );
    assert_eq!(config.lock_recipe, LockRecipe::builtin("nrf52-approtect"));
    assert_eq!(config.lock_proof_address, 0x0);
    assert!(config.lock_enabled && config.allow_unlock_by_mass_erase);
    assert_eq!(resolve_target(&config.chip_name, None).unwrap().name, config.chip_name);

    let (_root, nucleo) = board_profile("nucleo-f429zi", 0x0800_0000, 0x0802_0000);
    let config = ProbeRsConfig::from_profile(&nucleo).expect("a profile with [chip]");
    assert_eq!(config.chip_name, "STM32F429ZITx");
    assert_eq!(config.unique_id_location, Some(RamSpan { address: 0x1FFF_7A10, size_bytes: 12 }));
    assert_eq!(config.chip_id_check, Some(ChipIdCheck { address: 0xE004_2000, mask: 0xFFF, value: 0x419 }));
    assert_eq!(config.lock_recipe, LockRecipe::builtin("stm32f4-rdp1"));
    assert_eq!(config.lock_proof_address, 0x0800_0000);
    assert_eq!(resolve_target(&config.chip_name, None).unwrap().name, config.chip_name);
}

#[test]
fn the_nucleo_regions_sit_on_the_chips_real_sectors() {
    // probe-rs's STM32F429ZI flash algorithm knows the sector layout; every region of the
    // profile must consist of whole sectors of the size the profile claims, or an erase would
    // come up short (FlashProgressTally::check_erase_covered refuses that at run time).
    let (_root, nucleo) = board_profile("nucleo-f429zi", 0x0800_0000, 0x0802_0000);
    let target = resolve_target("STM32F429ZITx", None).unwrap();
    let sectors: Vec<(u64, u64)> = target
        .flash_algorithms
        .iter()
        .filter(|algorithm| algorithm.default)
        .flat_map(|algorithm| {
            let properties = &algorithm.flash_properties;
            let end = properties.address_range.end;
            let descriptions = &properties.sectors;
            descriptions.iter().enumerate().flat_map(move |(index, description)| {
                let start = properties.address_range.start + description.address;
                let stop = descriptions
                    .get(index + 1)
                    .map(|next| properties.address_range.start + next.address)
                    .unwrap_or(end);
                (start..stop)
                    .step_by(description.size as usize)
                    .map(move |address| (address, description.size))
            })
        })
        .collect();
    assert!(!sectors.is_empty(), "probe-rs describes the F429's sectors");
    for (name, region) in
        nucleo.firmware.as_ref().expect("the profile flashes firmware").memory.flash_regions()
    {
        let mut address = region.address;
        while address < region.end_address() {
            let sector = sectors.iter().find(|(start, _)| *start == address);
            assert_eq!(
                sector.map(|(_, size)| *size),
                Some(region.sector_size_bytes),
                "{name}: expected a {}-byte sector at {address:#x}",
                region.sector_size_bytes
            );
            address += region.sector_size_bytes;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

fn imprint(arguments: &[&str]) -> std::process::Output {
    common::imprint().args(arguments).env_remove("IMPRINT_GDB_ENDPOINTS").output().unwrap()
}

#[test]
fn imprint_probes_lists_what_there_is_and_never_fails_for_lack_of_probes() {
    let output = imprint(&["probes", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let probes = report["probes"].as_array().expect("a probe list");
    assert_eq!(report["simulator"]["selector"], "sim");
    assert_eq!(report["gdb_endpoints"], serde_json::json!([]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !Path::new("/sys/bus/usb/devices").exists() {
        // This machine (and CI): no USB bus, so an empty list and a note on stderr.
        assert!(probes.is_empty());
        assert!(stderr.contains("note: no USB bus is visible"), "{stderr}");
    }
    for probe in probes {
        assert!(probe["selector"].as_str().unwrap().starts_with("probe-rs:"), "{probe}");
    }

    let table = imprint(&["probes"]);
    assert!(table.status.success());
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(stdout.lines().next().unwrap().starts_with("KIND"), "{stdout}");
    assert!(stdout.contains("sim ") && stdout.contains("probe-rs probe"), "{stdout}");
}

#[test]
fn imprint_probes_checks_gdb_endpoints() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live = listener.local_addr().unwrap().to_string();
    let closed = {
        let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        spare.local_addr().unwrap().to_string()
    };
    let output = imprint(&["probes", "--json", "--gdb", &live, "--gdb", &closed]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let endpoints = report["gdb_endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["selector"], format!("gdb:{live}"));
    assert_eq!(endpoints[0]["reachable"], true);
    assert_eq!(endpoints[1]["reachable"], false);
    assert!(endpoints[1]["status"].as_str().unwrap().starts_with("unreachable"), "{}", endpoints[1]);

    let bad = imprint(&["probes", "--gdb", "no-port-here"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected HOST:PORT"));
}

#[test]
fn imprint_run_refuses_a_probe_that_is_not_there_before_touching_anything() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("ledger.db");
    let profile = repository().join("profiles/demo.toml");
    let run = |selector: &str| {
        imprint(&[
            "run",
            "--profile",
            profile.to_str().unwrap(),
            "--probe",
            selector,
            "--count",
            "1",
            "--db",
            database.to_str().unwrap(),
        ])
    };
    let missing = run("probe-rs:f055:0001:IMPRINT-NO-SUCH-PROBE");
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no attached probe matches f055:0001:IMPRINT-NO-SUCH-PROBE"), "{stderr}");

    let malformed = run("probe-rs:f055");
    assert_eq!(malformed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("missing the product ID"));
}
