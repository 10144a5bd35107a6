//! The application: reads the config store and writes the self-test report (contract section
//! 5.2) into the RAM mailbox, prints its console form (5.3) on UART0, answers an identity
//! request found in the mailbox (section 6: command 2 signs the station's challenge with the
//! store's `mbed.BootstrapDevicePrivateKey`; command 1 is refused with no-entropy, this board has
//! no TRNG), then sleeps.
//!
//! The factory application (1.0.0) and the self-test payload (1.0.1) are this same code built
//! with a different `IMPRINT_APP_VERSION`; the version *reported* is the installed one (boot
//! state, else the store's factory version), as the contract says, not the embedded one.
#![no_std]
#![no_main]

use core::fmt::Write;

use imprint_firmware::board::{self, Handoff, Uart};
use imprint_firmware::contract::{self, REPORT_OFFSET_BYTES, SelfTestReport};
use imprint_firmware::identity::{self, IdentityStatus};
use imprint_firmware::store::{ConfigStore, keys};
use imprint_firmware::version::Version;

/// The version this image was built as (kept in the image so the two builds differ, and
/// printed at boot for humans).
#[used]
#[unsafe(no_mangle)]
pub static IMPRINT_APPLICATION_VERSION: [u8; 16] = version_field(env!("IMPRINT_APP_VERSION"));

const fn version_field(text: &str) -> [u8; 16] {
    let bytes = text.as_bytes();
    let mut field = [0u8; 16];
    let mut index = 0;
    while index < bytes.len() && index < 16 {
        field[index] = bytes[index];
        index += 1;
    }
    field
}

#[unsafe(no_mangle)]
fn firmware_main() -> ! {
    let handoff = Handoff::take();
    let (update_status, nonce) = match handoff {
        Some(handoff) => (handoff.update_status, handoff.nonce),
        // Started without the bootloader (a debugger): no update ran; the request is still there.
        // SAFETY: the mailbox is mapped RAM.
        None => (0, contract::request_nonce(unsafe { board::memory(board::MAILBOX_ADDRESS, 8) })),
    };
    let chip_uid = board::unique_id();
    let store = ConfigStore::decode(board::store_region(), &chip_uid);
    // SAFETY: the boot-state sector is mapped and nothing writes it while the application runs.
    let boot_state_bytes =
        unsafe { board::memory(board::BOOT_STATE_ADDRESS, contract::BOOT_STATE_SIZE_BYTES) };
    let running_version =
        contract::installed_version(boot_state_bytes, store.as_ref()).unwrap_or(Version::UNKNOWN);
    let mut report = SelfTestReport {
        nonce,
        update_status,
        store_status: 1,
        running_version,
        vendor_id: [0; 16],
        class_id: [0; 16],
        device_id: [0; 16],
        certificate_fingerprint: [0; 32],
        serial_number: "",
    };
    if let Some(store) = &store {
        report.store_status = 0;
        report.vendor_id = store.uuid_bytes(keys::VENDOR_ID).unwrap_or_default();
        report.class_id = store.uuid_bytes(keys::CLASS_ID).unwrap_or_default();
        report.device_id = store.uuid_bytes(keys::DEVICE_ID).unwrap_or_default();
        report.certificate_fingerprint =
            store.update_certificate().map(|(fingerprint, _)| fingerprint).unwrap_or_default();
        report.serial_number = store.text(keys::SERIAL_NUMBER).unwrap_or_default();
    }
    // The magic goes in last, so a station polling the mailbox never sees half a report.
    let encoded = report.encode();
    let report_address = board::MAILBOX_ADDRESS + REPORT_OFFSET_BYTES;
    for index in (4..encoded.len()).chain(0..4) {
        // SAFETY: the report area of the mailbox (RAM below our window).
        unsafe { core::ptr::write_volatile((report_address + index) as *mut u8, encoded[index]) };
    }
    let mut uart = Uart::init();
    let image_version = IMPRINT_APPLICATION_VERSION.split(|byte| *byte == 0).next().unwrap_or_default();
    let _ = write!(uart, "imprint application: image ");
    uart.write_bytes(image_version);
    let _ = write!(uart, "\r\n");
    let _ = report.write_console_line(&mut uart);
    let _ = write!(uart, "\r\n");
    answer_identity_request(store.as_ref(), &mut uart);
    board::halt()
}

/// Answers the identity request in the mailbox, if any (contract section 6.1): the response
/// header and data at mailbox +352, the `IMPI` magic last, as with the report. Prints the
/// command and status on UART0 (never key material).
fn answer_identity_request(store: Option<&ConfigStore<'_>>, uart: &mut Uart) {
    let request = {
        // SAFETY: the 1 KiB mailbox is mapped RAM below our window; the station does not write
        // it while the device runs, and the slice ends with this block, before the response is
        // written.
        let mailbox = unsafe { board::memory(board::MAILBOX_ADDRESS, board::MAILBOX_SIZE_BYTES) };
        identity::decode_request(mailbox)
    };
    let Some((nonce, command_code, command)) = request else { return };
    let (status, signature) = match command {
        Ok(command) => identity::answer(command, store),
        Err(status) => (status, [0; identity::SIGNATURE_SIZE_BYTES]),
    };
    let data: &[u8] = if status == IdentityStatus::Done { &signature } else { &[] };
    let header = identity::encode_response_header(nonce, command_code, status, data.len());
    let response_address = board::MAILBOX_ADDRESS + identity::RESPONSE_OFFSET_BYTES;
    let bytes = |index: usize| if index < header.len() { header[index] } else { data[index - header.len()] };
    for index in (4..header.len() + data.len()).chain(0..4) {
        // SAFETY: the response area of the mailbox (RAM below our window).
        unsafe { core::ptr::write_volatile((response_address + index) as *mut u8, bytes(index)) };
    }
    let _ = write!(uart, "imprint application: identity command {command_code} status {}\r\n", status as u32);
}
