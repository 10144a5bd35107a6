//! The simulated device's write-once storage (SOTP, as PAL's software one-time-programmable
//! area) and its root of trust (docs/device-contract.md, section 8).
//!
//! A chip with a hardware root of trust derives it from silicon (the simulator: from the unique
//! ID); one without gets it from the station through the identity mailbox (command 3) and keeps
//! it, with the injected entropy, in SOTP. Each SOTP item is written once: a second injection is
//! refused as a whole (`already-injected`) and writes nothing. The area is not mapped for debug
//! reads (the station can never read the root of trust back); only a mass erase, which wipes the
//! internal flash it would live in on a real part, clears it.

use sha2::{Digest, Sha256};

use crate::contract::{self, IdentityStatus, InjectedEntropy};
use crate::mbed_header::RootOfTrust;

use super::device::SimDevice;

/// What the write-once area holds.
#[derive(Clone, Default)]
pub(super) struct SotpArea {
    root_of_trust: Option<RootOfTrust>,
    entropy: Option<InjectedEntropy>,
}

/// The domain of the simulated hardware root of trust (derived from the unique ID).
const HARDWARE_ROOT_OF_TRUST_DOMAIN: &[u8] = b"imprint-sim-hardware-rot";

impl SimDevice {
    /// The device's root of trust: the hardware one when the chip has it, else the injected
    /// one (`None` before an injection).
    pub(super) fn root_of_trust(&self) -> Option<RootOfTrust> {
        if self.hardware.has_hardware_root_of_trust {
            let digest = Sha256::new()
                .chain_update(HARDWARE_ROOT_OF_TRUST_DOMAIN)
                .chain_update(&self.unique_id)
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            return Some(RootOfTrust::new(bytes));
        }
        self.sotp.root_of_trust.clone()
    }

    /// The root of trust in the write-once area, as an attacker with the chip on a bench would
    /// read it (tests look for these bytes where the station must never put them).
    pub fn injected_root_of_trust(&self) -> Option<RootOfTrust> {
        self.sotp.root_of_trust.clone()
    }

    /// Whether the device has a seed for its random numbers: a TRNG, or injected entropy.
    pub fn has_entropy(&self) -> bool {
        self.hardware.has_trng || self.sotp.entropy.is_some()
    }

    /// The commitment to the device's root of trust (what the station may see of it; for tests).
    pub fn root_of_trust_commitment(&self) -> Option<[u8; 32]> {
        self.root_of_trust().as_ref().map(contract::root_of_trust_commitment)
    }

    /// Command 3: keeps the root of trust and entropy, each at most once. Refuses the whole
    /// request when any item it carries is already there; answers with the commitment to the
    /// root of trust it now holds (empty when the request carried none).
    pub(super) fn inject_secrets(
        &mut self,
        root_of_trust: &Option<RootOfTrust>,
        entropy: &Option<InjectedEntropy>,
    ) -> Result<Vec<u8>, IdentityStatus> {
        if (root_of_trust.is_some() && self.sotp.root_of_trust.is_some())
            || (entropy.is_some() && self.sotp.entropy.is_some())
        {
            return Err(IdentityStatus::AlreadyInjected);
        }
        if let Some(root_of_trust) = root_of_trust {
            self.sotp.root_of_trust = Some(root_of_trust.clone());
        }
        if let Some(entropy) = entropy {
            self.sotp.entropy = Some(entropy.clone());
        }
        Ok(root_of_trust
            .as_ref()
            .map(|rot| contract::root_of_trust_commitment(rot).to_vec())
            .unwrap_or_default())
    }

    /// A mass erase wipes the write-once area with the rest of internal flash.
    pub(super) fn wipe_sotp(&mut self) {
        self.sotp = SotpArea::default();
    }
}
