//! Signing keys held in hardware, reached through PKCS#11 (HSMs, smart cards, SoftHSM2).
//!
//! Production update-signing keys belong in a token, never on a station's disk. This module makes
//! such a key one more [`Signer`]: manifests and certificates are signed exactly as with a file
//! key, except that the private key never leaves the token. The SHA-256 digest is computed on the
//! host and the token signs it with plain `CKM_ECDSA`, because that is the one ECDSA mechanism
//! every token offers (SoftHSM2 has no `CKM_ECDSA_SHA256`); the raw `r || s` it returns is turned
//! into a low-S p256 signature and checked against the token's public key before anyone sees it.
//!
//! A key is named by a [`Pkcs11KeyConfig`] — module path, token label, key label and/or ID, and
//! where the PIN comes from — written in a profile as a table or as an RFC 7512 `pkcs11:` URI.
//! PINs come from an environment variable, a file or a terminal prompt; a PIN is never written in
//! a URI or profile (`pin-value` is refused), never logged, and a wrong PIN is tried exactly once:
//! a retry loop is how tokens get locked.
//!
//! A module is initialised once per process however many signers use it (`C_Initialize` is
//! process-wide) and finalised when the last one is dropped, so opening and dropping signers in
//! turn neither leaks sessions nor trips over `CKR_CRYPTOKI_ALREADY_INITIALIZED`.
//!
//! Files: `uri.rs` names a key (RFC 7512 URIs, [`PinSource`], [`Pkcs11KeyConfig`]) without
//! touching a token; this file opens tokens, logs in, finds, generates and signs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use spki::DecodePublicKey;

mod uri;

#[allow(unused_imports)]
use uri::*;
pub use uri::{PKCS11_URI_SCHEME, PinSource, Pkcs11KeyConfig, is_pkcs11_uri};

use super::oid::{PRIME256V1, describe_oid};
use super::signer::{SignError, Signer};

/// Errors from PKCS#11 configuration and tokens. Messages name what was looked for and what was
/// found; none carries a PIN.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// A `pkcs11:` URI is malformed or asks for something unsupported (shown with any PIN
    /// redacted).
    #[error("{uri}: expected a PKCS#11 URI (RFC 7512) naming a token and key, but {reason}")]
    Uri { uri: String, reason: String },
    /// A pin-source value is not one we understand.
    #[error("pin source {found:?}: {reason}")]
    PinSourceSyntax { found: String, reason: String },
    /// The configuration names no key (neither label nor id).
    #[error("{what}: expected a key label (object=) or id (id=), found neither")]
    NoKeyNamed { what: String },
    /// The module file does not exist.
    #[error(
        "PKCS#11 module {path} not found: expected the token vendor's module library there (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
    )]
    ModuleNotFound { path: PathBuf },
    /// The module exists but cannot be loaded or initialised.
    #[error("PKCS#11 module {path}: cannot {operation}: {reason}")]
    Module { path: PathBuf, operation: String, reason: String },
    /// No token with the label (and serial) asked for.
    #[error("PKCS#11 module {path}: no token labelled {label:?}{serial}; found {found}")]
    TokenNotFound { path: PathBuf, label: String, serial: String, found: String },
    /// Several tokens match.
    #[error("PKCS#11 module {path}: {count} tokens are labelled {label:?}; add serial= to choose one")]
    TokenAmbiguous { path: PathBuf, label: String, count: usize },
    /// An operation on the token failed.
    #[error("token {token:?}: cannot {operation}: {reason}")]
    Token { token: String, operation: String, reason: String },
    /// The PIN's environment variable is not set.
    #[error(
        "token {token:?}: the PIN environment variable {variable} is not set (pin-source=env:{variable})"
    )]
    PinVariableUnset { token: String, variable: String },
    /// The PIN file cannot be read.
    #[error("token {token:?}: cannot read the PIN file {path}: {source}")]
    PinFile {
        token: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No terminal to ask on.
    #[error("token {token:?}: cannot prompt for the PIN ({reason}); set pin-source=env:VARIABLE")]
    PinPrompt { token: String, reason: String },
    /// The token refused the PIN. Not retried.
    #[error(
        "token {token:?}: wrong PIN (CKR_PIN_INCORRECT); not retried, because repeated wrong PINs lock the token"
    )]
    WrongPin { token: String },
    /// The token's user PIN is locked.
    #[error(
        "token {token:?}: the user PIN is locked (CKR_PIN_LOCKED); the token's security officer must unlock it"
    )]
    PinLocked { token: String },
    /// One more wrong PIN would lock the token: we refuse to try a PIN we cannot be sure of.
    #[error(
        "token {token:?}: the next wrong PIN locks the token (CKF_USER_PIN_FINAL_TRY); log in once with the \
         vendor's tool to confirm the PIN before using it here"
    )]
    PinFinalTry { token: String },
    /// No private key matches.
    #[error("token {token:?}: no private key with {wanted}; found {found}")]
    KeyNotFound { token: String, wanted: String, found: String },
    /// Several private keys match.
    #[error("token {token:?}: {count} private keys match {wanted}; add id= to choose one")]
    KeyAmbiguous { token: String, wanted: String, count: usize },
    /// The key is not an EC P-256 key.
    #[error("token {token:?}: key {key}: expected an EC P-256 key (CKK_EC on prime256v1), found {found}")]
    WrongKeyType { token: String, key: String, found: String },
    /// The key may not sign.
    #[error("token {token:?}: key {key} does not allow signing (CKA_SIGN is false)")]
    KeyCannotSign { token: String, key: String },
    /// The key's public half cannot be found or read.
    #[error("token {token:?}: key {key}: cannot read its public key: {reason}")]
    PublicKey { token: String, key: String, reason: String },
    /// A key to be generated already exists.
    #[error("token {token:?}: an object with {wanted} already exists; choose another label or id")]
    KeyExists { token: String, wanted: String },
}

/// What the token reports about a private key's protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11KeyProtection {
    /// `CKA_SENSITIVE`: the key value cannot be read in the clear.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key can be wrapped out of the token.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_LOCAL`: generated inside the token.
    pub local: bool,
}

/// An ECDSA P-256 key in a PKCS#11 token, usable from many threads at once.
///
/// One logged-in session is kept for the signer's life behind a mutex: PKCS#11 sessions must not
/// be used by two threads at once, a signature takes milliseconds, and self-test manifests are
/// signed once per line, so contention is negligible. Dropping the signer closes its session
/// (which logs out once no other session of the process is open) and releases the module.
pub struct Pkcs11Signer {
    // Field order matters: the session closes before the module lease can finalise the module.
    session: Mutex<Session>,
    private_key: ObjectHandle,
    verifying_key: VerifyingKey,
    /// The key as found: token, label and id filled in from the token.
    key_config: Pkcs11KeyConfig,
    _module: ModuleLease,
}

impl Pkcs11Signer {
    /// Opens the token, logs in (one attempt), finds the private key and its public key.
    pub fn open(config: &Pkcs11KeyConfig) -> Result<Pkcs11Signer, Pkcs11Error> {
        if config.key_label.is_none() && config.key_id.is_none() {
            return Err(Pkcs11Error::NoKeyNamed { what: config.path_uri() });
        }
        let module = ModuleLease::acquire(&config.module_path)?;
        let slot = find_token(&module, config)?;
        let session = module
            .context
            .open_ro_session(slot)
            .map_err(|error| token_error(config, "open a session", &error))?;
        log_in(&module, slot, &session, config)?;
        let private_key = find_private_key(&session, config)?;
        Self::from_session(module, session, private_key, config)
    }

    /// Opens a `pkcs11:` URI (see [`Pkcs11KeyConfig::from_uri`]).
    pub fn open_uri(uri: &str) -> Result<Pkcs11Signer, Pkcs11Error> {
        Self::open(&Pkcs11KeyConfig::from_uri(uri)?)
    }

    /// Generates a P-256 key pair inside the token: the private key is a token object, private,
    /// sensitive, not extractable and may only sign; the public key is a token object that may
    /// verify. `config.key_label` is required; without `config.key_id` a random 8-byte id is
    /// chosen. Refuses when an object with that label or id already exists.
    pub fn generate(config: &Pkcs11KeyConfig) -> Result<Pkcs11Signer, Pkcs11Error> {
        let Some(label) = config.key_label.clone() else {
            return Err(Pkcs11Error::NoKeyNamed { what: config.path_uri() });
        };
        let module = ModuleLease::acquire(&config.module_path)?;
        let slot = find_token(&module, config)?;
        let session = module
            .context
            .open_rw_session(slot)
            .map_err(|error| token_error(config, "open a read-write session", &error))?;
        log_in(&module, slot, &session, config)?;
        let id = match &config.key_id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0_u8; GENERATED_KEY_ID_SIZE_BYTES];
                getrandom::fill(&mut id).map_err(|error| Pkcs11Error::Token {
                    token: config.token_label.clone(),
                    operation: "choose a key id".to_string(),
                    reason: format!("the operating system gave no randomness: {error}"),
                })?;
                id
            }
        };
        for (attribute, what) in [
            (Attribute::Label(label.clone().into_bytes()), format!("label {label:?}")),
            (Attribute::Id(id.clone()), format!("id {}", hex::encode(&id))),
        ] {
            let existing = session
                .find_objects(&[attribute])
                .map_err(|error| token_error(config, "search for existing objects", &error))?;
            if !existing.is_empty() {
                return Err(Pkcs11Error::KeyExists { token: config.token_label.clone(), wanted: what });
            }
        }
        let curve = prime256v1_parameters();
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            // A signing key and nothing else (SoftHSM's defaults would also allow these).
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::EcParams(curve),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            // Sign-only: SoftHSM2 and many HSMs default the others to true.
            Attribute::SignRecover(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Id(id.clone()),
        ];
        let (_public_key, private_key) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
            .map_err(|error| token_error(config, "generate an EC P-256 key pair", &error))?;
        let generated = Pkcs11KeyConfig { key_label: Some(label), key_id: Some(id), ..config.clone() };
        Self::from_session(module, session, private_key, &generated)
    }

    fn from_session(
        module: ModuleLease,
        session: Session,
        private_key: ObjectHandle,
        config: &Pkcs11KeyConfig,
    ) -> Result<Pkcs11Signer, Pkcs11Error> {
        let key_error = |found: String| Pkcs11Error::WrongKeyType {
            token: config.token_label.clone(),
            key: config.describe_wanted_key(),
            found,
        };
        let attributes = session
            .get_attributes(
                private_key,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::Sign,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(|error| token_error(config, "read the key's attributes", &error))?;
        let mut key_type = None;
        let mut curve_parameters = None;
        let mut may_sign = None;
        let mut found_config = config.clone();
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(found) => key_type = Some(found),
                Attribute::EcParams(bytes) => curve_parameters = Some(bytes),
                Attribute::Sign(flag) => may_sign = Some(flag),
                Attribute::Label(bytes) if !bytes.is_empty() => {
                    found_config.key_label = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                Attribute::Id(bytes) if !bytes.is_empty() => found_config.key_id = Some(bytes),
                _ => {}
            }
        }
        match key_type {
            Some(KeyType::EC) => {}
            Some(other) => return Err(key_error(format!("a {other} key"))),
            None => return Err(key_error("a key without CKA_KEY_TYPE".to_string())),
        }
        check_curve_parameters(curve_parameters.as_deref()).map_err(key_error)?;
        if may_sign == Some(false) {
            return Err(Pkcs11Error::KeyCannotSign {
                token: config.token_label.clone(),
                key: found_config.describe_wanted_key(),
            });
        }
        let verifying_key = read_public_key(&session, private_key, &found_config)?;
        Ok(Pkcs11Signer {
            session: Mutex::new(session),
            private_key,
            verifying_key,
            key_config: found_config,
            _module: module,
        })
    }

    /// The key as found in the token (label and id filled in), for a URI naming exactly it.
    pub fn key_config(&self) -> &Pkcs11KeyConfig {
        &self.key_config
    }

    /// What the token reports about the private key's protection.
    pub fn key_protection(&self) -> Result<Pkcs11KeyProtection, Pkcs11Error> {
        let session = self.lock_session();
        let attributes = session
            .get_attributes(
                self.private_key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Local,
                ],
            )
            .map_err(|error| token_error(&self.key_config, "read the key's protection attributes", &error))?;
        let mut protection = Pkcs11KeyProtection {
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
            local: false,
        };
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(flag) => protection.sensitive = flag,
                Attribute::Extractable(flag) => protection.extractable = flag,
                Attribute::AlwaysSensitive(flag) => protection.always_sensitive = flag,
                Attribute::NeverExtractable(flag) => protection.never_extractable = flag,
                Attribute::Local(flag) => protection.local = flag,
                _ => {}
            }
        }
        Ok(protection)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Session> {
        // A panic elsewhere while holding the lock leaves no half-done operation behind (each
        // C_Sign completes or fails inside the lock), so the session is still usable.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Signer for Pkcs11Signer {
    fn verifying_key(&self) -> VerifyingKey {
        self.verifying_key
    }

    fn sign_digest(&self, sha256_digest: &[u8; 32]) -> Result<Signature, SignError> {
        let sign_error = |reason: String| SignError { key: self.describe(), reason };
        let raw_signature = {
            let session = self.lock_session();
            session
                .sign(&Mechanism::Ecdsa, self.private_key, sha256_digest)
                .map_err(|error| sign_error(format!("C_Sign with CKM_ECDSA: {error}")))?
        };
        let signature = Signature::from_slice(&raw_signature).map_err(|_| {
            sign_error(format!(
                "the token returned {} bytes, expected a 64-byte r || s P-256 signature",
                raw_signature.len()
            ))
        })?;
        let signature = signature.normalize_s();
        // A token that signs with another key than the public key we read (a mismatched public
        // object) must fail here, not on a device.
        self.verifying_key.verify_prehash(sha256_digest, &signature).map_err(|_| {
            sign_error("the token's signature does not verify with the key's public key".to_string())
        })?;
        Ok(signature)
    }

    fn describe(&self) -> String {
        self.key_config.path_uri()
    }
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pkcs11Signer")
            .field("key", &self.key_config.path_uri())
            .field("module", &self.key_config.module_path)
            .finish_non_exhaustive()
    }
}

/// The DER encoding of the prime256v1 OID: `CKA_EC_PARAMS` of a P-256 key.
fn prime256v1_parameters() -> Vec<u8> {
    // Encoding a constant OID cannot fail; an empty value would make the token reject the
    // template with a clear error rather than produce a wrong key.
    PRIME256V1.to_der().unwrap_or_default()
}

fn check_curve_parameters(parameters: Option<&[u8]>) -> Result<(), String> {
    let Some(parameters) = parameters else {
        return Err("an EC key without CKA_EC_PARAMS".to_string());
    };
    match ObjectIdentifier::from_der(parameters) {
        Ok(curve) if curve == PRIME256V1 => Ok(()),
        Ok(curve) => Err(format!("an EC key on {}", describe_oid(&curve))),
        Err(_) => Err("an EC key with explicit or unrecognised curve parameters".to_string()),
    }
}

/// The public key: from the matching public-key object's `CKA_EC_POINT` (a DER OCTET STRING
/// around the SEC1 point, or the bare point on older modules), else from the private key's
/// `CKA_PUBLIC_KEY_INFO` (PKCS#11 3.0).
fn read_public_key(
    session: &Session,
    private_key: ObjectHandle,
    config: &Pkcs11KeyConfig,
) -> Result<VerifyingKey, Pkcs11Error> {
    let public_key_error = |reason: String| Pkcs11Error::PublicKey {
        token: config.token_label.clone(),
        key: config.describe_wanted_key(),
        reason,
    };
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    match (&config.key_id, &config.key_label) {
        (Some(id), _) => template.push(Attribute::Id(id.clone())),
        (None, Some(label)) => template.push(Attribute::Label(label.clone().into_bytes())),
        (None, None) => {}
    }
    let public_objects = session
        .find_objects(&template)
        .map_err(|error| public_key_error(format!("searching for the public key object failed: {error}")))?;
    if public_objects.len() > 1 {
        return Err(public_key_error(format!(
            "{} public key objects match; give the key a unique id",
            public_objects.len()
        )));
    }
    if let Some(public_object) = public_objects.first() {
        let attributes = session
            .get_attributes(*public_object, &[AttributeType::EcPoint])
            .map_err(|error| public_key_error(format!("reading CKA_EC_POINT failed: {error}")))?;
        for attribute in attributes {
            if let Attribute::EcPoint(point) = attribute {
                return verifying_key_from_ec_point(&point).map_err(public_key_error);
            }
        }
        return Err(public_key_error("the public key object has no CKA_EC_POINT".to_string()));
    }
    let attributes = session.get_attributes(private_key, &[AttributeType::PublicKeyInfo]).unwrap_or_default();
    for attribute in attributes {
        if let Attribute::PublicKeyInfo(der_bytes) = attribute
            && !der_bytes.is_empty()
        {
            return VerifyingKey::from_public_key_der(&der_bytes).map_err(|error| {
                public_key_error(format!("CKA_PUBLIC_KEY_INFO is not a P-256 key: {error}"))
            });
        }
    }
    Err(public_key_error(
        "no public key object with the same id or label, and no CKA_PUBLIC_KEY_INFO".to_string(),
    ))
}

/// Decodes `CKA_EC_POINT`: PKCS#11 says DER OCTET STRING wrapping the SEC1 point; some modules
/// return the bare point.
pub(crate) fn verifying_key_from_ec_point(bytes: &[u8]) -> Result<VerifyingKey, String> {
    if let Ok(octets) = <&OctetStringRef>::from_der(bytes)
        && let Ok(key) = VerifyingKey::from_sec1_bytes(octets.as_bytes())
    {
        return Ok(key);
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| {
        format!("CKA_EC_POINT ({} bytes) is neither a DER OCTET STRING nor a SEC1 P-256 point", bytes.len())
    })
}

fn token_error(config: &Pkcs11KeyConfig, operation: &str, error: &CryptokiError) -> Pkcs11Error {
    Pkcs11Error::Token {
        token: config.token_label.clone(),
        operation: operation.to_string(),
        reason: error.to_string(),
    }
}

fn find_token(module: &ModuleLease, config: &Pkcs11KeyConfig) -> Result<Slot, Pkcs11Error> {
    let module_error = |operation: &str, error: CryptokiError| Pkcs11Error::Module {
        path: config.module_path.clone(),
        operation: operation.to_string(),
        reason: error.to_string(),
    };
    let slots =
        module.context.get_slots_with_token().map_err(|error| module_error("list its slots", error))?;
    let mut labels_found = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = module
            .context
            .get_token_info(slot)
            .map_err(|error| module_error("read token information", error))?;
        if !info.token_initialized() {
            // SoftHSM2 and some HSMs keep a blank token in a spare slot; it holds no keys.
            continue;
        }
        let label = info.label().trim_end().to_string();
        let serial = info.serial_number().trim_end().to_string();
        let serial_matches = config.token_serial.as_ref().is_none_or(|wanted| *wanted == serial);
        if label == config.token_label && serial_matches {
            matching.push(slot);
        }
        labels_found.push(format!("{label:?} (serial {serial})"));
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(Pkcs11Error::TokenNotFound {
            path: config.module_path.clone(),
            label: config.token_label.clone(),
            serial: config
                .token_serial
                .as_ref()
                .map(|serial| format!(" with serial {serial:?}"))
                .unwrap_or_default(),
            found: if labels_found.is_empty() {
                "no initialised token".to_string()
            } else {
                format!("tokens {}", labels_found.join(", "))
            },
        }),
        several => Err(Pkcs11Error::TokenAmbiguous {
            path: config.module_path.clone(),
            label: config.token_label.clone(),
            count: several.len(),
        }),
    }
}

/// Logs the session in as the user, with exactly one PIN attempt.
fn log_in(
    module: &ModuleLease,
    slot: Slot,
    session: &Session,
    config: &Pkcs11KeyConfig,
) -> Result<(), Pkcs11Error> {
    let token = config.token_label.clone();
    // Login state is shared by all sessions of a process on one token: a second signer on a
    // token another signer already logged into must not ask for (or try) the PIN again.
    let already_logged_in = session
        .get_session_info()
        .is_ok_and(|info| matches!(info.session_state(), SessionState::RoUser | SessionState::RwUser));
    if already_logged_in {
        return Ok(());
    }
    let info =
        module.context.get_token_info(slot).map_err(|error| token_error(config, "read its flags", &error))?;
    if info.user_pin_locked() {
        return Err(Pkcs11Error::PinLocked { token });
    }
    if info.user_pin_final_try() {
        return Err(Pkcs11Error::PinFinalTry { token });
    }
    if info.user_pin_count_low() {
        tracing::warn!(token = %token, "token reports recent wrong PIN attempts (CKF_USER_PIN_COUNT_LOW)");
    }
    let outcome = if info.protected_authentication_path() {
        // PIN pad or biometric reader: the token asks the user itself.
        session.login(UserType::User, None)
    } else {
        let pin = read_pin(config)?;
        session.login(UserType::User, Some(&pin))
    };
    match outcome {
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CryptokiError::Pkcs11(RvError::PinIncorrect, _)) => Err(Pkcs11Error::WrongPin { token }),
        Err(CryptokiError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked { token }),
        Err(CryptokiError::Pkcs11(RvError::PinLenRange, _)) => Err(Pkcs11Error::Token {
            token,
            operation: "log in".to_string(),
            reason: format!(
                "the PIN's length is outside what the token accepts ({} to {} characters)",
                info.min_pin_length(),
                info.max_pin_length()
            ),
        }),
        Err(error) => Err(token_error(config, "log in", &error)),
    }
}

fn read_pin(config: &Pkcs11KeyConfig) -> Result<AuthPin, Pkcs11Error> {
    let token = config.token_label.clone();
    match &config.pin_source {
        PinSource::Environment { variable } => match std::env::var(variable) {
            Ok(pin) => Ok(AuthPin::from(pin)),
            Err(_) => Err(Pkcs11Error::PinVariableUnset { token, variable: variable.clone() }),
        },
        PinSource::File { path } => {
            let text = der::zeroize::Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| Pkcs11Error::PinFile {
                    token,
                    path: path.clone(),
                    source,
                })?,
            );
            Ok(AuthPin::from(text.trim_end_matches(['\r', '\n']).to_string()))
        }
        PinSource::Prompt => rpassword::prompt_password(format!("PIN for PKCS#11 token {token:?}: "))
            .map(AuthPin::from)
            .map_err(|error| Pkcs11Error::PinPrompt { token, reason: error.to_string() }),
    }
}

fn find_private_key(session: &Session, config: &Pkcs11KeyConfig) -> Result<ObjectHandle, Pkcs11Error> {
    let token = config.token_label.clone();
    let search_error = |error: CryptokiError| token_error(config, "search for the key", &error);
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &config.key_label {
        template.push(Attribute::Label(label.clone().into_bytes()));
    }
    if let Some(id) = &config.key_id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session.find_objects(&template).map_err(search_error)?;
    match found.as_slice() {
        [key] => Ok(*key),
        [] => {
            // Name what is there, so a typo in a label is obvious. Labels and ids are not secret.
            let keys =
                session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)]).map_err(search_error)?;
            let mut descriptions = Vec::new();
            for key in keys {
                let attributes = session
                    .get_attributes(key, &[AttributeType::Label, AttributeType::Id])
                    .unwrap_or_default();
                let mut label = String::new();
                let mut id = String::new();
                for attribute in attributes {
                    match attribute {
                        Attribute::Label(bytes) => label = String::from_utf8_lossy(&bytes).into_owned(),
                        Attribute::Id(bytes) => id = hex::encode(bytes),
                        _ => {}
                    }
                }
                descriptions.push(format!("{label:?} (id {id})"));
            }
            let found = if descriptions.is_empty() {
                "no private keys".to_string()
            } else {
                format!("private keys {}", descriptions.join(", "))
            };
            Err(Pkcs11Error::KeyNotFound { token, wanted: config.describe_wanted_key(), found })
        }
        several => Err(Pkcs11Error::KeyAmbiguous {
            token,
            wanted: config.describe_wanted_key(),
            count: several.len(),
        }),
    }
}

/// Modules loaded by this process, with how many leases each has.
static LOADED_MODULES: Mutex<BTreeMap<PathBuf, LoadedModule>> = Mutex::new(BTreeMap::new());

struct LoadedModule {
    context: Pkcs11,
    leases: usize,
    /// Whether we called C_Initialize (and so must call C_Finalize).
    initialized_here: bool,
}

/// A share in an initialised module; the last lease to go finalises it.
struct ModuleLease {
    key: PathBuf,
    context: Pkcs11,
}

impl ModuleLease {
    fn acquire(module_path: &Path) -> Result<ModuleLease, Pkcs11Error> {
        let module_error = |operation: &str, reason: String| Pkcs11Error::Module {
            path: module_path.to_path_buf(),
            operation: operation.to_string(),
            reason,
        };
        if !module_path.is_file() {
            return Err(Pkcs11Error::ModuleNotFound { path: module_path.to_path_buf() });
        }
        // One entry per library file, however it is spelled (symlinks, relative paths).
        let key = std::fs::canonicalize(module_path).unwrap_or_else(|_| module_path.to_path_buf());
        let mut modules = LOADED_MODULES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(loaded) = modules.get_mut(&key) {
            loaded.leases += 1;
            return Ok(ModuleLease { key, context: loaded.context.clone() });
        }
        let context = Pkcs11::new(&key).map_err(|error| module_error("load it", error.to_string()))?;
        let initialized_here = match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) => true,
            Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(error) => return Err(module_error("initialise it (C_Initialize)", error.to_string())),
        };
        modules.insert(key.clone(), LoadedModule { context: context.clone(), leases: 1, initialized_here });
        Ok(ModuleLease { key, context })
    }
}

impl Drop for ModuleLease {
    fn drop(&mut self) {
        let mut modules = LOADED_MODULES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(loaded) = modules.get_mut(&self.key) else {
            return;
        };
        loaded.leases -= 1;
        if loaded.leases > 0 {
            return;
        }
        if let Some(loaded) = modules.remove(&self.key)
            && loaded.initialized_here
            && let Err(error) = loaded.context.finalize()
        {
            tracing::warn!(module = %self.key.display(), "C_Finalize failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `uri` and compares with `expected` (or the error's text with `expected_error`).
    fn check(uri: &str, expected: Result<Pkcs11KeyConfig, &str>) {
        match (Pkcs11KeyConfig::from_uri(uri), expected) {
            (Ok(config), Ok(expected)) => {
                assert_eq!(config, expected, "{uri}");
                // The canonical form parses back to the same configuration.
                assert_eq!(
                    Pkcs11KeyConfig::from_uri(&config.to_uri()).unwrap(),
                    config,
                    "{}",
                    config.to_uri()
                );
            }
            (Err(error), Err(expected_text)) => {
                let message = error.to_string();
                assert!(message.contains(expected_text), "{uri}: {message}");
                assert!(!message.contains("1234"), "PIN in the message: {message}");
            }
            (outcome, expected) => panic!("{uri}: got {outcome:?}, expected {expected:?}"),
        }
    }

    fn config(label: Option<&str>, id: Option<&[u8]>, pin_source: PinSource) -> Pkcs11KeyConfig {
        Pkcs11KeyConfig {
            module_path: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token_label: "line 1".to_string(),
            token_serial: None,
            key_label: label.map(str::to_string),
            key_id: id.map(<[u8]>::to_vec),
            pin_source,
        }
    }

    #[test]
    fn uris_parse_into_key_configurations() {
        let module = "module-path=/usr/lib/softhsm/libsofthsm2.so";
        let env = PinSource::Environment { variable: "IMPRINT_PIN".to_string() };
        check(
            &format!(
                "pkcs11:token=line%201;object=update-signing;type=private?{module}&pin-source=env:IMPRINT_PIN"
            ),
            Ok(config(Some("update-signing"), None, env.clone())),
        );
        check(
            &format!("pkcs11:token=line%201;id=%01%A2%ff?{module}"),
            Ok(config(None, Some(&[0x01, 0xa2, 0xff]), PinSource::Prompt)),
        );
        check(
            &format!("PKCS11:object=a;b;token=line%201;id=%00?{module}&pin-source=file:/run/pin"),
            Err("path attribute \"b\" has no '='"),
        );
        check(
            &format!("pkcs11:token=line%201;object=k?{module}&pin-source=file:/run/pin"),
            Ok(config(Some("k"), None, PinSource::File { path: PathBuf::from("/run/pin") })),
        );
        check(&format!("pkcs11:token=t;object=k?{module}&pin-value=1234"), Err("pin-value is refused"));
        check(&format!("pkcs11:object=k?{module}"), Err("token= is missing"));
        check("pkcs11:token=t;object=k", Err("module-path= is missing"));
        check(&format!("pkcs11:token=t;object=k;type=cert?{module}"), Err("expected type=private"));
        check(&format!("pkcs11:token=t;slot-id=3?{module}"), Err("unsupported path attribute slot-id"));
        check(&format!("pkcs11:token=t;token=u?{module}"), Err("appears twice"));
        check(&format!("pkcs11:token=t;id=%4?{module}"), Err("two hex digits"));
        check(&format!("pkcs11:token=t?{module}&pin-source=env:"), Err("environment variable name"));
        check(
            &format!("pkcs11:token=t?{module}&pin-source=ask"),
            Err("expected env:VARIABLE, file:PATH or prompt"),
        );
        check("/etc/imprint/key.pem", Err("does not start with pkcs11:"));
    }

    #[test]
    fn a_pin_value_anywhere_in_the_uri_is_refused_and_never_repeated() {
        let module = "module-path=/usr/lib/softhsm/libsofthsm2.so";
        for uri in [
            format!("pkcs11:token=t;object=k?{module}&pin-value=73519"),
            format!("pkcs11:token=t;pin-value=73519;object=k?{module}"),
            format!("pkcs11:token=t;PIN-VALUE=73519?{module}"),
            "pkcs11:token=t;pin-value=73519".to_string(),
            // Refused for another reason first: the PIN must still not be repeated.
            format!("pkcs11:token=t;pin-value=73519;slot-id=3;b?{module}"),
        ] {
            let error = Pkcs11KeyConfig::from_uri(&uri).unwrap_err().to_string();
            assert!(!error.contains("73519"), "{uri}: the error repeats the PIN: {error}");
            assert!(error.contains("(redacted)"), "{uri}: {error}");
        }
        let error = Pkcs11KeyConfig::from_uri(&format!("pkcs11:token=t;pin-value=73519?{module}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("pin-value is refused"), "{error}");
    }

    #[test]
    fn canonical_uris_encode_what_needs_encoding() {
        let key = config(
            Some("a;b?c"),
            Some(&[0xab, 0x01]),
            PinSource::Environment { variable: "PIN".to_string() },
        );
        assert_eq!(
            key.to_uri(),
            "pkcs11:token=line%201;object=a%3Bb%3Fc;id=%AB%01;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN"
        );
    }

    #[test]
    fn ec_points_decode_wrapped_or_bare() {
        let signer = crate::trust::generate_signing_key();
        let verifying_key = signer.verifying_key();
        let point = verifying_key.to_sec1_point(false).as_bytes().to_vec();
        let wrapped = OctetStringRef::new(&point).unwrap().to_der().unwrap();
        assert_eq!(verifying_key_from_ec_point(&wrapped).unwrap(), verifying_key);
        assert_eq!(verifying_key_from_ec_point(&point).unwrap(), verifying_key);
        assert!(verifying_key_from_ec_point(&point[..40]).unwrap_err().contains("neither"));
    }
}
