//! The bundle: the CBOR map one FTCD request carries, built from typed items and encoded with
//! `ciborium` (no hand-written CBOR).
//!
//! The keys and entry shapes are those `fcc_bundle_handler.c` parses (docs/fcc.md): a definite
//! map of at most 12 groups, `SchemeVersion` "0.0.1", booleans as the integers 0/1, entries as
//! maps of `Name`, `Type`, `Format`, `Data` / `DataArray`. Secrets (private keys, `Entropy`,
//! `ROT`) are held in `Zeroizing` buffers and never printed: `Debug` shows their size only.

use ciborium::value::Value;
use der::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

use super::error::FccError;

/// The scheme version the FCC accepts (exactly).
pub const FCC_SCHEME_VERSION: &str = "0.0.1";
/// Size of the `Entropy` the FCC accepts.
pub const FCC_ENTROPY_SIZE_BYTES: usize = 48;
/// Size of the `ROT` the FCC accepts.
pub const FCC_ROT_SIZE_BYTES: usize = 16;
/// `KCM_MD_SHA256`, the only message digest of a CSR request.
pub const FCC_CSR_MESSAGE_DIGEST_SHA256: u64 = 1;
/// `KCM_CSR_KU_DIGITAL_SIGNATURE`.
pub const FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE: u64 = 0x1;
/// `KCM_CSR_EXT_KU_CLIENT_AUTH`.
pub const FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH: u64 = 1 << 2;

/// A configuration parameter's value. The FCC stores text and bytes as they are, and integers
/// as 8 bytes little-endian, except `mbed.UseBootstrap`, `mbed.MemoryTotalKB` and
/// `mbed.FirstToClaim` (4 bytes); `mbed.CurrentTime` sets the device's clock and is not stored.
#[derive(Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// A CBOR text string.
    Text(String),
    /// A CBOR byte string (vendor and class IDs: 16 bytes).
    Bytes(Vec<u8>),
    /// A CBOR unsigned integer.
    Unsigned(u64),
    /// A CBOR (possibly negative) integer.
    Signed(i64),
}

impl std::fmt::Debug for ConfigValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Text(text) => write!(formatter, "Text({text:?})"),
            ConfigValue::Bytes(bytes) => write!(formatter, "Bytes({})", hex::encode(bytes)),
            ConfigValue::Unsigned(value) => write!(formatter, "Unsigned({value})"),
            ConfigValue::Signed(value) => write!(formatter, "Signed({value})"),
        }
    }
}

/// Names whose integer the FCC stores in 4 bytes.
const FOUR_BYTE_INTEGER_NAMES: [&str; 3] = ["mbed.UseBootstrap", "mbed.MemoryTotalKB", "mbed.FirstToClaim"];

/// One `ConfigParams` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigParam {
    /// The KCM item name (`mbed.EndpointName`, ...).
    pub name: String,
    /// Its value.
    pub value: ConfigValue,
}

impl ConfigParam {
    /// The bytes the FCC stores for this parameter (`None` for `mbed.CurrentTime`, which only
    /// sets the clock): the record of what a device holds.
    pub fn stored_bytes(&self) -> Option<Vec<u8>> {
        if self.name == "mbed.CurrentTime" {
            return None;
        }
        let four_bytes = FOUR_BYTE_INTEGER_NAMES.contains(&self.name.as_str());
        Some(match &self.value {
            ConfigValue::Text(text) => text.as_bytes().to_vec(),
            ConfigValue::Bytes(bytes) => bytes.clone(),
            ConfigValue::Unsigned(value) if four_bytes => (*value as u32).to_le_bytes().to_vec(),
            ConfigValue::Signed(value) if four_bytes => (*value as i32).to_le_bytes().to_vec(),
            ConfigValue::Unsigned(value) => value.to_le_bytes().to_vec(),
            ConfigValue::Signed(value) => value.to_le_bytes().to_vec(),
        })
    }
}

/// The type of a `Keys` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `ECCPrivate`: a P-256 private key (DER).
    EccPrivate,
    /// `ECCPublic`: a P-256 public key (DER SubjectPublicKeyInfo).
    EccPublic,
}

impl KeyType {
    fn wire_name(self) -> &'static str {
        match self {
            KeyType::EccPrivate => "ECCPrivate",
            KeyType::EccPublic => "ECCPublic",
        }
    }
}

/// One `Keys` entry. The DER of a private key is secret: `Debug` prints its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The KCM item name (`mbed.BootstrapDevicePrivateKey`, ...).
    pub name: String,
    /// Private or public.
    pub key_type: KeyType,
    /// The key's DER.
    pub der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Key")
            .field("name", &self.name)
            .field("key_type", &self.key_type)
            .field("der", &format_args!("<{} bytes redacted>", self.der.len()))
            .finish()
    }
}

/// One `Certificates` entry (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The KCM item name (`mbed.BootstrapDeviceCert`, `mbed.UpdateAuthCert`, ...).
    pub name: String,
    /// The certificate's DER.
    pub der: Vec<u8>,
}

/// One `CertificateChains` entry: DER certificates from the leaf to the root (at most 5, each
/// signed by the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChain {
    /// The KCM item name.
    pub name: String,
    /// DER certificates, leaf first.
    pub ders: Vec<Vec<u8>>,
}

/// One `CsrReqs` entry: the device makes a P-256 key under `private_key_name` and answers a
/// PKCS#10 request for `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrRequest {
    /// Name the device stores the new private key under.
    pub private_key_name: String,
    /// The requested subject, `CN=...,O=...` form.
    pub subject: String,
    /// `kcm_csr_key_usage_e` bits (`KU`).
    pub key_usage: u64,
    /// `kcm_csr_ext_key_usage_e` bits (`EKU`).
    pub extended_key_usage: u64,
}

/// What one item of a bundle was: its group, name and the SHA-256 of its data, for records
/// that must not hold the data itself (private keys, RoT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleItemDigest {
    /// `ConfigParams`, `Keys`, `Certificates`, `CertificateChains`, `Entropy`, `ROT`, `CsrReqs`.
    pub group: &'static str,
    /// The item's name (the group's name for `Entropy` and `ROT`).
    pub name: String,
    /// SHA-256 of the data sent (the concatenated DERs for a chain; of the subject for a CSR).
    pub sha256: [u8; 32],
}

/// One FTCD request's content. Build with the methods, encode with [`FccBundle::to_cbor`].
#[derive(Clone, Default)]
pub struct FccBundle {
    scheme_version: Option<String>,
    session_id: Option<String>,
    keep_alive: bool,
    entropy: Option<Zeroizing<[u8; FCC_ENTROPY_SIZE_BYTES]>>,
    rot: Option<Zeroizing<[u8; FCC_ROT_SIZE_BYTES]>>,
    keys: Vec<Key>,
    certificates: Vec<Certificate>,
    certificate_chains: Vec<CertificateChain>,
    config_params: Vec<ConfigParam>,
    csr_requests: Vec<CsrRequest>,
    verify: Option<bool>,
    disable: bool,
}

impl std::fmt::Debug for FccBundle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FccBundle")
            .field("scheme_version", &self.scheme_version())
            .field("session_id", &self.session_id)
            .field("keep_alive", &self.keep_alive)
            .field("entropy", &self.entropy.as_ref().map(|_| "<48 bytes redacted>"))
            .field("rot", &self.rot.as_ref().map(|_| "<16 bytes redacted>"))
            .field("keys", &self.keys)
            .field("certificates", &self.certificates)
            .field("certificate_chains", &self.certificate_chains)
            .field("config_params", &self.config_params)
            .field("csr_requests", &self.csr_requests)
            .field("verify", &self.verify)
            .field("disable", &self.disable)
            .finish()
    }
}

impl FccBundle {
    /// An empty bundle (scheme version 0.0.1, no session ID, not keep-alive, Verify omitted:
    /// the device then verifies).
    pub fn new() -> Self {
        FccBundle::default()
    }

    /// Overrides the scheme version (only tests of the device's refusal need this).
    pub fn scheme_version_override(mut self, version: impl Into<String>) -> Self {
        self.scheme_version = Some(version.into());
        self
    }

    /// `SID`: the session ID (required with `CsrReqs`; echoed in the response).
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// `KpAlvSess`: keep the session open for another message.
    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// `Entropy`: 48 bytes for a device without a TRNG (once per device).
    pub fn entropy(mut self, entropy: Zeroizing<[u8; FCC_ENTROPY_SIZE_BYTES]>) -> Self {
        self.entropy = Some(entropy);
        self
    }

    /// `ROT`: the 16-byte root of trust for a device without a hardware one (once per device).
    pub fn rot(mut self, rot: Zeroizing<[u8; FCC_ROT_SIZE_BYTES]>) -> Self {
        self.rot = Some(rot);
        self
    }

    /// Adds a `ConfigParams` entry.
    pub fn config_param(mut self, name: impl Into<String>, value: ConfigValue) -> Self {
        self.config_params.push(ConfigParam { name: name.into(), value });
        self
    }

    /// Adds a `Keys` entry (DER).
    pub fn key(mut self, name: impl Into<String>, key_type: KeyType, der: Zeroizing<Vec<u8>>) -> Self {
        self.keys.push(Key { name: name.into(), key_type, der });
        self
    }

    /// Adds a `Certificates` entry (DER).
    pub fn certificate(mut self, name: impl Into<String>, der: Vec<u8>) -> Self {
        self.certificates.push(Certificate { name: name.into(), der });
        self
    }

    /// Adds a `CertificateChains` entry (DERs, leaf first).
    pub fn certificate_chain(mut self, name: impl Into<String>, ders: Vec<Vec<u8>>) -> Self {
        self.certificate_chains.push(CertificateChain { name: name.into(), ders });
        self
    }

    /// Adds a `CsrReqs` entry.
    pub fn csr_request(mut self, request: CsrRequest) -> Self {
        self.csr_requests.push(request);
        self
    }

    /// `Verify`: run `fcc_verify_device_configured_4mbed_cloud()` after this message (the
    /// device's default when omitted is true; a message with `CsrReqs` must say false).
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = Some(verify);
        self
    }

    /// `Disable`: the factory process is done; the device refuses every later bundle.
    pub fn disable(mut self, disable: bool) -> Self {
        self.disable = disable;
        self
    }

    /// The scheme version this bundle sends.
    pub fn scheme_version(&self) -> &str {
        self.scheme_version.as_deref().unwrap_or(FCC_SCHEME_VERSION)
    }

    /// The session ID, when set.
    pub fn session_id_value(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Whether the bundle asks the device to keep the session open.
    pub fn is_keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The configuration parameters, in order.
    pub fn config_params(&self) -> &[ConfigParam] {
        &self.config_params
    }

    /// The CSR requests, in order.
    pub fn csr_requests(&self) -> &[CsrRequest] {
        &self.csr_requests
    }

    /// Name and SHA-256 of every item, in the order sent; never the data.
    pub fn item_digests(&self) -> Vec<BundleItemDigest> {
        let digest = |group: &'static str, name: &str, data: &[u8]| BundleItemDigest {
            group,
            name: name.to_string(),
            sha256: Sha256::digest(data).into(),
        };
        let mut digests = Vec::new();
        if let Some(entropy) = &self.entropy {
            digests.push(digest("Entropy", "Entropy", entropy.as_slice()));
        }
        if let Some(rot) = &self.rot {
            digests.push(digest("ROT", "ROT", rot.as_slice()));
        }
        digests.extend(self.keys.iter().map(|key| digest("Keys", &key.name, &key.der)));
        digests.extend(self.certificates.iter().map(|item| digest("Certificates", &item.name, &item.der)));
        digests.extend(
            self.certificate_chains
                .iter()
                .map(|chain| digest("CertificateChains", &chain.name, &chain.ders.concat())),
        );
        for param in &self.config_params {
            let bytes = match &param.value {
                ConfigValue::Text(text) => text.as_bytes().to_vec(),
                ConfigValue::Bytes(bytes) => bytes.clone(),
                ConfigValue::Unsigned(value) => value.to_le_bytes().to_vec(),
                ConfigValue::Signed(value) => value.to_le_bytes().to_vec(),
            };
            digests.push(digest("ConfigParams", &param.name, &bytes));
        }
        digests.extend(
            self.csr_requests
                .iter()
                .map(|request| digest("CsrReqs", &request.private_key_name, request.subject.as_bytes())),
        );
        digests
    }

    /// The CBOR the device receives: a definite-length map, groups in a fixed order, empty
    /// groups left out.
    pub fn to_cbor(&self) -> Result<Vec<u8>, FccError> {
        let mut map: Vec<(Value, Value)> = Vec::with_capacity(12);
        let mut put = |key: &str, value: Value| map.push((Value::Text(key.to_string()), value));
        put("SchemeVersion", Value::Text(self.scheme_version().to_string()));
        if let Some(session_id) = &self.session_id {
            put("SID", Value::Text(session_id.clone()));
        }
        if self.keep_alive {
            put("KpAlvSess", Value::Integer(1.into()));
        }
        if let Some(entropy) = &self.entropy {
            put("Entropy", Value::Bytes(entropy.to_vec()));
        }
        if let Some(rot) = &self.rot {
            put("ROT", Value::Bytes(rot.to_vec()));
        }
        if !self.keys.is_empty() {
            put("Keys", Value::Array(self.keys.iter().map(key_entry).collect()));
        }
        if !self.certificates.is_empty() {
            put("Certificates", Value::Array(self.certificates.iter().map(certificate_entry).collect()));
        }
        if !self.certificate_chains.is_empty() {
            put("CertificateChains", Value::Array(self.certificate_chains.iter().map(chain_entry).collect()));
        }
        if !self.config_params.is_empty() {
            put("ConfigParams", Value::Array(self.config_params.iter().map(config_entry).collect()));
        }
        if !self.csr_requests.is_empty() {
            put("CsrReqs", Value::Array(self.csr_requests.iter().map(csr_entry).collect()));
        }
        if let Some(verify) = self.verify {
            put("Verify", Value::Integer(u8::from(verify).into()));
        }
        if self.disable {
            put("Disable", Value::Integer(1.into()));
        }
        let mut encoded = Vec::new();
        // Plaintext secrets pass through `encoded`; wipe the intermediate map's copies too.
        let value = Value::Map(map);
        let result = ciborium::into_writer(&value, &mut encoded);
        wipe_value(value);
        result.map_err(|error| FccError::Bundle {
            field: "bundle".to_string(),
            expected: "a CBOR encoding",
            found: error.to_string(),
        })?;
        Ok(encoded)
    }
}

fn text(key: &str, value: &str) -> (Value, Value) {
    (Value::Text(key.to_string()), Value::Text(value.to_string()))
}

fn key_entry(key: &Key) -> Value {
    Value::Map(vec![
        text("Name", &key.name),
        text("Type", key.key_type.wire_name()),
        text("Format", "der"),
        (Value::Text("Data".to_string()), Value::Bytes(key.der.to_vec())),
    ])
}

fn certificate_entry(certificate: &Certificate) -> Value {
    Value::Map(vec![
        text("Name", &certificate.name),
        text("Format", "der"),
        (Value::Text("Data".to_string()), Value::Bytes(certificate.der.clone())),
    ])
}

fn chain_entry(chain: &CertificateChain) -> Value {
    Value::Map(vec![
        text("Name", &chain.name),
        text("Format", "der"),
        (
            Value::Text("DataArray".to_string()),
            Value::Array(chain.ders.iter().map(|der| Value::Bytes(der.clone())).collect()),
        ),
    ])
}

fn config_entry(param: &ConfigParam) -> Value {
    let data = match &param.value {
        ConfigValue::Text(text) => Value::Text(text.clone()),
        ConfigValue::Bytes(bytes) => Value::Bytes(bytes.clone()),
        ConfigValue::Unsigned(value) => Value::Integer((*value).into()),
        ConfigValue::Signed(value) => Value::Integer((*value).into()),
    };
    Value::Map(vec![text("Name", &param.name), (Value::Text("Data".to_string()), data)])
}

fn csr_entry(request: &CsrRequest) -> Value {
    Value::Map(vec![
        text("PrKN", &request.private_key_name),
        text("Subj", &request.subject),
        (Value::Text("MD".to_string()), Value::Integer(FCC_CSR_MESSAGE_DIGEST_SHA256.into())),
        (
            Value::Text("Ext".to_string()),
            Value::Map(vec![
                (Value::Text("KU".to_string()), Value::Integer(request.key_usage.into())),
                (Value::Text("EKU".to_string()), Value::Integer(request.extended_key_usage.into())),
            ]),
        ),
    ])
}

/// Overwrites every byte string of a value before it is dropped (keys, entropy, RoT).
fn wipe_value(value: Value) {
    match value {
        Value::Bytes(bytes) => drop(Zeroizing::new(bytes)),
        Value::Array(items) => items.into_iter().for_each(wipe_value),
        Value::Map(entries) => entries.into_iter().for_each(|(key, value)| {
            wipe_value(key);
            wipe_value(value);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_entropy_or_rot_bytes() {
        let bundle = FccBundle::new()
            .entropy(Zeroizing::new([0xab; FCC_ENTROPY_SIZE_BYTES]))
            .rot(Zeroizing::new([0xcd; FCC_ROT_SIZE_BYTES]))
            .key("mbed.BootstrapDevicePrivateKey", KeyType::EccPrivate, Zeroizing::new(vec![0xef; 40]));
        let printed = format!("{bundle:?}");
        for secret in ["abab", "cdcd", "efef", "171", "205", "239"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn integers_are_stored_in_four_or_eight_bytes_as_the_fcc_does() {
        let param = |name: &str| ConfigParam { name: name.to_string(), value: ConfigValue::Unsigned(1) };
        assert_eq!(param("mbed.UseBootstrap").stored_bytes(), Some(vec![1, 0, 0, 0]));
        assert_eq!(param("mbed.MemoryTotalKB").stored_bytes(), Some(vec![1, 0, 0, 0]));
        assert_eq!(param("mbed.Other").stored_bytes(), Some(vec![1, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(param("mbed.CurrentTime").stored_bytes(), None);
    }
}
