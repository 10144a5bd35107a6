//! The simulator panel: fault injection for demos (the station's fault grammar).

use super::*;

/// Simulator tools (fault injection for demos).
pub(super) fn simulator_ui(ui: &mut Ui, view: &View<'_>, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    egui::CollapsingHeader::new("Simulator: inject a fault").default_open(true).show(ui, |ui| {
        let slot_count = view.line.slots.len().max(1);
        forms.fault_slot = forms.fault_slot.min(slot_count - 1);
        ui.horizontal_wrapped(|ui| {
            ui.label("Slot");
            let slot_choice = egui::ComboBox::from_id_salt("fault_slot")
                .selected_text((forms.fault_slot + 1).to_string())
                .width(50.0)
                .show_ui(ui, |ui| {
                    for slot in 0..slot_count {
                        ui.selectable_value(&mut forms.fault_slot, slot, (slot + 1).to_string());
                    }
                });
            accessible(&slot_choice.response, Role::ComboBox, "Fault slot");
            let kind_choice = egui::ComboBox::from_id_salt("fault_kind")
                .selected_text(forms.fault.kind_label())
                .show_ui(ui, |ui| {
                    for kind in SimFault::kinds() {
                        let selected = std::mem::discriminant(&kind) == std::mem::discriminant(&forms.fault);
                        if ui.selectable_label(selected, kind.kind_label()).clicked() && !selected {
                            forms.fault = kind;
                        }
                    }
                });
            accessible(&kind_choice.response, Role::ComboBox, "Fault kind");
            let parameter = match &mut forms.fault {
                SimFault::ProbeLostAtStep(step)
                | SimFault::HangAtStep(step)
                | SimFault::PanicAtStep(step) => Some(
                    egui::ComboBox::from_id_salt("fault_step")
                        .selected_text(step.as_str())
                        .show_ui(ui, |ui| {
                            for name in StepName::ALL {
                                ui.selectable_value(step, name.as_str().to_string(), name.as_str());
                            }
                        })
                        .response,
                ),
                SimFault::PowerCutAfterFlashOperations(count) => {
                    Some(ui.add(egui::DragValue::new(count).range(1..=100_000)))
                }
                SimFault::FlipBitAtAddress(address) => {
                    Some(ui.add(egui::DragValue::new(address).hexadecimal(8, false, true)))
                }
                SimFault::TransientErrors(count) => Some(ui.add(egui::DragValue::new(count).range(1..=10))),
                SimFault::UniqueIdReadFails => None,
            };
            if let Some(parameter) = parameter {
                accessible(&parameter, parameter_role(&forms.fault), "Fault parameter");
            }
            let button = ui.button("Inject fault");
            accessible(&button, Role::Button, "Inject fault");
            if button.clicked() {
                command = Command::ArmFault { slot: forms.fault_slot, fault: forms.fault.clone() };
            }
        });
        // The fixture's side of a board change: taking a failed board off acknowledges it.
        ui.horizontal_wrapped(|ui| {
            let slot = forms.fault_slot;
            let is_removed = view.boards_removed.contains(&slot);
            ui.label(format!("Board on slot {}", slot + 1));
            let (text, present) = if is_removed { ("Put board back", true) } else { ("Remove board", false) };
            let button = ui.button(text);
            accessible(&button, Role::Button, &format!("{text} on slot {}", slot + 1));
            if button.clicked() {
                command = Command::SetBoardPresent { slot, present };
            }
        });
        if !view.boards_removed.is_empty() {
            let slots: Vec<String> = view.boards_removed.iter().map(|slot| (slot + 1).to_string()).collect();
            let removed = ui.colored_label(
                theme::WAITING_COLOUR,
                format!("no board on slot {} (it takes no unit)", slots.join(", ")),
            );
            accessible(&removed, Role::Label, &format!("boards removed: slot {}", slots.join(", ")));
        }
        let armed: Vec<String> = (0..slot_count)
            .filter(|slot| view.faults.armed(*slot).is_some())
            .map(|slot| format!("slot {}", slot + 1))
            .collect();
        if !armed.is_empty() {
            ui.colored_label(
                theme::WAITING_COLOUR,
                format!("armed for the next unit on {}", armed.join(", ")),
            );
        }
    });
    command
}

/// The fault parameter's widget kind: a step list or a number.
pub(super) fn parameter_role(fault: &SimFault) -> Role {
    if matches!(fault, SimFault::ProbeLostAtStep(_) | SimFault::HangAtStep(_)) {
        Role::ComboBox
    } else {
        Role::SpinButton
    }
}
