//! Power cuts at every flash operation (in the manner of MCUboot's simulator): a unit whose
//! power fails at any point is either PASS (fully provisioned and recorded) or detectably
//! unprovisioned and then re-provisioned to PASS — never a third state, never a PASS record for
//! a unit that is not fully provisioned. Run on both erased values and three write alignments.
//!
//! The SD-card profile adds the device's own writes to its block device (the update client
//! storing a candidate, the bootloader installing and discarding it) to the cut points.
//!
//! `IMPRINT_POWER_CUT_RANDOM_RUNS` sets the size of the random campaign (CI: 200; the full
//! 10,000-run campaign and its figures are in docs/reliability.md).

mod common;

use std::sync::Arc;

use imprint::device::sim::{FaultPlan, SimDevice, SimTarget};
use imprint::ledger::Ledger;
use imprint::profile::{Profile, SimTiming};
use imprint::station::{
    CancelToken, DiscardEvents, SelfTestMaterial, StationContext, UnitResult, provision_unit,
};
use imprint::store::ConfigStore;
use sha2::{Digest, Sha256};

/// A profile variant: every flash region with this erased value and write alignment.
fn profile_variant(erased_value: u8, write_alignment: u64, directory: &std::path::Path) -> Profile {
    let mut text = common::demo_profile_text();
    text = text.replace("write_alignment = 4", &format!("write_alignment = {write_alignment}"));
    text = text.replace("erased_value = 0xFF", &format!("erased_value = {erased_value:#04x}"));
    let path = common::write_profile(
        directory,
        &format!("variant-{erased_value:02x}-{write_alignment}.toml"),
        &text,
    );
    Profile::load(&path).expect("profile variant")
}

/// The ledger of a profile's campaign in `directory`: one per flash variant (named by its write
/// alignment).
fn ledger_path(profile: &Profile, directory: &std::path::Path) -> std::path::PathBuf {
    let firmware = profile.firmware.as_ref().expect("the profile flashes firmware");
    directory.join(format!("{}.db", firmware.memory.application.write_alignment_bytes))
}

fn context(profile: &Profile, directory: &std::path::Path) -> StationContext {
    StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(profile).unwrap())),
        ledger: Ledger::open(&ledger_path(profile, directory)).unwrap(),
        profile: Arc::new(profile.clone()),
        station_name: "power-cut".to_string(),
        operator: "campaign".to_string(),
        events: Arc::new(DiscardEvents),
        cancel: CancelToken::default(),
        labels: Default::default(),
    }
}

/// Whether the device holds everything a PASS promises: locked, bootloader in place, a store
/// that decodes for this chip, and the self-test payload installed in the application slot.
fn is_fully_provisioned(device: &SimDevice, profile: &Profile, payload: &[u8]) -> bool {
    let memory = &profile.firmware.as_ref().expect("the profile flashes firmware").memory;
    let bootloader =
        &profile.firmware.as_ref().expect("the profile flashes firmware").bootloader_image.segments[0];
    let store_bytes = device.flash_bytes(memory.config.address, memory.store_layout().capacity_bytes);
    device.is_locked()
        && device.flash_bytes(bootloader.address, bootloader.data.len()) == bootloader.data.as_slice()
        && ConfigStore::decode(store_bytes, device.unique_id()).is_ok()
        && Sha256::digest(device.flash_bytes(memory.application.address, payload.len())).as_slice()
            == Sha256::digest(payload).as_slice()
}

fn passed_runs_of(ledger_path: &std::path::Path, chip_uid: &str) -> u64 {
    let output = std::process::Command::new("sqlite3")
        .arg(ledger_path)
        .arg(format!("SELECT count(*) FROM runs WHERE chip_uid = '{chip_uid}' AND result = 'pass';"))
        .output()
        .expect("run sqlite3");
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("a count")
}

/// Provisions a unit through `cuts` (power cut after that many more flash operations, then power
/// back on), then once more without a cut; checks the invariants after every attempt. Returns
/// the number of attempts that failed.
fn run_with_cuts(context: &StationContext, ledger_path: &std::path::Path, uid: Vec<u8>, cuts: &[u64]) -> u64 {
    let profile = &context.profile;
    let payload = &context.self_test.as_ref().expect("self-test material").payload;
    let chip_uid = hex::encode(&uid);
    let mut device =
        SimDevice::new(&profile.firmware.as_ref().expect("the profile flashes firmware").memory, uid)
            .with_hardware(profile.device_hardware);
    let mut failures = 0;
    let mut serial = None;
    for (attempt, cut) in cuts.iter().map(Some).chain([None]).enumerate() {
        let faults = FaultPlan { power_cut_after_flash_operations: cut.copied(), ..Default::default() };
        let mut target = SimTarget::new(device, &profile.chip_name, "campaign", SimTiming::default(), faults);
        let outcome = provision_unit(context, &mut target, 0, attempt as u64 + 1);
        device = target.into_device();
        if outcome.serial.is_some() {
            // A unit keeps the identity it was first given (rework policy reuse-identity).
            assert!(
                serial.is_none() || serial == outcome.serial,
                "serial changed: {serial:?} -> {:?}",
                outcome.serial
            );
            serial = outcome.serial.clone();
        }
        match outcome.result {
            UnitResult::Pass => {
                assert!(
                    is_fully_provisioned(&device, profile, payload),
                    "PASS for a unit not fully provisioned (cut {cut:?})"
                );
                assert_eq!(passed_runs_of(ledger_path, &chip_uid), 1, "PASS not recorded exactly once");
                return failures;
            }
            UnitResult::Fail => {
                failures += 1;
                assert!(cut.is_some(), "a unit failed without a fault: {outcome:?}");
                assert!(
                    outcome.reason.as_deref().unwrap_or_default().contains("lost power"),
                    "unexpected failure {outcome:?}"
                );
                assert!(
                    !is_fully_provisioned(&device, profile, payload),
                    "a FAIL left a fully provisioned unit"
                );
                assert_eq!(
                    passed_runs_of(ledger_path, &chip_uid),
                    0,
                    "a PASS record for an unprovisioned unit"
                );
                device.power_on();
            }
            UnitResult::Aborted => panic!("nothing aborts this line: {outcome:?}"),
        }
    }
    panic!("the attempt without a power cut did not pass");
}

fn operations_of_a_clean_unit(context: &StationContext) -> u64 {
    let profile = &context.profile;
    let device = SimDevice::new(
        &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
        vec![0xC1; 12],
    )
    .with_hardware(profile.device_hardware);
    let mut target =
        SimTarget::new(device, &profile.chip_name, "count", SimTiming::default(), FaultPlan::default());
    assert_eq!(provision_unit(context, &mut target, 0, 1).result, UnitResult::Pass);
    target.device().flash_operation_count()
}

#[test]
fn a_power_cut_at_every_flash_operation_ends_in_pass_or_detectably_unprovisioned() {
    let directory = tempfile::tempdir().unwrap();
    let variants = [(0xFFu8, 4u64), (0x00, 8), (0xFF, 16)];
    let handles: Vec<_> = variants
        .into_iter()
        .map(|(erased_value, alignment)| {
            let directory = directory.path().to_path_buf();
            std::thread::spawn(move || {
                let profile = profile_variant(erased_value, alignment, &directory);
                let context = context(&profile, &directory);
                let ledger_path = directory.join(format!("{alignment}.db"));
                let operations = operations_of_a_clean_unit(&context);
                assert!(operations > 100, "a unit takes {operations} flash operations");
                let mut failed_attempts = 0;
                for cut in 0..operations {
                    let mut uid = vec![erased_value, alignment as u8, 0, 0];
                    uid.extend_from_slice(&cut.to_le_bytes());
                    failed_attempts += run_with_cuts(&context, &ledger_path, uid, &[cut]);
                }
                // Every cut lands inside the unit's flash work, so every first attempt fails.
                assert_eq!(failed_attempts, operations);
                println!("erased {erased_value:#04x}, alignment {alignment}: {operations} cut points, all recovered to PASS");
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("variant campaign");
    }
}

#[test]
fn a_power_cut_at_every_operation_with_candidates_on_an_sd_card() {
    let directory = tempfile::tempdir().unwrap();
    let profile = Profile::load(&common::repo_root().join("profiles/demo-sd-card.toml")).unwrap();
    let storage = profile.device_hardware.update_storage.expect("the profile has update storage");
    let context = context(&profile, directory.path());
    let ledger_path = ledger_path(&profile, directory.path());
    let operations = operations_of_a_clean_unit(&context);
    // The card's share of them: location headers and the firmware range erased, the payload and
    // the header written, the header area erased again after the install.
    let erase_units = |bytes: u64| bytes.div_ceil(storage.device.erase_size_bytes);
    let payload_bytes = context.self_test.as_ref().expect("self-test material").payload.len() as u64;
    let card_operations = storage.locations * erase_units(storage.header_area_bytes())
        + erase_units(payload_bytes)
        + payload_bytes.div_ceil(storage.device.block_size_bytes)
        + 1
        + erase_units(storage.header_area_bytes());
    assert!(operations > card_operations, "{operations} operations, {card_operations} on the card");
    let mut failed_attempts = 0;
    for cut in 0..operations {
        let mut uid = vec![0x5D, 0xCA];
        uid.extend_from_slice(&cut.to_le_bytes());
        failed_attempts += run_with_cuts(&context, &ledger_path, uid, &[cut]);
    }
    assert_eq!(failed_attempts, operations);
    println!(
        "sd card: {operations} cut points (of them {card_operations} on the card, as its layout implies), all recovered to PASS"
    );
}

#[test]
fn random_runs_with_up_to_five_cuts() {
    let runs: u64 =
        std::env::var("IMPRINT_POWER_CUT_RANDOM_RUNS").ok().and_then(|text| text.parse().ok()).unwrap_or(200);
    let directory = tempfile::tempdir().unwrap();
    let mut seed = 0x5EED_u64;
    let mut next = || {
        // xorshift64*: repeatable without a dependency.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let variants = [(0xFFu8, 4u64), (0x00, 8)];
    let mut cuts_injected = 0;
    let mut failed_attempts = 0;
    for (index, (erased_value, alignment)) in variants.iter().enumerate() {
        let profile = profile_variant(*erased_value, *alignment, directory.path());
        let context = context(&profile, directory.path());
        let ledger_path = directory.path().join(format!("{alignment}.db"));
        let operations = operations_of_a_clean_unit(&context);
        for run in 0..runs / variants.len() as u64 {
            let cut_count = 1 + next() % 5;
            let cuts: Vec<u64> = (0..cut_count).map(|_| next() % (operations + 20)).collect();
            cuts_injected += cuts.len();
            let mut uid = vec![0xAA, index as u8];
            uid.extend_from_slice(&run.to_le_bytes());
            failed_attempts += run_with_cuts(&context, &ledger_path, uid, &cuts);
        }
    }
    println!(
        "{runs} random runs, {cuts_injected} cuts scheduled, {failed_attempts} attempts cut short, every unit ended PASS"
    );
}
