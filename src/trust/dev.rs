//! Developer credentials, compatible with Izuma/Pelion `manifest-dev-tool init`.
//!
//! A developer needs a signing key, an update certificate and vendor/class IDs before the first
//! self-test update can run. [`dev_init`] makes them the way `manifest-dev-tool init` (2.6.2)
//! does, including its `update_default_resources.c` for firmware builds, plus an
//! `imprint-dev.toml` summary a product profile can point at. [`import_manifest_dev_tool_env`]
//! reads an environment that manifest-dev-tool already made, so a team can keep its existing
//! keys. Everything here is for development only: the key sits unencrypted in a file.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::certificate::{Certificate, key_matches_certificate};
use super::error::TrustError;
use super::issue::{CertificateRequest, self_signed_certificate};
use super::key::{generate_signing_key, load_signing_key, write_signing_key_pem};
use super::signer::Signer;

/// File names written by [`dev_init`]; key and certificate use manifest-dev-tool's names.
pub const DEV_SIGNING_KEY_FILE: &str = "dev.key.pem";
pub const DEV_CERTIFICATE_FILE: &str = "dev.cert.der";
pub const DEV_C_SOURCE_FILE: &str = "update_default_resources.c";
pub const DEV_SUMMARY_FILE: &str = "imprint-dev.toml";

/// manifest-dev-tool's certificate lifetime: `365 * 20` days.
const DEV_CERTIFICATE_VALIDITY_DAYS: u32 = 365 * 20;
/// The subject manifest-dev-tool gives its developer certificates.
const DEV_CERTIFICATE_COMMON_NAME: &str = "localhost";

/// How [`dev_init`] chooses vendor and class IDs.
///
/// Each ID is taken from the explicit value if given, else derived (vendor =
/// uuid5(NAMESPACE_DNS, vendor_domain); class = uuid5(vendor, model_name)), else random (v4), as
/// manifest-dev-tool does when given nothing. Giving both an explicit ID and its name is an error.
#[derive(Clone, Debug, Default)]
pub struct DevInitOptions {
    pub vendor_domain: Option<String>,
    pub model_name: Option<String>,
    pub vendor_id: Option<Uuid>,
    pub class_id: Option<Uuid>,
    /// Replace existing files instead of refusing.
    pub force: bool,
    /// Write the v1-era `update_default_resources.c` (legacy update client, v1 manifests)
    /// instead of manifest-dev-tool 2.6.2's.
    pub v1_update_resources: bool,
}

impl DevInitOptions {
    /// The vendor and class IDs these options stand for (random ones are drawn anew each call).
    pub fn resolve_ids(&self) -> Result<(Uuid, Uuid), TrustError> {
        let invalid = |reason: &str| TrustError::InvalidRequest { reason: reason.to_string() };
        let vendor_id = match (&self.vendor_id, &self.vendor_domain) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either a vendor ID or a vendor domain to derive it from, not both",
                ));
            }
            (Some(vendor_id), None) => *vendor_id,
            (None, Some(domain)) if domain.trim().is_empty() => {
                return Err(invalid("the vendor domain is empty"));
            }
            (None, Some(domain)) => Uuid::new_v5(&Uuid::NAMESPACE_DNS, domain.as_bytes()),
            (None, None) => Uuid::new_v4(),
        };
        let class_id = match (&self.class_id, &self.model_name) {
            (Some(_), Some(_)) => {
                return Err(invalid("give either a class ID or a model name to derive it from, not both"));
            }
            (Some(class_id), None) => *class_id,
            (None, Some(model)) if model.trim().is_empty() => {
                return Err(invalid("the model name is empty"));
            }
            (None, Some(model)) => Uuid::new_v5(&vendor_id, model.as_bytes()),
            (None, None) => Uuid::new_v4(),
        };
        Ok((vendor_id, class_id))
    }
}

/// What [`dev_init`] wrote.
#[derive(Clone, Debug)]
pub struct DevCredentials {
    pub signing_key_path: PathBuf,
    pub certificate_path: PathBuf,
    pub c_source_path: PathBuf,
    pub summary_path: PathBuf,
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    pub certificate: Certificate,
}

/// The `imprint-dev.toml` summary: IDs and file names relative to the summary's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevSummary {
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    pub signing_key: PathBuf,
    pub certificate: PathBuf,
    pub certificate_fingerprint_sha256: String,
}

impl DevSummary {
    /// Reads an `imprint-dev.toml`.
    pub fn load(path: &Path) -> Result<DevSummary, TrustError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TrustError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|error| TrustError::DevEnvironment {
            path: path.to_path_buf(),
            reason: format!("expected an imprint-dev.toml summary: {error}"),
        })
    }
}

/// Creates developer credentials in `dir` (created if missing): key, self-signed certificate,
/// `update_default_resources.c` and `imprint-dev.toml`. Refuses to replace any existing file
/// unless `options.force`; in that case nothing is written at all.
pub fn dev_init(dir: &Path, options: &DevInitOptions) -> Result<DevCredentials, TrustError> {
    let (vendor_id, class_id) = options.resolve_ids()?;
    let signing_key_path = dir.join(DEV_SIGNING_KEY_FILE);
    let certificate_path = dir.join(DEV_CERTIFICATE_FILE);
    let c_source_path = dir.join(DEV_C_SOURCE_FILE);
    let summary_path = dir.join(DEV_SUMMARY_FILE);
    if !options.force {
        for path in [&signing_key_path, &certificate_path, &c_source_path, &summary_path] {
            if path.exists() {
                return Err(TrustError::AlreadyExists { path: path.clone() });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustError::Write { path: dir.to_path_buf(), source })?;

    let signer = generate_signing_key();
    let mut request =
        CertificateRequest::update_authority(DEV_CERTIFICATE_COMMON_NAME, DEV_CERTIFICATE_VALIDITY_DAYS);
    request.organization = Some("Imprint development only".to_string());
    let certificate = self_signed_certificate(&signer, &request)?;

    write_signing_key_pem(&signer, &signing_key_path)?;
    write_file(&certificate_path, certificate.der())?;
    let c_source = if options.v1_update_resources {
        update_default_resources_v1_c(vendor_id, class_id, &certificate)
    } else {
        update_default_resources_c(vendor_id, class_id, &certificate, &signer.verifying_key())
    };
    write_file(&c_source_path, c_source.as_bytes())?;
    let summary = DevSummary {
        vendor_id,
        class_id,
        signing_key: PathBuf::from(DEV_SIGNING_KEY_FILE),
        certificate: PathBuf::from(DEV_CERTIFICATE_FILE),
        certificate_fingerprint_sha256: certificate.fingerprint_hex(),
    };
    let summary_toml = toml::to_string(&summary).map_err(|error| TrustError::Write {
        path: summary_path.clone(),
        source: std::io::Error::other(error.to_string()),
    })?;
    let snippet: String =
        profile_snippet(dir, vendor_id, class_id).lines().map(|line| format!("#   {line}\n")).collect();
    let summary_text = format!(
        "# Imprint developer credentials: DEVELOPMENT ONLY, never for production units.\n\
         # Written by `imprint dev init`. To provision with them, put these lines in the product\n\
         # profile (they replace its [identity] and [trust] sections):\n\
         #\n{snippet}#\n\
         {summary_toml}"
    );
    write_file(&summary_path, summary_text.as_bytes())?;

    Ok(DevCredentials {
        signing_key_path,
        certificate_path,
        c_source_path,
        summary_path,
        vendor_id,
        class_id,
        certificate,
    })
}

/// The profile lines that use the credentials `dev_init` wrote in `dir`: the IDs in
/// `[identity]` and the files in `[trust]`, as absolute paths (a profile's relative paths are
/// relative to the profile, which may live anywhere).
pub fn profile_snippet(dir: &Path, vendor_id: Uuid, class_id: Uuid) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let file = |name: &str| toml_string(&absolute.join(name).display().to_string());
    format!(
        "[identity]\nvendor_id = \"{vendor_id}\"\nclass_id = \"{class_id}\"\n\n\
         [trust]\ncertificate = {}\nsigning_key = {}\n",
        file(DEV_CERTIFICATE_FILE),
        file(DEV_SIGNING_KEY_FILE)
    )
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), TrustError> {
    std::fs::write(path, contents).map_err(|source| TrustError::Write { path: path.to_path_buf(), source })
}

/// Bytes as C initialiser rows of eight, exactly as manifest-dev-tool's `pretty_print`.
fn c_byte_rows(bytes: &[u8]) -> String {
    bytes
        .chunks(8)
        .map(|row| row.iter().map(|byte| format!("0x{byte:02X}")).collect::<Vec<_>>().join(", "))
        .collect::<Vec<_>>()
        .join(",\n    ")
}

/// The C source with manifest-dev-tool's symbols, types and layout. Unlike manifest-dev-tool
/// 2.6.2, which writes a placeholder `{ 0 }`, `arm_uc_default_fingerprint` holds the real
/// SHA-256 of the certificate, as older update clients expect.
fn update_default_resources_c(
    vendor_id: Uuid,
    class_id: Uuid,
    certificate: &Certificate,
    public_key: &p256::ecdsa::VerifyingKey,
) -> String {
    let generated_at = time::OffsetDateTime::from(SystemTime::now())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown time".to_string());
    let public_key_point = public_key.to_sec1_point(false);
    format!(
        "// ----------------------------------------------------------------------------\n\
// DEVELOPMENT ONLY - NOT FOR PRODUCTION DEVICES\n\
//\n\
// These update resources come from developer credentials whose private key is an\n\
// unencrypted file on a developer's machine. Anyone holding that file can sign updates\n\
// that devices built with this file will install. Provision production devices with\n\
// a certificate whose key is kept in an HSM.\n\
// ----------------------------------------------------------------------------\n\
\n\
//-----------------------------------------------------------------------------\n\
//                   Autogenerated file - do not edit\n\
//\n\
//  generated on: {generated_at}\n\
//  generated by: imprint dev init (manifest-dev-tool init compatible)\n\
//  tool version: {version}\n\
//  certificate SHA-256: {fingerprint_hex}\n\
//-----------------------------------------------------------------------------\n\
\n\
#include <inttypes.h>\n\
\n\
const uint8_t arm_uc_vendor_id[] = {{\n    {vendor_id}\n}};\n\
const uint16_t arm_uc_vendor_id_size = sizeof(arm_uc_vendor_id);\n\
\n\
const uint8_t arm_uc_class_id[] = {{\n    {class_id}\n}};\n\
const uint16_t arm_uc_class_id_size = sizeof(arm_uc_class_id);\n\
\n\
// SHA-256 of arm_uc_default_certificate.\n\
const uint8_t arm_uc_default_fingerprint[] =  {{\n    {fingerprint}\n}};\n\
const uint16_t arm_uc_default_fingerprint_size = sizeof(arm_uc_default_fingerprint);\n\
\n\
const uint8_t arm_uc_default_certificate[] = {{\n    {certificate}\n}};\n\
const uint16_t arm_uc_default_certificate_size = sizeof(arm_uc_default_certificate);\n\
\n\
const uint8_t arm_uc_update_public_key[] = {{\n    {public_key}\n}};\n",
        version = env!("CARGO_PKG_VERSION"),
        fingerprint_hex = certificate.fingerprint_hex(),
        vendor_id = c_byte_rows(vendor_id.as_bytes()),
        class_id = c_byte_rows(class_id.as_bytes()),
        fingerprint = c_byte_rows(&certificate.fingerprint_sha256()),
        certificate = c_byte_rows(certificate.der()),
        public_key = c_byte_rows(public_key_point.as_bytes()),
    )
}

/// The certificate's subjectKeyIdentifier extension, or (without one) RFC 7093 method 1: the
/// leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
fn subject_key_identifier(certificate: &Certificate) -> Vec<u8> {
    use sha2::Digest;
    let tbs = certificate.parsed().tbs_certificate();
    match tbs.get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>() {
        Ok(Some((_, identifier))) => identifier.0.as_bytes().to_vec(),
        _ => {
            let key_bits = tbs.subject_public_key_info().subject_public_key.raw_bytes();
            sha2::Sha256::digest(key_bits)[..20].to_vec()
        }
    }
}

/// The v1-era `update_default_resources.c` (manifest-tool 1.x `init`, read by update-client-hub's
/// raw certificate store and identity): vendor and class IDs under `MBED_CLOUD_DEV_UPDATE_ID`,
/// the certificate with its **real** SHA-256 fingerprint and subject key identifier under
/// `MBED_CLOUD_DEV_UPDATE_CERT` (manifest-tool 2.6.2 writes a zero fingerprint, which the hub's
/// raw certificate store refuses: it looks the certificate up by that fingerprint).
fn update_default_resources_v1_c(vendor_id: Uuid, class_id: Uuid, certificate: &Certificate) -> String {
    let generated_at = time::OffsetDateTime::from(SystemTime::now())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown time".to_string());
    format!(
        "// ----------------------------------------------------------------------------\n\
// DEVELOPMENT ONLY - NOT FOR PRODUCTION DEVICES\n\
//\n\
// These update resources come from developer credentials whose private key is an\n\
// unencrypted file on a developer's machine. Anyone holding that file can sign updates\n\
// that devices built with this file will install.\n\
// ----------------------------------------------------------------------------\n\
\n\
//-----------------------------------------------------------------------------\n\
//                   Autogenerated file - do not edit\n\
//\n\
//  generated on: {generated_at}\n\
//  generated by: imprint dev init --schema v1 (legacy update client, v1 manifests)\n\
//  tool version: {version}\n\
//  certificate SHA-256: {fingerprint_hex}\n\
//-----------------------------------------------------------------------------\n\
\n\
#include <inttypes.h>\n\
\n\
#ifndef MBED_CLOUD_DEV_UPDATE_ID\n\
#define MBED_CLOUD_DEV_UPDATE_ID 1\n\
#endif\n\
#ifndef MBED_CLOUD_DEV_UPDATE_CERT\n\
#define MBED_CLOUD_DEV_UPDATE_CERT 1\n\
#endif\n\
\n\
#if MBED_CLOUD_DEV_UPDATE_ID\n\
const uint8_t arm_uc_vendor_id[16] = {{\n    {vendor_id}\n}};\n\
const uint16_t arm_uc_vendor_id_size = sizeof(arm_uc_vendor_id);\n\
\n\
const uint8_t arm_uc_class_id[16] = {{\n    {class_id}\n}};\n\
const uint16_t arm_uc_class_id_size = sizeof(arm_uc_class_id);\n\
#endif\n\
\n\
#if MBED_CLOUD_DEV_UPDATE_CERT\n\
// SHA-256 of arm_uc_default_certificate: the key the v1 manifest's signature block names.\n\
const uint8_t arm_uc_default_fingerprint[32] = {{\n    {fingerprint}\n}};\n\
const uint16_t arm_uc_default_fingerprint_size = sizeof(arm_uc_default_fingerprint);\n\
\n\
const uint8_t arm_uc_default_subject_key_identifier[] = {{\n    {subject_key_identifier}\n}};\n\
const uint16_t arm_uc_default_subject_key_identifier_size = sizeof(arm_uc_default_subject_key_identifier);\n\
\n\
const uint8_t arm_uc_default_certificate[] = {{\n    {certificate}\n}};\n\
const uint16_t arm_uc_default_certificate_size = sizeof(arm_uc_default_certificate);\n\
#endif\n",
        version = env!("CARGO_PKG_VERSION"),
        fingerprint_hex = certificate.fingerprint_hex(),
        vendor_id = c_byte_rows(vendor_id.as_bytes()),
        class_id = c_byte_rows(class_id.as_bytes()),
        fingerprint = c_byte_rows(&certificate.fingerprint_sha256()),
        subject_key_identifier = c_byte_rows(&subject_key_identifier(certificate)),
        certificate = c_byte_rows(certificate.der()),
    )
}

/// A developer environment made by `manifest-dev-tool init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevEnvironment {
    pub signing_key_path: PathBuf,
    pub certificate_path: PathBuf,
    pub vendor_id: Uuid,
    pub class_id: Uuid,
}

/// Reads `dir/.manifest-dev-tool/dev.cfg.yaml` (or `dir/dev.cfg.yaml` when `dir` is the cache
/// directory itself), checks that its key and certificate load and belong together, and returns
/// their paths with the vendor and class IDs.
///
/// manifest-dev-tool records paths relative to the directory it ran in (normally the parent of
/// `.manifest-dev-tool`), so relative paths are looked up there first, then next to the file.
pub fn import_manifest_dev_tool_env(dir: &Path) -> Result<DevEnvironment, TrustError> {
    let nested = dir.join(".manifest-dev-tool").join("dev.cfg.yaml");
    let config_path = if nested.exists() { nested } else { dir.join("dev.cfg.yaml") };
    let text = std::fs::read_to_string(&config_path)
        .map_err(|source| TrustError::Read { path: config_path.clone(), source })?;
    let environment_error = |reason: String| TrustError::DevEnvironment { path: config_path.clone(), reason };
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|error| environment_error(format!("expected manifest-dev-tool's YAML mapping: {error}")))?;
    if !document.is_mapping() {
        return Err(environment_error(format!(
            "expected manifest-dev-tool's YAML mapping (key_file, certificate, vendor-id, \
             class-id), found {}",
            yaml_kind(&document)
        )));
    }
    let field = |name: &str| -> Result<String, TrustError> {
        match document.get(name) {
            Some(serde_yaml_ng::Value::String(text)) => Ok(text.clone()),
            // YAML reads an all-digit hex ID as a number when it is not quoted.
            Some(serde_yaml_ng::Value::Number(number)) => Ok(number.to_string()),
            Some(other) => {
                Err(environment_error(format!("field `{name}`: expected a string, found {other:?}")))
            }
            None => Err(environment_error(format!("field `{name}` is missing"))),
        }
    };
    if document.get("signing-tool").is_some() {
        return Err(environment_error(
            "this environment signs through an external `signing-tool`; expected a key file \
             (import the key into an HSM profile instead)"
                .to_string(),
        ));
    }
    let parse_id = |name: &str| -> Result<Uuid, TrustError> {
        let text = field(name)?;
        Uuid::parse_str(text.trim()).map_err(|error| {
            environment_error(format!(
                "field `{name}`: expected 32 hex digits of a UUID, found {text:?} ({error})"
            ))
        })
    };
    let vendor_id = parse_id("vendor-id")?;
    let class_id = parse_id("class-id")?;
    let config_dir = config_path.parent().unwrap_or(dir);
    let resolve = |name: &str| -> Result<PathBuf, TrustError> {
        let recorded = PathBuf::from(field(name)?);
        if recorded.is_absolute() {
            return Ok(recorded);
        }
        // The directory manifest-dev-tool ran in is `dir` when given the project, or the
        // parent of the cache directory when given that.
        let mut bases = vec![dir, config_dir];
        if let Some(parent) = config_dir.parent() {
            bases.push(parent);
        }
        let candidates: Vec<PathBuf> = bases.iter().map(|base| base.join(&recorded)).collect();
        candidates.iter().find(|candidate| candidate.is_file()).cloned().ok_or_else(|| {
            let tried: Vec<String> =
                candidates.iter().map(|candidate| candidate.display().to_string()).collect();
            environment_error(format!(
                "field `{name}`: {} exists at none of {}",
                recorded.display(),
                tried.join(", ")
            ))
        })
    };
    let signing_key_path = resolve("key_file")?;
    let certificate_path = resolve("certificate")?;
    let signer = load_signing_key(&signing_key_path)?;
    let certificate = Certificate::load(&certificate_path)?;
    if !key_matches_certificate(&signer, &certificate) {
        return Err(environment_error(format!(
            "key {} does not belong to certificate {} (expected the certificate's public key)",
            signing_key_path.display(),
            certificate_path.display()
        )));
    }
    Ok(DevEnvironment { signing_key_path, certificate_path, vendor_id, class_id })
}

fn yaml_kind(value: &serde_yaml_ng::Value) -> &'static str {
    match value {
        serde_yaml_ng::Value::Null => "nothing",
        serde_yaml_ng::Value::Bool(_) => "a boolean",
        serde_yaml_ng::Value::Number(_) => "a number",
        serde_yaml_ng::Value::String(_) => "a string",
        serde_yaml_ng::Value::Sequence(_) => "a list",
        serde_yaml_ng::Value::Mapping(_) => "a mapping",
        serde_yaml_ng::Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_rows_have_eight_uppercase_bytes_like_manifest_dev_tool() {
        assert_eq!(c_byte_rows(&[]), "");
        assert_eq!(c_byte_rows(&[0xab]), "0xAB");
        assert_eq!(
            c_byte_rows(&(0..10).collect::<Vec<u8>>()),
            "0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,\n    0x08, 0x09"
        );
    }

    /// Resolves options and compares with the expected IDs (`None`: random v4) or error.
    fn check(options: DevInitOptions, expected: Result<(Option<&str>, Option<&str>), &str>) {
        match (options.resolve_ids(), expected) {
            (Ok((vendor_id, class_id)), Ok((expected_vendor, expected_class))) => {
                for (id, expected) in [(vendor_id, expected_vendor), (class_id, expected_class)] {
                    match expected {
                        Some(text) => assert_eq!(id.to_string(), text),
                        None => assert_eq!(id.get_version_num(), 4),
                    }
                }
            }
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{error}")
            }
            (outcome, expected) => panic!("got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn ids_are_explicit_derived_or_random() {
        let vendor: Uuid = "6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0".parse().unwrap();
        let class: Uuid = "0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21".parse().unwrap();
        check(DevInitOptions::default(), Ok((None, None)));
        check(
            DevInitOptions { vendor_id: Some(vendor), class_id: Some(class), ..Default::default() },
            Ok((Some("6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0"), Some("0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21"))),
        );
        // python3 -c 'import uuid; v=uuid.uuid5(uuid.NAMESPACE_DNS,"example.com"); print(v, uuid.uuid5(v,"m"))'
        check(
            DevInitOptions {
                vendor_domain: Some("example.com".to_string()),
                model_name: Some("m".to_string()),
                ..Default::default()
            },
            Ok((Some("cfbff0d1-9375-5685-968c-48ce8b15ae17"), Some("ee5a4b75-5a75-536d-b026-ca06714f3828"))),
        );
        check(
            DevInitOptions {
                vendor_id: Some(vendor),
                vendor_domain: Some("example.com".to_string()),
                ..Default::default()
            },
            Err("either a vendor ID or a vendor domain"),
        );
        check(
            DevInitOptions { class_id: Some(class), model_name: Some("m".to_string()), ..Default::default() },
            Err("either a class ID or a model name"),
        );
        check(
            DevInitOptions { vendor_domain: Some(" ".to_string()), ..Default::default() },
            Err("vendor domain is empty"),
        );
    }
}
