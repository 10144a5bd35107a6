//! What a failure means on the line floor: a category for machines and one instruction for the
//! operator.
//!
//! An engineer reads "read-back of 49152 bytes at 0x00008000 does not match"; an operator needs
//! to know what to do with the board in their hand, and a fixture controller needs a stable code
//! to branch on. Each failure gets a [`FailureCategory`] from the step it failed at (the step says
//! which part of the unit was being worked on, which is what decides the next action); the
//! category's [`FailureCategory::code`] is the `error_code` of the JSON events and of the ledger's
//! exports, and its [`FailureCategory::instruction`] is the large text on the operator's card. The
//! engineer's full reason stays one click away. docs/events.md lists the codes.

use serde::Serialize;

use super::steps::StepName;

/// Why a unit did not pass, as a stable machine-readable class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCategory {
    /// The probe could not attach or read the chip: contact, cable, power, or the wrong board.
    Contact,
    /// Erasing, programming or the read-back of flash failed.
    FlashVerify,
    /// Serial, device ID or identity certificate: the ledger's allocation, the device's key, the
    /// factory CA, or the device's proof of its key.
    Identity,
    /// The config store could not be written or read back intact.
    Config,
    /// The device's own update client refused the signed update, or accepted a forged one.
    SelfTest,
    /// Readout/debug protection could not be enabled or proven.
    Lock,
    /// The run could not be committed to the ledger.
    Ledger,
    /// The operator or a signal ended the unit before it finished.
    Aborted,
    /// The station itself failed (a slot thread panicked): a defect to report.
    Internal,
}

/// What the operator does with the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorAction {
    /// Take the board out, put it back, start it again.
    ReseatAndRetry,
    /// Put the board on the rework pile with its failure label.
    SetAsideForRework,
    /// Stop and call the line's engineer: the station, not the board, needs attention.
    CallEngineer,
}

impl FailureCategory {
    /// Every category, in the order of the pipeline.
    pub const ALL: [FailureCategory; 9] = [
        FailureCategory::Contact,
        FailureCategory::FlashVerify,
        FailureCategory::Identity,
        FailureCategory::Config,
        FailureCategory::SelfTest,
        FailureCategory::Lock,
        FailureCategory::Ledger,
        FailureCategory::Aborted,
        FailureCategory::Internal,
    ];

    /// The category of a failure at `step`.
    pub fn for_step(step: StepName) -> FailureCategory {
        match step {
            StepName::Connect | StepName::Identify => FailureCategory::Contact,
            StepName::Erase
            | StepName::ProgramBootloader
            | StepName::ProgramApplication
            | StepName::VerifyFlash => FailureCategory::FlashVerify,
            StepName::CheckIdentity
            | StepName::AllocateIdentity
            | StepName::InjectRootOfTrust
            | StepName::DeviceKey
            | StepName::IssueIdentity
            | StepName::VerifyIdentity => FailureCategory::Identity,
            StepName::FccInject | StepName::WriteConfig | StepName::VerifyConfig => FailureCategory::Config,
            StepName::SelfTest | StepName::NegativeSelfTest => FailureCategory::SelfTest,
            StepName::Lock | StepName::VerifyLock => FailureCategory::Lock,
            StepName::Record => FailureCategory::Ledger,
        }
    }

    /// The category of a failure recorded under the step name `step` (as in the ledger and the
    /// events); `None` for a name no step has.
    pub fn for_step_name(step: &str) -> Option<FailureCategory> {
        StepName::ALL.into_iter().find(|candidate| candidate.as_str() == step).map(FailureCategory::for_step)
    }

    /// The stable `error_code` of events and exports.
    pub fn code(self) -> &'static str {
        match self {
            FailureCategory::Contact => "contact",
            FailureCategory::FlashVerify => "flash-verify",
            FailureCategory::Identity => "identity",
            FailureCategory::Config => "config",
            FailureCategory::SelfTest => "self-test",
            FailureCategory::Lock => "lock",
            FailureCategory::Ledger => "ledger",
            FailureCategory::Aborted => "aborted",
            FailureCategory::Internal => "internal",
        }
    }

    /// A short name for the operator's card.
    pub fn title(self) -> &'static str {
        match self {
            FailureCategory::Contact => "No contact with the board",
            FailureCategory::FlashVerify => "Flash did not verify",
            FailureCategory::Identity => "Identity not issued",
            FailureCategory::Config => "Configuration not stored",
            FailureCategory::SelfTest => "Update self-test failed",
            FailureCategory::Lock => "Board not locked",
            FailureCategory::Ledger => "Record not saved",
            FailureCategory::Aborted => "Stopped before the end",
            FailureCategory::Internal => "Station fault",
        }
    }

    /// What the operator does next.
    pub fn action(self) -> OperatorAction {
        match self {
            FailureCategory::Contact | FailureCategory::Aborted => OperatorAction::ReseatAndRetry,
            FailureCategory::FlashVerify
            | FailureCategory::Config
            | FailureCategory::SelfTest
            | FailureCategory::Lock => OperatorAction::SetAsideForRework,
            FailureCategory::Identity | FailureCategory::Ledger | FailureCategory::Internal => {
                OperatorAction::CallEngineer
            }
        }
    }

    /// The one instruction shown in large type.
    pub fn instruction(self) -> &'static str {
        match self.action() {
            OperatorAction::ReseatAndRetry => "Re-seat the board and start it again",
            OperatorAction::SetAsideForRework => "Set the board aside for rework",
            OperatorAction::CallEngineer => "Call the line engineer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_category_and_every_category_an_instruction() {
        for step in StepName::ALL {
            let category = FailureCategory::for_step(step);
            assert_eq!(FailureCategory::for_step_name(step.as_str()), Some(category));
            assert!(!category.instruction().is_empty());
        }
        assert_eq!(FailureCategory::for_step_name("no-such-step"), None);
    }

    #[test]
    fn codes_are_distinct_kebab_case_and_match_serde() {
        let codes: std::collections::BTreeSet<&str> =
            FailureCategory::ALL.iter().map(|category| category.code()).collect();
        assert_eq!(codes.len(), FailureCategory::ALL.len());
        for category in FailureCategory::ALL {
            let serialized = serde_json::to_value(category).expect("serialize");
            assert_eq!(serialized, serde_json::Value::String(category.code().to_owned()));
        }
    }

    #[test]
    fn an_unlocked_board_is_never_sent_back_to_the_line_as_a_retry() {
        assert_eq!(
            FailureCategory::for_step(StepName::VerifyLock).action(),
            OperatorAction::SetAsideForRework
        );
        assert_eq!(FailureCategory::for_step(StepName::Connect).action(), OperatorAction::ReseatAndRetry);
        assert_eq!(FailureCategory::for_step(StepName::Record).action(), OperatorAction::CallEngineer);
    }
}
