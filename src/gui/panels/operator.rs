//! The operator's part of the toolbar: log-in (a typed ID, or a badge scanned into the field)
//! or the logged-in operator with log-out, and why START is refused when it is.

use super::*;

/// Log-in or the logged-in operator. Returns a log-in or log-out command.
pub(super) fn operator_ui(ui: &mut Ui, view: &View<'_>, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
    match &view.shift.operator {
        None => {
            let label = ui.label("Operator ID");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut forms.operator_login)
                        .id_salt("operator")
                        .hint_text("scan badge or type ID")
                        .desired_width(130.0),
                )
                .labelled_by(label.id);
            let entered = field.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter));
            let button = ui.add_enabled(!forms.operator_login.trim().is_empty(), egui::Button::new("Log in"));
            accessible(&button, Role::Button, "Log in");
            if (entered || button.clicked()) && !forms.operator_login.trim().is_empty() {
                command = Command::LogIn(std::mem::take(&mut forms.operator_login));
            }
        }
        Some(operator) => {
            let since = operator.since.get(11..16).unwrap_or_default();
            let shown = ui
                .label(RichText::new(format!("Operator {}", operator.id)).strong())
                .on_hover_text(format!("shift since {since} UTC"));
            accessible(&shown, Role::Label, &format!("operator: {}", operator.id));
            let line_active = view.line.is_active();
            let button = ui
                .add_enabled(!line_active, egui::Button::new("Log out"))
                .on_disabled_hover_text("stop the line first");
            accessible(&button, Role::Button, "Log out");
            if button.clicked() {
                command = Command::LogOut;
            }
        }
    }
    command
}

/// Why START is refused, beside the disabled button.
pub(super) fn start_blocker_ui(ui: &mut Ui, view: &View<'_>) {
    if let Some(reason) = view.start_blocker {
        let label = ui.label(RichText::new(format!("⚠ {reason}")).color(theme::WAITING_COLOUR).strong());
        accessible(&label, Role::Label, &format!("start blocked: {reason}"));
    }
}
