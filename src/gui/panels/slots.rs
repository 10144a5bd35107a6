//! The slot cards: one per slot, laid out for the slot count, each with its state, step,
//! progress and result.

use super::*;

/// One card per slot, laid out to use the space best for the slot count.
pub(super) fn slots_ui(ui: &mut Ui, view: &View<'_>, manual_start: bool) -> Command {
    let mut command = Command::Nothing;
    // Never past the panel's visible edge, even if a row above grew wider than the panel.
    let area = ui.available_rect_before_wrap().intersect(ui.clip_rect());
    let count = view.line.slots.len();
    if count == 0 {
        return command;
    }
    let gap = 8.0;
    let (columns, rows) = grid_shape(count, area.size());
    let card_size = Vec2::new(
        (area.width() - gap * (columns - 1) as f32) / columns as f32,
        (area.height() - gap * (rows - 1) as f32) / rows as f32,
    );
    for (index, slot) in view.line.slots.iter().enumerate() {
        let column = index % columns;
        let row = index / columns;
        let min = area.min + Vec2::new(column as f32 * (card_size.x + gap), row as f32 * (card_size.y + gap));
        let rect = egui::Rect::from_min_size(min, card_size);
        let mut card = ui.new_child(
            UiBuilder::new().max_rect(rect).id_salt(("slot", index)).layout(Layout::top_down(Align::Min)),
        );
        let context = CardContext {
            manual_start,
            is_latched: view.shift.is_latched(index),
            flash_is_on: view.flash_is_on,
            now: view.now,
        };
        let card_command = slot_card_ui(&mut card, index, slot, &context);
        if card_command != Command::Nothing {
            command = card_command;
        }
    }
    ui.allocate_rect(area, Sense::hover());
    command
}

/// Columns and rows for `count` cards in `size`, choosing the shape whose cards are largest
/// (cards look best about 1.6 times as wide as tall).
pub(super) fn grid_shape(count: usize, size: Vec2) -> (usize, usize) {
    let mut best = (1, count.max(1));
    let mut best_score = f32::MIN;
    for columns in 1..=count.max(1) {
        let rows = count.div_ceil(columns);
        let width = size.x / columns as f32;
        let height = size.y / rows as f32;
        let score = width.min(height * 1.6);
        if score >= best_score {
            best_score = score;
            best = (columns, rows);
        }
    }
    best
}

/// The operator's words for a step.
pub(super) fn step_title(step: &str) -> String {
    let mut title = step.replace('-', " ");
    if let Some(first) = title.get(0..1) {
        title.replace_range(0..1, &first.to_ascii_uppercase());
    }
    title
}

/// What a card needs besides its slot.
pub(super) struct CardContext {
    pub manual_start: bool,
    /// The slot holds an unacknowledged failure.
    pub is_latched: bool,
    /// A latched card's frame is in its bright half (false also when the signal is off).
    pub flash_is_on: bool,
    pub now: Instant,
}

/// One slot: the state in large type with its icon and colour, the step's progress, the
/// unit's serial and chip ID, the cycle time and the slot's tallies. Small cards (many slots)
/// drop the less important lines rather than overflow. A latched failure has a thick frame
/// that flashes (with the attention signal on) and an Acknowledge button.
pub(super) fn slot_card_ui(ui: &mut Ui, index: usize, slot: &SlotState, context: &CardContext) -> Command {
    let mut command = Command::Nothing;
    let look = match slot.phase {
        SlotPhase::Idle => StateLook::Idle,
        SlotPhase::WaitingForStart | SlotPhase::WaitingForScan => StateLook::Waiting,
        SlotPhase::Running { .. } => StateLook::Running,
        SlotPhase::Passed => StateLook::Pass,
        SlotPhase::Failed { .. } => StateLook::Fail,
        SlotPhase::Aborted { .. } => StateLook::Waiting,
    };
    ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
    let card_height = ui.max_rect().height();
    let big = theme::state_text_size(card_height);
    let medium = (big * 0.5).clamp(12.0, 22.0);
    let small = (big * 0.4).clamp(11.0, 15.0);
    let (word, spoken) = match &slot.phase {
        SlotPhase::Idle => ("IDLE".to_string(), "IDLE".to_string()),
        SlotPhase::WaitingForStart => ("WAITING".to_string(), "WAITING for start".to_string()),
        SlotPhase::WaitingForScan => ("SCAN LABEL".to_string(), "WAITING for serial scan".to_string()),
        SlotPhase::Running { step, step_number } => {
            (step_title(step), format!("{step} (step {step_number} of {})", StepName::ALL.len()))
        }
        SlotPhase::Passed => ("PASS".to_string(), "PASS".to_string()),
        SlotPhase::Failed { step, reason, .. } => ("FAIL".to_string(), format!("FAIL at {step}: {reason}")),
        SlotPhase::Aborted { step } => {
            ("ABORTED".to_string(), format!("ABORTED before {step}: provision the board again"))
        }
    };
    let margin = if card_height < 150.0 { 6 } else { 10 };
    let stroke = match (context.is_latched, context.flash_is_on) {
        (true, true) => Stroke::new(6.0, theme::WARNING_COLOUR),
        (true, false) => Stroke::new(6.0, look.colour()),
        (false, _) => Stroke::new(2.0, look.colour()),
    };
    egui::Frame::new()
        .fill(look.background())
        .stroke(stroke)
        .corner_radius(8.0)
        .inner_margin(egui::Margin::same(margin))
        .show(ui, |ui| {
            let inner = ui.available_size();
            ui.set_min_size(inner);
            ui.set_max_size(inner);
            ui.spacing_mut().item_spacing.y = (card_height * 0.02).clamp(2.0, 6.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("SLOT {index}")).size(small + 1.0).strong());
                let fixture = ui.label(RichText::new(&slot.fixture_name).size(small).weak());
                accessible(&fixture, Role::Label, &format!("slot {index} fixture: {}", slot.fixture_name));
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    // The line's attempt number, not a count: "units" means boards finished.
                    if slot.unit > 0 {
                        ui.label(RichText::new(format!("run #{}", slot.unit)).size(small).weak());
                    }
                });
            });
            // Long step names shrink to fit rather than lose their end.
            let state_text = format!("{} {word}", look.icon());
            let natural_width = ui
                .painter()
                .layout_no_wrap(state_text.clone(), FontId::proportional(big), look.colour())
                .size()
                .x;
            let fitted = (big * ui.available_width() / natural_width.max(1.0)).clamp(medium, big);
            let state = ui.add(
                egui::Label::new(RichText::new(state_text).size(fitted).strong().color(look.colour()))
                    .truncate(),
            );
            accessible(&state, Role::Label, &format!("slot {index} state: {spoken}"));

            if let Some(answer) =
                slot_phase_detail_ui(ui, index, slot, context.is_latched, small, medium, big)
            {
                command = answer;
            }
            if slot.is_waiting_for_start && context.manual_start && !context.is_latched {
                let button = ui.add(
                    egui::Button::new(RichText::new("▶ Start unit").size(medium).color(Color32::BLACK))
                        .fill(theme::WAITING_COLOUR),
                );
                accessible(&button, Role::Button, &format!("Start unit on slot {index}"));
                if button.clicked() {
                    command = Command::StartUnit { slot: index };
                }
            }
            slot_footer_ui(ui, index, slot, context.now, small, medium);
        });
    command
}

/// What the slot is doing right now: the step's progress bar; for a failure, the operator's
/// instruction in large type, the Acknowledge button of a latched slot and the engineer's full
/// reason one click away; for a pass, what it did not prove (no lock, no forged-update test).
fn slot_phase_detail_ui(
    ui: &mut Ui,
    index: usize,
    slot: &SlotState,
    is_latched: bool,
    small: f32,
    medium: f32,
    big: f32,
) -> Option<Command> {
    match &slot.phase {
        SlotPhase::Running { step_number, .. } => {
            running_progress_ui(ui, index, slot, *step_number, small);
            None
        }
        SlotPhase::Failed { step, reason, category } => {
            failure_ui(ui, index, (step.as_str(), reason.as_str(), *category), is_latched, small, medium, big)
        }
        SlotPhase::Passed => {
            let warnings = slot.last_finished.as_ref().map(|last| last.pass_warnings()).unwrap_or_default();
            if !warnings.is_empty() {
                let text = warnings.join(" · ");
                let warning = ui.add(
                    egui::Label::new(
                        RichText::new(format!("⚠ {text}")).size(medium).strong().color(theme::WARNING_COLOUR),
                    )
                    .wrap(),
                );
                accessible(&warning, Role::Label, &format!("slot {index} warning: {text}"));
            }
            None
        }
        _ => None,
    }
}

fn running_progress_ui(ui: &mut Ui, index: usize, slot: &SlotState, step_number: usize, small: f32) {
    let (fraction, text) = match &slot.progress {
        Some(progress) => {
            let left =
                progress.time_left().map(|left| format!(" · {} left", seconds(left))).unwrap_or_default();
            let done =
                format!("{} / {}{left}", byte_size(progress.bytes_done), byte_size(progress.bytes_total));
            (progress.fraction(), done)
        }
        None => (
            (step_number as f32 - 1.0) / StepName::ALL.len() as f32,
            format!("step {step_number} of {}", StepName::ALL.len()),
        ),
    };
    // White on Okabe-Ito blue and on the dark track alike.
    let bar = ui.add(
        egui::ProgressBar::new(fraction)
            .text(RichText::new(&text).size(small).color(Color32::WHITE))
            .fill(theme::PROGRESS_COLOUR)
            .desired_height(small + 6.0),
    );
    accessible(&bar, Role::ProgressIndicator, &format!("slot {index} progress: {text}"));
}

/// A failed unit: the instruction (wrapped at words, never cut), the kind of failure, the
/// Acknowledge button while latched, and the engineer's reason behind "Details".
fn failure_ui(
    ui: &mut Ui,
    index: usize,
    (step, reason, category): (&str, &str, crate::station::FailureCategory),
    is_latched: bool,
    small: f32,
    medium: f32,
    big: f32,
) -> Option<Command> {
    let mut command = None;
    let instruction_size = (big * 0.55).max(medium);
    let instruction = ui.add(
        egui::Label::new(
            RichText::new(category.instruction()).size(instruction_size).strong().color(Color32::WHITE),
        )
        .wrap(),
    );
    accessible(&instruction, Role::Label, &format!("slot {index} instruction: {}", category.instruction()));
    let at = if step.is_empty() { String::new() } else { format!(" · {}", step_title(step)) };
    ui.label(RichText::new(format!("{}{at}", category.title())).size(small).color(theme::FAIL_COLOUR));
    if is_latched {
        let button = ui.add(
            egui::Button::new(RichText::new("✔ Acknowledge").size(medium).strong().color(Color32::BLACK))
                .fill(theme::WARNING_COLOUR),
        );
        accessible(&button, Role::Button, &format!("Acknowledge slot {index}"));
        if button.clicked() {
            command = Some(Command::Acknowledge { slot: index });
        }
    }
    let details = egui::CollapsingHeader::new(RichText::new("Details").size(small))
        .id_salt(("failure_details", index))
        .default_open(false)
        .show(ui, |ui| {
            let reason_label = ui.add(egui::Label::new(RichText::new(reason).size(small).monospace()).wrap());
            accessible(&reason_label, Role::Label, &format!("slot {index} reason: {reason}"));
        });
    accessible(&details.header_response, Role::Button, &format!("slot {index} details"));
    command
}

/// The unit's serial and chip ID, the cycle time, the slot's tallies, the last result and a
/// fixture error, each only when the card has room for it.
fn slot_footer_ui(ui: &mut Ui, index: usize, slot: &SlotState, now: Instant, small: f32, medium: f32) {
    let has_room = |ui: &Ui, height: f32| ui.available_height() >= height;
    if has_room(ui, medium + 4.0) {
        let serial = slot.serial.as_deref().unwrap_or("–");
        let chip = slot.chip_uid.as_deref().map(short_chip).unwrap_or_else(|| "–".to_string());
        let identity = ui.add(
            egui::Label::new(RichText::new(format!("{serial} · chip {chip}")).size(medium).monospace())
                .truncate(),
        );
        let full_chip = slot.chip_uid.as_deref().unwrap_or("–");
        accessible(&identity, Role::Label, &format!("slot {index} unit: serial {serial}, chip {full_chip}"));
    }
    if has_room(ui, small + 4.0) {
        ui.horizontal(|ui| {
            if let Some(cycle) = slot.cycle_time(now) {
                let cycle_label = ui.label(RichText::new(format!("cycle {}", seconds(cycle))).size(small));
                accessible(
                    &cycle_label,
                    Role::Label,
                    &format!("slot {index} cycle time: {}", seconds(cycle)),
                );
            }
            ui.label(
                RichText::new(format!("✔ {}  ✖ {}", slot.units_passed, slot.units_failed)).size(small).weak(),
            );
        });
    }
    let is_busy = matches!(
        slot.phase,
        SlotPhase::Running { .. } | SlotPhase::WaitingForStart | SlotPhase::WaitingForScan
    );
    if let (Some(last), true) = (&slot.last_finished, is_busy && has_room(ui, small + 4.0)) {
        let (icon, colour) = match last.result {
            UnitResult::Pass => ("✔", theme::PASS_COLOUR),
            UnitResult::Fail => ("✖", theme::FAIL_COLOUR),
            UnitResult::Aborted => ("■", theme::WAITING_COLOUR),
        };
        ui.label(
            RichText::new(format!(
                "last {icon} {} {}",
                last.serial.as_deref().unwrap_or("–"),
                seconds(Duration::from_millis(last.cycle_time_ms))
            ))
            .size(small)
            .color(colour),
        );
    }
    if let Some(error) = &slot.slot_error {
        ui.add(
            egui::Label::new(RichText::new(format!("⚠ {error}")).size(small).color(theme::WARNING_COLOUR))
                .truncate(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(count: usize, size: (f32, f32), expected: (usize, usize)) {
        assert_eq!(grid_shape(count, Vec2::new(size.0, size.1)), expected, "{count} slots in {size:?}");
    }

    #[test]
    fn slot_grids_keep_cards_large() {
        check(1, (800.0, 500.0), (1, 1));
        check(2, (800.0, 500.0), (2, 1));
        check(4, (800.0, 500.0), (2, 2));
        check(16, (800.0, 500.0), (4, 4));
        check(3, (1600.0, 300.0), (3, 1));
    }

    #[test]
    fn step_titles() {
        assert_eq!(step_title("program-application"), "Program application");
    }
}
