//! The pipeline's steps as data: their order, their names in events, records and profiles, and
//! which profiles they apply to. The job runs them ([`super::job`]); events carry them typed
//! ([`super::events`]) and serialize them by name, so the JSON stream keeps its strings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::profile::{KeyOrigin, Profile, SkippableStep};

/// The pipeline's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepName {
    /// Attach to the chip (and unlock a locked one by mass erase, when the profile allows).
    Connect,
    /// Read the unique ID; look the chip up in the ledger.
    Identify,
    /// The ledger's verdict before anything is written to the unit: a returning chip the rework
    /// policy refuses, or a scanned serial label issued to another unit, stops here.
    CheckIdentity,
    /// Erase the sectors the images go to.
    Erase,
    /// Program the bootloader image.
    ProgramBootloader,
    /// Program the application image.
    ProgramApplication,
    /// Read back every programmed range and compare hashes.
    VerifyFlash,
    /// Chips without a hardware root of trust or TRNG: hand the application a fresh root of
    /// trust and entropy for its write-once storage (device contract, section 8).
    InjectRootOfTrust,
    /// Allocate (or reuse) the serial number and device ID in the ledger.
    AllocateIdentity,
    /// Device-made identity keys only: the device makes its key pair and hands over a CSR,
    /// whose signature is checked.
    DeviceKey,
    /// Issue the unit's identity certificate from the factory CA (for a key the station makes
    /// now, or the device's key from its CSR).
    IssueIdentity,
    /// Profiles with `[fcc]`: send the unit's identity, certificates and key to the device's
    /// Factory Configurator Client in one bundle; its `ReturnStatus` decides.
    FccInject,
    /// Build the config store and write it to the config region.
    WriteConfig,
    /// Read the config store back and decode it.
    VerifyConfig,
    /// Check the identity as the device-side verification does (chain, validity, subject) and
    /// that the device holds the key: it signs a fresh challenge that verifies with the
    /// certificate.
    VerifyIdentity,
    /// Stage a signed update, reset, and check the device's report.
    SelfTest,
    /// Stage forged updates and check that each is refused.
    NegativeSelfTest,
    /// Enable readout/debug protection.
    Lock,
    /// Prove that a debug read now fails.
    VerifyLock,
    /// Commit the run to the ledger.
    Record,
}

impl StepName {
    /// Every step in pipeline order. The identity steps run only for profiles with a
    /// `[device_identity]` (and `device-key` only for device-made keys); for other profiles
    /// they are not part of the pipeline at all (not recorded as skipped).
    pub const ALL: [StepName; 20] = [
        StepName::Connect,
        StepName::Identify,
        StepName::CheckIdentity,
        StepName::Erase,
        StepName::ProgramBootloader,
        StepName::ProgramApplication,
        StepName::VerifyFlash,
        StepName::InjectRootOfTrust,
        StepName::AllocateIdentity,
        StepName::DeviceKey,
        StepName::IssueIdentity,
        StepName::FccInject,
        StepName::WriteConfig,
        StepName::VerifyConfig,
        StepName::VerifyIdentity,
        StepName::SelfTest,
        StepName::NegativeSelfTest,
        StepName::Lock,
        StepName::VerifyLock,
        StepName::Record,
    ];

    /// The step's name in events, records and profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Connect => "connect",
            StepName::Identify => "identify",
            StepName::CheckIdentity => "check-identity",
            StepName::Erase => "erase",
            StepName::ProgramBootloader => "program-bootloader",
            StepName::ProgramApplication => "program-application",
            StepName::VerifyFlash => "verify-flash",
            StepName::InjectRootOfTrust => "inject-root-of-trust",
            StepName::AllocateIdentity => "allocate-identity",
            StepName::DeviceKey => "device-key",
            StepName::IssueIdentity => "issue-identity",
            StepName::FccInject => "fcc-inject",
            StepName::WriteConfig => "write-config",
            StepName::VerifyConfig => "verify-config",
            StepName::VerifyIdentity => "verify-identity",
            StepName::SelfTest => "self-test",
            StepName::NegativeSelfTest => "negative-self-test",
            StepName::Lock => "lock",
            StepName::VerifyLock => "verify-lock",
            StepName::Record => "record",
        }
    }

    /// The step with this name (as [`StepName::as_str`] writes it), if there is one.
    pub fn from_name(name: &str) -> Option<StepName> {
        StepName::ALL.into_iter().find(|step| step.as_str() == name)
    }

    /// Whether the step is part of this profile's pipeline at all. With `[fcc]` the identity
    /// goes in through the device's FCC (`fcc-inject`) instead of the config store, and the
    /// FCC's own verification replaces the mailbox identity check.
    pub fn applies_to(self, profile: &Profile) -> bool {
        let is_fcc = profile.fcc.is_some();
        match self {
            StepName::DeviceKey => profile
                .device_identity
                .as_ref()
                .is_some_and(|identity| identity.key_origin == KeyOrigin::Device),
            StepName::IssueIdentity => profile.device_identity.is_some(),
            StepName::VerifyIdentity => !is_fcc && profile.device_identity.is_some(),
            StepName::FccInject => is_fcc,
            // An FCC device gets its root of trust and entropy in the bundle (`[fcc]`).
            StepName::InjectRootOfTrust => !is_fcc && profile.device_hardware.needs_injection(),
            StepName::WriteConfig | StepName::VerifyConfig => !is_fcc,
            _ => true,
        }
    }

    /// Whether the step works through the chip's debug port (flash, RAM, reset, lock) for this
    /// profile. A slot without one (`fcc:HOST:PORT`, a Linux device on the network) records
    /// these as skipped. With `[fcc]`, `device-key` asks the device's FCC for a CSR instead.
    pub fn needs_debug_port(self, profile: &Profile) -> bool {
        if self == StepName::DeviceKey {
            return profile.fcc.is_none();
        }
        matches!(
            self,
            StepName::Erase
                | StepName::ProgramBootloader
                | StepName::ProgramApplication
                | StepName::VerifyFlash
                | StepName::InjectRootOfTrust
                | StepName::WriteConfig
                | StepName::VerifyConfig
                | StepName::VerifyIdentity
                | StepName::SelfTest
                | StepName::NegativeSelfTest
                | StepName::Lock
                | StepName::VerifyLock
        )
    }

    /// The profile setting that skips this step, if any.
    pub(crate) fn skipped_by(self) -> Option<SkippableStep> {
        match self {
            StepName::SelfTest => Some(SkippableStep::SelfTest),
            StepName::NegativeSelfTest => Some(SkippableStep::NegativeSelfTest),
            StepName::Lock | StepName::VerifyLock => Some(SkippableStep::Lock),
            _ => None,
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A step compares equal to its name, so readers of events can write `step == "identify"`.
impl PartialEq<str> for StepName {
    fn eq(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

impl PartialEq<&str> for StepName {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl Serialize for StepName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StepName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StepName, D::Error> {
        let name = String::deserialize(deserializer)?;
        StepName::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown step {name:?}, expected one of {}",
                StepName::ALL.map(StepName::as_str).join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_name() {
        for step in StepName::ALL {
            assert_eq!(StepName::from_name(step.as_str()), Some(step));
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(json, format!("\"{}\"", step.as_str()));
            assert_eq!(serde_json::from_str::<StepName>(&json).unwrap(), step);
        }
        assert_eq!(StepName::from_name("flash"), None);
        assert!(serde_json::from_str::<StepName>("\"flash\"").is_err());
    }
}
