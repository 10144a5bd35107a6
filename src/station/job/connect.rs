//! The first three steps: `connect` attaches to the chip the profile names (unlocking a locked
//! one by mass erase only when the profile allows it), `identify` reads its unique ID and asks
//! the ledger whether it was seen before, and `check-identity` asks the ledger's verdict before
//! anything is written to the unit: a chip the rework policy refuses stops there, and so does a
//! scanned serial label the ledger would refuse (one issued to another unit). The verdict is a
//! step of its own so that its failures are `identity` failures for the operator (set aside or
//! call the engineer), not contact failures (re-seat and retry).

use serde_json::json;

use super::{StepFailure, StepResult, UnitJob};
use crate::device::TargetError;
use crate::ledger;

impl UnitJob<'_> {
    pub(super) fn connect(&mut self) -> StepResult {
        let chip = self.retry(|target| target.connect())?;
        if chip.chip_name != self.profile().chip_name {
            return Err(TargetError::WrongChip {
                expected: self.profile().chip_name.clone(),
                found: chip.chip_name,
            }
            .into());
        }
        let mut detail =
            json!({ "chip": chip.chip_name, "backend": self.target.backend_name(), "probe": self.probe });
        if self.retry(|target| target.is_locked())? {
            if !self.profile().lock.allow_unlock_by_mass_erase {
                return Err(StepFailure(
                    "the chip is locked and the profile does not allow unlock by mass erase (lock.allow_unlock_by_mass_erase)".to_string(),
                ));
            }
            tracing::warn!(probe = %self.probe, "unlocking a locked chip by mass erase");
            self.retry(|target| target.unlock_by_mass_erase())?;
            detail["unlocked_by_mass_erase"] = json!(true);
        }
        Ok(detail)
    }

    pub(super) fn identify(&mut self) -> StepResult {
        let chip_uid = self.retry(|target| target.read_unique_id())?;
        let chip_uid_hex = chip_uid.to_hex();
        let known = self.context.ledger.lookup_chip(&chip_uid_hex)?;
        let detail = json!({
            "chip_uid": chip_uid_hex,
            "seen_before": known.is_some(),
            "previous_serial": known.as_ref().map(|identity| identity.serial.clone()),
        });
        self.facts.chip_uid = Some(chip_uid);
        self.facts.seen_before = Some(known.is_some());
        self.facts.previous_serial = known.map(|identity| identity.serial);
        Ok(detail)
    }

    /// `check-identity`: the ledger's rule for a returning chip (asked again at allocation), then
    /// the scanned label, if the profile scans serials.
    pub(super) fn check_identity(&mut self) -> StepResult {
        let chip_uid_hex = self.facts.chip_uid()?.to_hex();
        let policy = self.profile().rework_policy;
        if let Some(previous_serial) = &self.facts.previous_serial {
            ledger::decide_rework(policy, &chip_uid_hex, previous_serial)
                .map_err(|refusal| StepFailure(refusal.to_string()))?;
        }
        self.take_checked_scanned_serial(&chip_uid_hex)?;
        Ok(json!({
            "rework": self.facts.previous_serial.is_some(),
            "rework_policy": policy,
            "scanned_serial": self.facts.scanned_serial,
        }))
    }
}
