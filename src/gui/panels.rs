//! The panels: `*_ui` functions that draw the stores and return the operator's [`Command`]s.
//! They change nothing but the form fields they edit; everything else is a command for the app.
//!
//! Widgets an operator or a test looks for carry deliberate accessibility labels (the names a
//! screen reader speaks and `egui_kittest` finds): "Start line", "slot 0 state: PASS",
//! "history: DS1-000001 pass", "Export", and so on (docs/gui.md lists them).

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui::{
    self, Align, Color32, FontId, Key, KeyboardShortcut, Layout, Modifiers, RichText, Role, Sense, Stroke,
    TextStyle, Ui, UiBuilder, Vec2, WidgetInfo,
};

use crate::station::{StepName, UnitResult};

use super::command::Command;
use super::frame_timing::FrameTimer;
use super::settings::{ExportChoice, LogLevelFilter, Settings};
use super::store::{
    HistoryRow, HistoryScope, HistoryStore, LineStatus, LineStore, LogStore, ProfilesStore, SlotPhase,
    SlotState, UnitDetails,
};
use super::theme::{self, StateLook};
use crate::station::session::{FaultInjector, SLOTS_MAX, SimFault};

/// Start the line.
pub const START_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::F5);
/// Stop the line.
pub const STOP_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::F6);
/// Export the ledger.
pub const EXPORT_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);
/// What the panels read.
pub struct View<'a> {
    pub line: &'a LineStore,
    pub history: &'a HistoryStore,
    pub log: &'a LogStore,
    pub profiles: &'a ProfilesStore,
    pub station_name: &'a str,
    pub ledger_path: &'a Path,
    pub work_order: Option<&'a str>,
    /// The running line takes each unit's serial from the scanner.
    pub serials_are_scanned: bool,
    /// The `--probe` fixtures (empty: simulated slots, or the profile's default fixture).
    pub probes: &'a [String],
    /// Simulated slots after the `--probe` ones (`--sim`).
    pub sim_slots_after_probes: usize,
    pub faults: &'a FaultInjector,
    pub frame_timer: &'a FrameTimer,
    pub now: Instant,
}

/// Text being typed and choices being made, before they become commands.
#[derive(Debug, Clone)]
pub struct Forms {
    pub scanner: String,
    pub search: String,
    pub profiles_directory: String,
    pub slot_count: usize,
    pub fault_slot: usize,
    pub fault: SimFault,
}

impl Forms {
    pub fn new(settings: &Settings) -> Forms {
        Forms {
            scanner: String::new(),
            search: String::new(),
            profiles_directory: settings.profiles_directory.display().to_string(),
            slot_count: settings.sim_slot_count,
            fault_slot: 0,
            fault: SimFault::default(),
        }
    }
}

/// Larger text than egui's defaults (the station is read at arm's length or further) and
/// labels that do not take clicks (so a whole history row is one click target).
pub fn set_up_style(context: &egui::Context) {
    context.all_styles_mut(|style| {
        style.text_styles.insert(TextStyle::Heading, FontId::proportional(21.0));
        style.text_styles.insert(TextStyle::Body, FontId::proportional(15.0));
        style.text_styles.insert(TextStyle::Button, FontId::proportional(15.0));
        style.text_styles.insert(TextStyle::Monospace, FontId::monospace(13.0));
        style.text_styles.insert(TextStyle::Small, FontId::proportional(12.0));
        style.interaction.selectable_labels = false;
        style.spacing.item_spacing = Vec2::new(8.0, 5.0);
    });
}

/// Gives a widget the accessible name an operator's screen reader (and the tests) use.
fn accessible(response: &egui::Response, role: Role, label: &str) {
    let enabled = response.enabled();
    response.widget_info(|| WidgetInfo::labeled(role, enabled, label));
}

fn push(commands: &mut Vec<Command>, command: Command) {
    if command != Command::Nothing {
        commands.push(command);
    }
}

/// The whole window.
pub fn app_ui(
    ui: &mut Ui,
    view: &View<'_>,
    settings: &mut Settings,
    forms: &mut Forms,
    commands: &mut Vec<Command>,
) {
    egui::Panel::top("toolbar").show(ui, |ui| {
        push(commands, toolbar_ui(ui, view, settings, forms));
        push(commands, scanner_ui(ui, view, forms));
    });
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar_ui(ui, view));
    egui::Panel::bottom("log").resizable(true).default_size(150.0).min_size(60.0).show(ui, |ui| {
        log_ui(ui, view.log, settings);
    });
    egui::Panel::right("side").resizable(true).default_size(450.0).min_size(300.0).show(ui, |ui| {
        // Each section gets its own id scope: the history's rows come and go, and must not
        // shift the ids (and so the keyboard focus) of the widgets below them.
        egui::ScrollArea::vertical().id_salt("side_scroll").auto_shrink(false).show(ui, |ui| {
            push(commands, ui.push_id("history", |ui| history_ui(ui, view, settings, forms)).inner);
            ui.separator();
            push(commands, ui.push_id("export", |ui| export_ui(ui, view.history, settings)).inner);
            ui.separator();
            push(commands, ui.push_id("simulator", |ui| simulator_ui(ui, view, settings, forms)).inner);
        });
    });
    egui::CentralPanel::default().show(ui, |ui| {
        stats_ui(ui, view);
        ui.add_space(8.0);
        push(commands, slots_ui(ui, view, settings.manual_start));
    });
    push(commands, unit_details_ui(ui.ctx(), view.history));
}

/// Title, station, profile, operator, slots, start mode, start/stop and the line's status.
fn toolbar_ui(ui: &mut Ui, view: &View<'_>, settings: &mut Settings, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    let line_active = view.line.is_active();
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("IMPRINT").size(22.0).strong().color(theme::RUNNING_COLOUR));
        let station = ui.label(RichText::new(format!("station {}", view.station_name)).strong());
        accessible(&station, Role::Label, &format!("station: {}", view.station_name));
        ui.separator();

        ui.add_enabled_ui(!line_active, |ui| {
            let profile_label = ui.label("Profile");
            let chosen = settings
                .last_profile
                .as_deref()
                .map(file_name)
                .unwrap_or_else(|| "choose a profile".to_string());
            let combo = egui::ComboBox::from_id_salt("profile").selected_text(chosen).width(150.0).show_ui(
                ui,
                |ui| match &view.profiles.listed {
                    Ok(paths) if paths.is_empty() => {
                        ui.label(format!("no *.toml in {}", view.profiles.directory.display()));
                    }
                    Ok(paths) => {
                        for path in paths {
                            let selected = settings.last_profile.as_deref() == Some(path.as_path());
                            if ui.selectable_label(selected, file_name(path)).clicked() {
                                command = Command::SelectProfile(path.clone());
                            }
                        }
                    }
                    Err(error) => {
                        ui.colored_label(theme::FAIL_COLOUR, error);
                    }
                },
            );
            combo.response.labelled_by(profile_label.id);

            let operator_label = ui.label("Operator ID");
            let operator = ui.add(
                egui::TextEdit::singleline(&mut settings.operator)
                    .id_salt("operator")
                    .hint_text("scan badge")
                    .desired_width(110.0),
            );
            operator.labelled_by(operator_label.id);

            if view.probes.is_empty() {
                let slots_label = ui.label("Slots");
                let slots = ui.add(egui::DragValue::new(&mut forms.slot_count).range(1..=SLOTS_MAX));
                slots.labelled_by(slots_label.id);
                if forms.slot_count != settings.sim_slot_count {
                    command = Command::SetSlotCount(forms.slot_count);
                }
            } else {
                let sims_after_probes = view.sim_slots_after_probes;
                let hover = view.probes.join("\n")
                    + &if sims_after_probes > 0 {
                        format!("\n{sims_after_probes} × sim")
                    } else {
                        String::new()
                    };
                ui.label(format!("Slots {} (--probe)", view.probes.len() + sims_after_probes))
                    .on_hover_text(hover);
            }
            ui.checkbox(&mut settings.manual_start, "Manual start")
                .on_hover_text("each unit waits for Start unit (or Enter in the scanner field)");
        });
        ui.separator();

        let (text, label, fill, next) = if line_active {
            ("⏹  STOP LINE", "Stop line", theme::FAIL_COLOUR, Command::StopLine)
        } else {
            ("▶  START LINE", "Start line", theme::PASS_COLOUR, Command::StartLine)
        };
        let can_start =
            line_active || (settings.last_profile.is_some() && !settings.operator.trim().is_empty());
        let shortcut = if line_active { STOP_SHORTCUT } else { START_SHORTCUT };
        let button = ui.add_enabled(
            can_start && view.line.status != LineStatus::Stopping,
            egui::Button::new(RichText::new(text).size(18.0).strong().color(Color32::BLACK))
                .fill(fill)
                .min_size(Vec2::new(170.0, 34.0))
                .shortcut_text(RichText::new(ui.ctx().format_shortcut(&shortcut)).color(Color32::BLACK)),
        );
        accessible(&button, Role::Button, label);
        if button.clicked() {
            command = next;
        }
        let button = if settings.operator.trim().is_empty() {
            button.on_disabled_hover_text("enter or scan an operator ID first")
        } else {
            button
        };
        let _ = button;

        let (status_text, status_colour) = match &view.line.status {
            LineStatus::Stopped { message } => (message.clone(), ui.visuals().text_color()),
            LineStatus::Starting => ("starting…".to_string(), theme::WAITING_COLOUR),
            LineStatus::Running => ("running".to_string(), theme::RUNNING_COLOUR),
            LineStatus::Stopping => ("stopping after the current steps…".to_string(), theme::WAITING_COLOUR),
        };
        let status = ui.label(RichText::new(&status_text).color(status_colour));
        accessible(&status, Role::Label, &format!("line status: {status_text}"));
    });
    ui.add_space(2.0);
    command
}

/// The scanner field (it keeps the keyboard focus while the line runs, so a keyboard-wedge
/// scanner's text always lands there), the last work order and the chosen profile.
fn scanner_ui(ui: &mut Ui, view: &View<'_>, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(RichText::new("Scanner").strong());
        let scanner = ui
            .add(
                egui::TextEdit::singleline(&mut forms.scanner)
                    .id(egui::Id::unique("scanner"))
                    .hint_text(if view.serials_are_scanned {
                        "scan the unit's serial label, then Enter"
                    } else {
                        "scan a work order or serial, then Enter"
                    })
                    .desired_width(300.0),
            )
            .labelled_by(label.id);
        if scanner.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter)) {
            command = Command::Scanned(std::mem::take(&mut forms.scanner));
        }
        let nothing_focused = ui.ctx().memory(|memory| memory.focused().is_none());
        if view.line.is_active() && nothing_focused {
            scanner.request_focus();
        }
        if let Some(work_order) = view.work_order {
            let order = ui.label(RichText::new(format!("work order {work_order}")).strong());
            accessible(&order, Role::Label, &format!("work order: {work_order}"));
        }
        ui.separator();
        profile_summary_ui(ui, view);
    });
    ui.add_space(2.0);
    command
}

fn profile_summary_ui(ui: &mut Ui, view: &View<'_>) {
    let Some((path, result)) = &view.profiles.checked else {
        ui.label(RichText::new("checking the profile…").weak());
        return;
    };
    match result {
        Ok(summary) => {
            let text = format!("{} · {} · {}", summary.name, summary.model_name, summary.chip_name);
            ui.label(RichText::new(text).weak()).on_hover_text(path.display().to_string());
            for warning in &summary.warnings {
                ui.colored_label(theme::WARNING_COLOUR, format!("⚠ {warning}"));
            }
        }
        Err(problems) => {
            let problem = ui.colored_label(theme::FAIL_COLOUR, format!("✖ {}: {problems}", path.display()));
            accessible(&problem, Role::Label, &format!("profile problem: {problems}"));
        }
    }
}

/// The session's figures as tiles: units, pass, fail, first-pass yield, units per hour.
fn stats_ui(ui: &mut Ui, view: &View<'_>) {
    let stats = &view.line.stats;
    let running_time = view.line.running_time(view.now);
    let units_per_hour = {
        let seconds = running_time.as_secs_f64();
        (seconds >= 1.0).then(|| stats.units as f64 * 3600.0 / seconds)
    };
    let first_pass_yield =
        stats.first_pass_yield_percent().map_or_else(|| "–".to_string(), |percent| format!("{percent:.1} %"));
    let rate = units_per_hour.map_or_else(|| "–".to_string(), |rate| format!("{rate:.0}"));
    let figures: [(&str, String, &str, Color32); 5] = [
        ("units", stats.units.to_string(), "Units", ui.visuals().strong_text_color()),
        ("pass", stats.passed.to_string(), "✔ Pass", theme::PASS_COLOUR),
        ("fail", stats.failed.to_string(), "✖ Fail", theme::FAIL_COLOUR),
        ("first-pass yield", first_pass_yield, "First-pass yield", ui.visuals().strong_text_color()),
        ("units per hour", rate, "Units/hour", ui.visuals().strong_text_color()),
    ];
    let gap = ui.spacing().item_spacing.x;
    let tile_width =
        ((ui.available_width() - gap * (figures.len() - 1) as f32) / figures.len() as f32).max(90.0);
    ui.horizontal(|ui| {
        for (name, value, caption, colour) in figures {
            let tile = egui::Frame::new()
                .fill(ui.visuals().faint_bg_color)
                .stroke(Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color))
                .corner_radius(6.0)
                .inner_margin(egui::Margin::symmetric(10, 4))
                .show(ui, |ui| {
                    ui.set_width(tile_width - 22.0);
                    ui.vertical(|ui| {
                        ui.label(RichText::new(caption).color(colour));
                        ui.label(RichText::new(&value).size(26.0).strong().color(colour));
                    });
                });
            accessible(&tile.response, Role::Label, &format!("{name}: {value}"));
        }
    });
}

/// One card per slot, laid out to use the space best for the slot count.
fn slots_ui(ui: &mut Ui, view: &View<'_>, manual_start: bool) -> Command {
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
        let card_command = slot_card_ui(&mut card, index, slot, manual_start, view.now);
        if card_command != Command::Nothing {
            command = card_command;
        }
    }
    ui.allocate_rect(area, Sense::hover());
    command
}

/// Columns and rows for `count` cards in `size`, choosing the shape whose cards are largest
/// (cards look best about 1.6 times as wide as tall).
fn grid_shape(count: usize, size: Vec2) -> (usize, usize) {
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
fn step_title(step: &str) -> String {
    let mut title = step.replace('-', " ");
    if let Some(first) = title.get(0..1) {
        title.replace_range(0..1, &first.to_ascii_uppercase());
    }
    title
}

/// One slot: the state in large type with its icon and colour, the step's progress, the
/// unit's serial and chip ID, the cycle time and the slot's tallies. Small cards (many slots)
/// drop the less important lines rather than overflow.
fn slot_card_ui(ui: &mut Ui, index: usize, slot: &SlotState, manual_start: bool, now: Instant) -> Command {
    let mut command = Command::Nothing;
    let look = match slot.phase {
        SlotPhase::Idle => StateLook::Idle,
        SlotPhase::WaitingForStart | SlotPhase::WaitingForScan => StateLook::Waiting,
        SlotPhase::Running { .. } => StateLook::Running,
        SlotPhase::Passed => StateLook::Pass,
        SlotPhase::Failed { .. } => StateLook::Fail,
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
        SlotPhase::Failed { step, reason } => ("FAIL".to_string(), format!("FAIL at {step}: {reason}")),
    };
    let margin = if card_height < 150.0 { 6 } else { 10 };
    egui::Frame::new()
        .fill(look.background())
        .stroke(Stroke::new(2.0, look.colour()))
        .corner_radius(8.0)
        .inner_margin(egui::Margin::same(margin))
        .show(ui, |ui| {
            let inner = ui.available_size();
            ui.set_min_size(inner);
            ui.set_max_size(inner);
            ui.spacing_mut().item_spacing.y = (card_height * 0.02).clamp(2.0, 6.0);
            let has_room = |ui: &Ui, height: f32| ui.available_height() >= height;
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("SLOT {index}")).size(small + 1.0).strong());
                let fixture = ui.label(RichText::new(&slot.fixture_name).size(small).weak());
                accessible(&fixture, Role::Label, &format!("slot {index} fixture: {}", slot.fixture_name));
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if slot.unit > 0 {
                        ui.label(RichText::new(format!("unit {}", slot.unit)).size(small).weak());
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

            match &slot.phase {
                SlotPhase::Running { step_number, .. } => {
                    let (fraction, text) = match &slot.progress {
                        Some(progress) => {
                            let left = progress
                                .time_left()
                                .map(|left| format!(" · {} left", seconds(left)))
                                .unwrap_or_default();
                            let done = format!(
                                "{} / {}{left}",
                                byte_size(progress.bytes_done),
                                byte_size(progress.bytes_total)
                            );
                            (progress.fraction(), done)
                        }
                        None => (
                            (*step_number as f32 - 1.0) / StepName::ALL.len() as f32,
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
                SlotPhase::Failed { step, reason } => {
                    let reason_size = if card_height < 150.0 { small } else { medium };
                    let reason_label = ui.add(
                        egui::Label::new(
                            RichText::new(format!("{}: {reason}", step_title(step)))
                                .size(reason_size)
                                .color(theme::FAIL_COLOUR),
                        )
                        .wrap(),
                    );
                    accessible(&reason_label, Role::Label, &format!("slot {index} reason: {reason}"));
                }
                _ => {}
            }
            if slot.is_waiting_for_start && manual_start {
                let button = ui.add(
                    egui::Button::new(RichText::new("▶ Start unit").size(medium).color(Color32::BLACK))
                        .fill(theme::WAITING_COLOUR),
                );
                accessible(&button, Role::Button, &format!("Start unit on slot {index}"));
                if button.clicked() {
                    command = Command::StartUnit { slot: index };
                }
            }
            if has_room(ui, medium + 4.0) {
                let serial = slot.serial.as_deref().unwrap_or("–");
                let chip = slot.chip_uid.as_deref().map(short_chip).unwrap_or_else(|| "–".to_string());
                let identity = ui.add(
                    egui::Label::new(
                        RichText::new(format!("{serial} · chip {chip}")).size(medium).monospace(),
                    )
                    .truncate(),
                );
                let full_chip = slot.chip_uid.as_deref().unwrap_or("–");
                accessible(
                    &identity,
                    Role::Label,
                    &format!("slot {index} unit: serial {serial}, chip {full_chip}"),
                );
            }
            if has_room(ui, small + 4.0) {
                ui.horizontal(|ui| {
                    if let Some(cycle) = slot.cycle_time(now) {
                        let cycle_label =
                            ui.label(RichText::new(format!("cycle {}", seconds(cycle))).size(small));
                        accessible(
                            &cycle_label,
                            Role::Label,
                            &format!("slot {index} cycle time: {}", seconds(cycle)),
                        );
                    }
                    ui.label(
                        RichText::new(format!("✔ {}  ✖ {}", slot.units_passed, slot.units_failed))
                            .size(small)
                            .weak(),
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
                    egui::Label::new(
                        RichText::new(format!("⚠ {error}")).size(small).color(theme::WARNING_COLOUR),
                    )
                    .truncate(),
                );
            }
        });
    command
}

/// The ledger's history: search, the table (newest first), a click opens a unit's steps.
fn history_ui(ui: &mut Ui, view: &View<'_>, settings: &mut Settings, forms: &mut Forms) -> Command {
    let history = view.history;
    let mut command = Command::Nothing;
    ui.horizontal(|ui| {
        ui.heading("History");
        if history.is_loading {
            ui.spinner();
        }
    });
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        let search = ui
            .add(
                egui::TextEdit::singleline(&mut forms.search)
                    .id_salt("search")
                    .hint_text("serial or chip ID")
                    .desired_width(170.0),
            )
            .labelled_by(label.id);
        if search.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter)) {
            command = Command::RefreshHistory;
        }
        let scope_before = settings.history_scope;
        let scope = egui::ComboBox::from_id_salt("history_scope")
            .selected_text(settings.history_scope.label())
            .show_ui(ui, |ui| {
                for scope in HistoryScope::ALL {
                    ui.selectable_value(&mut settings.history_scope, scope, scope.label());
                }
            });
        accessible(&scope.response, Role::ComboBox, "History scope");
        let refresh = ui.button("⟳");
        accessible(&refresh, Role::Button, "Refresh history");
        if refresh.clicked() || settings.history_scope != scope_before {
            command = Command::RefreshHistory;
        }
    });
    if let Some(error) = &history.error {
        ui.colored_label(theme::FAIL_COLOUR, format!("✖ {error}"));
    }
    let widths = [96.0, 104.0, 60.0, 130.0];
    let row_height = 22.0;
    ui.horizontal(|ui| {
        for (title, width) in
            ["Time (UTC)", "Serial", "Result", "Chip / failing step"].into_iter().zip(widths)
        {
            cell(ui, width, row_height, |ui| {
                ui.label(RichText::new(title).strong());
            });
        }
    });
    let summary = if history.shown_search.trim().is_empty() {
        format!("{} runs ({})", history.rows.len(), settings.history_scope.label())
    } else {
        format!("{} runs matching {:?}", history.rows.len(), history.shown_search.trim())
    };
    egui::ScrollArea::vertical()
        .id_salt("history_rows")
        .max_height(260.0)
        .min_scrolled_height(260.0)
        .auto_shrink(false)
        .show_rows(ui, row_height, history.rows.len(), |ui, range| {
            for row in &history.rows[range] {
                if let Some(key) = history_row_ui(ui, row, &widths, row_height) {
                    command = Command::OpenUnit(key);
                }
            }
        });
    let summary_label = ui.label(RichText::new(summary).weak());
    accessible(&summary_label, Role::Label, &format!("history: {} rows", history.rows.len()));
    // Always one line, so the sections below never jump when the totals arrive.
    let totals = match &history.ledger_stats {
        Some(stats) => {
            let yield_text = stats
                .first_pass_yield_percent
                .map_or_else(|| "–".to_string(), |percent| format!("{percent:.1} %"));
            let median =
                stats.median_run_ms.map_or_else(|| "–".to_string(), |ms| seconds(Duration::from_millis(ms)));
            format!(
                "ledger: {} units · {} runs ({} pass, {} fail) · first-pass yield {yield_text} · median run {median}",
                stats.units, stats.runs, stats.runs_passed, stats.runs_failed
            )
        }
        None => "ledger: no runs yet".to_string(),
    };
    ui.add(egui::Label::new(RichText::new(totals).weak()).truncate());
    command
}

/// One history row; returns the unit's key when the row was clicked.
fn history_row_ui(ui: &mut Ui, row: &HistoryRow, widths: &[f32; 4], row_height: f32) -> Option<String> {
    let (rect, response) =
        ui.allocate_exact_size(Vec2::new(ui.available_width(), row_height), Sense::click());
    let serial = row.serial.as_deref().unwrap_or("–");
    accessible(&response, Role::Button, &format!("history: {serial} {}", row.result));
    if response.hovered() {
        ui.painter().rect_filled(rect, 3.0, ui.visuals().widgets.hovered.weak_bg_fill);
    }
    let mut row_ui =
        ui.new_child(UiBuilder::new().max_rect(rect).layout(Layout::left_to_right(Align::Center)));
    let passed = row.result == "pass";
    let time = row.started_at.get(11..19).unwrap_or(&row.started_at);
    cell(&mut row_ui, widths[0], row_height, |ui| {
        ui.label(RichText::new(time).monospace());
    });
    cell(&mut row_ui, widths[1], row_height, |ui| {
        ui.add(egui::Label::new(RichText::new(serial).monospace().strong()).truncate());
    });
    cell(&mut row_ui, widths[2], row_height, |ui| {
        let (text, colour) =
            if passed { ("✔ PASS", theme::PASS_COLOUR) } else { ("✖ FAIL", theme::FAIL_COLOUR) };
        ui.label(RichText::new(text).color(colour).strong());
    });
    cell(&mut row_ui, widths[3], row_height, |ui| {
        let text = if passed {
            row.chip_uid.as_deref().map(short_chip).unwrap_or_default()
        } else {
            format!("{}: {}", row.failing_step.as_deref().unwrap_or("–"), row.reason.as_deref().unwrap_or(""))
        };
        ui.add(egui::Label::new(RichText::new(text).small()).truncate());
    });
    let response = response.on_hover_text(format!(
        "{} on {} by {} · {} · click for every step",
        row.started_at,
        row.probe,
        row.operator,
        seconds(Duration::from_millis(row.duration_ms))
    ));
    response.clicked().then(|| row.lookup_key().map(str::to_string)).flatten()
}

fn cell(ui: &mut Ui, width: f32, height: f32, add_contents: impl FnOnce(&mut Ui)) {
    ui.allocate_ui_with_layout(Vec2::new(width, height), Layout::left_to_right(Align::Center), |ui| {
        ui.set_width(width);
        add_contents(ui);
    });
}

/// Export every run of the ledger to a file.
fn export_ui(ui: &mut Ui, history: &HistoryStore, settings: &mut Settings) -> Command {
    let mut command = Command::Nothing;
    ui.heading("Export");
    ui.horizontal(|ui| {
        let label = ui.label("Export to");
        ui.add(
            egui::TextEdit::singleline(&mut settings.export_path).id_salt("export_path").desired_width(180.0),
        )
        .labelled_by(label.id);
        let format_before = settings.export_format;
        let format = egui::ComboBox::from_id_salt("export_format")
            .selected_text(settings.export_format.label())
            .show_ui(ui, |ui| {
                for format in ExportChoice::ALL {
                    ui.selectable_value(&mut settings.export_format, format, format.label());
                }
            });
        accessible(&format.response, Role::ComboBox, "Export format");
        if settings.export_format != format_before {
            settings.export_path = with_extension(&settings.export_path, settings.export_format.extension());
        }
        let button =
            ui.add(egui::Button::new("Export").shortcut_text(ui.ctx().format_shortcut(&EXPORT_SHORTCUT)));
        accessible(&button, Role::Button, "Export ledger");
        if button.clicked() {
            command = Command::Export;
        }
    });
    if let Some(message) = &history.export_message {
        let colour = if message.starts_with("export failed") || message.starts_with("export:") {
            theme::FAIL_COLOUR
        } else {
            ui.visuals().text_color()
        };
        let label = ui.add(egui::Label::new(RichText::new(message).color(colour)).wrap());
        accessible(&label, Role::Label, &format!("export status: {message}"));
    }
    command
}

/// Replaces a known export extension (or adds one).
fn with_extension(path: &str, extension: &str) -> String {
    for known in ["csv", "jsonl", "json"] {
        if let Some(stem) = path.strip_suffix(&format!(".{known}")) {
            return format!("{stem}.{extension}");
        }
    }
    format!("{path}.{extension}")
}

/// Simulator tools (fault injection for demos) and the station's less frequent settings.
fn simulator_ui(ui: &mut Ui, view: &View<'_>, settings: &mut Settings, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    egui::CollapsingHeader::new("Simulator: inject a fault").default_open(true).show(ui, |ui| {
        let slot_count = view.line.slots.len().max(1);
        forms.fault_slot = forms.fault_slot.min(slot_count - 1);
        ui.horizontal_wrapped(|ui| {
            ui.label("Slot");
            let slot_choice = egui::ComboBox::from_id_salt("fault_slot")
                .selected_text(forms.fault_slot.to_string())
                .width(50.0)
                .show_ui(ui, |ui| {
                    for slot in 0..slot_count {
                        ui.selectable_value(&mut forms.fault_slot, slot, slot.to_string());
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
                SimFault::ProbeLostAtStep(step) | SimFault::HangAtStep(step) => Some(
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
        let armed: Vec<String> = (0..slot_count)
            .filter(|slot| view.faults.armed(*slot).is_some())
            .map(|slot| format!("slot {slot}"))
            .collect();
        if !armed.is_empty() {
            ui.colored_label(
                theme::WAITING_COLOUR,
                format!("armed for the next unit on {}", armed.join(", ")),
            );
        }
    });
    egui::CollapsingHeader::new("Station settings").default_open(false).show(ui, |ui| {
        ui.horizontal(|ui| {
            let label = ui.label("Profiles folder");
            let folder = ui
                .add(
                    egui::TextEdit::singleline(&mut forms.profiles_directory)
                        .id_salt("profiles_directory")
                        .desired_width(180.0),
                )
                .labelled_by(label.id);
            if ui.button("Rescan").clicked()
                || (folder.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter)))
            {
                command = Command::RescanProfiles;
            }
        });
        ui.add_enabled_ui(!view.line.is_active(), |ui| {
            ui.checkbox(
                &mut settings.sim_timing_zero,
                "Simulator at full speed (ignore the profile's timing)",
            );
            ui.horizontal(|ui| {
                ui.label("Pause between units");
                let pause = ui.add(
                    egui::DragValue::new(&mut settings.unit_change_delay_ms).range(0..=10_000).suffix(" ms"),
                );
                accessible(&pause, Role::SpinButton, "Pause between units");
            });
        });
        ui.label(RichText::new(format!("ledger {}", view.ledger_path.display())).weak());
    });
    command
}

/// The log panel: captured `tracing` events, filtered by level, newest at the bottom.
fn log_ui(ui: &mut Ui, log: &LogStore, settings: &mut Settings) {
    ui.horizontal(|ui| {
        ui.strong("Log");
        for level in LogLevelFilter::ALL {
            let chip = ui.selectable_label(settings.log_level == level, level.label());
            accessible(&chip, Role::Button, &format!("log level {}", level.label()));
            if chip.clicked() {
                settings.log_level = level;
            }
        }
        if log.dropped > 0 {
            ui.colored_label(theme::WARNING_COLOUR, format!("{} lines dropped (UI busy)", log.dropped));
        }
    });
    let shown: Vec<usize> = log
        .lines
        .iter()
        .enumerate()
        .filter(|(_, line)| settings.log_level.shows(line.level))
        .map(|(index, _)| index)
        .collect();
    let row_height = ui.text_style_height(&TextStyle::Monospace);
    egui::ScrollArea::vertical().id_salt("log_rows").stick_to_bottom(true).auto_shrink(false).show_rows(
        ui,
        row_height,
        shown.len(),
        |ui, range| {
            for &index in &shown[range] {
                let line = &log.lines[index];
                let colour = match line.level {
                    tracing::Level::ERROR => theme::FAIL_COLOUR,
                    tracing::Level::WARN => theme::WARNING_COLOUR,
                    tracing::Level::INFO => ui.visuals().text_color(),
                    _ => ui.visuals().weak_text_color(),
                };
                let time = line.time.get(11..23).unwrap_or(&line.time);
                let text = format!("{time} {:<5} {}", line.level, line.text);
                let label =
                    ui.add(egui::Label::new(RichText::new(&text).monospace().color(colour)).truncate());
                accessible(&label, Role::Label, &format!("log: {} {}", line.level, line.text));
            }
        },
    );
}

fn status_bar_ui(ui: &mut Ui, view: &View<'_>) {
    ui.horizontal(|ui| {
        let frame = view.frame_timer.recent_ui_closure().map_or_else(String::new, |recent| {
            format!("UI {:.1} ms p50 · {:.1} ms p99", recent.p50_ms, recent.p99_ms)
        });
        ui.label(RichText::new(frame).small().weak());
        ui.separator();
        ui.label(
            RichText::new(format!(
                "{} start · {} stop · {} export · ledger {}",
                ui.ctx().format_shortcut(&START_SHORTCUT),
                ui.ctx().format_shortcut(&STOP_SHORTCUT),
                ui.ctx().format_shortcut(&EXPORT_SHORTCUT),
                view.ledger_path.display()
            ))
            .small()
            .weak(),
        );
    });
}

/// A unit's identities and every run with every step, in a window.
fn unit_details_ui(context: &egui::Context, history: &HistoryStore) -> Command {
    let Some(details) = &history.details else {
        return Command::Nothing;
    };
    let title = match details {
        UnitDetails::Found(unit) => {
            format!(
                "Unit {}",
                unit.current.as_ref().map_or(unit.chip_uid.as_str(), |current| current.serial.as_str())
            )
        }
        UnitDetails::Loading { key } | UnitDetails::NotFound { key } | UnitDetails::Failed { key, .. } => {
            format!("Unit {key}")
        }
    };
    let mut open = true;
    egui::Window::new(title)
        .id(egui::Id::unique("unit_details"))
        .open(&mut open)
        .default_size([620.0, 440.0])
        .vscroll(true)
        .show(context, |ui| match details {
            UnitDetails::Loading { .. } => {
                ui.spinner();
            }
            UnitDetails::NotFound { key } => {
                ui.label(format!("the ledger has no unit with serial or chip ID {key}"));
            }
            UnitDetails::Failed { error, .. } => {
                ui.colored_label(theme::FAIL_COLOUR, error);
            }
            UnitDetails::Found(unit) => {
                egui::Grid::new("unit_identity").num_columns(2).show(ui, |ui| {
                    ui.label("chip UID");
                    ui.monospace(&unit.chip_uid);
                    ui.end_row();
                    if let Some(current) = &unit.current {
                        ui.label("serial");
                        ui.monospace(&current.serial);
                        ui.end_row();
                        ui.label("device ID");
                        ui.monospace(&current.device_id);
                        ui.end_row();
                        ui.label("profile");
                        ui.label(&current.profile);
                        ui.end_row();
                        ui.label("identity since");
                        ui.label(&current.created_at);
                        ui.end_row();
                    }
                    for retired in &unit.retired {
                        ui.label("retired serial");
                        ui.label(format!(
                            "{} (until {}, replaced by {})",
                            retired.serial, retired.retired_at, retired.replaced_by_serial
                        ));
                        ui.end_row();
                    }
                });
                for (position, run) in unit.runs.iter().enumerate().rev() {
                    let passed = run.result == "pass";
                    let (icon, colour) = if passed {
                        ("✔ PASS", theme::PASS_COLOUR)
                    } else {
                        ("✖ FAIL", theme::FAIL_COLOUR)
                    };
                    let header = RichText::new(format!(
                        "{icon}  run {} · {} · {} by {}",
                        position + 1,
                        run.started_at,
                        run.probe,
                        run.operator
                    ))
                    .color(colour);
                    egui::CollapsingHeader::new(header)
                        .id_salt(("run", run.run_id))
                        .default_open(position + 1 == unit.runs.len())
                        .show(ui, |ui| {
                            if let (Some(step), Some(reason)) = (&run.failing_step, &run.reason) {
                                ui.colored_label(theme::FAIL_COLOUR, format!("failed at {step}: {reason}"));
                            }
                            egui::Grid::new(("steps", run.run_id)).num_columns(4).striped(true).show(
                                ui,
                                |ui| {
                                    for title in ["#", "step", "status", "ms"] {
                                        ui.strong(title);
                                    }
                                    ui.strong("detail");
                                    ui.end_row();
                                    for step in &run.steps {
                                        ui.label(step.ordinal.to_string());
                                        ui.label(&step.name);
                                        let status_colour = match step.status.as_str() {
                                            "passed" => theme::PASS_COLOUR,
                                            "failed" => theme::FAIL_COLOUR,
                                            _ => ui.visuals().weak_text_color(),
                                        };
                                        let status = ui.colored_label(status_colour, &step.status);
                                        accessible(
                                            &status,
                                            Role::Label,
                                            &format!("step {}: {}", step.name, step.status),
                                        );
                                        ui.label(step.duration_ms.to_string());
                                        let detail = step.detail.to_string();
                                        ui.add(
                                            egui::Label::new(RichText::new(&detail).small().monospace())
                                                .truncate(),
                                        )
                                        .on_hover_text(detail);
                                        ui.end_row();
                                    }
                                },
                            );
                            ui.label(
                                RichText::new(format!("record hash {}", run.record_hash))
                                    .small()
                                    .monospace()
                                    .weak(),
                            );
                        });
                }
            }
        });
    if open { Command::Nothing } else { Command::CloseUnit }
}

/// The fault parameter's widget kind: a step list or a number.
fn parameter_role(fault: &SimFault) -> Role {
    if matches!(fault, SimFault::ProbeLostAtStep(_) | SimFault::HangAtStep(_)) {
        Role::ComboBox
    } else {
        Role::SpinButton
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// The first and last bytes of a long chip ID (the full one is in the accessible label and
/// the unit's details).
fn short_chip(chip_uid: &str) -> String {
    if chip_uid.len() <= 12 {
        chip_uid.to_string()
    } else {
        format!("{}…{}", &chip_uid[..6], &chip_uid[chip_uid.len() - 4..])
    }
}

fn byte_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
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
    fn words_for_the_operator() {
        assert_eq!(step_title("program-application"), "Program application");
        assert_eq!(short_chip("0123456789abcdef01234567"), "012345…4567");
        assert_eq!(byte_size(491_520), "480 KiB");
        assert_eq!(with_extension("out/export.csv", "jsonl"), "out/export.jsonl");
        assert_eq!(with_extension("export", "json"), "export.json");
    }
}
