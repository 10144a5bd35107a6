//! The bootloader's refusal to boot the application (docs/device-contract.md, section 7.3): a
//! bootloader that checks the application (mbed-bootloader's active header) and finds it bad
//! boots nothing, and says why where the application's report would have been — in the
//! mailbox's report area and as one console line — so the station can name the reason instead
//! of waiting for a report that never comes.

#[allow(unused_imports)]
use super::*;

/// Magic of a boot refusal record at the report offset ("IMPX").
pub const BOOT_REFUSAL_MAGIC: [u8; 4] = *b"IMPX";
/// Size of the boot refusal record.
pub const BOOT_REFUSAL_SIZE_BYTES: usize = 16;
/// The console line's first word.
pub const BOOT_REFUSAL_CONSOLE_PREFIX: &str = "IMPRINT-BOOT-REFUSED";

/// Why the bootloader booted nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum BootRefusalReason {
    /// The active header is not a valid v2 internal header (CRC-32, magic or version).
    ApplicationHeaderInvalid = 0x40,
    /// The header is valid but does not describe the application slot: its size runs past the
    /// slot, or the slot's SHA-256 over that size differs from the header's.
    ApplicationHeaderMismatch = 0x41,
}

impl BootRefusalReason {
    /// Every reason, for decoding.
    pub const ALL: [BootRefusalReason; 2] = [Self::ApplicationHeaderInvalid, Self::ApplicationHeaderMismatch];

    /// The numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The reason with this code.
    pub fn from_code(code: u32) -> Option<BootRefusalReason> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// The reason's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ApplicationHeaderInvalid => "application-header-invalid",
            Self::ApplicationHeaderMismatch => "application-header-mismatch",
        }
    }

    /// What the reason means, for operator messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ApplicationHeaderInvalid => {
                "the application's active header is not a valid mbed-bootloader v2 header (CRC-32, magic or version)"
            }
            Self::ApplicationHeaderMismatch => {
                "the application's active header does not describe the application slot (size or SHA-256)"
            }
        }
    }
}

/// The bootloader's refusal record, written at the report offset of the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRefusal {
    /// The nonce of the request found at boot (0 when none).
    pub nonce: u32,
    /// Why nothing booted.
    pub reason: BootRefusalReason,
}

impl BootRefusal {
    /// The record: magic, version 1 (u16), reserved (u16), nonce, reason code, zero.
    pub fn encode(&self) -> [u8; BOOT_REFUSAL_SIZE_BYTES] {
        let mut bytes = [0u8; BOOT_REFUSAL_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&BOOT_REFUSAL_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.reason.code().to_le_bytes());
        bytes
    }

    /// Reads a refusal from a mailbox read back by the station (`None` when the report area
    /// holds none).
    pub fn decode_mailbox(mailbox: &[u8]) -> Option<BootRefusal> {
        let bytes = mailbox.get(REPORT_OFFSET_BYTES..REPORT_OFFSET_BYTES + BOOT_REFUSAL_SIZE_BYTES)?;
        if bytes[0..4] != BOOT_REFUSAL_MAGIC || read_u16(bytes, 4) != 1 {
            return None;
        }
        Some(BootRefusal {
            nonce: read_u32(bytes, 8),
            reason: BootRefusalReason::from_code(read_u32(bytes, 12))?,
        })
    }

    /// The console form: `IMPRINT-BOOT-REFUSED nonce=1a2b3c4d reason=0x40 application-header-invalid`.
    pub fn console_line(&self) -> String {
        format!(
            "{BOOT_REFUSAL_CONSOLE_PREFIX} nonce={:08x} reason={:#04x} {}",
            self.nonce,
            self.reason.code(),
            self.reason.name()
        )
    }

    /// Parses the console form (`None` for any other line).
    pub fn parse_console_line(line: &str) -> Option<BootRefusal> {
        let mut words = line.split_whitespace();
        if words.next()? != BOOT_REFUSAL_CONSOLE_PREFIX {
            return None;
        }
        let nonce = u32::from_str_radix(words.next()?.strip_prefix("nonce=")?, 16).ok()?;
        let code = u32::from_str_radix(words.next()?.strip_prefix("reason=0x")?, 16).ok()?;
        Some(BootRefusal { nonce, reason: BootRefusalReason::from_code(code)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_round_trip_through_the_mailbox_and_the_console() {
        for reason in BootRefusalReason::ALL {
            let refusal = BootRefusal { nonce: 0x1a2b_3c4d, reason };
            let mut mailbox = vec![0u8; MAILBOX_SIZE_BYTES];
            mailbox[REPORT_OFFSET_BYTES..REPORT_OFFSET_BYTES + BOOT_REFUSAL_SIZE_BYTES]
                .copy_from_slice(&refusal.encode());
            assert_eq!(BootRefusal::decode_mailbox(&mailbox), Some(refusal));
            assert_eq!(BootRefusal::parse_console_line(&refusal.console_line()), Some(refusal));
            // A report is not a refusal.
            assert_eq!(SelfTestReport::decode_mailbox(&mailbox), None);
        }
        assert_eq!(BootRefusal::decode_mailbox(&[0u8; MAILBOX_SIZE_BYTES]), None);
        assert_eq!(BootRefusal::parse_console_line("IMPRINT-REPORT nonce=1"), None);
        assert_eq!(BootRefusal::parse_console_line("IMPRINT-BOOT-REFUSED nonce=1 reason=0x99 x"), None);
    }
}
