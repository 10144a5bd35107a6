//! `[device_identity]`: the factory CA and its key, the subject name rule, validity, the store
//! item the CA certificate goes under, and the room the memory map must leave.

use std::path::Path;

use super::super::raw::RawDeviceIdentity;
use super::keys::{key_source, name_key};
use super::{Checker, resolve};
use crate::identity::SerialScheme;
use crate::profile::{
    DeviceIdentitySettings, KeyOrigin, MemoryMap, SubjectCommonName, check_endpoint_template,
    expand_endpoint_template,
};
use crate::trust::Certificate;

/// The longest identity certificate validity accepted (100 years).
const MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS: u32 = 36_500;

/// Store item names the station writes itself; the CA certificate may not take one of them.
const STATION_STORE_ITEMS: [&str; 13] = [
    crate::store::keys::VENDOR_ID,
    crate::store::keys::CLASS_ID,
    crate::store::keys::UPDATE_AUTH_CERT,
    crate::store::keys::SERIAL_NUMBER,
    crate::store::keys::MANUFACTURER_NAME,
    crate::store::keys::MODEL_NUMBER,
    crate::store::keys::DEVICE_TYPE,
    crate::store::keys::HARDWARE_VERSION,
    crate::store::keys::DEVICE_ID,
    crate::store::keys::FACTORY_APP_VERSION,
    crate::store::keys::BOOTSTRAP_DEVICE_CERT,
    crate::store::keys::BOOTSTRAP_DEVICE_PRIVATE_KEY,
    crate::store::keys::ENDPOINT_NAME,
];

/// Checks `[device_identity]`: the CA certificate and its key (file or PKCS#11, like
/// `trust.signing_key`), the subject name rule, validity, the store item name, and that the
/// memory map leaves room for the identity mailbox (and the device-key sector).
pub(super) fn check_device_identity(
    raw: &RawDeviceIdentity,
    base: &Path,
    checker: &mut Checker,
    warnings: &mut Vec<String>,
    memory: Option<&MemoryMap>,
    serial_scheme: Option<&SerialScheme>,
) -> Option<DeviceIdentitySettings> {
    let problems_before = checker.problems.len();
    let key_origin = match raw.key_origin.as_str() {
        "station" => Some(KeyOrigin::Station),
        "device" => Some(KeyOrigin::Device),
        other => {
            checker.problem(
                "device_identity.key_origin",
                format!("expected \"station\" or \"device\", found \"{other}\""),
            );
            None
        }
    };
    let subject_common_name = check_subject_common_name(raw, checker, serial_scheme);
    if let Some(organization) = &raw.organization
        && organization.trim().is_empty()
    {
        checker.problem("device_identity.organization", "expected a non-empty text, or leave it out");
    }
    if !(1..=MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS).contains(&raw.validity_days) {
        checker.problem(
            "device_identity.validity_days",
            format!("expected 1 to {MAX_DEVICE_CERTIFICATE_VALIDITY_DAYS} days, found {}", raw.validity_days),
        );
    }
    let ca_certificate_item = raw
        .ca_certificate_item
        .clone()
        .unwrap_or_else(|| crate::store::keys::BOOTSTRAP_SERVER_CA_CERT.to_string());
    if ca_certificate_item.is_empty()
        || STATION_STORE_ITEMS.contains(&ca_certificate_item.as_str())
        || !ca_certificate_item.bytes().all(|byte| byte.is_ascii_graphic())
        || ca_certificate_item.len() > 64
    {
        checker.problem(
            "device_identity.ca_certificate_item",
            format!(
                "expected a store item name (1 to 64 printable ASCII characters) the station does not use for anything else, found {ca_certificate_item:?}"
            ),
        );
    }
    if let Some(memory) = memory {
        let needed = crate::contract::IDENTITY_MAILBOX_SIZE_BYTES as u64;
        if memory.mailbox.size_bytes < needed {
            checker.problem(
                "memory.mailbox.size",
                format!(
                    "expected at least {needed} bytes with [device_identity] (the identity requests and responses of the device contract, section 6), found {}",
                    memory.mailbox.size_bytes
                ),
            );
        }
        if key_origin == Some(KeyOrigin::Device)
            && memory.config.size_bytes < 3 * memory.config.sector_size_bytes
        {
            checker.problem(
                "memory.config.size",
                "expected at least three sectors with device-made keys (the store, the device-key sector, the boot-state sector)",
            );
        }
    }

    let certificate_path = resolve(base, &raw.ca_certificate);
    let ca_certificate = load_ca_certificate(raw, checker, warnings, &certificate_path);
    let ca_signer = key_source(&raw.ca_key, base, checker, "device_identity.ca_key").and_then(|location| {
        let certificate = ca_certificate.as_ref()?;
        name_key(
            location,
            checker,
            "device_identity.ca_key",
            certificate,
            &certificate_path,
            "CA certificate",
        )
    });
    if checker.problems.len() != problems_before {
        return None;
    }
    Some(DeviceIdentitySettings {
        key_origin: key_origin?,
        ca_certificate: ca_certificate?,
        ca_signer: ca_signer?,
        subject_common_name: subject_common_name?,
        organization: raw.organization.clone(),
        validity_days: raw.validity_days,
        ca_certificate_item,
    })
}

/// `device_identity.subject_common_name` and its endpoint name template, which must fit the
/// identity request's subject when the serial's longest form is known.
fn check_subject_common_name(
    raw: &RawDeviceIdentity,
    checker: &mut Checker,
    serial_scheme: Option<&SerialScheme>,
) -> Option<SubjectCommonName> {
    match (raw.subject_common_name.as_deref().unwrap_or("device-id"), &raw.endpoint_name) {
        ("device-id", None) => Some(SubjectCommonName::DeviceId),
        ("device-id", Some(_)) => {
            checker.problem(
                "device_identity.endpoint_name",
                "only used with subject_common_name = \"endpoint-name\"",
            );
            None
        }
        ("endpoint-name", Some(template)) => match check_endpoint_template(template) {
            Ok(_) => {
                // The CN must fit X.520's 64 characters (and the identity request). A counter
                // serial has a known length; a scanned serial and the chip UID are checked per
                // unit, when the name is made.
                if let Some(serial) = serial_scheme.and_then(SerialScheme::longest_serial) {
                    let longest = expand_endpoint_template(template, &serial, uuid::Uuid::max(), "");
                    if longest.len() > crate::contract::IDENTITY_SUBJECT_CAPACITY_BYTES {
                        checker.problem(
                            "device_identity.endpoint_name",
                            format!(
                                "expands to {} characters (e.g. {longest:?}), expected at most {}",
                                longest.len(),
                                crate::contract::IDENTITY_SUBJECT_CAPACITY_BYTES
                            ),
                        );
                    }
                }
                Some(SubjectCommonName::EndpointName { template: template.clone() })
            }
            Err(message) => {
                checker.problem("device_identity.endpoint_name", message);
                None
            }
        },
        ("endpoint-name", None) => {
            checker.problem(
                "device_identity.endpoint_name",
                "expected an endpoint name template such as \"{serial}\" for subject_common_name = \"endpoint-name\"",
            );
            None
        }
        (other, _) => {
            checker.problem(
                "device_identity.subject_common_name",
                format!("expected \"device-id\" or \"endpoint-name\", found \"{other}\""),
            );
            None
        }
    }
}

/// `device_identity.ca_certificate`: a CA, with a usable P-256 key, valid now (a warning when
/// it expires before the certificates it issues would).
fn load_ca_certificate(
    raw: &RawDeviceIdentity,
    checker: &mut Checker,
    warnings: &mut Vec<String>,
    certificate_path: &Path,
) -> Option<Certificate> {
    let ca_certificate = match Certificate::load(certificate_path) {
        Ok(certificate) => Some(certificate),
        Err(error) => {
            checker.problem_in(certificate_path, "device_identity.ca_certificate", error.to_string());
            None
        }
    };
    if let Some(certificate) = &ca_certificate {
        if !certificate.is_ca() {
            checker.problem_in(
                certificate_path,
                "device_identity.ca_certificate",
                format!(
                    "certificate {} is not a CA (expected basicConstraints CA:TRUE)",
                    certificate.subject()
                ),
            );
        }
        if let Err(error) = certificate.verifying_key() {
            checker.problem_in(certificate_path, "device_identity.ca_certificate", error.to_string());
        }
        let now = std::time::SystemTime::now();
        if now > certificate.not_after() {
            checker.problem_in(
                certificate_path,
                "device_identity.ca_certificate",
                format!("the CA certificate {} has expired", certificate.subject()),
            );
        } else if now + std::time::Duration::from_secs(u64::from(raw.validity_days) * 86_400)
            > certificate.not_after()
        {
            warnings.push(format!(
                "{}: device_identity.ca_certificate: the CA certificate {} expires before device certificates valid for {} days would; they stop chaining when it does",
                certificate_path.display(),
                certificate.subject(),
                raw.validity_days
            ));
        }
    }
    ca_certificate
}
