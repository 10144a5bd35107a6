//! The shift's failed boards: each board that failed since the operator logged in, with its
//! serial (or chip ID when it failed before its serial), what kind of failure, the time and the
//! slot, which the operator works through and marks done (set aside, reworked, retried).

use super::*;

use crate::gui::shift::FailedBoard;

/// The list, open boards first (oldest first), then the done ones. With no failed board yet:
/// with `empty_too` it says so (the operator view's strip below the cards, there from the
/// line's start so the first failure does not move every card), else it shows nothing (the
/// supervisor view's side panel: the panels below keep their place; the Fail figure says so).
pub(super) fn failed_boards_ui(ui: &mut Ui, view: &View<'_>, empty_too: bool) -> Command {
    let mut command = Command::Nothing;
    let boards = &view.shift.failed_boards;
    if boards.is_empty() {
        if empty_too {
            let heading = ui.heading("Failed boards this shift: none");
            accessible(&heading, Role::Label, "failed boards: 0 open of 0");
            ui.label(RichText::new("A board that fails is listed here until it is marked done.").weak());
            ui.separator();
        }
        // The list's grid is there, empty, before the first failure: egui hides a new grid's
        // first frame and runs the whole frame's UI again (`request_discard`), so the first
        // failure's frame would build the whole window twice.
        boards_grid().show(ui, |_| {});
        return command;
    }
    let open = view.shift.open_count();
    let heading = ui.heading(format!("Failed boards this shift: {open} open"));
    accessible(&heading, Role::Label, &format!("failed boards: {open} open of {}", boards.len()));
    let ordered = boards.iter().filter(|board| !board.done).chain(boards.iter().filter(|board| board.done));
    boards_grid().show(ui, |ui| {
        for board in ordered {
            if let Some(answer) = board_row_ui(ui, board) {
                command = answer;
            }
            ui.end_row();
        }
    });
    ui.separator();
    command
}

fn boards_grid() -> egui::Grid {
    egui::Grid::new("failed_boards").num_columns(4).striped(true).spacing([10.0, 4.0])
}

/// One board: key, failure kind, time and slot, and its Done (or Reopen) button.
fn board_row_ui(ui: &mut Ui, board: &FailedBoard) -> Option<Command> {
    let key = board.key();
    let colour = if board.done { ui.visuals().weak_text_color() } else { theme::FAIL_COLOUR };
    let state = if board.done { "done" } else { "open" };
    let key_label = ui.label(RichText::new(&key).monospace().strong().color(colour)).on_hover_text(format!(
        "{} at {}: {}",
        board.category.title(),
        board.step,
        board.reason
    ));
    accessible(
        &key_label,
        Role::Label,
        &format!("failed board {key}: {} at {}, {state}", board.category.code(), board.clock_time()),
    );
    ui.label(RichText::new(board.category.title()).color(colour));
    ui.label(RichText::new(format!("{} · slot {}", board.clock_time(), board.slot + 1)).weak());
    let (text, label) = if board.done {
        ("Reopen", format!("Reopen {key}"))
    } else {
        ("✔ Done", format!("Mark done: {key}"))
    };
    let button = ui.button(text);
    accessible(&button, Role::Button, &label);
    button.clicked().then_some(Command::MarkBoardDone { number: board.number, done: !board.done })
}
