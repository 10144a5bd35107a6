//! The scanner field's Enter, routed by what the scan is (the profile's `[scanner]` patterns,
//! `profile::ScannerSettings`): an operator badge logs in, a work order is recorded with the
//! units started from then on, a serial label goes (once the ledger had its say) to the next
//! unit or to the slot a slot label chose, and a slot label (alone or as a prefix) chooses the
//! slot. A scan that is nothing, or two things at once, is refused beside the scanner field and
//! changes nothing. Split from `app.rs` to keep it short; applied in the same one place.

use super::ImprintApp;
use crate::gui::command::Command;
use crate::gui::workers::{ChoreRequest, ScannedLabel, SerialVerdict};
use crate::profile::{ClassifiedScan, ScanKind, ScannerSettings};

/// The answer to the last scan, shown beside the scanner field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanNote {
    pub text: String,
    /// The scan was refused (drawn in the failure colour).
    pub is_refusal: bool,
}

impl ImprintApp {
    /// The scanner field's Enter (`text` trimmed). An empty Enter starts the chosen (else the
    /// first waiting) slot in manual start.
    pub(super) fn scanned(&mut self, text: &str) {
        if text.is_empty() {
            if self.settings.manual_start {
                self.start_chosen_slot(None);
            }
            return;
        }
        let scanner = self.scanner_settings();
        let nobody_logged_in = self.shift.operator.is_none();
        match scanner.classify(text, nobody_logged_in) {
            Err(refusal) => self.refuse_scan(refusal.to_string()),
            Ok(ClassifiedScan::Slot { slot_number }) => self.slot_label_scanned(slot_number),
            Ok(ClassifiedScan::Item { kind: ScanKind::OperatorBadge, text, .. }) => self.badge_scanned(&text),
            Ok(ClassifiedScan::Item { .. }) if nobody_logged_in => self.refuse_scan(format!(
                "scan {text:?}: log in first: scan your badge or type your operator ID"
            )),
            Ok(ClassifiedScan::Item { slot_number, kind, text }) => {
                let slot = match slot_number {
                    Some(number) => match self.slot_for_number(number) {
                        Some(slot) => Some(slot),
                        None => return,
                    },
                    None => self.selected_slot.take(),
                };
                match kind {
                    ScanKind::WorkOrder => self.work_order_scanned(&text, slot),
                    ScanKind::SerialLabel => self.serial_scanned(&text, slot),
                    ScanKind::OperatorBadge => self.badge_scanned(&text),
                }
            }
        }
    }

    /// The checked profile's scanner patterns, else the defaults for what the running line
    /// says about its serials.
    fn scanner_settings(&self) -> ScannerSettings {
        self.chosen_summary()
            .map(|summary| summary.scanner.clone())
            .unwrap_or_else(|| ScannerSettings::defaults(self.serials_are_scanned))
    }

    fn chosen_summary(&self) -> Option<&crate::gui::store::ProfileSummary> {
        let chosen = self.settings.last_profile.as_deref()?;
        match &self.profiles.checked {
            Some((path, Ok(summary))) if path.as_path() == chosen => Some(summary),
            _ => None,
        }
    }

    fn note_scan(&mut self, text: String) {
        tracing::info!("scan: {text}");
        self.scan_note = Some(ScanNote { text, is_refusal: false });
    }

    fn refuse_scan(&mut self, text: String) {
        tracing::warn!("scan refused: {text}");
        self.scan_note = Some(ScanNote { text, is_refusal: true });
    }

    /// The slot index of slot `number` (from 1), or `None` after refusing the scan.
    fn slot_for_number(&mut self, number: usize) -> Option<usize> {
        let slots = self.line.slots.len();
        if number == 0 || number > slots {
            self.refuse_scan(format!("slot label for slot {number}: this line has slots 1 to {slots}"));
            return None;
        }
        let slot = number - 1;
        if self.shift.is_latched(slot) {
            self.refuse_scan(format!("slot {number} holds a failed board: acknowledge it first"));
            return None;
        }
        Some(slot)
    }

    /// A slot label: in manual start on a line that counts its serials it starts the slot;
    /// otherwise it chooses the slot the next serial (or Enter) goes to.
    fn slot_label_scanned(&mut self, number: usize) {
        let Some(slot) = self.slot_for_number(number) else {
            return;
        };
        let waiting = self.line.slots.get(slot).is_some_and(|state| state.is_waiting_for_start);
        if self.settings.manual_start && !self.serials_are_scanned && waiting {
            self.selected_slot = None;
            self.note_scan(format!("slot {number} started"));
            self.apply(Command::StartUnit { slot });
        } else {
            self.selected_slot = Some(slot);
            self.note_scan(format!("slot {number} chosen: the next serial label or start goes to it"));
        }
    }

    /// A badge: logs in with nobody logged in; a different operator's badge is a shift change,
    /// taken only while the line is stopped (never under a running line's units).
    fn badge_scanned(&mut self, badge: &str) {
        match self.shift.operator_id() {
            None => {
                self.apply(Command::LogIn(badge.to_string()));
                if self.shift.operator_id() == Some(badge) {
                    self.note_scan(format!("operator {badge} logged in"));
                } else {
                    self.refuse_scan(format!("operator badge {badge:?} not taken: stop the line first"));
                }
            }
            Some(current) if current == badge => self.note_scan(format!("operator {badge} is logged in")),
            Some(current) if self.line.is_active() => {
                let current = current.to_string();
                self.refuse_scan(format!(
                    "operator badge {badge}: {current} is logged in while the line runs; stop the line to change operator"
                ))
            }
            Some(current) => {
                let current = current.to_string();
                self.apply(Command::LogOut);
                self.apply(Command::LogIn(badge.to_string()));
                self.note_scan(format!("shift change: {current} logged out, {badge} logged in"));
            }
        }
    }

    fn work_order_scanned(&mut self, work_order: &str, slot: Option<usize>) {
        if let Some(line) = &self.running_line {
            line.labels.set_work_order(Some(work_order.to_string()));
        }
        self.work_order = Some(work_order.to_string());
        self.note_scan(format!("work order {work_order}: recorded with the units started from now on"));
        if self.settings.manual_start {
            self.start_chosen_slot(slot);
        }
    }

    /// A serial label: refused at once when it cannot be this line's (a counter profile, no
    /// line running, malformed, already scanned); otherwise the ledger is asked on the chore
    /// thread, and [`ImprintApp::serial_checked`] routes it.
    fn serial_scanned(&mut self, serial: &str, slot: Option<usize>) {
        let profile_scans_serials =
            self.chosen_summary().map_or(self.serials_are_scanned, |summary| summary.serials_are_scanned);
        if !profile_scans_serials {
            return self.refuse_scan(format!(
                "serial label {serial}: this profile issues its serials from a counter (serial.scheme); a label is not taken"
            ));
        }
        if self.running_line.is_none() || !self.serials_are_scanned {
            return self.refuse_scan(format!("serial label {serial}: start the line first"));
        }
        if let Err(error) = crate::ledger::check_serial_text("scanned serial", serial) {
            return self.refuse_scan(format!("{error}; scan again"));
        }
        let on_a_card = self.line.slots.iter().position(|state| {
            state.scanned_label.as_deref() == Some(serial)
                || (state.serial.as_deref() == Some(serial) && state.unit_started_at.is_some())
        });
        let pending = self.running_line.as_ref().is_some_and(|line| line.labels.holds_serial(serial));
        if let Some(index) = on_a_card {
            return self.refuse_scan(format!("serial label {serial} is already on slot {}", index + 1));
        }
        if pending {
            return self.refuse_scan(format!("serial label {serial} was already scanned for a unit"));
        }
        let policy = self.chosen_summary().map(|summary| summary.rework_policy).unwrap_or_default();
        self.chores.request(ChoreRequest::CheckSerial {
            ledger_path: self.options.ledger_path.clone(),
            label: ScannedLabel { serial: serial.to_string(), slot },
            policy,
        });
    }

    /// The ledger's answer for a scanned label: refused beside the scanner field, or handed to
    /// the slot it was meant for (else the slot whose unit waits for its label, else the first
    /// slot waiting for its start in manual start, else the next unit) and shown on its card.
    pub(super) fn serial_checked(&mut self, label: ScannedLabel, verdict: SerialVerdict) {
        let ScannedLabel { serial, slot } = label;
        let owner_note = match verdict {
            SerialVerdict::Refused(reason) => {
                return self.refuse_scan(format!("serial label {serial} refused: {reason}"));
            }
            SerialVerdict::New => String::new(),
            SerialVerdict::OwnedBy { chip_uid } => {
                format!(" (already the serial of chip {chip_uid}: only that board takes it back)")
            }
        };
        let Some(line) = &self.running_line else {
            return self.refuse_scan(format!("serial label {serial}: the line stopped; start it first"));
        };
        let waiting_for_label = line.labels.first_slot_waiting_for_serial();
        let first_waiting = (0..self.line.slots.len())
            .find(|slot| self.line.slots[*slot].is_waiting_for_start && !self.shift.is_latched(*slot));
        let target =
            slot.or(waiting_for_label).or(if self.settings.manual_start { first_waiting } else { None });
        line.labels.push_serial(target, serial.clone());
        let needs_start = target.is_some_and(|slot| {
            waiting_for_label != Some(slot)
                && self.line.slots.get(slot).is_some_and(|state| state.is_waiting_for_start)
        });
        match target {
            Some(slot) => {
                if let Some(state) = self.line.slots.get_mut(slot) {
                    state.scanned_label = Some(serial.clone());
                }
                self.note_scan(format!("serial label {serial} to slot {}{owner_note}", slot + 1));
            }
            None => self.note_scan(format!("serial label {serial} to the next unit{owner_note}")),
        }
        if let Some(slot) = target.filter(|_| needs_start && self.settings.manual_start) {
            self.apply(Command::StartUnit { slot });
        }
    }

    /// Manual start: starts `slot`, else the slot a slot label chose, else the first waiting
    /// slot that is not latched (a latched slot is never started by a scan).
    fn start_chosen_slot(&mut self, slot: Option<usize>) {
        let chosen = slot.or(self.selected_slot.take()).filter(|slot| {
            !self.shift.is_latched(*slot)
                && self.line.slots.get(*slot).is_some_and(|state| state.is_waiting_for_start)
        });
        let slot = chosen.or_else(|| {
            (0..self.line.slots.len())
                .find(|slot| self.line.slots[*slot].is_waiting_for_start && !self.shift.is_latched(*slot))
        });
        if let Some(slot) = slot {
            self.apply(Command::StartUnit { slot });
        }
    }
}
