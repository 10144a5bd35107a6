//! The profile's trust keys: `trust` (update certificate, optional delegate, signing key) and
//! the key settings shared with `[device_identity]`. A key file is loaded and matched to its
//! certificate here; a PKCS#11 key is only parsed and checked as configuration: the token is
//! opened when a line starts ([`crate::trust::KeySource::open_signer`]), never while loading.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::raw::{RawProfile, RawSigningKey};
use super::{Checker, resolve};
use crate::trust::{self, Certificate, KeyLocation, KeySource};

pub(super) fn check_trust(
    raw: &RawProfile,
    base: &Path,
    checker: &mut Checker,
    warnings: &mut Vec<String>,
) -> Option<(Certificate, Arc<KeySource>, Option<Certificate>)> {
    let (certificate_path, key_source) = match (
        &raw.trust.manifest_dev_tool,
        &raw.trust.certificate,
        &raw.trust.signing_key,
    ) {
        (Some(directory), None, None) => match trust::import_manifest_dev_tool_env(&resolve(base, directory))
        {
            Ok(environment) => {
                (environment.certificate_path, Some(KeyLocation::File { path: environment.signing_key_path }))
            }
            Err(error) => {
                checker.problem("trust.manifest_dev_tool", error.to_string());
                return None;
            }
        },
        (None, Some(certificate), Some(key)) => {
            (resolve(base, certificate), key_source(key, base, checker, "trust.signing_key"))
        }
        _ => {
            checker.problem(
                "trust",
                "expected either certificate + signing_key, or manifest_dev_tool (a manifest-dev-tool init directory)",
            );
            return None;
        }
    };
    let certificate = match Certificate::load(&certificate_path) {
        Ok(certificate) => Some(certificate),
        Err(error) => {
            checker.problem_in(&certificate_path, "trust.certificate", error.to_string());
            None
        }
    };
    if let Some(certificate) = &certificate
        && let Err(error) = certificate.verifying_key()
    {
        checker.problem_in(&certificate_path, "trust.certificate", error.to_string());
    }
    // A certificate outside its validity period would be injected into every unit; refuse it.
    let now = std::time::SystemTime::now();
    if let Some(certificate) = &certificate
        && (certificate.not_after() < now || certificate.not_before() > now)
    {
        checker.problem_in(
            &certificate_path,
            "trust.certificate",
            format!(
                "expected a certificate valid now, found one valid from {} to {}",
                time::OffsetDateTime::from(certificate.not_before()).date(),
                time::OffsetDateTime::from(certificate.not_after()).date()
            ),
        );
    }
    let certificate = certificate?;
    let delegate = check_delegate(raw, base, checker, &certificate)?;
    let (signing_certificate, signing_certificate_path) = match &delegate {
        Some((delegate, delegate_path)) => (delegate, delegate_path.clone()),
        None => (&certificate, certificate_path.clone()),
    };
    let signer = name_key(
        key_source?,
        checker,
        "trust.signing_key",
        signing_certificate,
        &signing_certificate_path,
        "certificate",
    )?;
    if delegate.is_none() {
        for warning in trust::check_update_certificate(&certificate) {
            warnings.push(format!("{}: trust.certificate: {warning}", certificate_path.display()));
        }
    }
    Some((certificate, signer, delegate.map(|(delegate, _)| delegate)))
}

/// Trust delegation: when `trust.delegate_certificate` is given, `trust.certificate` is the CA
/// stored on the device (the ultimate source of trust) and the delegate certificate, issued by
/// it, travels with each candidate; the signing key must then match the delegate.
/// `Ok(None)` without delegation; `None` (after recording a problem) when it is broken.
fn check_delegate(
    raw: &RawProfile,
    base: &Path,
    checker: &mut Checker,
    certificate: &Certificate,
) -> Option<Option<(Certificate, PathBuf)>> {
    let Some(delegate_path) = raw.trust.delegate_certificate.as_ref().map(|path| resolve(base, path)) else {
        return Some(None);
    };
    if !certificate.is_ca() {
        checker.problem(
            "trust.certificate",
            "with trust.delegate_certificate, expected a CA certificate (basicConstraints CA:TRUE) to store on the device",
        );
        return None;
    }
    let delegate = match Certificate::load(&delegate_path) {
        Ok(delegate) => delegate,
        Err(error) => {
            checker.problem_in(&delegate_path, "trust.delegate_certificate", error.to_string());
            return None;
        }
    };
    if let Err(error) = trust::verify_chain(&delegate, certificate, std::time::SystemTime::now()) {
        checker.problem_in(
            &delegate_path,
            "trust.delegate_certificate",
            format!("expected a certificate issued by trust.certificate: {error}"),
        );
        return None;
    }
    Some(Some((delegate, delegate_path)))
}

/// Names a key for the profile, matched to `certificate` (read from `certificate_path`; called
/// `certificate_name` in messages): a key file is loaded and matched now; a token key is
/// matched when it opens. A problem names `field`.
pub(super) fn name_key(
    location: KeyLocation,
    checker: &mut Checker,
    field: &str,
    certificate: &Certificate,
    certificate_path: &Path,
    certificate_name: &str,
) -> Option<Arc<KeySource>> {
    let profile_path = checker.profile_path.clone();
    match location {
        KeyLocation::File { path } => {
            let signer = match trust::load_signing_key(&path) {
                Ok(signer) => signer,
                Err(error) => {
                    checker.problem_in(&path, field, error.to_string());
                    return None;
                }
            };
            if !trust::key_matches_certificate(&signer, certificate) {
                checker.problem(
                    field,
                    format!(
                        "the key {} does not match the {certificate_name} {}",
                        path.display(),
                        certificate_path.display()
                    ),
                );
                return None;
            }
            Some(Arc::new(KeySource::from_loaded_file(&path, signer, &profile_path, field, certificate_path)))
        }
        // Nothing is opened here: logging in spends a PIN attempt and may ask on the terminal.
        KeyLocation::Pkcs11(config) => {
            let certificate_key = certificate.verifying_key().ok()?;
            Some(Arc::new(KeySource::pkcs11(config, &profile_path, field, certificate_key, certificate_path)))
        }
    }
}

/// Reads a key setting such as `trust.signing_key` (a path, a `pkcs11:` URI or a table); relative
/// module and PIN file paths are relative to the profile, like every other path in it. Problems
/// name `field`.
pub(super) fn key_source(
    raw: &RawSigningKey,
    base: &Path,
    checker: &mut Checker,
    field: &str,
) -> Option<KeyLocation> {
    let mut config = match raw {
        RawSigningKey::Text(text) if !trust::is_pkcs11_uri(text) => {
            return Some(KeyLocation::File { path: resolve(base, text) });
        }
        RawSigningKey::Text(uri) => match trust::Pkcs11KeyConfig::from_uri(uri) {
            Ok(config) => config,
            Err(error) => {
                checker.problem(field, error.to_string());
                return None;
            }
        },
        RawSigningKey::Pkcs11(table) => {
            let key_id = match table.id.as_deref().map(hex::decode).transpose() {
                Ok(key_id) => key_id,
                Err(error) => {
                    checker.problem(
                        &format!("{field}.id"),
                        format!("expected the key's CKA_ID in hex ({error})"),
                    );
                    return None;
                }
            };
            let pin_source = match table.pin_source.as_deref().map(trust::PinSource::parse).transpose() {
                Ok(pin_source) => pin_source.unwrap_or(trust::PinSource::Prompt),
                Err(error) => {
                    checker.problem(&format!("{field}.pin_source"), error.to_string());
                    return None;
                }
            };
            if table.object.is_none() && key_id.is_none() {
                checker.problem(field, "expected object (the key's label) or id, found neither");
                return None;
            }
            trust::Pkcs11KeyConfig {
                module_path: PathBuf::from(&table.module_path),
                token_label: table.token.clone(),
                token_serial: table.serial.clone(),
                key_label: table.object.clone(),
                key_id,
                pin_source,
            }
        }
    };
    if config.module_path.is_relative() {
        config.module_path = base.join(&config.module_path);
    }
    if let trust::PinSource::File { path } = &mut config.pin_source
        && path.is_relative()
    {
        *path = base.join(&*path);
    }
    Some(KeyLocation::Pkcs11(config))
}
