//! The identity commands of a profile with a device identity (docs/device-contract.md,
//! section 6): make a key and a CSR on the device, sign a station challenge; their mailbox
//! layout, requests and responses.

#[allow(unused_imports)]
use super::*;

/// Size of the mailbox a profile with a device identity needs: the request, the report, the
/// identity parameters and the identity response (section 6 of the contract).
pub const IDENTITY_MAILBOX_SIZE_BYTES: usize = 1024;
/// Offset of the identity parameters the station writes with an identity request.
pub const IDENTITY_PARAMETERS_OFFSET_BYTES: usize = MAILBOX_SIZE_BYTES;
/// Size of the identity parameter area.
pub const IDENTITY_PARAMETERS_SIZE_BYTES: usize = 96;
/// Offset of the device's identity response.
pub const IDENTITY_RESPONSE_OFFSET_BYTES: usize =
    IDENTITY_PARAMETERS_OFFSET_BYTES + IDENTITY_PARAMETERS_SIZE_BYTES;
/// Size of the identity response header; its data follows.
pub const IDENTITY_RESPONSE_HEADER_SIZE_BYTES: usize = 24;
/// The most data an identity response carries (a CSR, a signature).
pub const IDENTITY_RESPONSE_DATA_CAPACITY_BYTES: usize =
    IDENTITY_MAILBOX_SIZE_BYTES - IDENTITY_RESPONSE_OFFSET_BYTES - IDENTITY_RESPONSE_HEADER_SIZE_BYTES;
/// Magic of the device's identity response ("IMPI").
pub const IDENTITY_RESPONSE_MAGIC: [u8; 4] = *b"IMPI";
/// The longest subject common name a make-key request carries (X.520 ub-common-name).
pub const IDENTITY_SUBJECT_CAPACITY_BYTES: usize = 64;
/// Size of the station's challenge.
pub const IDENTITY_CHALLENGE_SIZE_BYTES: usize = 32;
/// Size of a challenge signature: ECDSA P-256 `r || s`.
pub const IDENTITY_SIGNATURE_SIZE_BYTES: usize = 64;
/// What the device signs is `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)`, never the bare
/// challenge: the prefix keeps the mailbox from being an oracle that signs any digest (a TLS
/// handshake hash, say) with the device's identity key.
pub const IDENTITY_CHALLENGE_DOMAIN: &[u8] = b"IMPRINT-IDENTITY-CHALLENGE-V1";

/// Request command code: the self-test report only (the request's zero reserved bytes).
pub const COMMAND_SELF_TEST: u32 = 0;
/// Request command code: make a key pair and answer with a CSR.
pub const COMMAND_MAKE_KEY_AND_CSR: u32 = 1;
/// Request command code: sign the station's challenge with the identity key.
pub const COMMAND_SIGN_CHALLENGE: u32 = 2;

/// What the station asks the device to do with its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityCommand {
    /// Make a P-256 key pair, keep the private key where the station never writes (section 6.3),
    /// and answer with a PKCS#10 CSR (DER) whose subject is `CN=<subject_common_name>`.
    MakeKeyAndCsr {
        /// The common name the station will put into the certificate.
        subject_common_name: String,
    },
    /// Sign `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)` with the identity key and answer
    /// with the raw `r || s` signature.
    SignChallenge {
        /// Fresh random bytes from the station.
        challenge: [u8; IDENTITY_CHALLENGE_SIZE_BYTES],
    },
    /// Check a staged candidate as a download and store it on the update storage (section 9,
    /// `storage.rs`).
    StoreCandidate {
        /// The candidate (section 3.1's layout).
        candidate: Vec<u8>,
    },
    /// Keep a root of trust and/or entropy in write-once storage (section 8, `secrets.rs`).
    InjectRootOfTrust {
        /// The 16-byte root of trust, for a chip without a hardware one.
        root_of_trust: Option<crate::mbed_header::RootOfTrust>,
        /// 48 bytes of entropy, for a chip without a TRNG.
        entropy: Option<InjectedEntropy>,
    },
}

impl IdentityCommand {
    /// The command code in the request.
    pub fn code(&self) -> u32 {
        match self {
            IdentityCommand::MakeKeyAndCsr { .. } => COMMAND_MAKE_KEY_AND_CSR,
            IdentityCommand::SignChallenge { .. } => COMMAND_SIGN_CHALLENGE,
            IdentityCommand::InjectRootOfTrust { .. } => COMMAND_INJECT_ROOT_OF_TRUST,
            IdentityCommand::StoreCandidate { .. } => COMMAND_STORE_CANDIDATE,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            IdentityCommand::MakeKeyAndCsr { .. } => "make-key-and-csr",
            IdentityCommand::SignChallenge { .. } => "sign-challenge",
            IdentityCommand::InjectRootOfTrust { .. } => "inject-root-of-trust",
            IdentityCommand::StoreCandidate { .. } => "store-candidate",
        }
    }
}

/// An identity request: the mailbox request with a command code, plus its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMailboxRequest {
    /// Random per reset; the response must echo it.
    pub nonce: u32,
    /// What to do.
    pub command: IdentityCommand,
}

impl IdentityMailboxRequest {
    /// The whole mailbox image to write ([`IDENTITY_MAILBOX_SIZE_BYTES`]): the request with its
    /// command code, a zeroed report area, the parameters, a zeroed response area.
    pub fn encode_mailbox(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; IDENTITY_MAILBOX_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&REQUEST_MAGIC);
        bytes[4..8].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.command.code().to_le_bytes());
        let parameters = &mut bytes[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES];
        match &self.command {
            IdentityCommand::MakeKeyAndCsr { subject_common_name } => {
                // Longer names are cut here and refused by the device as bad parameters; the
                // profile check keeps names within the capacity.
                let name = subject_common_name.as_bytes();
                let length = name.len().min(IDENTITY_PARAMETERS_SIZE_BYTES - 4);
                parameters[0..4].copy_from_slice(&(name.len() as u32).to_le_bytes());
                parameters[4..4 + length].copy_from_slice(&name[..length]);
            }
            IdentityCommand::SignChallenge { challenge } => {
                parameters[..IDENTITY_CHALLENGE_SIZE_BYTES].copy_from_slice(challenge);
            }
            IdentityCommand::InjectRootOfTrust { root_of_trust, entropy } => {
                encode_injection_parameters(parameters, root_of_trust.as_ref(), entropy.as_ref());
            }
            IdentityCommand::StoreCandidate { candidate } => {
                encode_store_parameters(parameters, candidate);
                bytes.extend_from_slice(candidate);
            }
        }
        bytes
    }

    /// Reads the identity request a device finds in its mailbox at boot: `None` when there is
    /// none (no request magic, or command 0), `Some(Err(response))` with the refusal to write
    /// back when the command is unknown or its parameters are invalid.
    pub fn decode(mailbox: &[u8]) -> Option<Result<IdentityMailboxRequest, IdentityResponse>> {
        if mailbox.len() < 12 || mailbox[0..4] != REQUEST_MAGIC {
            return None;
        }
        let nonce = read_u32(mailbox, 4);
        let command_code = read_u32(mailbox, 8);
        if command_code == COMMAND_SELF_TEST {
            return None;
        }
        let refuse = |status| Some(Err(IdentityResponse::refusal(nonce, command_code, status)));
        let Some(parameters) = mailbox.get(IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES)
        else {
            return refuse(IdentityStatus::BadParameters);
        };
        let command = match command_code {
            COMMAND_MAKE_KEY_AND_CSR => {
                let length = read_u32(parameters, 0) as usize;
                if length == 0 || length > IDENTITY_SUBJECT_CAPACITY_BYTES {
                    return refuse(IdentityStatus::BadParameters);
                }
                match std::str::from_utf8(&parameters[4..4 + length]) {
                    Ok(name) => IdentityCommand::MakeKeyAndCsr { subject_common_name: name.to_string() },
                    Err(_) => return refuse(IdentityStatus::BadParameters),
                }
            }
            COMMAND_SIGN_CHALLENGE => {
                let mut challenge = [0u8; IDENTITY_CHALLENGE_SIZE_BYTES];
                challenge.copy_from_slice(&parameters[..IDENTITY_CHALLENGE_SIZE_BYTES]);
                IdentityCommand::SignChallenge { challenge }
            }
            COMMAND_STORE_CANDIDATE => match decode_store_request(mailbox, parameters) {
                Some(command) => command,
                None => return refuse(IdentityStatus::BadParameters),
            },
            COMMAND_INJECT_ROOT_OF_TRUST => match decode_injection_parameters(parameters) {
                Some(command) => command,
                None => return refuse(IdentityStatus::BadParameters),
            },
            _ => return refuse(IdentityStatus::UnsupportedCommand),
        };
        Some(Ok(IdentityMailboxRequest { nonce, command }))
    }
}

/// How the device answered an identity request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u32)]
pub enum IdentityStatus {
    /// Done; the data is the CSR or the signature.
    Done = 0,
    /// The firmware does not implement this command.
    UnsupportedCommand = 1,
    /// The parameters are invalid (subject name empty, too long, not UTF-8).
    BadParameters = 2,
    /// The device has no entropy source to make a key with.
    NoEntropy = 3,
    /// The device has no identity key (none in the store, none of its own).
    NoKey = 4,
    /// The device could not store its new private key.
    KeyStorageFailed = 5,
    /// The write-once storage already holds a root of trust or entropy: nothing was written.
    AlreadyInjected = 6,
    /// Command 4: the update client refused the candidate; the data is the update status.
    UpdateRefused = 7,
}

impl IdentityStatus {
    /// Every status, for decoding.
    pub const ALL: [IdentityStatus; 8] = [
        Self::Done,
        Self::UnsupportedCommand,
        Self::BadParameters,
        Self::NoEntropy,
        Self::NoKey,
        Self::KeyStorageFailed,
        Self::AlreadyInjected,
        Self::UpdateRefused,
    ];

    /// The numeric code in the response.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a status code.
    pub fn from_code(code: u32) -> Option<IdentityStatus> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }

    /// What the status means, for operator messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::UnsupportedCommand => "the firmware does not implement this identity command",
            Self::BadParameters => "the request's parameters are invalid",
            Self::NoEntropy => "the device has no entropy source to make a key with",
            Self::NoKey => "the device has no identity key",
            Self::KeyStorageFailed => "the device could not store its new private key",
            Self::UpdateRefused => "the device's update client refused the candidate",
            Self::AlreadyInjected => {
                "the device's write-once storage already holds a root of trust or entropy (a second write is refused)"
            }
        }
    }
}

/// The device's answer to an identity request (mailbox offset
/// [`IDENTITY_RESPONSE_OFFSET_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityResponse {
    /// The request's nonce.
    pub nonce: u32,
    /// The request's command code.
    pub command_code: u32,
    /// The outcome.
    pub status: IdentityStatus,
    /// The CSR (DER) or the `r || s` signature; empty on refusal.
    pub data: Vec<u8>,
}

impl IdentityResponse {
    /// A refusal without data.
    pub fn refusal(nonce: u32, command_code: u32, status: IdentityStatus) -> IdentityResponse {
        IdentityResponse { nonce, command_code, status, data: Vec::new() }
    }

    /// Encodes the response area; `None` when the data exceeds
    /// [`IDENTITY_RESPONSE_DATA_CAPACITY_BYTES`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.data.len() > IDENTITY_RESPONSE_DATA_CAPACITY_BYTES {
            return None;
        }
        let mut bytes = vec![0u8; IDENTITY_RESPONSE_HEADER_SIZE_BYTES];
        bytes[0..4].copy_from_slice(&IDENTITY_RESPONSE_MAGIC);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nonce.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.command_code.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.status.code().to_le_bytes());
        bytes[20..24].copy_from_slice(&(self.data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.data);
        Some(bytes)
    }

    /// Decodes the response area of a mailbox read back by the station; `None` when no response
    /// has been written (or the bytes are not one: wrong magic or version, unknown status, a
    /// data length past the mailbox).
    pub fn decode_mailbox(mailbox: &[u8]) -> Option<IdentityResponse> {
        let bytes = mailbox.get(IDENTITY_RESPONSE_OFFSET_BYTES..)?;
        if bytes.len() < IDENTITY_RESPONSE_HEADER_SIZE_BYTES
            || bytes[0..4] != IDENTITY_RESPONSE_MAGIC
            || read_u16(bytes, 4) != 1
        {
            return None;
        }
        let data_length = read_u32(bytes, 20) as usize;
        if data_length > IDENTITY_RESPONSE_DATA_CAPACITY_BYTES {
            return None;
        }
        let data = bytes
            .get(IDENTITY_RESPONSE_HEADER_SIZE_BYTES..IDENTITY_RESPONSE_HEADER_SIZE_BYTES + data_length)?;
        Some(IdentityResponse {
            nonce: read_u32(bytes, 8),
            command_code: read_u32(bytes, 12),
            status: IdentityStatus::from_code(read_u32(bytes, 16))?,
            data: data.to_vec(),
        })
    }
}

/// The digest the device signs for a challenge: `SHA-256(IDENTITY_CHALLENGE_DOMAIN || challenge)`.
pub fn identity_challenge_digest(challenge: &[u8; IDENTITY_CHALLENGE_SIZE_BYTES]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(IDENTITY_CHALLENGE_DOMAIN);
    hasher.update(challenge);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `command`, decodes it as the device would, and answers it; the station must read
    /// back exactly the answer.
    fn check(command: IdentityCommand, answer_status: IdentityStatus, answer_data: &[u8]) {
        let request = IdentityMailboxRequest { nonce: 0x1234_5679, command };
        let mut mailbox = request.encode_mailbox();
        assert_eq!(mailbox.len(), IDENTITY_MAILBOX_SIZE_BYTES);
        // The self-test request decoder still sees the nonce; the identity decoder the command.
        assert_eq!(MailboxRequest::decode(&mailbox), Some(MailboxRequest { nonce: request.nonce }));
        let decoded = IdentityMailboxRequest::decode(&mailbox).expect("an identity request").expect("valid");
        assert_eq!(decoded, request);
        assert_eq!(IdentityResponse::decode_mailbox(&mailbox), None, "no response before the device answers");
        let response = IdentityResponse {
            nonce: decoded.nonce,
            command_code: decoded.command.code(),
            status: answer_status,
            data: answer_data.to_vec(),
        };
        let encoded = response.encode().expect("fits");
        mailbox[IDENTITY_RESPONSE_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES + encoded.len()]
            .copy_from_slice(&encoded);
        assert_eq!(IdentityResponse::decode_mailbox(&mailbox), Some(response));
    }

    #[test]
    fn identity_requests_and_responses_round_trip() {
        check(
            IdentityCommand::MakeKeyAndCsr { subject_common_name: "DS1-000001".to_string() },
            IdentityStatus::Done,
            &[0x30; 300],
        );
        check(IdentityCommand::SignChallenge { challenge: [7; 32] }, IdentityStatus::Done, &[1; 64]);
        check(IdentityCommand::SignChallenge { challenge: [0; 32] }, IdentityStatus::NoKey, &[]);
        check(
            IdentityCommand::MakeKeyAndCsr { subject_common_name: "x".repeat(64) },
            IdentityStatus::Done,
            &vec![0xAB; IDENTITY_RESPONSE_DATA_CAPACITY_BYTES],
        );
        let too_much = IdentityResponse {
            nonce: 1,
            command_code: COMMAND_SIGN_CHALLENGE,
            status: IdentityStatus::Done,
            data: vec![0; IDENTITY_RESPONSE_DATA_CAPACITY_BYTES + 1],
        };
        assert_eq!(too_much.encode(), None);
    }

    #[test]
    fn bad_identity_requests_are_refused_with_a_status() {
        let refusal = |mailbox: &[u8]| match IdentityMailboxRequest::decode(mailbox) {
            Some(Err(response)) => Some(response.status),
            _ => None,
        };
        let mut unknown = MailboxRequest { nonce: 5 }.encode_mailbox();
        unknown.resize(IDENTITY_MAILBOX_SIZE_BYTES, 0);
        assert_eq!(IdentityMailboxRequest::decode(&unknown), None, "command 0 is the self-test");
        unknown[8] = 9;
        assert_eq!(refusal(&unknown), Some(IdentityStatus::UnsupportedCommand));
        let long_name = IdentityMailboxRequest {
            nonce: 5,
            command: IdentityCommand::MakeKeyAndCsr { subject_common_name: "y".repeat(65) },
        };
        assert_eq!(refusal(&long_name.encode_mailbox()), Some(IdentityStatus::BadParameters));
        let mut empty_name = long_name.encode_mailbox();
        empty_name[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_PARAMETERS_OFFSET_BYTES + 4].fill(0);
        assert_eq!(refusal(&empty_name), Some(IdentityStatus::BadParameters));
        // A mailbox too small for the parameters: the device answers as best it can.
        let short = &long_name.encode_mailbox()[..MAILBOX_SIZE_BYTES];
        assert_eq!(refusal(short), Some(IdentityStatus::BadParameters));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// The device decodes whatever RAM holds, and the station whatever the device wrote:
        /// neither decoder may panic or read past the mailbox.
        #[test]
        fn identity_decoders_never_panic(
            mailbox in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1100),
            command in 0u32..4,
            name_length in 0u32..200,
        ) {
            let _ = IdentityMailboxRequest::decode(&mailbox);
            let _ = IdentityResponse::decode_mailbox(&mailbox);
            // The same bytes with a request header and a plausible command and name length.
            let mut shaped = mailbox.clone();
            shaped.resize(shaped.len().max(IDENTITY_RESPONSE_OFFSET_BYTES + 24), 0);
            shaped[0..4].copy_from_slice(&REQUEST_MAGIC);
            shaped[8..12].copy_from_slice(&command.to_le_bytes());
            shaped[IDENTITY_PARAMETERS_OFFSET_BYTES..IDENTITY_PARAMETERS_OFFSET_BYTES + 4]
                .copy_from_slice(&name_length.to_le_bytes());
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES..IDENTITY_RESPONSE_OFFSET_BYTES + 4]
                .copy_from_slice(&IDENTITY_RESPONSE_MAGIC);
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES + 4] = 1;
            shaped[IDENTITY_RESPONSE_OFFSET_BYTES + 5] = 0;
            let _ = IdentityMailboxRequest::decode(&shaped);
            let _ = IdentityResponse::decode_mailbox(&shaped);
            let _ = crate::trust::verify_certificate_request(&mailbox);
        }
    }

    #[test]
    fn the_challenge_digest_is_domain_separated() {
        let challenge = [0x5A; 32];
        let mut message = IDENTITY_CHALLENGE_DOMAIN.to_vec();
        message.extend_from_slice(&challenge);
        let expected: [u8; 32] = Sha256::digest(&message).into();
        assert_eq!(identity_challenge_digest(&challenge), expected);
        assert_ne!(identity_challenge_digest(&challenge), <[u8; 32]>::from(Sha256::digest(challenge)));
    }
}
