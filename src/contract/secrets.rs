//! Root-of-trust and entropy injection (docs/device-contract.md, section 8): for chips without a
//! hardware root of trust or a TRNG, the station hands the application a fresh 16-byte root of
//! trust and 48 bytes of entropy through the identity mailbox (command 3), which it keeps in
//! write-once storage (SOTP). A second injection is refused (`already-injected`): the root of
//! trust keys everything the device has stored with it (the external headers of its update
//! storage), so it is never replaced.
//!
//! The device answers with a **commitment** to the root of trust it stored,
//! `SHA-256("IMPRINT-ROT-COMMITMENT-V1" || RoT)`: the station compares it with its own (proof
//! that the device stored what was sent) and records only the commitment, never the bytes.

#[allow(unused_imports)]
use super::*;

use crate::mbed_header::RootOfTrust;

/// Request command code: inject a root of trust and/or entropy.
pub const COMMAND_INJECT_ROOT_OF_TRUST: u32 = 3;
/// Size of the injected entropy (PAL's `PAL_PLATFORM_MAX_ENTROPY` / the FCC's `Entropy`).
pub const INJECTED_ENTROPY_SIZE_BYTES: usize = 48;
/// Size of the root of trust.
pub const ROOT_OF_TRUST_SIZE_BYTES: usize = 16;
/// The parameters' flag for "a root of trust follows".
const FLAG_ROOT_OF_TRUST: u32 = 1;
/// The parameters' flag for "entropy follows".
const FLAG_ENTROPY: u32 = 2;
/// Where the root of trust sits in the parameters (after the flags).
const ROOT_OF_TRUST_OFFSET: usize = 4;
/// Where the entropy sits in the parameters.
const ENTROPY_OFFSET: usize = ROOT_OF_TRUST_OFFSET + ROOT_OF_TRUST_SIZE_BYTES;
/// The domain of the commitment hash.
pub const ROOT_OF_TRUST_COMMITMENT_DOMAIN: &[u8] = b"IMPRINT-ROT-COMMITMENT-V1";

/// 48 bytes of entropy for a device without a TRNG. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct InjectedEntropy(pub [u8; INJECTED_ENTROPY_SIZE_BYTES]);

impl std::fmt::Debug for InjectedEntropy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("InjectedEntropy(<redacted>)")
    }
}

/// The commitment the device answers with, and the station records.
pub fn root_of_trust_commitment(root_of_trust: &RootOfTrust) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ROOT_OF_TRUST_COMMITMENT_DOMAIN);
    hasher.update(root_of_trust.expose_bytes());
    hasher.finalize().into()
}

/// Writes the injection parameters: flags (u32), RoT (16 bytes), entropy (48 bytes).
pub(super) fn encode_injection_parameters(
    parameters: &mut [u8],
    root_of_trust: Option<&RootOfTrust>,
    entropy: Option<&InjectedEntropy>,
) {
    let mut flags = 0;
    if let Some(root_of_trust) = root_of_trust {
        flags |= FLAG_ROOT_OF_TRUST;
        parameters[ROOT_OF_TRUST_OFFSET..ENTROPY_OFFSET].copy_from_slice(root_of_trust.expose_bytes());
    }
    if let Some(entropy) = entropy {
        flags |= FLAG_ENTROPY;
        parameters[ENTROPY_OFFSET..ENTROPY_OFFSET + INJECTED_ENTROPY_SIZE_BYTES].copy_from_slice(&entropy.0);
    }
    parameters[0..4].copy_from_slice(&u32::to_le_bytes(flags));
}

/// Reads the injection parameters; `None` when the flags are unknown or empty.
pub(super) fn decode_injection_parameters(parameters: &[u8]) -> Option<IdentityCommand> {
    let flags = read_u32(parameters, 0);
    if flags == 0 || flags & !(FLAG_ROOT_OF_TRUST | FLAG_ENTROPY) != 0 {
        return None;
    }
    let root_of_trust = (flags & FLAG_ROOT_OF_TRUST != 0).then(|| {
        let mut bytes = [0u8; ROOT_OF_TRUST_SIZE_BYTES];
        bytes.copy_from_slice(&parameters[ROOT_OF_TRUST_OFFSET..ENTROPY_OFFSET]);
        RootOfTrust::new(bytes)
    });
    let entropy = (flags & FLAG_ENTROPY != 0).then(|| {
        let mut bytes = [0u8; INJECTED_ENTROPY_SIZE_BYTES];
        bytes.copy_from_slice(&parameters[ENTROPY_OFFSET..ENTROPY_OFFSET + INJECTED_ENTROPY_SIZE_BYTES]);
        InjectedEntropy(bytes)
    });
    Some(IdentityCommand::InjectRootOfTrust { root_of_trust, entropy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_requests_round_trip_and_never_print_their_secrets() {
        for (root_of_trust, entropy) in [
            (Some(RootOfTrust::new([0xA7; 16])), Some(InjectedEntropy([0x5C; 48]))),
            (Some(RootOfTrust::new([0xA7; 16])), None),
            (None, Some(InjectedEntropy([0x5C; 48]))),
        ] {
            let request = IdentityMailboxRequest {
                nonce: 77,
                command: IdentityCommand::InjectRootOfTrust { root_of_trust, entropy },
            };
            let mailbox = request.encode_mailbox();
            assert_eq!(IdentityMailboxRequest::decode(&mailbox), Some(Ok(request.clone())));
            let printed = format!("{request:?}");
            assert!(!printed.contains("167") && !printed.to_lowercase().contains("a7"), "{printed}");
            assert!(!printed.contains("92") && !printed.to_lowercase().contains("5c"), "{printed}");
        }
        let mut no_flags = IdentityMailboxRequest {
            nonce: 1,
            command: IdentityCommand::InjectRootOfTrust { root_of_trust: None, entropy: None },
        }
        .encode_mailbox();
        assert_eq!(
            IdentityMailboxRequest::decode(&no_flags).and_then(Result::err).map(|response| response.status),
            Some(IdentityStatus::BadParameters)
        );
        no_flags[IDENTITY_PARAMETERS_OFFSET_BYTES] = 4;
        assert!(matches!(IdentityMailboxRequest::decode(&no_flags), Some(Err(_))));
    }

    #[test]
    fn the_commitment_is_domain_separated() {
        let root_of_trust = RootOfTrust::new([1; 16]);
        let mut message = ROOT_OF_TRUST_COMMITMENT_DOMAIN.to_vec();
        message.extend_from_slice(&[1; 16]);
        assert_eq!(root_of_trust_commitment(&root_of_trust), <[u8; 32]>::from(Sha256::digest(&message)));
    }
}
