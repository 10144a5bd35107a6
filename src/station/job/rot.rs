//! The `inject-root-of-trust` step (docs/device-contract.md, section 8): for a chip the profile
//! says lacks a hardware root of trust or a TRNG, the station draws a fresh 16-byte root of trust
//! and 48 bytes of entropy from the host's random source and hands them to the application
//! (mailbox command 3), which keeps them in write-once storage and answers with a commitment to
//! the root of trust it stored; the station checks the commitment against its own.
//!
//! The root of trust exists in the station only in this step's memory: it is never logged, never
//! in an event, the ledger or an export. The record says `injected: yes` and carries the
//! commitment `SHA-256("IMPRINT-ROT-COMMITMENT-V1" || RoT)`.
//!
//! Rework: the device refuses a second injection (`already-injected`) and writes nothing. A root
//! of trust is never replaced (what the device stored under it, such as the external headers of
//! its update storage, would stop authenticating), so for a chip the ledger has seen before the
//! step passes and records that the device kept the root of trust it was first given. For a chip
//! the ledger has never seen, a device that already holds one is not what the station expects,
//! and the step fails.

use serde_json::json;

use super::{StepFailure, StepResult, UnitJob};
use crate::contract::{self, IdentityCommand, IdentityStatus, InjectedEntropy};
use crate::mbed_header::RootOfTrust;

impl UnitJob<'_> {
    pub(super) fn inject_root_of_trust(&mut self) -> StepResult {
        let hardware = self.profile().device_hardware;
        let root_of_trust = (!hardware.has_hardware_root_of_trust)
            .then(|| fresh_bytes::<{ contract::ROOT_OF_TRUST_SIZE_BYTES }>().map(RootOfTrust::new))
            .transpose()?;
        let entropy = (!hardware.has_trng)
            .then(|| fresh_bytes::<{ contract::INJECTED_ENTROPY_SIZE_BYTES }>().map(InjectedEntropy))
            .transpose()?;
        let commitment = root_of_trust.as_ref().map(contract::root_of_trust_commitment);
        let what = |injected: &str| {
            json!({
                "root_of_trust": if root_of_trust.is_some() { injected } else { "hardware" },
                "entropy": if entropy.is_some() { injected } else { "hardware-trng" },
            })
        };
        let response = self.mailbox_exchange(IdentityCommand::InjectRootOfTrust {
            root_of_trust: root_of_trust.clone(),
            entropy: entropy.clone(),
        })?;
        match response.status {
            IdentityStatus::Done => {
                if let Some(commitment) = commitment
                    && response.data != commitment
                {
                    return Err(StepFailure(
                        "the device's commitment to its root of trust is not the one injected: it did not store what was sent"
                            .to_string(),
                    ));
                }
                let mut detail = what("yes");
                if let Some(commitment) = commitment {
                    detail["root_of_trust_commitment_sha256"] = json!(hex::encode(commitment));
                }
                Ok(detail)
            }
            IdentityStatus::AlreadyInjected if self.facts.seen_before == Some(true) => {
                let mut detail = what("kept");
                detail["reason"] = json!(
                    "the device refused a second write to its write-once storage (already-injected); a reworked unit keeps what it was first given"
                );
                Ok(detail)
            }
            IdentityStatus::AlreadyInjected => Err(StepFailure(
                "the device's write-once storage already holds a root of trust or entropy, though the ledger has never seen this chip: it refused the injection (already-injected)"
                    .to_string(),
            )),
            status => Err(StepFailure(format!(
                "the device refused inject-root-of-trust: {} (identity status {})",
                status.describe(),
                status.code()
            ))),
        }
    }
}

fn fresh_bytes<const N: usize>() -> Result<[u8; N], StepFailure> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| StepFailure(format!("no randomness for the root of trust or entropy: {error}")))?;
    Ok(bytes)
}
