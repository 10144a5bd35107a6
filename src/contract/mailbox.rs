//! The RAM mailbox of the self-test: the station's request (a nonce) and the device's report
//! (docs/device-contract.md, section 4).

#[allow(unused_imports)]
use super::*;

/// What the station writes into the mailbox before a reset: a nonce the device must echo, so a
/// stale report from an earlier boot is never taken for a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRequest {
    /// Random per reset.
    pub nonce: u32,
}

impl MailboxRequest {
    /// The mailbox image to write: the request, then a zeroed report area.
    pub fn encode_mailbox(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; MAILBOX_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REQUEST_MAGIC);
        bytes[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        bytes
    }

    /// Reads the request a device finds in its mailbox at boot.
    pub fn decode(mailbox: &[u8]) -> Option<MailboxRequest> {
        if mailbox.len() < 8 || mailbox[0..4] != REQUEST_MAGIC {
            return None;
        }
        Some(MailboxRequest { nonce: read_u32(mailbox, 4) })
    }
}

/// Whether the application found a valid config store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum StoreStatus {
    /// The store decoded and its digest matched this chip.
    Provisioned = 0,
    /// No valid store: the device is unprovisioned.
    Unprovisioned = 1,
}

/// The application's self-test report, in the mailbox and (as text) on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// The nonce of the request the device found at boot (0 when there was none).
    pub nonce: u32,
    /// What the update client did at this boot.
    pub update_status: UpdateStatus,
    /// Whether the store was readable.
    pub store_status: StoreStatus,
    /// The version now running (zeros when unknown).
    pub running_version: SemanticVersion,
    /// `mbed.VendorId` as read by the application.
    pub vendor_id: [u8; 16],
    /// `mbed.ClassId` as read by the application.
    pub class_id: [u8; 16],
    /// `imprint.DeviceId` as read by the application.
    pub device_id: [u8; 16],
    /// Fingerprint of the update certificate found through `mbed.UpdateAuthCert`.
    pub certificate_fingerprint: [u8; 32],
    /// `mbed.SerialNumber` as read by the application.
    pub serial_number: String,
}

impl SelfTestReport {
    /// Encodes the report area (224 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; REPORT_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REPORT_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.update_status.code().to_le_bytes());
        bytes[16..20].copy_from_slice(&(self.store_status as u32).to_le_bytes());
        bytes[20..24].copy_from_slice(&self.running_version.major.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.running_version.minor.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.running_version.patch.to_le_bytes());
        bytes[32..48].copy_from_slice(&self.vendor_id);
        bytes[48..64].copy_from_slice(&self.class_id);
        bytes[64..80].copy_from_slice(&self.device_id);
        bytes[80..112].copy_from_slice(&self.certificate_fingerprint);
        let serial = self.serial_number.as_bytes();
        let serial_length = serial.len().min(REPORT_SERIAL_CAPACITY_BYTES);
        bytes[112..116].copy_from_slice(&(serial_length as u32).to_le_bytes());
        bytes[116..116 + serial_length].copy_from_slice(&serial[..serial_length]);
        bytes
    }

    /// Decodes the report area of a mailbox read back by the station; `None` when no report has
    /// been written yet (or the bytes are not a report).
    pub fn decode_mailbox(mailbox: &[u8]) -> Option<SelfTestReport> {
        let bytes = mailbox.get(REPORT_OFFSET_BYTES..REPORT_OFFSET_BYTES + REPORT_SIZE_BYTES)?;
        if bytes[0..4] != REPORT_MAGIC || read_u16(bytes, 4) != 1 {
            return None;
        }
        let serial_length = (read_u32(bytes, 112) as usize).min(REPORT_SERIAL_CAPACITY_BYTES);
        Some(SelfTestReport {
            nonce: read_u32(bytes, 8),
            update_status: UpdateStatus::from_code(read_u32(bytes, 12))?,
            store_status: match read_u32(bytes, 16) {
                0 => StoreStatus::Provisioned,
                1 => StoreStatus::Unprovisioned,
                _ => return None,
            },
            running_version: SemanticVersion {
                major: read_u32(bytes, 20),
                minor: read_u32(bytes, 24),
                patch: read_u32(bytes, 28),
            },
            vendor_id: bytes[32..48].try_into().ok()?,
            class_id: bytes[48..64].try_into().ok()?,
            device_id: bytes[64..80].try_into().ok()?,
            certificate_fingerprint: bytes[80..112].try_into().ok()?,
            serial_number: String::from_utf8_lossy(&bytes[116..116 + serial_length]).into_owned(),
        })
    }

    /// Parses the console form written by [`SelfTestReport::console_line`]; `None` for any other
    /// line (the console carries ordinary log output too).
    pub fn parse_console_line(line: &str) -> Option<SelfTestReport> {
        let fields = line.trim().strip_prefix("IMPRINT-REPORT ")?;
        let mut report = SelfTestReport {
            nonce: 0,
            update_status: UpdateStatus::NoCandidate,
            store_status: StoreStatus::Unprovisioned,
            running_version: SemanticVersion { major: 0, minor: 0, patch: 0 },
            vendor_id: [0; 16],
            class_id: [0; 16],
            device_id: [0; 16],
            certificate_fingerprint: [0; 32],
            serial_number: String::new(),
        };
        for field in fields.split(' ') {
            let (key, value) = field.split_once('=')?;
            match key {
                "nonce" => report.nonce = u32::from_str_radix(value, 16).ok()?,
                "update" => {
                    let code = u32::from_str_radix(value.trim_start_matches("0x"), 16).ok()?;
                    report.update_status = UpdateStatus::from_code(code)?;
                }
                "store" => {
                    report.store_status = match value {
                        "0" => StoreStatus::Provisioned,
                        "1" => StoreStatus::Unprovisioned,
                        _ => return None,
                    }
                }
                // 0.0.0 ("unknown") is not a valid manifest version, so it is matched by hand.
                "version" if value == "0.0.0" => {}
                "version" => report.running_version = value.parse().ok()?,
                "vendor" => report.vendor_id = decode_hex_array(value)?,
                "class" => report.class_id = decode_hex_array(value)?,
                "device" => report.device_id = decode_hex_array(value)?,
                "cert" => report.certificate_fingerprint = decode_hex_array(value)?,
                "serial" => report.serial_number = value.to_string(),
                _ => {}
            }
        }
        Some(report)
    }

    /// The one-line console form, `IMPRINT-REPORT key=value ...`, that the firmware prints on
    /// its UART; the station can parse it when the profile reads reports from the console.
    pub fn console_line(&self) -> String {
        format!(
            "IMPRINT-REPORT nonce={:08x} update={:#04x} store={} version={} vendor={} class={} device={} cert={} serial={}",
            self.nonce,
            self.update_status.code(),
            self.store_status as u32,
            self.running_version,
            hex::encode(self.vendor_id),
            hex::encode(self.class_id),
            hex::encode(self.device_id),
            hex::encode(self.certificate_fingerprint),
            self.serial_number
        )
    }
}
