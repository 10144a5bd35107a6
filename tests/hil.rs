//! Hardware-in-the-loop: the probe-rs backend and the whole pipeline on a real board, modelled on
//! probe-rs's smoke-tester (a fixed list of cases against one device under test, each reported
//! as passed or failed with its reason).
//!
//! It runs only when both `IMPRINT_HIL_PROBE` (the probe: `VID:PID:SERIAL`, with or without
//! the `probe-rs:` prefix and slot options) and `IMPRINT_HIL_PROFILE` (the board's profile) are
//! set. Without them it prints that nothing ran and counts nothing: this file is a test target
//! with `harness = false`, so no case can be reported as passed unless it ran on hardware.
//! `IMPRINT_HIL_LOCK=1` also locks the board, proves the lock, and recovers it by mass erase
//! (the profile must allow that). See docs/testing.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imprint::device::probe_rs::selector::choose_probe;
use imprint::device::probe_rs::{ProbeRsConfig, ProbeRsFixture, ProbeSlotSpec, UnitArrival, list_probes};
use imprint::device::{Fixture, Target, TargetError};
use imprint::ledger::Ledger;
use imprint::profile::Profile;
use imprint::station::{
    CancelToken, EventSink, SelfTestMaterial, StationContext, StationEvent, UnitResult, provision_unit,
};

/// How long to wait for the board to answer the probe.
const ATTACH_WAIT: Duration = Duration::from_secs(20);

struct Hil {
    spec: ProbeSlotSpec,
    profile: Profile,
    lock_allowed: bool,
}

type CaseResult = Result<String, String>;

/// One hardware-in-the-loop case: a name and the check to run.
type HilCase = fn(&Hil) -> CaseResult;

fn main() -> ExitCode {
    let probe = std::env::var("IMPRINT_HIL_PROBE").ok().filter(|value| !value.is_empty());
    let profile = std::env::var("IMPRINT_HIL_PROFILE").ok().filter(|value| !value.is_empty());
    let (probe, profile) = match (probe, profile) {
        (None, None) => {
            println!(
                "hil: NOT RUN: set IMPRINT_HIL_PROBE and IMPRINT_HIL_PROFILE to run the hardware-in-the-loop suite (docs/testing.md); no case ran and none counts as passed"
            );
            return ExitCode::SUCCESS;
        }
        (Some(probe), Some(profile)) => (probe, profile),
        _ => {
            eprintln!("hil: IMPRINT_HIL_PROBE and IMPRINT_HIL_PROFILE must be set together");
            return ExitCode::from(2);
        }
    };
    let mut spec = match ProbeSlotSpec::parse(probe.strip_prefix("probe-rs:").unwrap_or(&probe)) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("hil: IMPRINT_HIL_PROBE: {error}");
            return ExitCode::from(2);
        }
    };
    // One board stays on the bench for every case.
    spec.unit_arrival = UnitArrival::SameBoard;
    let mut profile = match Profile::load(&PathBuf::from(&profile)) {
        Ok(profile) => profile,
        Err(error) => {
            eprintln!("hil: IMPRINT_HIL_PROFILE: {error}");
            return ExitCode::from(2);
        }
    };
    let lock_allowed = std::env::var("IMPRINT_HIL_LOCK").is_ok_and(|value| value == "1");
    if !lock_allowed {
        profile.lock.enabled = false;
    } else if !profile.lock.allow_unlock_by_mass_erase {
        eprintln!(
            "hil: IMPRINT_HIL_LOCK=1 needs a profile with lock.allow_unlock_by_mass_erase = true (the suite recovers the board)"
        );
        return ExitCode::from(2);
    }
    let hil = Hil { spec, profile, lock_allowed };

    let mut cases: Vec<(&str, HilCase)> = vec![
        ("probe is listed exactly once", probe_is_listed),
        ("attach, chip identity, unique id", attach_and_identify),
        ("the fixture reports its board present", board_reported_present),
        ("ram write and read back", ram_round_trip),
        ("flash erase, program, read back", flash_round_trip),
        ("reset and run, halt", reset_run_halt),
        ("whole pipeline to PASS", whole_pipeline),
    ];
    if hil.lock_allowed {
        cases.push(("lock proven, then recovered by mass erase", lock_and_recover));
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        let started = Instant::now();
        match case(&hil) {
            Ok(detail) => {
                passed += 1;
                println!("hil: {name} ... ok ({} ms) {detail}", started.elapsed().as_millis());
            }
            Err(reason) => {
                failed += 1;
                println!("hil: {name} ... FAILED ({} ms): {reason}", started.elapsed().as_millis());
            }
        }
    }
    println!("hil: {passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn fail(context: &str) -> impl Fn(TargetError) -> String + '_ {
    move |error| format!("{context}: {error}")
}

fn fixture(hil: &Hil) -> Result<ProbeRsFixture, String> {
    ProbeRsFixture::open(
        "hil",
        hil.spec.clone(),
        ProbeRsConfig::from_profile(&hil.profile).expect("a profile with [chip]"),
    )
    .map_err(|error| format!("open the slot: {error}"))
}

fn unit(hil: &Hil) -> Result<Box<dyn Target>, String> {
    let mut fixture = fixture(hil)?;
    let deadline = Instant::now() + ATTACH_WAIT;
    let keep_waiting = move || Instant::now() < deadline;
    match fixture.next_unit(&keep_waiting) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => Err(format!("no target answered within {} s (powered? wired?)", ATTACH_WAIT.as_secs())),
        Err(error) => Err(format!("attach: {error}")),
    }
}

fn unlocked_unit(hil: &Hil) -> Result<Box<dyn Target>, String> {
    let mut target = unit(hil)?;
    target.connect().map_err(fail("connect"))?;
    if target.is_locked().map_err(fail("is_locked"))? {
        return Err(
            "the board is locked: recover it first (IMPRINT_HIL_LOCK=1 run, or probe-rs erase)".to_string()
        );
    }
    Ok(target)
}

fn probe_is_listed(hil: &Hil) -> CaseResult {
    let listing = list_probes();
    let probe = choose_probe(&hil.spec.probe, &listing.probes).map_err(|error| error.to_string())?;
    Ok(format!("{} {} ({})", probe.identifier, probe.vid_pid(), probe.driver))
}

fn attach_and_identify(hil: &Hil) -> CaseResult {
    let mut target = unit(hil)?;
    let chip = target.connect().map_err(fail("connect"))?;
    if chip.chip_name != hil.profile.chip_name {
        return Err(format!("attached as {}, the profile says {}", chip.chip_name, hil.profile.chip_name));
    }
    let first = target.read_unique_id().map_err(fail("read unique id"))?;
    let second = target.read_unique_id().map_err(fail("read unique id again"))?;
    if first != second {
        return Err(format!("unique id read twice differs: {first} then {second}"));
    }
    Ok(format!("{} uid {first}", chip.chip_name))
}

/// What a latched slot asks its fixture (the board on the bench stays: present every time).
fn board_reported_present(hil: &Hil) -> CaseResult {
    let mut fixture = fixture(hil)?;
    let deadline = Instant::now() + ATTACH_WAIT;
    let keep_waiting = move || Instant::now() < deadline;
    let unit = fixture.next_unit(&keep_waiting).map_err(|error| format!("attach: {error}"))?;
    drop(unit.ok_or("no target answered")?);
    let answers: Vec<Option<bool>> = (0..3).map(|_| fixture.board_present()).collect();
    if answers != [Some(true); 3] {
        return Err(format!("asked three times with the board on the bench, the fixture said {answers:?}"));
    }
    Ok("present, three times".to_string())
}

fn ram_round_trip(hil: &Hil) -> CaseResult {
    let mut target = unlocked_unit(hil)?;
    let mailbox = hil.profile.firmware.as_ref().expect("the profile flashes firmware").memory.mailbox;
    let pattern: Vec<u8> =
        (0..mailbox.size_bytes).map(|index| (index as u8).wrapping_mul(37) ^ 0x5A).collect();
    target.halt().map_err(fail("halt"))?;
    target.write_ram(mailbox.address, &pattern).map_err(fail("write ram"))?;
    let mut read = vec![0u8; pattern.len()];
    target.read_memory(mailbox.address, &mut read).map_err(fail("read ram"))?;
    if read != pattern {
        return Err(format!(
            "read back differs at byte {:?}",
            read.iter().zip(&pattern).position(|(a, b)| a != b)
        ));
    }
    Ok(format!("{} bytes at {:#x}", pattern.len(), mailbox.address))
}

fn flash_round_trip(hil: &Hil) -> CaseResult {
    let mut target = unlocked_unit(hil)?;
    let region = hil.profile.firmware.as_ref().expect("the profile flashes firmware").memory.config;
    let (address, size) = (region.address, region.sector_size_bytes);
    let mut erase_progress = Vec::new();
    target.erase_flash(address, size, &mut |bytes| erase_progress.push(bytes)).map_err(fail("erase"))?;
    if erase_progress.last() != Some(&size) || erase_progress.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(format!("erase progress {erase_progress:?} is not monotonic up to {size}"));
    }
    let mut read = vec![0u8; size as usize];
    target.read_memory(address, &mut read).map_err(fail("read erased"))?;
    if read.iter().any(|byte| *byte != region.erased_value) {
        return Err("the erased sector does not read as erased".to_string());
    }
    let length = size.min(4096) as usize;
    let pattern: Vec<u8> = (0..length).map(|index| (index as u8).wrapping_mul(13).wrapping_add(1)).collect();
    let mut program_progress = Vec::new();
    target
        .program_flash(address, &pattern, &mut |bytes| program_progress.push(bytes))
        .map_err(fail("program"))?;
    if program_progress.last() != Some(&(length as u64)) {
        return Err(format!("program progress {program_progress:?} does not end at {length}"));
    }
    let mut read = vec![0u8; length];
    target.read_memory(address, &mut read).map_err(fail("read programmed"))?;
    if read != pattern {
        return Err("the programmed bytes read back differently".to_string());
    }
    target.erase_flash(address, size, &mut |_| {}).map_err(fail("erase again"))?;
    Ok(format!(
        "{size}-byte sector at {address:#x}, {} erase and {} program progress events",
        erase_progress.len(),
        program_progress.len()
    ))
}

fn reset_run_halt(hil: &Hil) -> CaseResult {
    let mut target = unlocked_unit(hil)?;
    target.reset_and_run().map_err(fail("reset and run"))?;
    std::thread::sleep(Duration::from_millis(100));
    target.halt().map_err(fail("halt"))?;
    Ok(String::new())
}

struct PrintEvents;

impl EventSink for PrintEvents {
    fn emit(&self, event: StationEvent) {
        if let Ok(line) = serde_json::to_string(&event) {
            eprintln!("hil event: {line}");
        }
    }
}

fn whole_pipeline(hil: &Hil) -> CaseResult {
    let directory = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
    let ledger =
        Ledger::open(&directory.path().join("ledger.db")).map_err(|error| format!("ledger: {error}"))?;
    let self_test =
        SelfTestMaterial::prepare(&hil.profile).map_err(|error| format!("self-test material: {error}"))?;
    let context = StationContext {
        profile: Arc::new(hil.profile.clone()),
        self_test: Some(Arc::new(self_test)),
        ledger,
        station_name: "hil".to_string(),
        operator: "hil".to_string(),
        events: Arc::new(PrintEvents),
        cancel: CancelToken::default(),
        labels: Default::default(),
    };
    let mut target = unit(hil)?;
    let outcome = provision_unit(&context, target.as_mut(), 0, 1);
    match outcome.result {
        UnitResult::Pass => Ok(format!(
            "serial {} uid {} in {} ms",
            outcome.serial.unwrap_or_default(),
            outcome.chip_uid.unwrap_or_default(),
            outcome.cycle_time.as_millis()
        )),
        _ => Err(format!(
            "FAIL at {}: {}",
            outcome.failing_step.unwrap_or("?"),
            outcome.reason.unwrap_or_default()
        )),
    }
}

fn lock_and_recover(hil: &Hil) -> CaseResult {
    let mut target = unlocked_unit(hil)?;
    target.lock().map_err(fail("lock"))?;
    drop(target);
    // A fresh attach must see the lock too.
    let mut target = unit(hil)?;
    target.connect().map_err(fail("connect to the locked chip"))?;
    if !target.is_locked().map_err(fail("is_locked"))? {
        return Err("a fresh attach does not see the chip locked".to_string());
    }
    let address =
        hil.profile.firmware.as_ref().expect("the profile flashes firmware").memory.chip_flash.address;
    let mut buffer = [0u8; 16];
    match target.read_memory(address, &mut buffer) {
        Err(TargetError::Locked) => {}
        other => {
            return Err(format!("a debug read of flash on the locked chip gave {other:?}, expected Locked"));
        }
    }
    target.unlock_by_mass_erase().map_err(fail("unlock by mass erase"))?;
    drop(target);
    let mut target = unlocked_unit(hil)?;
    target.read_memory(address, &mut buffer).map_err(fail("read after recovery"))?;
    Ok(format!("read at {address:#x} refused while locked; recovered"))
}
