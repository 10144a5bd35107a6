//! The panels: `*_ui` functions that draw the stores and return the operator's [`Command`]s.
//! They change nothing but the form fields they edit; everything else is a command for the app.
//!
//! Widgets an operator or a test looks for carry deliberate accessibility labels (the names a
//! screen reader speaks and `egui_kittest` finds): "Start line", "slot 0 state: PASS",
//! "history: DS1-000001 pass", "Export", and so on (docs/gui.md lists them).

mod card_texts;
mod failed_boards;
mod history;
mod log;
mod operator;
mod simulator;
mod slots;
mod station_settings;

pub use card_texts::CardTexts;
use failed_boards::failed_boards_ui;
use history::{export_ui, history_ui, unit_details_ui};
use log::log_ui;
use operator::{operator_ui, start_blocker_ui};
use simulator::simulator_ui;
use slots::slots_ui;
use station_settings::station_settings_ui;

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui::{
    self, Align, Color32, FontId, Key, KeyboardShortcut, Layout, Modifiers, RichText, Role, Sense, Stroke,
    TextStyle, Ui, UiBuilder, Vec2, WidgetInfo,
};

use crate::station::{FailureCategory, StepName, UnitResult};

use super::app::ScanNote;
use super::command::Command;
use super::frame_timing::FrameTimer;
use super::settings::{ExportChoice, LogLevelFilter, Settings};
use super::shift::ShiftStore;
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
/// Acknowledge the latched failure that has waited longest (works while the scanner field
/// has the focus, which a digit or Enter would not).
pub const ACKNOWLEDGE_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::F8);
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
    /// The operator, the failed boards and the latched slots.
    pub shift: &'a ShiftStore,
    /// Latched cards draw their flashing frame bright this frame (false: the signal is off).
    pub flash_is_on: bool,
    /// Why START is refused (`None` while the line runs or may start).
    pub start_blocker: Option<&'a str>,
    /// The station settings may be changed (unlocked with the PIN, or no PIN set).
    pub settings_unlocked: bool,
    /// The last answer to a PIN entry.
    pub supervisor_message: Option<&'a str>,
    /// The answer to the last scan, beside the scanner field.
    pub scan_note: Option<&'a ScanNote>,
    /// The slot a slot label chose for the next serial label or start.
    pub selected_slot: Option<usize>,
    /// Simulator: slots whose board is off the fixture.
    pub boards_removed: &'a std::collections::BTreeSet<usize>,
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
    /// The "abort the units in flight?" question is open.
    pub confirming_abort: bool,
    /// The operator ID being typed (or scanned from a badge) to log in.
    pub operator_login: String,
    /// The supervisor PIN being typed to unlock the station settings.
    pub supervisor_pin: String,
    /// A new supervisor PIN being typed.
    pub new_supervisor_pin: String,
    /// The supervisor view was asked for and waits for the supervisor PIN.
    pub asking_view_pin: bool,
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
            confirming_abort: false,
            operator_login: String::new(),
            supervisor_pin: String::new(),
            new_supervisor_pin: String::new(),
            asking_view_pin: false,
        }
    }
}

/// The window's title ("IMPRINT").
const TITLE_SIZE: f32 = 22.0;
/// START LINE / STOP LINE.
const LINE_BUTTON_SIZE: f32 = 18.0;
/// The shift's figures (units, pass, fail, yield, units per hour).
const FIGURE_SIZE: f32 = 26.0;

/// Every character the window's own texts are made of: printable ASCII and the symbols its
/// labels and state words use (a test checks the GUI's sources use no other).
const WINDOW_CHARACTERS: &str = concat!(
    " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
    "·–—…×µ✔✖⚠⟳▶⏹⏸■"
);

/// The ligatures of egui's proportional font (Ubuntu Light's `liga`: one glyph for "ff", "fi", …,
/// as in a chip ID "…6407ff495"); its monospace font (Hack) has none.
const WINDOW_LIGATURES: &str = " ff fi fl ffi ffl";

/// Larger text than egui's defaults (the station is read at arm's length or further) and
/// labels that do not take clicks (so a whole history row is one click target).
///
/// Glyphs are drawn at whole pixels and not hinted: egui then rasterizes a character once per
/// size (not up to four times, at quarter-pixel offsets, each hinted by running the font's
/// program again whenever the size changes), so [`warm_glyphs`] can prepare all of them before
/// the line starts. A hinted glyph took a median 52 µs (up to 1.3 ms), an unhinted one 9–11 µs
/// (docs/performance.md, GUI, seventh pass); the text looks the same at these sizes.
pub fn set_up_style(context: &egui::Context) {
    context.all_styles_mut(|style| {
        style.text_styles.insert(TextStyle::Heading, FontId::proportional(21.0));
        style.text_styles.insert(TextStyle::Body, FontId::proportional(15.0));
        style.text_styles.insert(TextStyle::Button, FontId::proportional(15.0));
        style.text_styles.insert(TextStyle::Monospace, FontId::monospace(13.0));
        style.text_styles.insert(TextStyle::Small, FontId::proportional(12.0));
        style.interaction.selectable_labels = false;
        style.spacing.item_spacing = Vec2::new(8.0, 5.0);
        style.visuals.text_options.font_hinting = false;
        style.visuals.text_options.subpixel_binning = false;
    });
}

/// Lays out every character of the window in each of `fonts` not prepared before (at this
/// pixels-per-point), so egui rasterizes their glyphs now rather than in the frame a text first
/// shows them: at 64 slots the first failed board's row brought 40 new glyphs into one frame.
fn warm_glyphs(ui: &Ui, fonts: impl IntoIterator<Item = FontId>) {
    let pixels_per_point = ui.ctx().pixels_per_point();
    for font in fonts {
        let key = egui::Id::unique("glyphs warmed").with((
            font.size.to_bits(),
            &font.family,
            pixels_per_point.to_bits(),
        ));
        if ui.data(|data| data.get_temp::<()>(key).is_some()) {
            continue;
        }
        ui.data_mut(|data| data.insert_temp(key, ()));
        let text = format!("{WINDOW_CHARACTERS}{WINDOW_LIGATURES}");
        ui.fonts_mut(|fonts| fonts.layout_no_wrap(text, font, Color32::WHITE));
    }
}

/// The fonts of the window's fixed-size texts: its text styles, title, START/STOP and figures.
fn window_fonts(ui: &Ui) -> Vec<FontId> {
    let fixed = [TITLE_SIZE, LINE_BUTTON_SIZE, FIGURE_SIZE].map(FontId::proportional);
    ui.style().text_styles.values().cloned().chain(fixed).collect()
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
    texts: &mut CardTexts,
    commands: &mut Vec<Command>,
) {
    warm_glyphs(ui, window_fonts(ui));
    egui::Panel::top("toolbar").show(ui, |ui| {
        push(commands, toolbar_ui(ui, view, settings, forms));
        push(commands, scanner_ui(ui, view, forms));
    });
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar_ui(ui, view));
    // The operator view shows the cards (and the shift's failed boards); the supervisor view
    // adds the log, history, export, simulator and station settings.
    if settings.supervisor_view {
        egui::Panel::bottom("log").resizable(true).default_size(150.0).min_size(60.0).show(ui, |ui| {
            log_ui(ui, view.log, settings);
        });
    }
    if settings.supervisor_view {
        side_panel_ui(ui, view, settings, forms, commands);
    } else if view.line.is_active() || !view.shift.failed_boards.is_empty() {
        // The operator view keeps the cards' width: the failed boards go below them. The list
        // is there (empty) from the line's start, so the first failure does not move every card.
        let panel = egui::Panel::bottom("failed_boards_operator").resizable(true).default_size(110.0);
        panel.min_size(60.0).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("failed_boards_scroll").auto_shrink(false).show(ui, |ui| {
                push(commands, ui.push_id("failed_boards", |ui| failed_boards_ui(ui, view, true)).inner);
            });
        });
    }
    egui::CentralPanel::default().show(ui, |ui| {
        stats_ui(ui, view);
        ui.add_space(8.0);
        push(commands, slots_ui(ui, view, settings.manual_start, texts));
    });
    push(commands, unit_details_ui(ui.ctx(), view.history));
}

/// The supervisor view's side panel: the shift's failed boards, the history, export, simulator
/// and station settings.
fn side_panel_ui(
    ui: &mut Ui,
    view: &View<'_>,
    settings: &mut Settings,
    forms: &mut Forms,
    commands: &mut Vec<Command>,
) {
    egui::Panel::right("side").resizable(true).default_size(450.0).min_size(300.0).show(ui, |ui| {
        // Each section gets its own id scope: the history's rows come and go, and must not
        // shift the ids (and so the keyboard focus) of the widgets below them.
        egui::ScrollArea::vertical().id_salt("side_scroll").auto_shrink(false).show(ui, |ui| {
            push(commands, ui.push_id("failed_boards", |ui| failed_boards_ui(ui, view, false)).inner);
            push(commands, ui.push_id("history", |ui| history_ui(ui, view, settings, forms)).inner);
            ui.separator();
            push(commands, ui.push_id("export", |ui| export_ui(ui, view.history, settings)).inner);
            ui.separator();
            push(commands, ui.push_id("simulator", |ui| simulator_ui(ui, view, forms)).inner);
            ui.separator();
            push(commands, ui.push_id("station", |ui| station_settings_ui(ui, view, settings, forms)).inner);
        });
    });
}

/// The operator view / supervisor view switch; with a supervisor PIN set, the supervisor view
/// asks for it first.
fn view_switch_ui(ui: &mut Ui, view: &View<'_>, settings: &Settings, forms: &mut Forms) -> Command {
    if settings.supervisor_view {
        let button =
            ui.button("Operator view").on_hover_text("hide the history, export, simulator, settings and log");
        accessible(&button, Role::Button, "Operator view");
        return if button.clicked() { Command::ShowSupervisorView(false) } else { Command::Nothing };
    }
    if forms.asking_view_pin {
        // Each item on its own, so the toolbar wraps between them on a narrow window.
        let label = ui.label("Supervisor PIN");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut forms.supervisor_pin)
                    .password(true)
                    .id_salt("view_pin")
                    .desired_width(90.0),
            )
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter));
        let unlock = ui.button("Unlock");
        accessible(&unlock, Role::Button, "Unlock");
        let command = if entered || unlock.clicked() {
            Command::UnlockSettings(std::mem::take(&mut forms.supervisor_pin))
        } else {
            Command::Nothing
        };
        if let Some(message) = view.supervisor_message {
            let answer = ui.colored_label(theme::WAITING_COLOUR, message);
            accessible(&answer, Role::Label, &format!("supervisor: {message}"));
        }
        let cancel = ui.button("Cancel");
        accessible(&cancel, Role::Button, "Cancel supervisor view");
        if cancel.clicked() {
            forms.asking_view_pin = false;
        }
        return command;
    }
    let button =
        ui.button("Supervisor view").on_hover_text("show the history, export, simulator, settings and log");
    accessible(&button, Role::Button, "Supervisor view");
    if button.clicked() { Command::ShowSupervisorView(true) } else { Command::Nothing }
}

/// Title, station, profile, operator, slots, start mode, start/stop and the line's status.
fn toolbar_ui(ui: &mut Ui, view: &View<'_>, settings: &mut Settings, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    let line_active = view.line.is_active();
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("IMPRINT").size(TITLE_SIZE).strong().color(theme::RUNNING_COLOUR));
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

            if let Some(slot_command) = slot_settings_ui(ui, view, settings, forms) {
                command = slot_command;
            }
        });
        ui.separator();
        command = match (operator_ui(ui, view, forms), command.clone()) {
            (Command::Nothing, earlier) => earlier,
            (operator_command, _) => operator_command,
        };
        ui.separator();

        // Stop lets the units in flight finish; while they do, the same button offers to abort
        // them, which asks first (an aborted unit is left half-provisioned).
        let stopping = view.line.status == LineStatus::Stopping;
        let (text, label, fill, next) = if stopping {
            ("⏹  ABORT UNITS", "Abort units in flight", theme::FAIL_COLOUR, Command::Nothing)
        } else if line_active {
            ("⏹  STOP LINE", "Stop line", theme::FAIL_COLOUR, Command::StopLine)
        } else {
            ("▶  START LINE", "Start line", theme::PASS_COLOUR, Command::StartLine)
        };
        let can_start = line_active || view.start_blocker.is_none();
        let shortcut = if line_active { STOP_SHORTCUT } else { START_SHORTCUT };
        let button = ui.add_enabled(
            can_start && !forms.confirming_abort,
            egui::Button::new(RichText::new(text).size(LINE_BUTTON_SIZE).strong().color(Color32::BLACK))
                .fill(fill)
                .min_size(Vec2::new(170.0, 34.0))
                .shortcut_text(RichText::new(ui.ctx().format_shortcut(&shortcut)).color(Color32::BLACK)),
        );
        accessible(&button, Role::Button, label);
        if let Some(answer) = line_button_answer(ui, forms, button.clicked(), stopping, next) {
            command = answer;
        }
        start_blocker_ui(ui, view);
        ui.separator();
        if let answer @ (Command::ShowSupervisorView(_) | Command::UnlockSettings(_)) =
            view_switch_ui(ui, view, settings, forms)
        {
            command = answer;
        }

        let (status_text, status_colour) = match &view.line.status {
            LineStatus::Stopped { message } => (message.clone(), ui.visuals().text_color()),
            LineStatus::Starting => ("starting…".to_string(), theme::WAITING_COLOUR),
            LineStatus::Running => ("running".to_string(), theme::RUNNING_COLOUR),
            LineStatus::Stopping => {
                ("stopping: the units in flight finish…".to_string(), theme::WAITING_COLOUR)
            }
        };
        let status = ui.label(RichText::new(&status_text).color(status_colour));
        accessible(&status, Role::Label, &format!("line status: {status_text}"));
    });
    ui.add_space(2.0);
    command
}

/// The scanner field (it keeps the keyboard focus while the line runs, so a keyboard-wedge
/// scanner's text always lands there), the last work order and the chosen profile.
/// What the start/stop/abort button asks for this frame: its own command, or, while the line
/// stops, the abort question (opened by the click) and its answer.
fn line_button_answer(
    ui: &Ui,
    forms: &mut Forms,
    clicked: bool,
    stopping: bool,
    next: Command,
) -> Option<Command> {
    if !stopping {
        forms.confirming_abort = false;
        return clicked.then_some(next);
    }
    if clicked {
        forms.confirming_abort = true;
    }
    if forms.confirming_abort { abort_question_ui(ui.ctx(), forms) } else { None }
}

/// The question before an abort: the units in flight end after their current step and are
/// recorded ABORTED, each board left half-provisioned. `Some` when the operator answered.
fn abort_question_ui(context: &egui::Context, forms: &mut Forms) -> Option<Command> {
    let mut answer = None;
    egui::Window::new("Abort the units in flight?")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, Vec2::ZERO)
        .show(context, |ui| {
            ui.label(
                "Each unit in flight stops after its current step and is recorded ABORTED.\n\
                 Its board is left half-provisioned: provision it again before it ships.",
            );
            ui.horizontal(|ui| {
                let abort =
                    ui.add(egui::Button::new(RichText::new("Abort now").strong()).fill(theme::FAIL_COLOUR));
                accessible(&abort, Role::Button, "Abort now");
                if abort.clicked() {
                    answer = Some(Command::AbortLine);
                }
                let keep = ui.button("Keep finishing");
                accessible(&keep, Role::Button, "Keep finishing");
                if keep.clicked() {
                    answer = Some(Command::Nothing);
                }
            });
        });
    if answer.is_some() {
        forms.confirming_abort = false;
    }
    answer
}

/// The toolbar's slot count and *Manual start*: station settings, so behind the supervisor PIN
/// (greyed out while it locks them).
fn slot_settings_ui(
    ui: &mut Ui,
    view: &View<'_>,
    settings: &mut Settings,
    forms: &mut Forms,
) -> Option<Command> {
    let mut command = None;
    // The slot count and the start mode are station settings: behind the supervisor PIN.
    let locked_hover = "locked: a supervisor unlocks the station settings with the PIN";
    if view.probes.is_empty() {
        let slots_label = ui.label("Slots");
        let slots = ui
            .add_enabled(
                view.settings_unlocked,
                egui::DragValue::new(&mut forms.slot_count).range(1..=SLOTS_MAX),
            )
            .on_disabled_hover_text(locked_hover);
        slots.labelled_by(slots_label.id);
        if forms.slot_count != settings.sim_slot_count {
            command = Some(Command::SetSlotCount(forms.slot_count));
        }
    } else {
        let sims_after_probes = view.sim_slots_after_probes;
        let hover = view.probes.join("\n")
            + &if sims_after_probes > 0 { format!("\n{sims_after_probes} × sim") } else { String::new() };
        ui.label(format!("Slots {} (--probe)", view.probes.len() + sims_after_probes)).on_hover_text(hover);
    }
    ui.add_enabled(view.settings_unlocked, egui::Checkbox::new(&mut settings.manual_start, "Manual start"))
        .on_hover_text("each unit waits for Start unit (or Enter in the scanner field)")
        .on_disabled_hover_text(locked_hover);
    command
}

fn scanner_ui(ui: &mut Ui, view: &View<'_>, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(RichText::new("Scanner").strong());
        let scanner = ui
            .add(
                egui::TextEdit::singleline(&mut forms.scanner)
                    .id(egui::Id::unique("scanner"))
                    .hint_text(if view.serials_are_scanned {
                        "scan a serial label (or slot label), then Enter"
                    } else {
                        "scan a work order, badge or slot label, then Enter"
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
        if let Some(slot) = view.selected_slot {
            let chosen = ui.label(RichText::new(format!("next scan: SLOT {}", slot + 1)).strong());
            accessible(&chosen, Role::Label, &format!("scanner slot: {}", slot + 1));
        }
        if let Some(note) = view.scan_note {
            let (icon, colour, spoken) = if note.is_refusal {
                ("✖", theme::FAIL_COLOUR, "scan refused")
            } else {
                ("✔", theme::PASS_COLOUR, "scan taken")
            };
            let answer = ui.label(RichText::new(format!("{icon} {}", note.text)).strong().color(colour));
            accessible(&answer, Role::Label, &format!("{spoken}: {}", note.text));
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
            let pass_warnings = summary.pass_warnings();
            if !pass_warnings.is_empty() {
                let text = format!("this profile: {}", pass_warnings.join(", "));
                let warning =
                    ui.label(RichText::new(format!("⚠ {text}")).strong().color(theme::WARNING_COLOUR));
                accessible(&warning, Role::Label, &format!("profile warning: {text}"));
            }
        }
        Err(problems) => {
            let problem = ui.colored_label(theme::FAIL_COLOUR, format!("✖ {}: {problems}", path.display()));
            accessible(&problem, Role::Label, &format!("profile problem: {problems}"));
        }
    }
}

/// The shift's figures as tiles: units (boards finished), pass, fail, aborted, first-pass yield,
/// units per hour.
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
    let figures: [(&str, String, &str, Color32); 6] = [
        ("units", stats.units.to_string(), "Units", ui.visuals().strong_text_color()),
        ("pass", stats.passed.to_string(), "✔ Pass", theme::PASS_COLOUR),
        ("fail", stats.failed.to_string(), "✖ Fail", theme::FAIL_COLOUR),
        ("aborted", stats.aborted.to_string(), "■ Aborted", theme::WAITING_COLOUR),
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
                        ui.label(RichText::new(&value).size(FIGURE_SIZE).strong().color(colour));
                    });
                });
            accessible(&tile.response, Role::Label, &format!("{name}: {value}"));
        }
    });
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
                "{} start · {} stop · {} acknowledge a failure · {} export · ledger {}",
                ui.ctx().format_shortcut(&START_SHORTCUT),
                ui.ctx().format_shortcut(&STOP_SHORTCUT),
                ui.ctx().format_shortcut(&ACKNOWLEDGE_SHORTCUT),
                ui.ctx().format_shortcut(&EXPORT_SHORTCUT),
                view.ledger_path.display()
            ))
            .small()
            .weak(),
        );
    });
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// The first and last bytes of a long chip ID (the full one is in the accessible label and
/// the unit's details).
pub(super) fn short_chip(chip_uid: &str) -> String {
    if chip_uid.len() <= 12 {
        chip_uid.to_string()
    } else {
        format!("{}…{}", &chip_uid[..6], &chip_uid[chip_uid.len() - 4..])
    }
}

pub(super) fn byte_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

pub(super) fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a frame that lays out `texts` in `fonts`; whether egui had to add glyphs to its atlas.
    fn frame_adds_glyphs(context: &egui::Context, warm: bool, texts: &[&str], fonts: &[FontId]) -> bool {
        let mut output = context.run_ui(Default::default(), |ui| {
            if warm {
                warm_glyphs(ui, fonts.iter().cloned());
            }
            for font in fonts {
                for text in texts {
                    ui.label(RichText::new(*text).font(font.clone()));
                }
            }
        });
        let added = !output.textures_delta.set.is_empty();
        output.textures_delta.clear();
        added
    }

    #[test]
    fn after_the_warm_up_a_new_text_in_a_window_font_adds_no_glyph() {
        let context = egui::Context::default();
        set_up_style(&context);
        // The first frame prepares egui's own font texture.
        frame_adds_glyphs(&context, false, &[], &[]);
        let mut fonts = Vec::new();
        context.run_ui(Default::default(), |ui| fonts = window_fonts(ui)).textures_delta.clear();
        assert!(fonts.len() >= 8, "text styles, title, START/STOP, figures: {fonts:?}");
        // What the first failed board brings on screen while the line runs.
        let row = [
            "Failed boards this shift: 1 open",
            "chip b97108ac125cf6a6407ff495",
            "Flash did not verify",
            "07:44:37 · slot 4",
            "✔ Done",
            "99.9 %",
        ];
        let cold = egui::Context::default();
        set_up_style(&cold);
        frame_adds_glyphs(&cold, false, &[], &[]);
        assert!(frame_adds_glyphs(&cold, false, &row, &fonts), "without the warm-up the row adds glyphs");

        assert!(frame_adds_glyphs(&context, true, &[], &fonts), "the warm-up frame adds them");
        assert!(!frame_adds_glyphs(&context, true, &row, &fonts));
        // Any arrangement of the window's characters: glyphs sit at whole pixels, one per size.
        let shuffled: String = WINDOW_CHARACTERS.chars().rev().collect();
        let words = "x DS1-000123 ⚠ 12.5 ms · affix · fluff · office · baffle";
        assert!(!frame_adds_glyphs(&context, true, &[&shuffled, words], &fonts));
    }

    #[test]
    fn the_window_characters_cover_every_character_of_the_gui_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.join("station/failure.rs")];
        let mut directories = vec![root.join("gui")];
        while let Some(directory) = directories.pop() {
            for entry in std::fs::read_dir(&directory).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    directories.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            let missing: String = source
                .chars()
                .filter(|character| !character.is_ascii() && !WINDOW_CHARACTERS.contains(*character))
                .collect();
            assert!(missing.is_empty(), "{}: add {missing:?} to WINDOW_CHARACTERS", file.display());
        }
    }

    #[test]
    fn words_for_the_operator() {
        assert_eq!(short_chip("0123456789abcdef01234567"), "012345…4567");
        assert_eq!(byte_size(491_520), "480 KiB");
    }
}
