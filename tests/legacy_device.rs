//! The legacy update client's hardware on the simulated device (issue 17): mbed-bootloader's
//! active application header, written by the station and checked by the device's bootloader.

mod common;

use std::sync::{Arc, Mutex};

use imprint::contract::{self, BootRefusal, BootRefusalReason, MailboxRequest, SelfTestReport, UpdateStatus};
use imprint::device::Target;
use imprint::device::sim::{FaultPlan, SimDevice, SimTarget};
use imprint::ledger::Ledger;
use imprint::mbed_header;
use imprint::profile::{Profile, SimTiming};
use imprint::station::{
    CancelToken, EventSink, SelfTestMaterial, StationContext, StationEvent, UnitResult, provision_unit,
};

#[derive(Default)]
struct RecordedEvents(Mutex<Vec<StationEvent>>);

impl EventSink for RecordedEvents {
    fn emit(&self, event: StationEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Station {
    context: Arc<StationContext>,
    events: Arc<RecordedEvents>,
    directory: tempfile::TempDir,
}

fn mbed_profile() -> Profile {
    Profile::load(&common::repo_root().join("profiles/demo-mbed-bootloader.toml")).unwrap()
}

/// The same profile without the lock, so a test can reset the unit and read its mailbox after
/// the station is done with it.
fn unlocked_mbed_profile(directory: &std::path::Path) -> Profile {
    unlocked_profile(directory, "demo-mbed-bootloader.toml")
}

/// `profiles/NAME` with its lock turned off, written into `directory`.
fn unlocked_profile(directory: &std::path::Path, name: &str) -> Profile {
    let profiles = common::repo_root().join("profiles");
    let text = std::fs::read_to_string(profiles.join(name)).unwrap();
    let text = common::absolutize_profile_paths(&text, &profiles);
    assert!(text.contains("[lock]\nenabled = true"), "the profile's [lock] changed shape; update this test");
    let text = text.replace("[lock]\nenabled = true", "[lock]\nenabled = false");
    Profile::load(&common::write_profile(directory, &format!("unlocked-{name}"), &text)).unwrap()
}

fn station(profile: Profile) -> Station {
    let directory = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&directory.path().join("ledger.db")).unwrap();
    let events = Arc::new(RecordedEvents::default());
    let context = Arc::new(StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(&profile).unwrap())),
        profile: Arc::new(profile),
        ledger,
        station_name: "test-station".to_string(),
        operator: "tester".to_string(),
        events: events.clone(),
        cancel: CancelToken::default(),
        labels: Default::default(),
    });
    Station { context, events, directory }
}

fn sim_target(profile: &Profile, uid_byte: u8, faults: FaultPlan) -> SimTarget {
    let device = SimDevice::new(&firmware_of(profile).memory, vec![uid_byte; 12])
        .with_hardware(profile.device_hardware);
    SimTarget::new(device, &profile.chip_name, "sim-test", SimTiming::default(), faults)
}

fn header_address(profile: &Profile) -> u64 {
    profile.device_hardware.bootloader.application_header_address().expect("an mbed-bootloader profile")
}

/// Resets the device with a fresh mailbox request and returns what it left: a report or a
/// boot refusal, and the console lines.
fn boot(
    target: &mut SimTarget,
    profile: &Profile,
    nonce: u32,
) -> (Option<SelfTestReport>, Option<BootRefusal>, Vec<String>) {
    let mailbox = firmware_of(profile).memory.mailbox.address;
    target.write_ram(mailbox, &MailboxRequest { nonce }.encode_mailbox()).unwrap();
    let _ = target.take_console_lines();
    target.reset_and_run().unwrap();
    let mut bytes = vec![0u8; contract::MAILBOX_SIZE_BYTES];
    target.read_memory(mailbox, &mut bytes).unwrap();
    let lines = target.take_console_lines().unwrap();
    (SelfTestReport::decode_mailbox(&bytes), BootRefusal::decode_mailbox(&bytes), lines)
}

#[test]
fn the_station_writes_the_active_header_and_the_device_boots_through_it() {
    let profile = mbed_profile();
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x51, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");

    // The device installed the self-test payload and wrote its header: the header now
    // describes the payload (size, SHA-256, version 1.0.1 as a v1 timestamp).
    let device = target.device();
    let header = mbed_header::decode_internal_header(
        device.flash_bytes(header_address(&profile), mbed_header::INTERNAL_HEADER_SIZE_BYTES),
    )
    .expect("a valid header after the self-test");
    let payload = &station.context.self_test.as_ref().expect("self-test material").payload;
    assert_eq!(header.size, payload.len() as u64);
    assert_eq!(header.sha256, station.context.self_test.as_ref().expect("self-test material").payload_sha256);
    assert_eq!(
        header.version,
        imprint::profile::header_firmware_version(
            station.context.self_test.as_ref().expect("self-test material").payload_version
        )
    );

    // The program-application step recorded the header it wrote for the factory application.
    let events = station.events.0.lock().unwrap();
    let written = events
        .iter()
        .find_map(|event| match &event.kind {
            imprint::station::EventKind::StepFinished { step, detail, .. }
                if *step == "program-application" =>
            {
                Some(detail["mbed_application_header"].clone())
            }
            _ => None,
        })
        .expect("program-application finished");
    assert_eq!(written["address"], header_address(&profile));
    let factory_firmware = imprint::profile::application_firmware_bytes(
        &firmware_of(&profile).application_image,
        &firmware_of(&profile).memory.application,
    );
    assert_eq!(written["firmware_size"], factory_firmware.len() as u64);
    drop(events);
    drop(station.directory);
}

#[test]
fn a_flipped_header_bit_makes_the_bootloader_refuse_with_its_reason() {
    let directory = tempfile::tempdir().unwrap();
    let profile = unlocked_mbed_profile(directory.path());
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x52, FaultPlan::default());
    assert_eq!(provision_unit(&station.context, &mut target, 0, 1).result, UnitResult::Pass);
    let mut device = target.into_device();
    let address = header_address(&profile);
    let target_for = |device: SimDevice| {
        SimTarget::new(device, &profile.chip_name, "sim", SimTiming::default(), FaultPlan::default())
    };

    let (report, refusal, _) = boot(&mut target_for(device.clone()), &profile, 0x1111);
    assert_eq!(refusal, None);
    assert_eq!(report.expect("the intact unit boots").update_status, UpdateStatus::NoCandidate);

    // Every part of the header matters: one bit anywhere in it and the device boots nothing.
    for offset in [0u64, 5, 12, 20, 60, 90, 100, 109] {
        let mut tampered = device.clone();
        tampered.flip_flash_bit(address + offset, 3);
        let (report, refusal, lines) = boot(&mut target_for(tampered), &profile, 0x2222);
        assert_eq!(report, None, "byte {offset}: no application ran");
        assert_eq!(
            refusal,
            Some(BootRefusal { nonce: 0x2222, reason: BootRefusalReason::ApplicationHeaderInvalid }),
            "byte {offset}"
        );
        assert!(
            lines.iter().any(|line| line.starts_with("IMPRINT-BOOT-REFUSED nonce=00002222 reason=0x40")),
            "{lines:?}"
        );
    }

    // A valid header over an application that changed: the hash no longer matches.
    device.flip_flash_bit(firmware_of(&profile).memory.application.address + 16, 0);
    let (report, refusal, _) = boot(&mut target_for(device), &profile, 0x3333);
    assert_eq!(report, None);
    assert_eq!(refusal.map(|refusal| refusal.reason), Some(BootRefusalReason::ApplicationHeaderMismatch));
}

#[test]
fn the_station_names_the_bootloaders_refusal_when_the_header_is_disturbed_after_verification() {
    let profile = mbed_profile();
    let station = station(profile.clone());
    // Reset 1 answers the root-of-trust injection, reset 2 installs the self-test update (and
    // the bootloader writes a fresh header); reset 3, for the first forged candidate, installs
    // nothing and must check the header.
    let faults =
        FaultPlan { flip_bit_before_reset: Some((3, header_address(&profile) + 30)), ..Default::default() };
    let mut target = sim_target(&profile, 0x53, faults);
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Fail);
    assert_eq!(outcome.failing_step, Some("negative-self-test"));
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains("bootloader refused to boot the application: application-header-invalid (0x40)"),
        "{reason}"
    );
}

#[test]
fn a_header_bit_flipped_while_programming_fails_verify_flash() {
    let profile = mbed_profile();
    let station = station(profile.clone());
    let faults = FaultPlan { flip_bit_at_address: Some(header_address(&profile) + 8), ..Default::default() };
    let mut target = sim_target(&profile, 0x54, faults);
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.failing_step, Some("verify-flash"), "{outcome:?}");
}

// --- Root of trust and entropy injection -------------------------------------------------

fn step_detail(station: &Station, step_name: &str) -> Option<serde_json::Value> {
    station.events.0.lock().unwrap().iter().rev().find_map(|event| match &event.kind {
        imprint::station::EventKind::StepFinished { step, detail, .. } if *step == step_name => {
            Some(detail.clone())
        }
        _ => None,
    })
}

/// Every form the root of trust could take in text or bytes: raw, hex (both cases), and the
/// hex of each half (a message that cut it would still leak it).
fn leaks_of(root_of_trust: &[u8; 16]) -> Vec<Vec<u8>> {
    let hex = hex::encode(root_of_trust);
    vec![
        root_of_trust.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        hex.as_bytes()[..16].to_vec(),
        hex.as_bytes()[16..].to_vec(),
        format!("{:?}", root_of_trust).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn the_root_of_trust_goes_into_the_device_and_nowhere_else() {
    let profile = mbed_profile();
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x61, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    let device = target.device();
    let root_of_trust =
        *device.injected_root_of_trust().expect("the station injected a root of trust").expose_bytes();
    assert!(device.has_entropy());

    let detail = step_detail(&station, "inject-root-of-trust").expect("the step ran");
    assert_eq!(detail["root_of_trust"], "yes");
    assert_eq!(detail["entropy"], "yes");
    let commitment =
        hex::encode(contract::root_of_trust_commitment(&mbed_header::RootOfTrust::new(root_of_trust)));
    assert_eq!(detail["root_of_trust_commitment_sha256"], commitment.as_str());

    // The events, as the JSON stream would carry them.
    let events: Vec<u8> = station
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|event| serde_json::to_vec(event).unwrap())
        .collect();
    // The ledger's files and every export format.
    let db = station.directory.path().join("ledger.db");
    let mut places: Vec<(String, Vec<u8>)> = vec![("events".to_string(), events)];
    for format in ["csv", "json", "jsonl"] {
        let output = station.directory.path().join(format!("export.{format}"));
        let status = common::imprint()
            .args(["log", "export", "--db"])
            .arg(&db)
            .args(["--format", format, "-o"])
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&output).unwrap();
        assert!(contains(&bytes, commitment.as_bytes()), "the {format} export records the commitment");
        places.push((format!("{format} export"), bytes));
    }
    drop(station.context);
    for entry in std::fs::read_dir(station.directory.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("ledger.db") {
            places.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    for (place, bytes) in &places {
        for leak in leaks_of(&root_of_trust) {
            assert!(!contains(bytes, &leak), "{place} holds the root of trust ({} bytes form)", leak.len());
        }
    }
}

fn station_sharing_ledger(other: &Station, profile: Profile) -> Station {
    let directory = tempfile::tempdir().unwrap();
    let events = Arc::new(RecordedEvents::default());
    let context = Arc::new(StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(&profile).unwrap())),
        profile: Arc::new(profile),
        ledger: other.context.ledger.clone(),
        station_name: "test-station".to_string(),
        operator: "tester".to_string(),
        events: events.clone(),
        cancel: CancelToken::default(),
        labels: Default::default(),
    });
    Station { context, events, directory }
}

#[test]
fn a_second_injection_is_refused_by_the_device_and_rework_keeps_the_first() {
    let directory = tempfile::tempdir().unwrap();
    let profile = unlocked_mbed_profile(directory.path());
    let first_station = station(profile.clone());
    let mut target = sim_target(&profile, 0x62, FaultPlan::default());
    assert_eq!(provision_unit(&first_station.context, &mut target, 0, 1).result, UnitResult::Pass);
    let first = target.device().root_of_trust_commitment().unwrap();
    let device = target.into_device();
    let target_for = |device: SimDevice| {
        SimTarget::new(device, &profile.chip_name, "sim", SimTiming::default(), FaultPlan::default())
    };

    // Rework of the same chip on the same ledger: the device refuses the second write and keeps
    // the first; the station reports it and passes.
    let rework_station = station_sharing_ledger(&first_station, profile.clone());
    let mut again = target_for(device.clone());
    let outcome = provision_unit(&rework_station.context, &mut again, 0, 2);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    let detail = step_detail(&rework_station, "inject-root-of-trust").unwrap();
    assert_eq!(detail["root_of_trust"], "kept");
    assert!(detail["reason"].as_str().unwrap().contains("already-injected"), "{detail}");
    assert_eq!(
        again.device().root_of_trust_commitment().unwrap(),
        first,
        "the root of trust was not rewritten"
    );

    // A chip a fresh ledger has never seen that already holds a root of trust: refused, reported.
    let stranger_station = station(profile.clone());
    let mut stranger = target_for(device);
    let outcome = provision_unit(&stranger_station.context, &mut stranger, 0, 1);
    assert_eq!(outcome.failing_step, Some("inject-root-of-trust"), "{outcome:?}");
    assert!(outcome.reason.unwrap().contains("already holds a root of trust"));
    assert_eq!(stranger.device().root_of_trust_commitment().unwrap(), first);
}

#[test]
fn a_refused_boot_during_a_mailbox_command_is_named_too() {
    let profile = mbed_profile();
    let station = station(profile.clone());
    let faults =
        FaultPlan { flip_bit_before_reset: Some((1, header_address(&profile) + 2)), ..Default::default() };
    let mut target = sim_target(&profile, 0x55, faults);
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.failing_step, Some("inject-root-of-trust"), "{outcome:?}");
    assert!(outcome.reason.unwrap().contains("application-header-invalid (0x40)"));
}

// --- Candidates on a block device (a simulated SD card) -------------------------------------

fn sd_card_profile() -> Profile {
    Profile::load(&common::repo_root().join("profiles/demo-sd-card.toml")).unwrap()
}

fn unlocked_sd_card_profile(directory: &std::path::Path) -> Profile {
    unlocked_profile(directory, "demo-sd-card.toml")
}

#[test]
fn candidate_locations_are_laid_out_as_the_block_device_pal_does() {
    let storage = sd_card_profile().device_hardware.update_storage.expect("an update storage");
    // 0x1000 rounded up to the 512-byte erase unit, plus i x (0x20_0000 / 2).
    assert_eq!(storage.location_address(0), 0x1000);
    assert_eq!(storage.location_address(1), 0x1000 + 0x10_0000);
    assert_eq!(storage.header_area_bytes(), 512);
    // A storage address off the erase grid is rounded up; a size that does not divide evenly is
    // rounded down to whole erase units.
    let odd =
        imprint::profile::UpdateStorage { address: 0x1001, size_bytes: 0x3001, locations: 3, ..storage };
    assert_eq!(odd.location_size_bytes(), 0x1000);
    assert_eq!(odd.location_address(0), 0x1200);
    assert_eq!(odd.location_address(2), 0x3200);
}

#[test]
fn the_bootloader_installs_the_self_test_update_from_the_sd_card() {
    let directory = tempfile::tempdir().unwrap();
    let profile = unlocked_sd_card_profile(directory.path());
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x71, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    let device = target.device();
    // The internal candidate region was never used: the update came through the card.
    let candidate = firmware_of(&profile).memory.candidate;
    assert!(
        device.flash_bytes(candidate.address, candidate.size_bytes as usize).iter().all(|byte| *byte == 0xFF)
    );
    let payload = &station.context.self_test.as_ref().expect("self-test material").payload;
    assert!(
        device.flash_bytes(firmware_of(&profile).memory.application.address, payload.len())
            == payload.as_slice()
    );
    // Installed and discarded: the header area of location 0 is erased, the firmware is still there.
    let storage = profile.device_hardware.update_storage.unwrap();
    let location = storage.location_address(0);
    assert!(device.block_device_bytes(location, 512).unwrap().iter().all(|byte| *byte == 0xFF));
    assert!(device.block_device_bytes(location + 512, payload.len()).unwrap() == payload.as_slice());
    // Every forged candidate was refused by the update client before it reached the card.
    let refused = step_detail(&station, "negative-self-test").unwrap();
    assert!(!refused["refused"].as_array().unwrap().is_empty(), "{refused}");
}

/// Runs one unit of the SD-card profile with a bit of the card flipped just before reset 3
/// (reset 1 answers the root-of-trust injection, reset 2 the store-candidate command, reset 3
/// is the boot whose bootloader installs from the card) and returns the outcome.
fn tampered_card_outcome(card_offset_in_location_0: u64, uid_byte: u8) -> imprint::station::UnitOutcome {
    let profile = sd_card_profile();
    let station = station(profile.clone());
    let storage = profile.device_hardware.update_storage.unwrap();
    let address = storage.location_address(0) + card_offset_in_location_0;
    let faults = FaultPlan { flip_block_device_bit_before_reset: Some((3, address)), ..Default::default() };
    let mut target = sim_target(&profile, uid_byte, faults);
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    // A refused candidate leaves the factory application in place.
    if outcome.result != UnitResult::Pass {
        let factory = imprint::profile::application_firmware_bytes(
            &firmware_of(&profile).application_image,
            &firmware_of(&profile).memory.application,
        );
        let slot =
            target.device().flash_bytes(firmware_of(&profile).memory.application.address, factory.len());
        assert!(slot == factory.as_slice(), "the application slot changed");
    }
    outcome
}

#[test]
fn a_tampered_external_header_on_the_card_is_refused_with_its_reason() {
    // One bit in the checked part of the header (the firmware version, the hash, the HMAC).
    for (index, offset) in [9u64, 30, 233, 263].into_iter().enumerate() {
        let outcome = tampered_card_outcome(offset, 0x80 + index as u8);
        assert_eq!(outcome.failing_step, Some("self-test"), "offset {offset}: {outcome:?}");
        let reason = outcome.reason.unwrap();
        assert!(reason.contains("StorageHeaderInvalid (0x30)"), "offset {offset}: {reason}");
    }
    // The unchecked half of the HMAC field is ignored, as the hub ignores it.
    let outcome = tampered_card_outcome(280, 0x90);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    // A firmware byte: the header authenticates but the firmware does not match it.
    let outcome = tampered_card_outcome(512 + 1000, 0x91);
    assert!(outcome.reason.unwrap().contains("StorageFirmwareMismatch (0x31)"));
}

#[test]
fn rework_clears_every_candidate_location() {
    let directory = tempfile::tempdir().unwrap();
    let profile = unlocked_sd_card_profile(directory.path());
    let first = station(profile.clone());
    let mut target = sim_target(&profile, 0x72, FaultPlan::default());
    assert_eq!(provision_unit(&first.context, &mut target, 0, 1).result, UnitResult::Pass);
    let mut device = target.into_device();
    // Leave something in every location's header area, as a run cut short could.
    let storage = profile.device_hardware.update_storage.unwrap();
    for index in 0..storage.locations {
        device.flip_block_device_bit(storage.location_address(index) + 17, 2);
    }
    let rework = station_sharing_ledger(&first, profile.clone());
    let mut target =
        SimTarget::new(device, &profile.chip_name, "sim", SimTiming::default(), FaultPlan::default());
    assert_eq!(provision_unit(&rework.context, &mut target, 0, 2).result, UnitResult::Pass);
    for index in 0..storage.locations {
        let header = target.device().block_device_bytes(storage.location_address(index), 512).unwrap();
        assert!(header.iter().all(|byte| *byte == 0xFF), "location {index} still holds a header");
    }
}

#[test]
fn a_profile_with_its_candidates_on_an_sd_card_passes_in_imprint_run() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    common::create_ledger(&db);
    let profile = common::repo_root().join("profiles/demo-sd-card.toml");
    let (code, events) =
        common::run_json_events(&["--profile", profile.to_str().unwrap(), "--sim", "2", "--count", "3"], &db);
    assert_eq!(code, 0, "{events:?}");
    let passed =
        events.iter().filter(|event| event["event"] == "unit-finished" && event["result"] == "pass").count();
    assert_eq!(passed, 3);
    let injected = events
        .iter()
        .filter(|event| event["event"] == "step-finished" && event["step"] == "inject-root-of-trust")
        .count();
    assert_eq!(injected, 3);
}

// --- The device's own code as the judge -------------------------------------------------------

/// The SD-card profile without the lock and the self-tests: after the station is done the test
/// hands the device a candidate itself and looks at what the update client wrote.
fn sd_card_profile_without_self_test(directory: &std::path::Path) -> Profile {
    let profiles = common::repo_root().join("profiles");
    let text = std::fs::read_to_string(profiles.join("demo-sd-card.toml")).unwrap();
    let mut text = common::absolutize_profile_paths(&text, &profiles);
    assert!(
        text.contains("[lock]\nenabled = true") && !text.contains("[steps]"),
        "the profile changed shape"
    );
    text = text.replace("[lock]\nenabled = true", "[lock]\nenabled = false");
    text.push_str("\n[steps]\nskip = [\"self-test\", \"negative-self-test\"]\n");
    Profile::load(&common::write_profile(directory, "sd-no-self-test.toml", &text)).unwrap()
}

#[test]
fn the_headers_written_for_mbed_bootloader_parse_in_update_client_hubs_own_code() {
    let directory = tempfile::tempdir().unwrap();

    // The active header the station writes for the factory application.
    let profile = mbed_profile();
    let station_header = imprint::profile::application_header(
        &firmware_of(&profile).application_image,
        &firmware_of(&profile).memory.application,
        firmware_of(&profile).application_version,
    );
    let path = directory.path().join("station-internal.bin");
    std::fs::write(&path, station_header).unwrap();
    let verdict = common::uchub::parse_internal_header(&path);
    let factory = imprint::profile::application_firmware_bytes(
        &firmware_of(&profile).application_image,
        &firmware_of(&profile).memory.application,
    );
    assert!(verdict.accepted, "{verdict:?}");
    assert!(verdict.line.contains(&format!("size={}", factory.len())), "{verdict:?}");

    // The external header the device's update client writes on its SD card, keyed from the root
    // of trust the station injected.
    let profile = sd_card_profile_without_self_test(directory.path());
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x73, FaultPlan::default());
    assert_eq!(provision_unit(&station.context, &mut target, 0, 1).result, UnitResult::Pass);
    let request = contract::IdentityMailboxRequest {
        nonce: 0x0bad_cafe,
        command: contract::IdentityCommand::StoreCandidate {
            candidate: station
                .context
                .self_test
                .as_ref()
                .expect("self-test material")
                .signed
                .candidate_bytes
                .clone(),
        },
    };
    target.write_ram(firmware_of(&profile).memory.mailbox.address, &request.encode_mailbox()).unwrap();
    target.reset_and_run().unwrap();
    let mut mailbox = vec![0u8; contract::IDENTITY_MAILBOX_SIZE_BYTES];
    target.read_memory(firmware_of(&profile).memory.mailbox.address, &mut mailbox).unwrap();
    let response = contract::IdentityResponse::decode_mailbox(&mailbox).expect("an answer");
    assert_eq!(response.status, contract::IdentityStatus::Done);

    let storage = profile.device_hardware.update_storage.unwrap();
    let device = target.device();
    let header = device
        .block_device_bytes(storage.location_address(0), mbed_header::EXTERNAL_HEADER_SIZE_BYTES)
        .unwrap()
        .to_vec();
    let root_of_trust = *device.injected_root_of_trust().unwrap().expose_bytes();
    let path = directory.path().join("device-external.bin");
    std::fs::write(&path, &header).unwrap();
    let verdict = common::uchub::parse_external_header(&root_of_trust, &path);
    let payload = &station.context.self_test.as_ref().expect("self-test material").payload;
    let version = imprint::profile::header_firmware_version(
        station.context.self_test.as_ref().expect("self-test material").payload_version,
    );
    assert_eq!(
        verdict.line,
        format!(
            "accepted version={version} size={} hash={} campaign={}",
            payload.len(),
            hex::encode(station.context.self_test.as_ref().expect("self-test material").payload_sha256),
            hex::encode([0u8; 16])
        )
    );
    // One flipped bit, and the hub's code refuses it as the simulated bootloader does.
    let mut tampered = header;
    tampered[100] ^= 0x10;
    std::fs::write(&path, &tampered).unwrap();
    assert!(!common::uchub::parse_external_header(&root_of_trust, &path).accepted);
}

#[test]
fn candidates_on_spi_nor_flash_install_too() {
    let directory = tempfile::tempdir().unwrap();
    let profiles = common::repo_root().join("profiles");
    let text = common::absolutize_profile_paths(
        &std::fs::read_to_string(profiles.join("demo-sd-card.toml")).unwrap(),
        &profiles,
    );
    let sd_card = "kind = \"sd-card\"\nblock_size = 512\nerase_size = 512\n";
    assert!(text.contains(sd_card), "the profile's [block_device] changed shape");
    let text = text.replace(sd_card, "kind = \"spi-nor\"\nblock_size = 256\nerase_size = 4096\n");
    let profile = Profile::load(&common::write_profile(directory.path(), "spi-nor.toml", &text)).unwrap();
    let storage = profile.device_hardware.update_storage.unwrap();
    assert_eq!((storage.location_address(0), storage.header_area_bytes()), (0x1000, 4096));
    let station = station(profile.clone());
    let mut target = sim_target(&profile, 0x74, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    let payload = &station.context.self_test.as_ref().expect("self-test material").payload;
    let firmware =
        target.device().block_device_bytes(storage.location_address(0) + 4096, payload.len()).unwrap();
    assert!(firmware == payload.as_slice(), "the firmware went through the SPI NOR flash");
}

/// The firmware sections of a profile that flashes firmware (every profile here does).
fn firmware_of(profile: &imprint::profile::Profile) -> &imprint::profile::FirmwareSettings {
    profile.firmware.as_ref().expect("the profile flashes firmware")
}
