//! The pipeline on the simulated device, through the library: every unit PASSes on a clean
//! line; each injected fault FAILs the unit at the right step with a reason, leaves no PASS
//! record, and leaves the other slots producing.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use imprint::device::sim::{FaultPlan, SimDevice, SimFixture, SimTarget};
use imprint::device::{ChipDescription, Fixture, Target, TargetError};
use imprint::identity::ChipUid;
use imprint::ledger::Ledger;
use imprint::profile::{Profile, SimTiming};
use imprint::station::{
    CancelToken, EventKind, EventSink, SelfTestMaterial, StationContext, StationEvent, UnitResult,
    provision_unit, run_line,
};

/// Collects events for inspection.
#[derive(Default)]
struct RecordedEvents(Mutex<Vec<StationEvent>>);

impl EventSink for RecordedEvents {
    fn emit(&self, event: StationEvent) {
        self.0.lock().unwrap().push(event);
    }
}

fn demo_profile() -> Profile {
    Profile::load(&common::repo_root().join("profiles/demo.toml")).unwrap()
}

struct Station {
    context: Arc<StationContext>,
    events: Arc<RecordedEvents>,
    _directory: tempfile::TempDir,
}

fn station_for(profile: Profile, self_test_profile: &Profile) -> Station {
    let directory = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&directory.path().join("ledger.db")).unwrap();
    let events = Arc::new(RecordedEvents::default());
    let context = Arc::new(StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(self_test_profile).unwrap())),
        profile: Arc::new(profile),
        ledger,
        station_name: "test-station".to_string(),
        operator: "tester".to_string(),
        events: events.clone(),
        cancel: CancelToken::default(),
        labels: Default::default(),
    });
    Station { context, events, _directory: directory }
}

fn station() -> Station {
    let profile = demo_profile();
    station_for(profile.clone(), &profile)
}

fn fixture(station: &Station, name: &str, seed: u64, faults: Vec<(u64, FaultPlan)>) -> Box<dyn Fixture> {
    let profile = &station.context.profile;
    Box::new(
        SimFixture::new(
            name,
            &profile.chip_name,
            &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
            SimTiming::default(),
            Some(seed),
        )
        .with_fault_schedule(Box::new(move |unit| {
            faults.iter().find(|(index, _)| *index == unit).map(|(_, plan)| plan.clone()).unwrap_or_default()
        })),
    )
}

fn sim_target(station: &Station, uid_byte: u8, faults: FaultPlan) -> SimTarget {
    let profile = &station.context.profile;
    let device = SimDevice::new(
        &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
        vec![uid_byte; 12],
    );
    SimTarget::new(device, &profile.chip_name, "sim-test", SimTiming::default(), faults)
}

#[test]
fn twenty_units_across_four_slots_all_pass_with_distinct_identities() {
    let station = station();
    let fixtures = (0..4).map(|slot| fixture(&station, &format!("sim-{slot}"), 7, vec![])).collect();
    let summary = run_line(station.context.clone(), fixtures, Some(20));
    assert_eq!(summary.outcomes.len(), 20);
    for outcome in &summary.outcomes {
        assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    }
    let serials: HashSet<_> =
        summary.outcomes.iter().map(|outcome| outcome.serial.clone().unwrap()).collect();
    let device_ids: HashSet<_> = summary.outcomes.iter().map(|outcome| outcome.device_id.unwrap()).collect();
    assert_eq!((serials.len(), device_ids.len()), (20, 20));
    for outcome in &summary.outcomes {
        let recorded =
            station.context.ledger.lookup_chip(outcome.chip_uid.as_ref().unwrap()).unwrap().unwrap();
        assert_eq!(Some(recorded.serial), outcome.serial);
    }
}

/// Runs one unit with `faults` and checks that it fails at `expected_step` with a reason
/// containing `expected_reason`, and that no PASS was recorded for it.
fn check_fault(faults: FaultPlan, expected_step: &str, expected_reason: &str) {
    let station = station();
    let mut target = sim_target(&station, 0x42, faults.clone());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Fail, "{faults:?} passed");
    assert_eq!(outcome.failing_step, Some(expected_step), "{faults:?}: {outcome:?}");
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains(expected_reason), "{faults:?}: reason {reason:?} lacks {expected_reason:?}");
    let finished: Vec<_> = station
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::UnitFinished { result, .. } => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(finished, vec![UnitResult::Fail]);
}

#[test]
fn each_injected_fault_fails_the_unit_at_its_step() {
    check_fault(
        FaultPlan { probe_lost_at_step: Some("erase".into()), ..Default::default() },
        "erase",
        "probe lost",
    );
    check_fault(
        FaultPlan { probe_lost_at_step: Some("self-test".into()), ..Default::default() },
        "self-test",
        "probe lost",
    );
    check_fault(
        FaultPlan { probe_lost_at_step: Some("lock".into()), ..Default::default() },
        "lock",
        "probe lost",
    );
    check_fault(FaultPlan { unique_id_read_fails: true, ..Default::default() }, "identify", "unique ID");
    check_fault(
        FaultPlan { power_cut_after_flash_operations: Some(5), ..Default::default() },
        "program-bootloader",
        "lost power",
    );
    check_fault(
        FaultPlan { power_cut_after_flash_operations: Some(60), ..Default::default() },
        "program-application",
        "lost power",
    );
    check_fault(
        FaultPlan { flip_bit_at_address: Some(0x8123), ..Default::default() },
        "verify-flash",
        "does not match",
    );
    check_fault(
        FaultPlan { flip_bit_at_address: Some(0xF_8010), ..Default::default() },
        "verify-config",
        "does not match",
    );
    // More transient errors than the retry budget.
    check_fault(FaultPlan { transient_errors: 10, ..Default::default() }, "connect", "transient");
}

#[test]
fn a_few_transient_errors_are_retried() {
    let station = station();
    let mut target = sim_target(&station, 0x43, FaultPlan { transient_errors: 2, ..Default::default() });
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
}

#[test]
fn a_faulty_slot_does_not_stop_the_others() {
    let station = station();
    let faulty = vec![
        (0, FaultPlan { probe_lost_at_step: Some("program-application".into()), ..Default::default() }),
        (1, FaultPlan { power_cut_after_flash_operations: Some(3), ..Default::default() }),
        (2, FaultPlan { unique_id_read_fails: true, ..Default::default() }),
    ];
    let fixtures = vec![fixture(&station, "faulty", 1, faulty), fixture(&station, "healthy", 2, vec![])];
    let summary = run_line(station.context.clone(), fixtures, Some(12));
    assert_eq!(summary.outcomes.len(), 12);
    // The faulty fixture's first three units fail; everything else passes.
    assert_eq!(summary.failed(), 3, "{:?}", summary.outcomes);
    let failing_steps: HashSet<_> =
        summary.outcomes.iter().filter_map(|outcome| outcome.failing_step).collect();
    assert_eq!(failing_steps, HashSet::from(["program-application", "program-bootloader", "identify"]));
}

#[test]
fn a_store_with_the_wrong_class_id_is_caught_by_the_self_test() {
    let profile = demo_profile();
    let mut wrong_class = profile.clone();
    wrong_class.class_id = uuid::Uuid::new_v5(&profile.vendor_id, b"another model");
    // The station writes the wrong class ID into the store; the update is signed for the real class.
    let station = station_for(wrong_class, &profile);
    let mut target = sim_target(&station, 0x44, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.failing_step, Some("self-test"), "{outcome:?}");
    assert!(outcome.reason.unwrap().contains("ClassIdMismatch"));
}

#[test]
fn a_passed_unit_is_locked_and_refuses_debug_reads() {
    let station = station();
    let mut target = sim_target(&station, 0x45, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass);
    let mut buffer = [0u8; 4];
    assert_eq!(target.read_memory(0x8000, &mut buffer), Err(TargetError::Locked));
    assert!(target.is_locked().unwrap());
    let verify_lock = station.events.0.lock().unwrap().iter().find_map(|event| match &event.kind {
        EventKind::StepFinished { step, detail, .. } if step == "verify-lock" => Some(detail.clone()),
        _ => None,
    });
    assert_eq!(verify_lock.unwrap()["debug_read_refused_at"], 0xF_8000);
}

/// A target whose lock does nothing (a broken lock recipe), or that claims to be locked while
/// reads still work: verify-lock must catch both.
struct BrokenLock {
    inner: SimTarget,
    claims_locked_after_lock: bool,
    lock_was_called: bool,
}

impl Target for BrokenLock {
    fn backend_name(&self) -> &'static str {
        "sim"
    }
    fn probe_identifier(&self) -> String {
        self.inner.probe_identifier()
    }
    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        self.inner.connect()
    }
    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        self.inner.read_unique_id()
    }
    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.inner.read_memory(address, buffer)
    }
    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        self.inner.write_ram(address, data)
    }
    fn erase_flash(
        &mut self,
        address: u64,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.inner.erase_flash(address, size, progress)
    }
    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.inner.program_flash(address, data, progress)
    }
    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.inner.reset_and_run()
    }
    fn halt(&mut self) -> Result<(), TargetError> {
        self.inner.halt()
    }
    fn lock(&mut self) -> Result<(), TargetError> {
        self.lock_was_called = true;
        Ok(())
    }
    fn is_locked(&mut self) -> Result<bool, TargetError> {
        Ok(self.claims_locked_after_lock && self.lock_was_called)
    }
    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        self.inner.unlock_by_mass_erase()
    }
}

#[test]
fn verify_lock_catches_a_lock_that_did_not_take() {
    for (claims_locked_after_lock, expected_reason) in
        [(false, "does not report itself locked"), (true, "still succeeds")]
    {
        let station = station();
        let inner = sim_target(&station, 0x46, FaultPlan::default());
        let mut target = BrokenLock { inner, claims_locked_after_lock, lock_was_called: false };
        let outcome = provision_unit(&station.context, &mut target, 0, 1);
        assert_eq!(outcome.failing_step, Some("verify-lock"), "{outcome:?}");
        assert!(outcome.reason.unwrap().contains(expected_reason));
    }
}

#[test]
fn rework_of_a_known_chip_reuses_its_identity() {
    let station = station();
    let mut first = sim_target(&station, 0x47, FaultPlan::default());
    let first_outcome = provision_unit(&station.context, &mut first, 0, 1);
    // The same chip comes back fresh (its flash replaced, e.g. after a board repair).
    let mut second = sim_target(&station, 0x47, FaultPlan::default());
    let second_outcome = provision_unit(&station.context, &mut second, 0, 2);
    assert_eq!(second_outcome.result, UnitResult::Pass, "{second_outcome:?}");
    assert_eq!(first_outcome.serial, second_outcome.serial);
    assert_eq!(first_outcome.device_id, second_outcome.device_id);
}

#[test]
fn a_stopped_line_starts_no_unit() {
    let station = station();
    station.context.cancel.stop();
    let fixtures = (0..2).map(|slot| fixture(&station, &format!("sim-{slot}"), 3, vec![])).collect();
    let summary = run_line(station.context.clone(), fixtures, None);
    assert!(summary.outcomes.is_empty());
}

/// An abort ends a unit in flight before its next step: ABORTED (not FAIL), recorded with the
/// steps it did, the step it did not start named; a stop alone lets the unit finish.
#[test]
fn an_abort_ends_the_unit_in_flight_as_aborted_and_a_stop_lets_it_finish() {
    let station = station();
    station.context.cancel.stop();
    let mut target = sim_target(&station, 0x51, FaultPlan::default());
    let finished = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(finished.result, UnitResult::Pass, "a stop must not cut a unit in flight: {finished:?}");
    station.context.cancel.abort();
    let mut target = sim_target(&station, 0x52, FaultPlan::default());
    let aborted = provision_unit(&station.context, &mut target, 0, 2);
    assert_eq!(aborted.result, UnitResult::Aborted, "{aborted:?}");
    assert_eq!(aborted.failing_step, Some("connect"));
    assert!(aborted.reason.as_deref().unwrap_or_default().contains("aborted"), "{aborted:?}");
    let stats = station.context.ledger.stats().unwrap();
    assert_eq!((stats.runs_passed, stats.runs_failed, stats.runs_aborted), (1, 0, 1), "{stats:?}");
}

#[test]
fn a_hung_slot_times_out_while_the_other_slots_keep_producing() {
    let station = station();
    let hang =
        vec![(0, FaultPlan { hang_at_step: Some("program-application".into()), ..Default::default() })];
    let fixtures = vec![fixture(&station, "hangs", 1, hang), fixture(&station, "healthy", 2, vec![])];
    let started = std::time::Instant::now();
    let summary = run_line(station.context.clone(), fixtures, Some(12));
    let hung: Vec<_> = summary.outcomes.iter().filter(|outcome| outcome.result == UnitResult::Fail).collect();
    assert_eq!(hung.len(), 1, "{:?}", summary.outcomes);
    assert_eq!(hung[0].failing_step, Some("program-application"));
    assert!(hung[0].reason.as_ref().unwrap().contains("timed out"));
    // While the hung unit waited for its probe's timeout, the healthy slot kept producing:
    // every other unit passed, most of them on the healthy fixture.
    assert_eq!(summary.passed(), 11);
    let events = station.events.0.lock().unwrap();
    let healthy_passes_before_timeout = events
        .iter()
        .take_while(|event| !matches!(&event.kind, EventKind::UnitFinished { result: UnitResult::Fail, .. }))
        .filter(|event| {
            event.slot == Some(1)
                && matches!(&event.kind, EventKind::UnitFinished { result: UnitResult::Pass, .. })
        })
        .count();
    assert!(
        healthy_passes_before_timeout >= 3,
        "the healthy slot produced {healthy_passes_before_timeout} units during the hang"
    );
    assert!(
        started.elapsed()
            >= std::time::Duration::from_millis(imprint::device::sim::SIM_PROBE_COMMAND_TIMEOUT_MS)
    );
}

#[test]
fn rework_writes_only_what_changed() {
    let mut profile = demo_profile();
    profile.lock.enabled = false;
    let station = station_for(profile.clone(), &profile);
    let mut first = sim_target(&station, 0x48, FaultPlan::default());
    assert_eq!(provision_unit(&station.context, &mut first, 0, 1).result, UnitResult::Pass);
    // The same unit comes back (e.g. for a re-test): its bootloader is unchanged, so only the
    // sectors that differ are erased and programmed.
    let mut again = SimTarget::new(
        first.into_device(),
        &profile.chip_name,
        "sim-test",
        SimTiming::default(),
        FaultPlan::default(),
    );
    assert_eq!(provision_unit(&station.context, &mut again, 0, 2).result, UnitResult::Pass);
    let events = station.events.0.lock().unwrap();
    let detail = |unit: u64, wanted: &str| {
        events
            .iter()
            .find_map(|event| match &event.kind {
                EventKind::StepFinished { step, detail, .. }
                    if event.unit == Some(unit) && step == wanted =>
                {
                    Some(detail.clone())
                }
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(detail(1, "program-bootloader")["sectors_unchanged"], 0);
    assert_eq!(detail(2, "program-bootloader")["sectors_unchanged"], 3);
    assert_eq!(detail(2, "program-bootloader")["bytes_written"], 0);
    // A fresh (erased) unit needs no erase at all.
    assert_eq!(detail(1, "erase")["erased_bytes"], 0);
}

#[test]
fn a_power_cut_while_erasing_a_reworked_unit_fails_at_erase() {
    let mut profile = demo_profile();
    profile.lock.enabled = false;
    let station = station_for(profile.clone(), &profile);
    let mut first = sim_target(&station, 0x49, FaultPlan::default());
    assert_eq!(provision_unit(&station.context, &mut first, 0, 1).result, UnitResult::Pass);
    let faults = FaultPlan { power_cut_after_flash_operations: Some(0), ..Default::default() };
    let mut again =
        SimTarget::new(first.into_device(), &profile.chip_name, "sim-test", SimTiming::default(), faults);
    let outcome = provision_unit(&station.context, &mut again, 0, 2);
    assert_eq!(outcome.failing_step, Some("erase"), "{outcome:?}");
}

#[test]
fn probe_lost_at_every_step_fails_that_unit_and_the_slot_recovers() {
    use imprint::station::StepName;
    let profile = demo_profile();
    for step in StepName::ALL.into_iter().filter(|step| step.applies_to(&profile)) {
        let station = station();
        let lose_probe = vec![(
            0,
            FaultPlan { probe_lost_at_step: Some(step.as_str().to_string()), ..Default::default() },
        )];
        let fixtures =
            vec![fixture(&station, "flaky", 11, lose_probe), fixture(&station, "steady", 12, vec![])];
        let summary = run_line(station.context.clone(), fixtures, Some(6));
        let events = station.events.0.lock().unwrap();
        let finished: Vec<(usize, UnitResult, Option<String>)> = events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::UnitFinished { result, failing_step, .. } => {
                    Some((event.slot.unwrap_or_default(), *result, failing_step.clone()))
                }
                _ => None,
            })
            .collect();
        let flaky: Vec<_> = finished.iter().filter(|(slot, ..)| *slot == 0).collect();
        if step == StepName::Record {
            // Recording does not use the probe: losing it then costs nothing.
            assert_eq!(summary.failed(), 0, "{step:?}");
            continue;
        }
        // check-identity and allocate-identity talk only to the ledger: the loss shows at the
        // next probe step.
        let expected_step = match step {
            StepName::CheckIdentity => StepName::Erase,
            StepName::AllocateIdentity => StepName::WriteConfig,
            step => step,
        };
        assert_eq!(summary.failed(), 1, "{step:?}: {finished:?}");
        assert_eq!(flaky[0].1, UnitResult::Fail, "{step:?}");
        assert_eq!(flaky[0].2.as_deref(), Some(expected_step.as_str()), "{step:?}");
        // The probe is back for the slot's next unit, which passes; the other slot never stopped.
        assert!(
            flaky.len() >= 2 && flaky[1..].iter().all(|(_, result, _)| *result == UnitResult::Pass),
            "{step:?}: {flaky:?}"
        );
        assert!(
            finished.iter().filter(|(slot, ..)| *slot == 1).all(|(_, result, _)| *result == UnitResult::Pass)
        );
    }
}

#[test]
fn a_delegated_trust_model_provisions_and_refuses_forgeries() {
    use imprint::trust::{self, CertificateRequest, Signer};
    let directory = tempfile::tempdir().unwrap();
    let ca_key = trust::generate_signing_key();
    let ca = trust::self_signed_certificate(
        &ca_key,
        &CertificateRequest::certificate_authority("Demo Update CA", 7300),
    )
    .unwrap();
    let delegate_key = trust::generate_signing_key();
    let delegate = trust::issue_certificate(
        &ca_key,
        &ca,
        &delegate_key.verifying_key(),
        &CertificateRequest::update_authority("Demo release signer", 3650),
    )
    .unwrap();
    std::fs::write(directory.path().join("ca.der"), ca.der()).unwrap();
    std::fs::write(directory.path().join("delegate.der"), delegate.der()).unwrap();
    trust::write_signing_key_pem(&delegate_key, &directory.path().join("delegate.pem")).unwrap();
    let profiles = common::repo_root().join("profiles");
    let text = std::fs::read_to_string(profiles.join("demo.toml"))
        .unwrap()
        .replace("\"../", &format!("\"{}/../", profiles.display()))
        .replace("\"demo-credentials/dev.cert.der\"", "\"ca.der\"\ndelegate_certificate = \"delegate.der\"")
        .replace("\"demo-credentials/dev.key.pem\"", "\"delegate.pem\"");
    // A v1 self-test cannot use delegation: a v1 manifest names the stored certificate itself.
    let v1_path = directory.path().join("delegated-v1.toml");
    std::fs::write(
        &v1_path,
        text.replace("report_timeout_ms = 3000", "report_timeout_ms = 3000\nmanifest_schema = \"v1\""),
    )
    .unwrap();
    let refusal = Profile::load(&v1_path).unwrap_err().to_string();
    assert!(
        refusal.contains("self_test.manifest_schema") && refusal.contains("trust.delegate_certificate"),
        "{refusal}"
    );
    let path = directory.path().join("delegated.toml");
    std::fs::write(&path, text).unwrap();
    let profile = Profile::load(&path).unwrap();
    assert!(profile.delegate_certificate.is_some());
    let station = station_for(profile.clone(), &profile);
    let mut target = sim_target(&station, 0x4A, FaultPlan::default());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    // The device stores the CA, reports its fingerprint, and refused the manifest signed by a key
    // the delegate certificate does not name.
    let events = station.events.0.lock().unwrap();
    let detail = |wanted: &str| {
        events.iter().find_map(|event| match &event.kind {
            EventKind::StepFinished { step, detail, .. } if step == wanted => Some(detail.clone()),
            _ => None,
        })
    };
    assert_eq!(detail("self-test").unwrap()["certificate_fingerprint"], hex::encode(ca.fingerprint_sha256()));
    let refused = detail("negative-self-test").unwrap();
    assert_eq!(refused["refused"][0]["reason_code"], 0x14);
}
