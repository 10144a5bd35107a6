//! The ledger's history table, the export form, and a unit's details window.

use super::*;

/// The ledger's history: search, the table (newest first), a click opens a unit's steps.
pub(super) fn history_ui(
    ui: &mut Ui,
    view: &View<'_>,
    settings: &mut Settings,
    forms: &mut Forms,
) -> Command {
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
pub(super) fn history_row_ui(
    ui: &mut Ui,
    row: &HistoryRow,
    widths: &[f32; 4],
    row_height: f32,
) -> Option<String> {
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

pub(super) fn cell(ui: &mut Ui, width: f32, height: f32, add_contents: impl FnOnce(&mut Ui)) {
    ui.allocate_ui_with_layout(Vec2::new(width, height), Layout::left_to_right(Align::Center), |ui| {
        ui.set_width(width);
        add_contents(ui);
    });
}

/// Export every run of the ledger to a file.
pub(super) fn export_ui(ui: &mut Ui, history: &HistoryStore, settings: &mut Settings) -> Command {
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
pub(super) fn with_extension(path: &str, extension: &str) -> String {
    for known in ["csv", "jsonl", "json"] {
        if let Some(stem) = path.strip_suffix(&format!(".{known}")) {
            return format!("{stem}.{extension}");
        }
    }
    format!("{path}.{extension}")
}

/// A unit's identities and every run with every step, in a window.
pub(super) fn unit_details_ui(context: &egui::Context, history: &HistoryStore) -> Command {
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
            UnitDetails::Found(unit) => unit_found_ui(ui, unit),
        });
    if open { Command::Nothing } else { Command::CloseUnit }
}

/// A unit's identities and its runs, newest first, the newest open with its steps.
fn unit_found_ui(ui: &mut Ui, unit: &crate::ledger::UnitHistory) {
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
        let (icon, colour) =
            if passed { ("✔ PASS", theme::PASS_COLOUR) } else { ("✖ FAIL", theme::FAIL_COLOUR) };
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
                egui::Grid::new(("steps", run.run_id)).num_columns(4).striped(true).show(ui, |ui| {
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
                        accessible(&status, Role::Label, &format!("step {}: {}", step.name, step.status));
                        ui.label(step.duration_ms.to_string());
                        let detail = step.detail.to_string();
                        ui.add(egui::Label::new(RichText::new(&detail).small().monospace()).truncate())
                            .on_hover_text(detail);
                        ui.end_row();
                    }
                });
                ui.label(
                    RichText::new(format!("record hash {}", run.record_hash)).small().monospace().weak(),
                );
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_paths_take_the_format_extension() {
        assert_eq!(with_extension("out/export.csv", "jsonl"), "out/export.jsonl");
        assert_eq!(with_extension("export", "json"), "export.json");
    }
}
