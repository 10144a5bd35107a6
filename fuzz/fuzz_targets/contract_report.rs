//! Fuzz target: the device-contract decoders for what a device writes back — the self-test
//! report in the RAM mailbox (`SelfTestReport::decode_mailbox`), its console line
//! (`SelfTestReport::parse_console_line`), the mailbox request the firmware reads at boot
//! (`MailboxRequest::decode`) and the boot-state record (`BootState::decode`).
//!
//! These bytes come from a device that may be running anything (old firmware, another product,
//! a crashed application), and the console carries ordinary log output. None may panic, and
//! whatever decodes must survive the round trip through the matching encoder, within what the
//! contract can carry (docs/device-contract.md section 5: a serial of at most 64 bytes; the
//! console form is one line of space-separated `key=value` fields).
#![no_main]

use imprint::contract::{
    BOOT_STATE_SIZE_BYTES, BootState, MAILBOX_SIZE_BYTES, MailboxRequest, REPORT_OFFSET_BYTES,
    REPORT_SERIAL_CAPACITY_BYTES, SelfTestReport,
};
use libfuzzer_sys::fuzz_target;

fn check_console_line(line: &str) {
    let Some(report) = SelfTestReport::parse_console_line(line) else { return };
    // The console form can carry a serial without whitespace (fields are space-separated and
    // the line is trimmed); such a report reads back unchanged.
    if !report.serial_number.chars().any(char::is_whitespace) {
        let again = SelfTestReport::parse_console_line(&report.console_line());
        assert_eq!(again.as_ref(), Some(&report), "console round trip changed the report");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(report) = SelfTestReport::decode_mailbox(data) {
        assert!(
            report.serial_number.len() <= REPORT_SERIAL_CAPACITY_BYTES * 3,
            "serial longer than its field"
        );
        let mut mailbox = vec![0u8; MAILBOX_SIZE_BYTES];
        mailbox[REPORT_OFFSET_BYTES..].copy_from_slice(&report.encode());
        if report.serial_number.len() <= REPORT_SERIAL_CAPACITY_BYTES {
            assert_eq!(
                SelfTestReport::decode_mailbox(&mailbox).as_ref(),
                Some(&report),
                "mailbox round trip changed the report"
            );
        }
        // Every report has a console form, and the parser reads it.
        let line = report.console_line();
        assert!(line.starts_with("IMPRINT-REPORT "));
        check_console_line(&line);
    }
    if let Some(request) = MailboxRequest::decode(data) {
        assert_eq!(MailboxRequest::decode(&request.encode_mailbox()), Some(request));
    }
    if let Some(boot_state) = BootState::decode(data) {
        let mut record = boot_state.encode();
        record.resize(BOOT_STATE_SIZE_BYTES, 0xFF);
        assert_eq!(BootState::decode(&record), Some(boot_state), "boot-state round trip");
    }
    // The console: the whole input as text, and line by line as the station reads it.
    let text = String::from_utf8_lossy(data);
    check_console_line(&text);
    for line in text.lines() {
        check_console_line(line);
    }
});
