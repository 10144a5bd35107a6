//! The identity commands of `docs/device-contract.md` section 6, device side: the request the
//! station leaves in the mailbox (6.1), the response the application writes back, the
//! station-made key from the config store (`mbed.BootstrapDevicePrivateKey`, PKCS#8 DER) and the
//! challenge signature (6.4). Mirrors the station's `src/contract.rs` (`IdentityMailboxRequest`,
//! `IdentityResponse`, `identity_challenge_digest`) and the simulated device
//! (`src/device/sim/device.rs`).
//!
//! This board has no entropy source (QEMU's `mps2-an385` emulates no TRNG), so command 1
//! (make a key and a CSR) is always answered with status 3, no-entropy: a key made without
//! entropy would be predictable (6.2). Command 2 signs with the station-made key only; there is
//! never a device-made key here. The signature is ECDSA P-256 over SHA-256 with the RFC 6979
//! deterministic nonce (no entropy needed), `s` normalised to the low half as the station's
//! software signer does, so device and simulated device give the same 64 bytes.
//!
//! The private key never leaves this module: it is read from the store, used once and dropped
//! (the `SigningKey` zeroizes itself); nothing here prints or reports it.

use der::asn1::{BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Sequence};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

use crate::contract::REQUEST_MAGIC;
use crate::store::{ConfigStore, keys, read_u32};

/// Offset of the identity parameters the station writes with an identity request.
pub const PARAMETERS_OFFSET_BYTES: usize = 256;
/// Size of the identity parameter area.
pub const PARAMETERS_SIZE_BYTES: usize = 96;
/// Offset of the identity response.
pub const RESPONSE_OFFSET_BYTES: usize = PARAMETERS_OFFSET_BYTES + PARAMETERS_SIZE_BYTES;
/// Size of the response header; the data follows.
pub const RESPONSE_HEADER_SIZE_BYTES: usize = 24;
/// Magic of the identity response ("IMPI").
pub const RESPONSE_MAGIC: [u8; 4] = *b"IMPI";
/// Size of the station's challenge.
pub const CHALLENGE_SIZE_BYTES: usize = 32;
/// Size of a challenge signature: `r || s`.
pub const SIGNATURE_SIZE_BYTES: usize = 64;
/// What is signed is `SHA-256(CHALLENGE_DOMAIN || challenge)` (contract 6.4).
pub const CHALLENGE_DOMAIN: &[u8] = b"IMPRINT-IDENTITY-CHALLENGE-V1";
/// The longest subject name a make-key request may carry.
pub const SUBJECT_CAPACITY_BYTES: usize = 64;

/// Command code: the self-test report only.
pub const COMMAND_SELF_TEST: u32 = 0;
/// Command code: make a key pair and answer with a CSR.
pub const COMMAND_MAKE_KEY_AND_CSR: u32 = 1;
/// Command code: sign the station's challenge.
pub const COMMAND_SIGN_CHALLENGE: u32 = 2;

/// The response statuses (contract 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum IdentityStatus {
    /// The data is the answer.
    Done = 0,
    /// The firmware does not implement this command.
    UnsupportedCommand = 1,
    /// The parameters are invalid.
    BadParameters = 2,
    /// No entropy source to make a key with.
    NoEntropy = 3,
    /// No identity key.
    NoKey = 4,
}

/// A decoded identity request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCommand {
    /// Command 1 (its subject name is checked, then refused: no entropy on this board).
    MakeKeyAndCsr,
    /// Command 2 with its challenge.
    SignChallenge([u8; CHALLENGE_SIZE_BYTES]),
}

/// What the mailbox asks for: `None` when there is no identity request (no request magic, or
/// command 0); `Some((nonce, command code, Ok(command)))`, or `Err(status)` for a request to
/// refuse (unknown command, bad parameters). `mailbox` is the whole 1 KiB mailbox.
pub fn decode_request(mailbox: &[u8]) -> Option<(u32, u32, Result<IdentityCommand, IdentityStatus>)> {
    if mailbox.len() < 12 || mailbox[0..4] != REQUEST_MAGIC {
        return None;
    }
    let nonce = read_u32(mailbox, 4);
    let command_code = read_u32(mailbox, 8);
    if command_code == COMMAND_SELF_TEST {
        return None;
    }
    let Some(parameters) = mailbox.get(PARAMETERS_OFFSET_BYTES..RESPONSE_OFFSET_BYTES) else {
        return Some((nonce, command_code, Err(IdentityStatus::BadParameters)));
    };
    let command = match command_code {
        COMMAND_MAKE_KEY_AND_CSR => {
            let length = read_u32(parameters, 0) as usize;
            if length == 0
                || length > SUBJECT_CAPACITY_BYTES
                || core::str::from_utf8(&parameters[4..4 + length]).is_err()
            {
                Err(IdentityStatus::BadParameters)
            } else {
                Ok(IdentityCommand::MakeKeyAndCsr)
            }
        }
        COMMAND_SIGN_CHALLENGE => {
            let mut challenge = [0u8; CHALLENGE_SIZE_BYTES];
            challenge.copy_from_slice(&parameters[..CHALLENGE_SIZE_BYTES]);
            Ok(IdentityCommand::SignChallenge(challenge))
        }
        _ => Err(IdentityStatus::UnsupportedCommand),
    };
    Some((nonce, command_code, command))
}

/// Answers a decoded command: `(status, signature)`; the signature is meaningful only with
/// [`IdentityStatus::Done`].
pub fn answer(
    command: IdentityCommand,
    store: Option<&ConfigStore<'_>>,
) -> (IdentityStatus, [u8; SIGNATURE_SIZE_BYTES]) {
    match command {
        // No TRNG on this board: never make a predictable key (contract 6.2).
        IdentityCommand::MakeKeyAndCsr => (IdentityStatus::NoEntropy, [0; SIGNATURE_SIZE_BYTES]),
        IdentityCommand::SignChallenge(challenge) => {
            match store.and_then(station_key).and_then(|key| sign_challenge(&key, &challenge)) {
                Some(signature) => (IdentityStatus::Done, signature),
                None => (IdentityStatus::NoKey, [0; SIGNATURE_SIZE_BYTES]),
            }
        }
    }
}

/// The response header (24 bytes) for `data_length` bytes of data.
pub fn encode_response_header(
    nonce: u32,
    command_code: u32,
    status: IdentityStatus,
    data_length: usize,
) -> [u8; RESPONSE_HEADER_SIZE_BYTES] {
    let mut bytes = [0u8; RESPONSE_HEADER_SIZE_BYTES];
    bytes[0..4].copy_from_slice(&RESPONSE_MAGIC);
    bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
    bytes[8..12].copy_from_slice(&nonce.to_le_bytes());
    bytes[12..16].copy_from_slice(&command_code.to_le_bytes());
    bytes[16..20].copy_from_slice(&(status as u32).to_le_bytes());
    bytes[20..24].copy_from_slice(&(data_length as u32).to_le_bytes());
    bytes
}

/// `SHA-256(CHALLENGE_DOMAIN || challenge)`.
pub fn challenge_digest(challenge: &[u8; CHALLENGE_SIZE_BYTES]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(CHALLENGE_DOMAIN);
    hasher.update(challenge);
    hasher.finalize().into()
}

/// Signs the challenge's digest: raw `r || s`, low `s`.
pub fn sign_challenge(
    key: &SigningKey,
    challenge: &[u8; CHALLENGE_SIZE_BYTES],
) -> Option<[u8; SIGNATURE_SIZE_BYTES]> {
    let signature: Signature = key.sign_prehash(&challenge_digest(challenge)).ok()?;
    let mut bytes = [0u8; SIGNATURE_SIZE_BYTES];
    bytes.copy_from_slice(&signature.normalize_s().to_bytes());
    Some(bytes)
}

/// The station-made identity key from the store (`mbed.BootstrapDevicePrivateKey`), `None`
/// when absent or not a P-256 PKCS#8 key.
pub fn station_key(store: &ConfigStore<'_>) -> Option<SigningKey> {
    decode_pkcs8_p256(store.get(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY)?.value)
}

/// id-ecPublicKey.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 (secp256r1).
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// `AlgorithmIdentifier` with a named-curve parameter.
#[derive(Sequence)]
struct EcAlgorithmIdentifier {
    algorithm: ObjectIdentifier,
    curve: ObjectIdentifier,
}

/// PKCS#8 `PrivateKeyInfo` (RFC 5208 / 5958) as the station writes it: version, algorithm and
/// the private key; a v2 (`OneAsymmetricKey`) public key is accepted, attributes are not used.
#[derive(Sequence)]
struct PrivateKeyInfo<'a> {
    version: u8,
    algorithm: EcAlgorithmIdentifier,
    private_key: &'a OctetStringRef,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    public_key: Option<BitStringRef<'a>>,
}

/// SEC1 `ECPrivateKey` (RFC 5915), the PKCS#8 private key's content.
#[derive(Sequence)]
struct EcPrivateKey<'a> {
    version: u8,
    private_key: &'a OctetStringRef,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    parameters: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<BitStringRef<'a>>,
}

/// Decodes a P-256 PKCS#8 key (strict DER): id-ecPublicKey on prime256v1, an `ECPrivateKey`
/// of version 1 with a 32-byte scalar in range, a named curve (when given) of P-256, and a
/// public key (when given) that is the scalar's — the checks of the station's decoder.
pub fn decode_pkcs8_p256(der_bytes: &[u8]) -> Option<SigningKey> {
    let info = PrivateKeyInfo::from_der(der_bytes).ok()?;
    if info.version > 1 || info.algorithm.algorithm != ID_EC_PUBLIC_KEY || info.algorithm.curve != PRIME256V1
    {
        return None;
    }
    let inner = EcPrivateKey::from_der(info.private_key.as_bytes()).ok()?;
    if inner.version != 1 || inner.parameters.is_some_and(|curve| curve != PRIME256V1) {
        return None;
    }
    let key = SigningKey::from_slice(inner.private_key.as_bytes()).ok()?;
    for public_key in [inner.public_key, info.public_key].into_iter().flatten() {
        let point = public_key.as_bytes()?;
        let encoded = key.verifying_key().to_sec1_point(point.first() != Some(&0x04));
        if encoded.as_bytes() != point {
            return None;
        }
    }
    Some(key)
}
