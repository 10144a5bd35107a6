//! What the panels ask for. Panels draw and return a [`Command`]; the app applies every
//! command in one place ([`super::app::ImprintApp`]), so what a click does is never scattered
//! through drawing code (egui_demo_app's `Command`, rerun's command queue).

use std::path::PathBuf;

use crate::station::session::SimFault;

/// An operator action.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Nothing was asked this frame.
    Nothing,
    /// List the profiles folder (the one typed in the folder field) again.
    RescanProfiles,
    /// Use this profile for the next start.
    SelectProfile(PathBuf),
    /// Show this many simulated slots (only while the line is stopped).
    SetSlotCount(usize),
    /// Start the line.
    StartLine,
    /// Stop the line: no new unit starts, the units in flight finish.
    StopLine,
    /// Abort the units in flight after their current step (asked and confirmed while stopping).
    AbortLine,
    /// Manual start: take the next unit on this slot.
    StartUnit { slot: usize },
    /// The scanner field got text and Enter.
    Scanned(String),
    /// Query the history again (search text or scope changed, or the refresh button).
    RefreshHistory,
    /// Open a unit's details (by serial or chip ID).
    OpenUnit(String),
    /// Close the unit's details.
    CloseUnit,
    /// Export the ledger to the chosen file.
    Export,
    /// Simulator: take the slot's board off the fixture (`false`; acknowledges a latched
    /// failure, as a fixture reporting the board removed does) or put one back.
    SetBoardPresent { slot: usize, present: bool },
    /// Simulator: give the slot's next unit this fault.
    ArmFault { slot: usize, fault: SimFault },
    /// The operator saw the slot's failure: release its latch (the slot may take units again).
    Acknowledge { slot: usize },
    /// Acknowledge the failure that has waited longest (the acknowledgement key).
    AcknowledgeOldest,
    /// Mark a board of the shift's failed-board list done (or open again).
    MarkBoardDone { number: u64, done: bool },
    /// Start a shift for this operator ID (typed or scanned from a badge).
    LogIn(String),
    /// End the shift (only while the line is stopped).
    LogOut,
    /// Set the supervisor PIN (allowed while the settings are unlocked, or none is set).
    SetSupervisorPin(String),
    /// Unlock the station settings with the supervisor PIN.
    UnlockSettings(String),
    /// Lock the station settings again.
    LockSettings,
    /// Show the supervisor view (`true`: asks for the supervisor PIN when one is set) or the
    /// operator view.
    ShowSupervisorView(bool),
}
