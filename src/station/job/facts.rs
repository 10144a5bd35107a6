//! What the steps so far learned about the unit, in one value. Each fact is set by the one step
//! that learns it and read by later steps through an accessor; a fact that is missing means a
//! step ran out of order, and that is reported the same way for every fact, here.

use p256::ecdsa::VerifyingKey;

use super::flash::PlannedWrite;
use super::identity::IssuedIdentity;
use super::{StepFailure, StepName};
use crate::identity::ChipUid;
use crate::ledger::AllocatedIdentity;
use crate::station::events::StepFacts;

/// The unit as the job knows it so far.
#[derive(Default)]
pub(super) struct UnitFacts {
    /// The chip's unique ID (`identify`).
    pub(super) chip_uid: Option<ChipUid>,
    /// Whether the ledger knew the chip before this run (`identify`).
    pub(super) seen_before: Option<bool>,
    /// The serial the ledger issued the chip before, for a returning chip (`identify`).
    pub(super) previous_serial: Option<String>,
    /// The serial scanned from the unit's label, taken and checked against the ledger before
    /// anything is written to the unit (`check-identity`, profiles with `serial.scheme = "scanned"`).
    pub(super) scanned_serial: Option<String>,
    /// The image writes planned sector by sector, for the program steps (`erase`).
    pub(super) planned_images: Option<Vec<PlannedWrite>>,
    /// The serial and device ID (`allocate-identity`).
    pub(super) identity: Option<AllocatedIdentity>,
    /// The identity certificate's subject CN, device ID or endpoint name (the first identity
    /// step that needs it: `device-key` or `issue-identity`).
    pub(super) identity_common_name: Option<String>,
    /// The device's public key from its verified CSR (`device-key`, device-made keys).
    pub(super) device_public_key: Option<VerifyingKey>,
    /// The identity certificate and the station-made key (`issue-identity`).
    pub(super) issued_identity: Option<IssuedIdentity>,
    /// Whether the flashed unit was reset into its application before its first FCC message
    /// (slots with a debug port; `device-key` or `fcc-inject`, whichever runs first).
    pub(super) booted_for_fcc: bool,
}

/// The fact, or the failure saying which step should have learned it.
fn learned<'facts, T>(
    fact: &'facts Option<T>,
    what: &str,
    learned_by: StepName,
) -> Result<&'facts T, StepFailure> {
    fact.as_ref().ok_or_else(|| {
        StepFailure(format!("step ran out of order: {what} comes from step {learned_by}, which has not run"))
    })
}

impl UnitFacts {
    pub(super) fn chip_uid(&self) -> Result<&ChipUid, StepFailure> {
        learned(&self.chip_uid, "the chip's unique ID", StepName::Identify)
    }

    pub(super) fn planned_images(&self) -> Result<&[PlannedWrite], StepFailure> {
        learned(&self.planned_images, "the planned image writes", StepName::Erase).map(Vec::as_slice)
    }

    pub(super) fn identity(&self) -> Result<&AllocatedIdentity, StepFailure> {
        learned(&self.identity, "the unit's identity", StepName::AllocateIdentity)
    }

    pub(super) fn identity_common_name(&self) -> Result<&str, StepFailure> {
        learned(&self.identity_common_name, "the identity's subject name", StepName::IssueIdentity)
            .map(String::as_str)
    }

    pub(super) fn device_public_key(&self) -> Result<&VerifyingKey, StepFailure> {
        learned(&self.device_public_key, "the device's public key", StepName::DeviceKey)
    }

    pub(super) fn issued_identity(&self) -> Result<&IssuedIdentity, StepFailure> {
        learned(&self.issued_identity, "the identity certificate", StepName::IssueIdentity)
    }

    /// The typed facts a step's `step-finished` event carries: what that step learned and front
    /// ends show (the chip UID and whether it was seen before after `identify`; the serial and
    /// device ID after `allocate-identity`).
    pub(super) fn announced_by(&self, step: StepName) -> StepFacts {
        match step {
            StepName::Identify => StepFacts {
                chip_uid: self.chip_uid.as_ref().map(ChipUid::to_hex),
                seen_before: self.seen_before,
                ..StepFacts::default()
            },
            StepName::AllocateIdentity => StepFacts {
                serial: self.identity.as_ref().map(|allocated| allocated.identity.serial.clone()),
                device_id: self.identity.as_ref().map(|allocated| allocated.identity.device_id),
                ..StepFacts::default()
            },
            _ => StepFacts::default(),
        }
    }
}
