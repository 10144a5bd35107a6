//! `[fcc]`: the unit's identity goes in through the device's Factory Configurator Client. What
//! the device's own verification (`fcc_verify_device_configured_4mbed_cloud()`) will demand is
//! checked here, before any unit is touched: a `[device_identity]` (the device certificate, for
//! a key the station makes or one the device makes and answers a CSR for), the product metadata the FCC requires, a bootstrap server URI
//! with its `aid`, and a bootstrap server CA with a P-256 key valid now. A delegated update
//! authority (`trust.delegate_certificate`) goes in as a `CertificateChains` entry.

use std::path::Path;

use super::super::raw::{RawFcc, RawProfile, RawSpan};
use super::{Checker, resolve};
use crate::profile::{FccSettings, FccStorage, MemoryMap};
use crate::trust::Certificate;

/// The longest time a device may take to answer one bundle (10 minutes).
const FCC_RESPONSE_TIMEOUT_MAX_MS: u64 = 600_000;
/// The FCC's default answer deadline, as `FccTimeouts::default` (30 s).
const FCC_RESPONSE_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// Checks `[fcc]` against the rest of the profile; `None` when anything is wrong (every
/// problem is in `checker`).
pub(super) fn check_fcc(
    raw: &RawProfile,
    fcc: &RawFcc,
    base: &Path,
    memory: Option<&MemoryMap>,
    checker: &mut Checker,
) -> Option<FccSettings> {
    let problems_before = checker.problems.len();
    if raw.device_identity.is_none() {
        checker.problem(
            "fcc",
            "expected a [device_identity] section with [fcc]: the device certificate comes from the factory CA",
        );
    }
    // The FCC's verification refuses a device without these (FCC_STATUS_ITEM_NOT_EXIST).
    for (field, value) in [
        ("product.device_type", &raw.product.device_type),
        ("product.hardware_version", &raw.product.hardware_version),
    ] {
        if value.as_deref().is_none_or(|text| text.trim().is_empty()) {
            checker.problem(field, "expected a text with [fcc]: the FCC's verification requires it");
        }
    }
    check_server_uri(&fcc.bootstrap_server_uri, checker);
    if fcc.memory_total_kb == 0 {
        checker.problem("fcc.memory_total_kb", "expected the device's memory in KiB, found 0");
    }
    let response_timeout_ms = fcc.response_timeout_ms.unwrap_or(FCC_RESPONSE_TIMEOUT_DEFAULT_MS);
    if !(1..=FCC_RESPONSE_TIMEOUT_MAX_MS).contains(&response_timeout_ms) {
        checker.problem(
            "fcc.response_timeout_ms",
            format!("expected 1 to {FCC_RESPONSE_TIMEOUT_MAX_MS} ms, found {response_timeout_ms}"),
        );
    }
    let storage = fcc.storage.as_ref().and_then(|span| check_storage(span, memory, checker));
    let certificate_path = resolve(base, &fcc.bootstrap_server_ca_certificate);
    let certificate = load_server_ca(&certificate_path, checker);
    if checker.problems.len() != problems_before {
        return None;
    }
    Some(FccSettings {
        bootstrap_server_uri: fcc.bootstrap_server_uri.clone(),
        bootstrap_server_ca_certificate: certificate?,
        memory_total_kb: fcc.memory_total_kb,
        send_current_time: fcc.current_time.unwrap_or(true),
        verify: fcc.verify.unwrap_or(true),
        disable: fcc.disable.unwrap_or(false),
        send_entropy: fcc.entropy.unwrap_or(false),
        send_root_of_trust: fcc.root_of_trust.unwrap_or(false),
        response_timeout_ms,
        storage,
    })
}

/// `fcc.storage = { address, size }`: whole sectors inside `[memory]`'s candidate or config
/// region (the bootloader and application regions hold the images; with `[fcc]` the config
/// store is not written), erased through the probe, so a profile with `[memory]`.
fn check_storage(span: &RawSpan, memory: Option<&MemoryMap>, checker: &mut Checker) -> Option<FccStorage> {
    let field = "fcc.storage";
    let Some(memory) = memory else {
        checker.problem(
            field,
            "expected [memory] with fcc.storage: the storage is erased through a debug probe, which an FCC-only profile has none of",
        );
        return None;
    };
    let end = span.address.checked_add(span.size);
    let region = [memory.candidate, memory.config]
        .into_iter()
        .find(|region| end.is_some_and(|end| span.address >= region.address && end <= region.end_address()));
    let Some(region) = region else {
        checker.problem(
            field,
            format!(
                "expected a range inside [memory]'s candidate ({:#x}..{:#x}) or config ({:#x}..{:#x}) region, found {:#x} + {:#x}",
                memory.candidate.address,
                memory.candidate.end_address(),
                memory.config.address,
                memory.config.end_address(),
                span.address,
                span.size
            ),
        );
        return None;
    };
    let sector = region.sector_size_bytes;
    if span.size == 0 || !span.address.is_multiple_of(sector) || !span.size.is_multiple_of(sector) {
        checker.problem(
            field,
            format!(
                "expected whole sectors of {sector:#x} bytes (the region's sector size), found {:#x} + {:#x}",
                span.address, span.size
            ),
        );
        return None;
    }
    Some(FccStorage { address: span.address, size_bytes: span.size, region })
}

/// `coaps://HOST[:PORT]...?aid=ACCOUNT`: the bootstrap server the client contacts, with the
/// account ID the FCC looks for.
fn check_server_uri(uri: &str, checker: &mut Checker) {
    let field = "fcc.bootstrap_server_uri";
    let Some(rest) = uri.strip_prefix("coaps://") else {
        checker.problem(field, format!("expected a coaps:// URI, found {uri:?}"));
        return;
    };
    if rest.is_empty() || rest.starts_with(['/', '?', ':']) {
        checker.problem(field, format!("expected a host after coaps://, found {uri:?}"));
    }
    if !uri.bytes().all(|byte| byte.is_ascii_graphic()) {
        checker.problem(field, format!("expected printable ASCII without spaces, found {uri:?}"));
    }
    if !(uri.contains("?aid=") || uri.contains("&aid=")) {
        checker.problem(field, format!("expected the account ID as \"?aid=...\", found {uri:?}"));
    }
}

/// `fcc.bootstrap_server_ca_certificate`: a P-256 certificate valid now.
fn load_server_ca(certificate_path: &Path, checker: &mut Checker) -> Option<Certificate> {
    let field = "fcc.bootstrap_server_ca_certificate";
    let certificate = match Certificate::load(certificate_path) {
        Ok(certificate) => certificate,
        Err(error) => {
            checker.problem_in(certificate_path, field, error.to_string());
            return None;
        }
    };
    if let Err(error) = certificate.verifying_key() {
        checker.problem_in(certificate_path, field, error.to_string());
    }
    let now = std::time::SystemTime::now();
    if certificate.not_after() < now || certificate.not_before() > now {
        checker.problem_in(
            certificate_path,
            field,
            format!(
                "expected a certificate valid now, found one valid from {} to {}",
                time::OffsetDateTime::from(certificate.not_before()).date(),
                time::OffsetDateTime::from(certificate.not_after()).date()
            ),
        );
    }
    Some(certificate)
}
