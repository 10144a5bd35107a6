//! The log panel: captured log lines, filtered by level.

use super::*;

/// The log panel: captured `tracing` events, filtered by level, newest at the bottom.
pub(super) fn log_ui(ui: &mut Ui, log: &LogStore, settings: &mut Settings) {
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
