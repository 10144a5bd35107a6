//! Power cuts during an install, on the reference firmware in QEMU: the emulated board is reset
//! at chosen points of its own update client's install — while erasing and while programming
//! each application sector (at its start and half way through), while erasing and writing the
//! boot-state record, and while discarding the candidate, each caught with a GDB write
//! watchpoint — then boots again. It must boot the old or the new application, never a broken
//! one, and report which: here the candidate is still staged after every cut, so the next boot
//! completes the install and reports the new version, with the application slot holding exactly
//! the new image.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use imprint::contract::{self, MailboxRequest, SelfTestReport, UpdateStatus};
use imprint::device::Target;
use imprint::device::gdb::{BreakpointKind, GdbTargetConfig};
use imprint::device::qemu::{QemuFixture, QemuOptions};
use imprint::ledger::Ledger;
use imprint::profile::Profile;
use imprint::station::{
    CancelToken, DiscardEvents, SelfTestMaterial, StationContext, UnitResult, provision_unit,
};

fn read(target: &mut dyn Target, address: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    target.read_memory(address, &mut bytes).expect("debug read");
    bytes
}

fn wait_for_report(target: &mut dyn Target, mailbox_address: u64, nonce: u32) -> SelfTestReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mailbox = read(target, mailbox_address, contract::MAILBOX_SIZE_BYTES);
        if let Some(report) = SelfTestReport::decode_mailbox(&mailbox)
            && report.nonce == nonce
        {
            return report;
        }
        assert!(Instant::now() < deadline, "no report after the cut");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reset_at_any_point_of_an_install_leaves_a_bootable_application() {
    let directory = tempfile::tempdir().unwrap();
    let profiles = common::repo_root().join("profiles");
    // The unit is first provisioned without the self-test; the test then stages the update itself.
    let text = common::absolutize_profile_paths(
        &std::fs::read_to_string(profiles.join("qemu-mps2-an385.toml")).unwrap(),
        &profiles,
    )
    .replace("skip = [\"lock\"]", "skip = [\"lock\", \"self-test\"]");
    let profile =
        Profile::load(&common::write_profile(directory.path(), "qemu-no-self-test.toml", &text)).unwrap();
    let material = SelfTestMaterial::prepare(&profile).unwrap();
    let context = StationContext {
        self_test: Some(Arc::new(material.clone())),
        ledger: Ledger::open(&directory.path().join("ledger.db")).unwrap(),
        profile: Arc::new(profile.clone()),
        station_name: "qemu-power-cut".to_string(),
        operator: "campaign".to_string(),
        events: Arc::new(DiscardEvents),
        cancel: CancelToken::default(),
        labels: Default::default(),
    };
    let memory = profile.firmware.as_ref().expect("the profile flashes firmware").memory.clone();
    let application = memory.application;
    let payload_sectors = (material.payload.len() as u64).div_ceil(application.sector_size_bytes);
    // Each cut point: a place and which write to it (1: the erase fill, 2: the program).
    let mut cut_points: Vec<(String, u64, u32)> = Vec::new();
    for sector in 0..payload_sectors {
        let start = application.address + sector * application.sector_size_bytes;
        let middle = start + application.sector_size_bytes / 2;
        cut_points.push((format!("erasing application sector {sector}"), start, 1));
        cut_points.push((format!("half way through erasing application sector {sector}"), middle, 1));
        cut_points.push((format!("programming application sector {sector}"), start, 2));
        cut_points.push((format!("half way through programming application sector {sector}"), middle, 2));
    }
    cut_points.push(("erasing the boot-state sector".to_string(), memory.boot_state_address(), 1));
    cut_points.push(("writing the boot-state record".to_string(), memory.boot_state_address(), 2));
    cut_points.push(("discarding the candidate".to_string(), memory.candidate.address, 1));

    let mut fixture = QemuFixture::new(
        "qemu-cut",
        GdbTargetConfig::from_profile(&profile).expect("a profile with [chip]"),
        QemuOptions::default(),
    )
    .unwrap();
    let mut cuts_landed = 0;
    for (index, (name, cut_address, write_number)) in cut_points.iter().enumerate() {
        let mut target = fixture.start_unit().expect("start a QEMU unit");
        let outcome = provision_unit(&context, &mut target, 0, index as u64 + 1);
        assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
        let old_application = read(&mut target, application.address, material.payload.len());

        // Stage the signed update, as the self-test step would.
        let candidate = contract::pad_to_alignment(&material.signed.candidate_bytes, 4, 0xFF);
        let (erase_address, erase_size) =
            memory.candidate.sectors_covering(memory.candidate.address, candidate.len() as u64);
        target.erase_flash(erase_address, erase_size, &mut |_| {}).unwrap();
        target.program_flash(memory.candidate.address, &candidate, &mut |_| {}).unwrap();
        target
            .write_ram(
                memory.mailbox.address,
                &MailboxRequest { nonce: 0x1111_0000 + index as u32 }.encode_mailbox(),
            )
            .unwrap();

        // Reset into the bootloader, arm the watchpoint (a reset clears the server's
        // watchpoints, so after it), and run. `client()` first writes the deferred erase.
        target.halt().unwrap();
        let client = target.client().unwrap();
        client.reset_halt().unwrap();
        client.insert_breakpoint(BreakpointKind::WriteWatchpoint, *cut_address, 4).unwrap();
        client.continue_execution().unwrap();
        let mut stopped = client.wait_for_stop(Duration::from_secs(30)).unwrap();
        for _ in 1..*write_number {
            if stopped.is_some() {
                client.continue_execution().unwrap();
                stopped = client.wait_for_stop(Duration::from_secs(30)).unwrap();
            }
        }
        if stopped.is_none() {
            client.interrupt().unwrap();
        } else {
            cuts_landed += 1;
        }
        client.remove_breakpoint(BreakpointKind::WriteWatchpoint, *cut_address, 4).unwrap();

        // Power cut: the board restarts from its reset vector with the flash as it is now.
        let nonce = 0x2222_0000 + index as u32;
        target.write_ram(memory.mailbox.address, &MailboxRequest { nonce }.encode_mailbox()).unwrap();
        target.reset_and_run().unwrap();
        let report = wait_for_report(&mut target, memory.mailbox.address, nonce);
        let installed = read(&mut target, application.address, material.payload.len());
        assert!(
            matches!(report.update_status, UpdateStatus::Installed | UpdateStatus::VersionRollback),
            "cut at {name}: the next boot reported {:?}",
            report.update_status
        );
        assert_eq!(report.running_version, material.payload_version, "cut at {name}");
        assert_eq!(installed, material.payload, "cut at {name}: the application slot is not the new image");
        assert_ne!(old_application, installed);
        println!(
            "cut while {name} ({cut_address:#x}, write {write_number}, hit: {}): boots {}",
            stopped.is_some(),
            report.running_version
        );
    }
    // The firmware writes every one of these places during an install.
    assert_eq!(cuts_landed, cut_points.len());
}
