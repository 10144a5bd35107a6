//! The app's shift commands, applied in the same one place as the others (split from `app.rs`
//! to keep it short): operator log-in and log-out, acknowledging latched failures, the
//! failed-board list and the supervisor PIN.

use std::time::{Instant, SystemTime};

use super::ImprintApp;
use crate::gui::command::Command;
use crate::gui::supervisor::PinHash;

impl ImprintApp {
    /// Applies a shift command (every command `apply` does not handle itself).
    pub(super) fn apply_shift(&mut self, command: Command) {
        match command {
            Command::Acknowledge { slot } => self.acknowledge(slot),
            Command::AcknowledgeOldest => {
                if let Some(slot) = self.shift.oldest_latched() {
                    self.acknowledge(slot);
                }
            }
            Command::MarkBoardDone { number, done } => self.shift.set_done(number, done),
            Command::LogIn(id) => self.log_in(&id),
            Command::LogOut => self.log_out(),
            Command::SetSupervisorPin(pin) => self.set_supervisor_pin(&pin),
            Command::UnlockSettings(pin) => self.unlock_settings(&pin),
            Command::LockSettings => {
                self.settings_unlocked = false;
                self.supervisor_message = None;
                self.settings.supervisor_view = false;
            }
            Command::ShowSupervisorView(false) => {
                self.settings.supervisor_view = false;
                self.forms.asking_view_pin = false;
                if self.settings.supervisor_pin.is_some() {
                    self.settings_unlocked = false;
                }
            }
            Command::ShowSupervisorView(true) => {
                if self.settings.supervisor_pin.is_none() || self.settings_unlocked {
                    self.settings.supervisor_view = true;
                } else {
                    self.forms.asking_view_pin = true;
                }
            }
            _ => {}
        }
    }

    /// The operator given on the command line (or remembered, when the station setting says
    /// so) is logged in when the window opens.
    pub(super) fn log_in_at_open(&mut self) {
        if self.options.operator.is_some() || self.settings.remember_operator {
            let operator = self.settings.operator.clone();
            if self.shift.log_in(&operator, now_text()) {
                tracing::info!(operator = %operator.trim(), "operator logged in");
            }
        }
    }

    fn acknowledge(&mut self, slot: usize) {
        if !self.shift.acknowledge(slot) {
            return;
        }
        tracing::info!(slot, "failure acknowledged: the slot takes units again");
        if let Some(gate) = self.running_line.as_ref().and_then(|line| line.gates.get(slot)) {
            gate.acknowledge();
        }
    }

    /// A new shift: the operator's ID goes into every record from now on, and the shift's
    /// figures start from zero.
    fn log_in(&mut self, id: &str) {
        if self.line.is_active() {
            tracing::warn!("log-in refused: stop the line first");
            return;
        }
        if !self.shift.log_in(id, now_text()) {
            tracing::warn!("log-in refused: expected an operator ID, found nothing");
            return;
        }
        self.settings.operator = id.trim().to_string();
        self.line.reset_shift_counters(Instant::now());
        tracing::info!(operator = %id.trim(), "operator logged in: the shift's figures start from zero");
    }

    fn log_out(&mut self) {
        if self.line.is_active() {
            tracing::warn!("log-out refused: stop the line first");
            return;
        }
        if let Some(operator) = self.shift.log_out() {
            tracing::info!(operator = %operator.id, "operator logged out");
        }
        self.settings.operator.clear();
    }

    fn set_supervisor_pin(&mut self, pin: &str) {
        let allowed = self.settings_unlocked || self.settings.supervisor_pin.is_none();
        if !allowed {
            return;
        }
        match PinHash::new(pin) {
            Ok(hash) => {
                self.settings.supervisor_pin = Some(hash);
                self.settings_unlocked = false;
                self.supervisor_message =
                    Some("supervisor PIN set: the station settings are locked".to_string());
                tracing::info!("supervisor PIN set");
            }
            Err(error) => self.supervisor_message = Some(error.to_string()),
        }
    }

    fn unlock_settings(&mut self, pin: &str) {
        let Some(hash) = &self.settings.supervisor_pin else {
            return;
        };
        if hash.matches(pin) {
            self.settings_unlocked = true;
            self.supervisor_message = None;
            if std::mem::take(&mut self.forms.asking_view_pin) {
                self.settings.supervisor_view = true;
            }
            tracing::info!("station settings unlocked by the supervisor");
        } else {
            self.supervisor_message = Some("wrong supervisor PIN".to_string());
            tracing::warn!("station settings: wrong supervisor PIN");
        }
    }
}

/// Now in the events' time format (RFC 3339 UTC).
fn now_text() -> String {
    crate::ledger::format_timestamp("now", SystemTime::now()).unwrap_or_default()
}
