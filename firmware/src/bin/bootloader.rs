//! The bootloader: at every reset, runs the update client over the candidate slot (contract
//! section 3), installs an accepted payload (section 3.4), leaves the reason code for the
//! application in the RAM handoff, and starts the application.
#![no_std]
#![no_main]

use core::fmt::Write;

use imprint_firmware::board::{self, Handoff, Uart};
use imprint_firmware::contract::{self, UpdateStatus};
use imprint_firmware::store::ConfigStore;
use imprint_firmware::update_client::{self, Inputs, Verdict};

#[unsafe(no_mangle)]
fn firmware_main() -> ! {
    // SAFETY: the mailbox is RAM the station writes before reset; nothing writes it meanwhile.
    let nonce = contract::request_nonce(unsafe { board::memory(board::MAILBOX_ADDRESS, 8) });
    let update_status = run_update_client();
    let mut uart = Uart::init();
    let _ = writeln!(uart, "imprint bootloader: update={:#04x}\r", update_status.code());
    // SAFETY: the application slot is mapped code memory.
    let application_head = unsafe { board::memory(board::APPLICATION_ADDRESS, board::WRITE_ALIGNMENT_BYTES) };
    if application_head.iter().all(|byte| *byte == board::ERASED_VALUE) {
        // Nothing to boot: no report (the contract's "does not boot").
        board::halt();
    }
    Handoff { update_status: update_status.code(), nonce }.store();
    board::start_image(board::APPLICATION_ADDRESS)
}

fn boot_state_bytes() -> &'static [u8] {
    // SAFETY: the boot-state sector is mapped; the slice is dropped before the sector is written.
    unsafe { board::memory(board::BOOT_STATE_ADDRESS, contract::BOOT_STATE_SIZE_BYTES) }
}

fn run_update_client() -> UpdateStatus {
    let chip_uid = board::unique_id();
    let store_region = board::store_region();
    let store = ConfigStore::decode(store_region, &chip_uid);
    let installed_version = contract::installed_version(boot_state_bytes(), store.as_ref());
    // SAFETY: the candidate slot is mapped code memory; it is only written after the verdict.
    let candidate_slot = unsafe { board::memory(board::CANDIDATE_ADDRESS, board::CANDIDATE_SIZE_BYTES) };
    let verdict = update_client::evaluate(&Inputs {
        store_region,
        chip_uid: &chip_uid,
        candidate_slot,
        installed_version,
        application_slot_size_bytes: board::APPLICATION_SIZE_BYTES as u64,
        erased_value: board::ERASED_VALUE,
    });
    let status = match verdict {
        Verdict::NoCandidate => return UpdateStatus::NoCandidate,
        Verdict::Refuse(status) => status,
        Verdict::Install { payload_range, boot_state } => {
            let payload = &candidate_slot[payload_range];
            // 1. the application sectors covering the payload, then the payload (padded).
            board::erase(
                board::APPLICATION_ADDRESS,
                payload.len().next_multiple_of(board::WRITE_ALIGNMENT_BYTES),
            );
            board::program(board::APPLICATION_ADDRESS, payload);
            // 2. the boot-state sector, then the new record.
            board::erase(board::BOOT_STATE_ADDRESS, board::SECTOR_SIZE_BYTES);
            board::program(board::BOOT_STATE_ADDRESS, &boot_state.encode());
            UpdateStatus::Installed
        }
    };
    // 3. the candidate is processed: erase its first sector, last.
    board::erase(board::CANDIDATE_ADDRESS, board::SECTOR_SIZE_BYTES);
    status
}
