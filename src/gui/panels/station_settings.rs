//! The station settings: the profiles folder, the simulator's speed, the pause between units,
//! the attention signal and whether the operator is remembered. Behind the supervisor PIN
//! once one is set (the PIN is kept only as a salted hash, [`crate::gui::supervisor`]).

use super::*;

/// The station settings section: locked (a PIN field) or open (the settings and the PIN).
pub(super) fn station_settings_ui(
    ui: &mut Ui,
    view: &View<'_>,
    settings: &mut Settings,
    forms: &mut Forms,
) -> Command {
    let mut command = Command::Nothing;
    let title = if view.settings_unlocked { "Station settings" } else { "Station settings (locked)" };
    egui::CollapsingHeader::new(title).id_salt("station_settings").default_open(false).show(ui, |ui| {
        if let Some(message) = view.supervisor_message {
            let answer = ui.colored_label(theme::WAITING_COLOUR, message);
            accessible(&answer, Role::Label, &format!("supervisor: {message}"));
        }
        command = if view.settings_unlocked {
            open_settings_ui(ui, view, settings, forms)
        } else {
            pin_entry_ui(ui, &mut forms.supervisor_pin, "Supervisor PIN", "Unlock", Command::UnlockSettings)
        };
    });
    command
}

/// A masked PIN field with its button; Enter in the field does the same as the button.
fn pin_entry_ui(
    ui: &mut Ui,
    pin: &mut String,
    label_text: &str,
    button_text: &str,
    make: fn(String) -> Command,
) -> Command {
    let mut command = Command::Nothing;
    ui.horizontal(|ui| {
        let label = ui.label(label_text);
        let field = ui
            .add(egui::TextEdit::singleline(pin).password(true).id_salt(label_text).desired_width(90.0))
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|input| input.key_pressed(Key::Enter));
        let button = ui.button(button_text);
        accessible(&button, Role::Button, button_text);
        if entered || button.clicked() {
            command = make(std::mem::take(pin));
        }
    });
    command
}

fn open_settings_ui(ui: &mut Ui, view: &View<'_>, settings: &mut Settings, forms: &mut Forms) -> Command {
    let mut command = Command::Nothing;
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
        ui.checkbox(&mut settings.sim_timing_zero, "Simulator at full speed (ignore the profile's timing)");
        ui.horizontal(|ui| {
            ui.label("Pause between units");
            let pause = ui.add(
                egui::DragValue::new(&mut settings.unit_change_delay_ms).range(0..=10_000).suffix(" ms"),
            );
            accessible(&pause, Role::SpinButton, "Pause between units");
        });
    });
    ui.checkbox(&mut settings.attention_signal, "Attention signal on a failure (flashing frame and sound)");
    ui.checkbox(&mut settings.remember_operator, "Remember the operator when the window reopens");
    let pin_command = pin_entry_ui(
        ui,
        &mut forms.new_supervisor_pin,
        if settings.supervisor_pin.is_some() { "New supervisor PIN" } else { "Set a supervisor PIN" },
        "Set PIN",
        Command::SetSupervisorPin,
    );
    if pin_command != Command::Nothing {
        command = pin_command;
    }
    if settings.supervisor_pin.is_some() {
        let lock = ui.button("Lock the settings");
        accessible(&lock, Role::Button, "Lock the settings");
        if lock.clicked() {
            command = Command::LockSettings;
        }
    }
    ui.label(RichText::new(format!("ledger {}", view.ledger_path.display())).weak());
    command
}
