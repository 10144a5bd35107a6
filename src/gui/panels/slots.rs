//! The slot cards: one per slot, laid out for the slot count, each with its state, step,
//! progress and result.

use super::card_texts::{CardTexts, whole_points};
use super::*;

/// The gap between cards, in points.
pub const CARD_GAP: f32 = 8.0;
/// Past this many times as wide as tall, a card's extra width is of no use to its text.
const CARD_ASPECT_MAX: f32 = 2.0;
/// Above this many slots, or on cards smaller than [`COMPACT_BELOW`], each card is compact:
/// the slot number, the state's colour and word, and the serial (Flasher Hub's channel grid).
pub const COMPACT_ABOVE_SLOTS: usize = 16;
/// A card smaller than this (width, height) is drawn compact.
pub const COMPACT_BELOW: Vec2 = Vec2::new(230.0, 150.0);

/// One card per slot, laid out to use the space best for the slot count.
pub(super) fn slots_ui(ui: &mut Ui, view: &View<'_>, manual_start: bool, texts: &mut CardTexts) -> Command {
    let mut command = Command::Nothing;
    // Never past the panel's visible edge, even if a row above grew wider than the panel.
    let area = ui.available_rect_before_wrap().intersect(ui.clip_rect());
    let count = view.line.slots.len();
    if count == 0 {
        return command;
    }
    let rects = card_rects(count, area, CARD_GAP);
    let compact = is_compact(count, rects[0].size());
    // AccessKit on (a screen reader, or a test harness): compact cards give each text its own
    // node. Off, they skip those interactions (at 64 slots a few hundred a frame).
    let accessibility = ui.ctx().accesskit_node_builder(egui::accesskit_root_id(), |_| ()).is_some();
    warm_card_texts(ui, texts, count, rects[0], compact);
    for ((index, slot), rect) in view.line.slots.iter().enumerate().zip(rects) {
        let context = CardContext {
            manual_start,
            is_latched: view.shift.is_latched(index),
            flash_is_on: view.flash_is_on,
            now: view.now,
        };
        let card_command = if compact {
            compact_card_ui(ui, rect, index, slot, &context, texts, accessibility)
        } else {
            let mut card = ui.new_child(
                UiBuilder::new().max_rect(rect).id_salt(("slot", index)).layout(Layout::top_down(Align::Min)),
            );
            slot_card_ui(&mut card, index, slot, &context, texts)
        };
        if card_command != Command::Nothing {
            command = card_command;
        }
        if accessibility || !compact {
            let whole_card = ui.interact(rect, ui.scope_id().with(("card", index)), Sense::hover());
            accessible(&whole_card, Role::Group, &format!("slot {n} card", n = index + 1));
        }
    }
    ui.allocate_rect(area, Sense::hover());
    command
}

/// Whether cards of `card` size for `count` slots are drawn compact.
pub fn is_compact(count: usize, card: Vec2) -> bool {
    count > COMPACT_ABOVE_SLOTS || card.x < COMPACT_BELOW.x || card.y < COMPACT_BELOW.y
}

/// Each card's rectangle for `count` cards in `area`, row by row, `gap` apart: the grid of
/// [`grid_shape`], every card the same size, all inside `area`.
pub fn card_rects(count: usize, area: egui::Rect, gap: f32) -> Vec<egui::Rect> {
    let (columns, rows) = grid_shape(count, area.size());
    let card_size = Vec2::new(
        ((area.width() - gap * (columns - 1) as f32) / columns as f32).max(0.0),
        ((area.height() - gap * (rows - 1) as f32) / rows as f32).max(0.0),
    );
    (0..count)
        .map(|index| {
            let (column, row) = (index % columns, index / columns);
            let min =
                area.min + Vec2::new(column as f32 * (card_size.x + gap), row as f32 * (card_size.y + gap));
            egui::Rect::from_min_size(min, card_size)
        })
        .collect()
}

/// Columns and rows for `count` cards in `size`: the shape whose cards have the most usable
/// area (a card's width counts up to [`CARD_ASPECT_MAX`] times its height, its height up to its
/// width); between shapes within 10 % of the best, the one with fewer empty cells, then the
/// squarer one (so 4 slots are 2 x 2, never 3 + 1, and 64 are 8 x 8).
pub fn grid_shape(count: usize, size: Vec2) -> (usize, usize) {
    let count = count.max(1);
    let score = |columns: usize| {
        let rows = count.div_ceil(columns);
        let width = size.x / columns as f32;
        let height = size.y / rows as f32;
        // The part of the card text can use: no wider than CARD_ASPECT_MAX times its height,
        // no taller than its width.
        width.min(height * CARD_ASPECT_MAX) * height.min(width)
    };
    let best_score = (1..=count).map(score).fold(f32::MIN, f32::max);
    let shapes = (1..=count).filter(|columns| score(*columns) >= best_score * 0.9);
    // Fewer empty cells first, then the shape closest to square, then the larger cards.
    let key = |columns: usize| {
        let rows = count.div_ceil(columns);
        (columns * rows - count, columns.abs_diff(rows))
    };
    shapes
        .min_by(|left, right| key(*left).cmp(&key(*right)).then(score(*right).total_cmp(&score(*left))))
        .map(|columns| (columns, count.div_ceil(columns)))
        .unwrap_or((1, count))
}

/// A slot's state: its look, the word on the card and the words a screen reader speaks.
fn state_words(phase: &SlotPhase) -> (StateLook, String, String) {
    let look = match phase {
        SlotPhase::Idle => StateLook::Idle,
        SlotPhase::WaitingForStart | SlotPhase::WaitingForScan => StateLook::Waiting,
        SlotPhase::Running { .. } => StateLook::Running,
        SlotPhase::Passed => StateLook::Pass,
        SlotPhase::Failed { .. } => StateLook::Fail,
        SlotPhase::Aborted { .. } => StateLook::Waiting,
    };
    let (word, spoken) = match phase {
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
    (look, word, spoken)
}

/// Where a compact card's texts go, from the card's rectangle and its frame's width.
struct CompactLayout {
    /// The largest size of the first line's texts (slot number and state word).
    size: f32,
    number_rect: egui::Rect,
    word_rect: egui::Rect,
    /// The serial's line, when the card is tall enough for one.
    serial_rect: Option<egui::Rect>,
}

impl CompactLayout {
    fn of(rect: egui::Rect, stroke_width: f32) -> CompactLayout {
        let pad = (rect.height() * 0.08).clamp(3.0, 8.0) + stroke_width;
        let inner = rect.shrink(pad);
        let has_serial_line = inner.height() >= 44.0;
        let first_height = if has_serial_line { inner.height() * 0.58 } else { inner.height() };
        let number_rect = egui::Rect::from_min_size(inner.min, Vec2::new(inner.width() * 0.35, first_height));
        CompactLayout {
            size: whole_points((first_height * 0.78).clamp(9.0, 72.0)),
            number_rect,
            word_rect: egui::Rect::from_min_max(
                egui::pos2(number_rect.right() + 4.0, inner.top()),
                egui::pos2(inner.right(), inner.top() + first_height),
            ),
            serial_rect: has_serial_line.then(|| {
                egui::Rect::from_min_max(egui::pos2(inner.left(), inner.top() + first_height), inner.max)
            }),
        }
    }

    /// The largest size of the serial on its line (a long one is shrunk to fit, down to 8).
    fn serial_size(serial_rect: egui::Rect) -> f32 {
        whole_points((serial_rect.height() * 0.7).clamp(9.0, 28.0))
    }
}

/// The characters a card's serial or chip line can show.
const SERIAL_CHARACTERS: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_./:# –…";

/// The serial lengths whose sizes are prepared with each card size (profiles' serials: a prefix
/// and a counter or a scanned label, 6 to 24 characters).
const SERIAL_LENGTHS_WARMED: std::ops::RangeInclusive<usize> = 6..=24;

/// Every state a card can show (the texts of [`state_words`]).
fn every_phase() -> Vec<SlotPhase> {
    let mut phases = vec![
        SlotPhase::Idle,
        SlotPhase::WaitingForStart,
        SlotPhase::WaitingForScan,
        SlotPhase::Passed,
        SlotPhase::Failed { step: String::new(), reason: String::new(), category: FailureCategory::Internal },
        SlotPhase::Aborted { step: String::new() },
    ];
    phases.extend(
        StepName::ALL.iter().enumerate().map(|(index, step)| SlotPhase::Running {
            step: step.as_str().to_string(),
            step_number: index + 1,
        }),
    );
    phases
}

/// Lays out, once per card size, every state word a card of that size can show (and the
/// characters of serials) at the size it will be drawn, so egui rasterizes those glyphs now —
/// when the slot count or the window changes, normally in the frame the line starts — rather
/// than in the frame in which a card first shows a step, a latched frame or a serial (at 64
/// slots such a frame took 40 ms). Not while the window is being resized: only a card size
/// that lasted a frame is warmed.
fn warm_card_texts(ui: &Ui, texts: &mut CardTexts, count: usize, card: egui::Rect, compact: bool) {
    let shape = (count, compact, card.size().x as u32, card.size().y as u32);
    let last_shape_key = ui.scope_id().with("card shape in the last frame");
    let lasted = ui.data_mut(|data| {
        let last = data.get_temp(last_shape_key);
        data.insert_temp(last_shape_key, shape);
        last == Some(shape)
    });
    let warmed_key = ui.scope_id().with(("warmed card texts", shape));
    if !lasted || ui.data(|data| data.get_temp::<()>(warmed_key).is_some()) {
        return;
    }
    ui.data_mut(|data| data.insert_temp(warmed_key, ()));
    let started = Instant::now();
    let words: Vec<(StateLook, String)> = every_phase()
        .iter()
        .map(state_words)
        .map(|(look, word, _)| (look, format!("{} {word}", look.icon())))
        .collect();
    if !compact {
        // A card's small print, second-rank texts and failure instruction (any text).
        let big = theme::state_text_size(card.size());
        let medium = card_medium_size(big);
        let sizes = [card_small_size(big), medium, failure_instruction_size(big, medium)];
        warm_glyphs(ui, sizes.map(FontId::proportional));
    }
    // Both frame widths: a latched card's thick frame leaves less room, so other sizes.
    for stroke_width in [2.0, 6.0] {
        if compact {
            let layout = CompactLayout::of(card, stroke_width);
            for number in [count.min(9), count] {
                let font = FontId::proportional(layout.size);
                let size = texts.fitted_size(ui, &number.to_string(), font, layout.number_rect.width(), 9.0);
                texts.one_line(ui, "0123456789", FontId::proportional(size), Color32::WHITE, f32::INFINITY);
            }
            for (look, text) in &words {
                let width = layout.word_rect.width();
                let size = texts.fitted_size(ui, text, FontId::proportional(layout.size), width, 9.0);
                texts.one_line(ui, text, FontId::proportional(size), look.colour(), width);
            }
            if let Some(serial_rect) = layout.serial_rect {
                // Monospace: a text's fitted size depends on its length only. Every size a
                // serial or a chip ID ("chip 0123ab…cdef", a board that failed before its
                // serial) of a usual length is drawn at: a new size is a new font to prepare and
                // new glyphs to rasterize.
                let wanted = FontId::monospace(CompactLayout::serial_size(serial_rect));
                let width = serial_rect.width();
                let mut sizes: Vec<f32> = SERIAL_LENGTHS_WARMED
                    .map(|length| "0".repeat(length))
                    .chain([format!("chip {}", short_chip("0123456789abcdef0123"))])
                    .map(|sample| texts.fitted_size(ui, &sample, wanted.clone(), width, 8.0))
                    .collect();
                sizes.dedup();
                for size in sizes {
                    let font = FontId::monospace(size);
                    for character in SERIAL_CHARACTERS.chars() {
                        texts.character(ui, character, &font, Color32::WHITE);
                    }
                }
            }
        } else {
            let big = theme::state_text_size(card.size());
            let width = card.width() - 2.0 * (card_margin(card.height()) + stroke_width);
            for (look, text) in &words {
                let size =
                    texts.fitted_size(ui, text, FontId::proportional(big), width, card_medium_size(big));
                texts.one_line(ui, text, FontId::proportional(size), look.colour(), width);
            }
        }
    }
    tracing::info!(
        slots = count,
        card = %format!("{:.0}x{:.0}", card.width(), card.height()),
        ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "card texts laid out for this card size"
    );
}

/// A compact card (many slots, or small cards): the slot number and the state's word in the
/// state's colour on the first line, the serial on the second (when there is room), a thin
/// progress bar along the bottom while running. A click acknowledges a latched failure, or
/// starts a waiting slot in manual start.
///
/// Painted rather than built from labels: at 64 slots a card made of a child `Ui` and three
/// labels cost the frame about 40 µs (2.5 ms for the slot panel, median); the texts come laid
/// out from [`CardTexts`]. While AccessKit is on (`accessibility`), each text also gets its node
/// in the accessibility tree (an interaction that senses only hover).
fn compact_card_ui(
    ui: &mut Ui,
    rect: egui::Rect,
    index: usize,
    slot: &SlotState,
    context: &CardContext,
    texts: &mut CardTexts,
    accessibility: bool,
) -> Command {
    let n = index + 1;
    let id = ui.scope_id().with(("compact card", index));
    let (look, word, spoken) = state_words(&slot.phase);
    let stroke = card_stroke(look, context);
    let painter = ui.painter_at(rect);
    painter.rect(rect, 4.0, look.background(), stroke, egui::StrokeKind::Inside);
    let layout = CompactLayout::of(rect, stroke.width);
    // Each text: its place, what it says, its font and smallest size, its colour, and the words
    // of its accessibility node (whose first word after the slot names it: number, state, unit).
    // A monospace text (the serial) may be drawn from its laid-out characters (`paint_monospace`).
    let mut text_at = |area: egui::Rect,
                       text: &str,
                       font: FontId,
                       minimum: f32,
                       colour: Color32,
                       spoken: &dyn Fn() -> String| {
        let size = texts.fitted_size(ui, text, font.clone(), area.width(), minimum);
        let font = FontId::new(size, font.family);
        let placed = if font.family == egui::FontFamily::Monospace {
            texts.paint_monospace(ui, &painter, text, font, colour, area)
        } else {
            let galley = texts.one_line(ui, text, font, colour, area.width());
            let placed = egui::Align2::CENTER_CENTER.align_size_within_rect(galley.size(), area);
            painter.galley(placed.min, galley, colour);
            placed
        };
        if accessibility {
            let spoken = spoken();
            let node = ui.interact(placed, id.with(spoken.split(':').next()), Sense::hover());
            accessible(&node, Role::Label, &spoken);
        }
    };
    let number_text = n.to_string();
    let font = FontId::proportional(layout.size);
    text_at(layout.number_rect, &number_text, font.clone(), 9.0, Color32::WHITE, &|| {
        format!("slot {n} number: {n}")
    });
    let state_text = format!("{} {word}", look.icon());
    text_at(layout.word_rect, &state_text, font, 9.0, look.colour(), &|| format!("slot {n} state: {spoken}"));
    if let Some(serial_rect) = layout.serial_rect {
        // The serial, else the chip ID (a unit that failed before its serial): shrunk to fit
        // whole, since its end is what tells boards apart.
        // A scanned label shows as soon as it is routed here, before its serial is issued.
        let known_serial = slot.serial.as_deref().or(slot.scanned_label.as_deref());
        let serial = known_serial.unwrap_or("–");
        let shown = match (known_serial, &slot.chip_uid) {
            (None, Some(chip)) => format!("chip {}", short_chip(chip)),
            _ => serial.to_string(),
        };
        let chip = slot.chip_uid.as_deref().unwrap_or("–");
        let font = FontId::monospace(CompactLayout::serial_size(serial_rect));
        let spoken = || format!("slot {n} unit: serial {serial}, chip {chip}");
        text_at(serial_rect, &shown, font, 8.0, Color32::WHITE, &spoken);
    }
    if let (SlotPhase::Running { step_number, .. }, true) = (&slot.phase, rect.height() > 24.0) {
        let fraction = slot
            .progress
            .as_ref()
            .map(|progress| progress.fraction())
            .unwrap_or((*step_number as f32 - 1.0) / StepName::ALL.len() as f32);
        let bar = egui::Rect::from_min_size(
            egui::pos2(rect.left() + stroke.width, rect.bottom() - stroke.width - 3.0),
            Vec2::new((rect.width() - 2.0 * stroke.width) * fraction.clamp(0.0, 1.0), 3.0),
        );
        painter.rect_filled(bar, 0.0, theme::PROGRESS_COLOUR);
    }
    let action = if context.is_latched {
        Some((Command::Acknowledge { slot: index }, format!("Acknowledge slot {n}")))
    } else if slot.is_waiting_for_start && context.manual_start {
        Some((Command::StartUnit { slot: index }, format!("Start unit on slot {n}")))
    } else {
        None
    };
    let Some((command, label)) = action else {
        return Command::Nothing;
    };
    let response = ui.interact(rect, id.with("action"), Sense::click());
    accessible(&response, Role::Button, &label);
    if response.clicked() { command } else { Command::Nothing }
}

/// The card's frame: thick and flashing while latched, else thin in the state's colour.
fn card_stroke(look: StateLook, context: &CardContext) -> Stroke {
    match (context.is_latched, context.flash_is_on) {
        (true, true) => Stroke::new(6.0, theme::WARNING_COLOUR),
        (true, false) => Stroke::new(6.0, look.colour()),
        (false, _) => Stroke::new(2.0, look.colour()),
    }
}

/// The operator's words for a step.
pub(super) fn step_title(step: &str) -> String {
    let mut title = step.replace('-', " ");
    if let Some(first) = title.get(0..1) {
        title.replace_range(0..1, &first.to_ascii_uppercase());
    }
    title
}

/// The size of a (non-compact) card's second-rank texts, from its state text's size.
fn card_medium_size(big: f32) -> f32 {
    (big * 0.5).clamp(12.0, 80.0)
}

/// A (non-compact) card's small print: its fixture, unit number, progress and failure kind.
fn card_small_size(big: f32) -> f32 {
    (big * 0.4).clamp(11.0, 56.0)
}

/// A failed (non-compact) card's operator instruction.
fn failure_instruction_size(big: f32, medium: f32) -> f32 {
    (big * 0.55).max(medium)
}

/// A (non-compact) card's margin inside its frame.
fn card_margin(card_height: f32) -> f32 {
    if card_height < 150.0 { 6.0 } else { 10.0 }
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
pub(super) fn slot_card_ui(
    ui: &mut Ui,
    index: usize,
    slot: &SlotState,
    context: &CardContext,
    texts: &mut CardTexts,
) -> Command {
    let mut command = Command::Nothing;
    let (look, word, spoken) = state_words(&slot.phase);
    ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
    let card = ui.max_rect().size();
    let big = theme::state_text_size(card);
    let medium = card_medium_size(big);
    let small = card_small_size(big);
    let card_height = card.y;
    let margin = card_margin(card_height);
    let stroke = card_stroke(look, context);
    // The frame is the card's own rectangle, drawn whole whatever its content: what does not
    // fit is clipped inside it, never drawn over the frame or the next card.
    let rect = ui.max_rect();
    ui.painter().rect_filled(rect, 8.0, look.background());
    let inner_rect = rect.shrink(margin + stroke.width);
    let mut inner = ui.new_child(UiBuilder::new().max_rect(inner_rect).layout(Layout::top_down(Align::Min)));
    inner.set_clip_rect(inner_rect.intersect(ui.clip_rect()));
    {
        let ui = &mut inner;
        {
            ui.spacing_mut().item_spacing.y = (card_height * 0.02).clamp(2.0, 6.0);
            ui.horizontal(|ui| {
                let number = ui.label(RichText::new(format!("SLOT {}", index + 1)).size(medium).strong());
                accessible(&number, Role::Label, &format!("slot {n} number: {n}", n = index + 1));
                let fixture = ui.label(RichText::new(&slot.fixture_name).size(small).weak());
                accessible(
                    &fixture,
                    Role::Label,
                    &format!("slot {n} fixture: {}", slot.fixture_name, n = index + 1),
                );
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    // The line's attempt number, not a count: "units" means boards finished.
                    if slot.unit > 0 {
                        ui.label(RichText::new(format!("run #{}", slot.unit)).size(small).weak());
                    }
                });
            });
            // Long step names shrink to fit rather than lose their end.
            let state_text = format!("{} {word}", look.icon());
            let width = ui.available_width();
            let fitted = texts.fitted_size(ui, &state_text, FontId::proportional(big), width, medium);
            let galley = texts.one_line(ui, &state_text, FontId::proportional(fitted), look.colour(), width);
            let state = ui.add(egui::Label::new(galley));
            accessible(&state, Role::Label, &format!("slot {n} state: {spoken}", n = index + 1));

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
                accessible(&button, Role::Button, &format!("Start unit on slot {n}", n = index + 1));
                if button.clicked() {
                    command = Command::StartUnit { slot: index };
                }
            }
            slot_footer_ui(ui, index, slot, context.now, small, medium);
        }
    }
    ui.painter().rect_stroke(rect, 8.0, stroke, egui::StrokeKind::Inside);
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
                accessible(&warning, Role::Label, &format!("slot {n} warning: {text}", n = index + 1));
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
    accessible(&bar, Role::ProgressIndicator, &format!("slot {n} progress: {text}", n = index + 1));
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
    let instruction_size = failure_instruction_size(big, medium);
    let instruction = ui.add(
        egui::Label::new(
            RichText::new(category.instruction()).size(instruction_size).strong().color(Color32::WHITE),
        )
        .wrap(),
    );
    accessible(
        &instruction,
        Role::Label,
        &format!("slot {n} instruction: {}", category.instruction(), n = index + 1),
    );
    let at = if step.is_empty() { String::new() } else { format!(" · {}", step_title(step)) };
    ui.horizontal_wrapped(|ui| {
        if is_latched {
            let button = ui.add(
                egui::Button::new(RichText::new("✔ Acknowledge").size(medium).strong().color(Color32::BLACK))
                    .fill(theme::WARNING_COLOUR),
            );
            accessible(&button, Role::Button, &format!("Acknowledge slot {n}", n = index + 1));
            if button.clicked() {
                command = Some(Command::Acknowledge { slot: index });
            }
        }
        ui.label(RichText::new(format!("{}{at}", category.title())).size(small).color(theme::FAIL_COLOUR));
    });
    let details = egui::CollapsingHeader::new(RichText::new("Details").size(small))
        .id_salt(("failure_details", index))
        .default_open(false)
        .show(ui, |ui| {
            let reason_label = ui.add(egui::Label::new(RichText::new(reason).size(small).monospace()).wrap());
            accessible(&reason_label, Role::Label, &format!("slot {n} reason: {reason}", n = index + 1));
        });
    accessible(&details.header_response, Role::Button, &format!("slot {n} details", n = index + 1));
    command
}

/// The unit's serial and chip ID, the cycle time, the slot's tallies, the last result and a
/// fixture error, each only when the card has room for it.
fn slot_footer_ui(ui: &mut Ui, index: usize, slot: &SlotState, now: Instant, small: f32, medium: f32) {
    let has_room = |ui: &Ui, height: f32| ui.available_height() >= height;
    if has_room(ui, medium + 4.0) {
        // A scanned label shows as soon as it is routed here, before its serial is issued.
        let serial = slot.serial.as_deref().or(slot.scanned_label.as_deref()).unwrap_or("–");
        let chip = slot.chip_uid.as_deref().map(short_chip).unwrap_or_else(|| "–".to_string());
        let identity = ui.add(
            egui::Label::new(RichText::new(format!("{serial} · chip {chip}")).size(medium).monospace())
                .truncate(),
        );
        let full_chip = slot.chip_uid.as_deref().unwrap_or("–");
        accessible(
            &identity,
            Role::Label,
            &format!("slot {n} unit: serial {serial}, chip {full_chip}", n = index + 1),
        );
    }
    if has_room(ui, small + 4.0) {
        ui.horizontal(|ui| {
            if let Some(cycle) = slot.cycle_time(now) {
                let cycle_label = ui.label(RichText::new(format!("cycle {}", seconds(cycle))).size(small));
                accessible(
                    &cycle_label,
                    Role::Label,
                    &format!("slot {n} cycle time: {}", seconds(cycle), n = index + 1),
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

    /// For 1 to 64 slots on the central panel of windows from 1024x600 to 4K (and the sizes
    /// between), every card lies inside the area, no two overlap, and the grid has no empty row.
    #[test]
    fn cards_stay_inside_the_area_and_never_overlap() {
        let windows = [(1024.0, 600.0), (1280.0, 800.0), (1920.0, 1080.0), (3840.0, 2160.0)];
        // The central panel with and without the supervisor view's side panel and log.
        let areas = windows
            .iter()
            .flat_map(|(width, height)| [(width - 20.0, height - 180.0), (width - 480.0, height - 330.0)]);
        for (width, height) in areas {
            let area = egui::Rect::from_min_size(egui::pos2(8.0, 150.0), Vec2::new(width, height));
            for count in [1, 2, 3, 4, 5, 8, 12, 16, 24, 32, 48, 64] {
                let rects = card_rects(count, area, CARD_GAP);
                assert_eq!(rects.len(), count);
                let (columns, rows) = grid_shape(count, area.size());
                assert!(columns * rows >= count && columns * (rows - 1) < count, "{count}: {columns}x{rows}");
                for (index, rect) in rects.iter().enumerate() {
                    assert!(
                        area.expand(0.01).contains_rect(*rect),
                        "{count} slots in {area:?}: card {index} at {rect:?}"
                    );
                    assert!(rect.width() > 20.0 && rect.height() > 20.0, "{count} in {area:?}: {rect:?}");
                    for (other_index, other) in rects.iter().enumerate().skip(index + 1) {
                        assert!(
                            !rect.shrink(0.01).intersects(other.shrink(0.01)),
                            "{count} slots in {area:?}: cards {index} and {other_index} overlap"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn many_or_small_cards_are_compact() {
        assert!(!is_compact(4, Vec2::new(480.0, 200.0)));
        assert!(is_compact(24, Vec2::new(480.0, 200.0)));
        assert!(is_compact(16, Vec2::new(240.0, 100.0)));
    }

    #[test]
    fn slot_grids_keep_cards_large() {
        check(4, (1000.0, 430.0), (2, 2));
        check(4, (1000.0, 380.0), (2, 2));
        check(4, (560.0, 300.0), (2, 2));
        check(64, (1900.0, 900.0), (8, 8));
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
