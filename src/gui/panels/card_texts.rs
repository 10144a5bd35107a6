//! The slot cards' texts, laid out once and kept across frames.
//!
//! egui keeps a laid-out text (a galley) only while it is drawn in consecutive frames, and a
//! card's state word changes with every step: at 64 slots each frame showed a hundred texts that
//! no card had shown in the frame before, and shaping them again (and measuring each to fit its
//! card) was most of a frame's work. Here each (text, size, width) is laid out once and kept for
//! as long as any card shows it again within [`GENERATION`], and each text's fitted size is kept
//! with it.
//!
//! A galley points into egui's glyph atlas; egui empties the atlas when it fills up (or when the
//! text options or the scale change), so [`CardTexts::begin_frame`] drops everything when the
//! atlas is emptier than at the end of the last frame or the scale changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui::text::{LayoutJob, TextWrapping};
use eframe::egui::{self, Color32, FontId, Galley};

/// A text not shown for this long (at least, up to twice as long) is laid out again when it
/// returns: long enough for every step name and the serials of the units on the line, short
/// enough that the cache holds a few hundred texts.
const GENERATION: Duration = Duration::from_secs(30);
/// At most this many forgotten entries are freed per frame: a generation holds thousands of
/// laid-out texts, and freeing them all at once took a whole frame's budget (4 ms at 64 slots).
const RETIRED_PER_FRAME: usize = 256;
/// At most this many monospace texts (serials) are laid out whole per frame; the others are
/// drawn from their laid-out characters until a later frame lays them out (about 40 µs each).
const NEW_LINES_PER_FRAME: usize = 8;

/// One laid-out text: its content, font, colour and the width it is cut to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TextKey {
    text: String,
    /// The font's size and family (`FontId` is not `Eq`: its size's bits stand in).
    size_bits: u32,
    monospace: bool,
    colour: Color32,
    width_bits: u32,
}

impl TextKey {
    fn new(text: &str, font: &FontId, colour: Color32, width: f32) -> TextKey {
        TextKey {
            text: text.to_string(),
            size_bits: font.size.to_bits(),
            monospace: font.family == egui::FontFamily::Monospace,
            colour,
            width_bits: width.to_bits(),
        }
    }
}

/// A text's natural width at one size (the sum of its characters' advances).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WidthKey {
    text: String,
    size_bits: u32,
    monospace: bool,
}

/// One character of a monospace line, laid out on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CharacterKey {
    character: char,
    size_bits: u32,
    monospace: bool,
    colour: Color32,
}

/// The cards' laid-out texts, kept across frames (see the module's comment).
#[derive(Debug, Default)]
pub struct CardTexts {
    galleys: Generations<TextKey, Arc<Galley>>,
    characters: Generations<CharacterKey, Arc<Galley>>,
    /// Monospace texts this frame may still lay out whole.
    new_lines_left: usize,
    /// A text's characters, reused from frame to frame.
    scratch: Vec<Arc<Galley>>,
    widths: Generations<WidthKey, f32>,
    /// The glyph atlas's fill and size and the scale at the end of the last frame.
    atlas_after_last_frame: Option<(f32, [usize; 2], f32)>,
}

impl CardTexts {
    /// Call before anything is laid out in a frame.
    pub fn begin_frame(&mut self, context: &egui::Context, now: Instant) {
        let atlas_now = atlas_state(context);
        if let Some((fill, size, scale)) = self.atlas_after_last_frame {
            let emptied = atlas_now.0 < fill || atlas_now.1[1] < size[1];
            if emptied || atlas_now.2 != scale {
                self.galleys.clear();
                self.characters.clear();
                self.widths.clear();
            }
        }
        self.new_lines_left = NEW_LINES_PER_FRAME;
        self.galleys.rotate_when_due(now);
        self.characters.rotate_when_due(now);
        self.widths.rotate_when_due(now);
    }

    /// Call after everything was laid out in a frame.
    pub fn end_frame(&mut self, context: &egui::Context) {
        self.atlas_after_last_frame = Some(atlas_state(context));
    }

    /// `text` in `font` and `colour` on one line, cut with "…" at `width`.
    pub fn one_line(
        &mut self,
        ui: &egui::Ui,
        text: &str,
        font: FontId,
        colour: Color32,
        width: f32,
    ) -> Arc<Galley> {
        let key = TextKey::new(text, &font, colour, width);
        self.galleys.get_or_insert_with(key, || {
            let mut job = LayoutJob::simple_singleline(text.to_string(), font, colour);
            job.wrap = TextWrapping::truncate_at_width(width);
            ui.fonts_mut(|fonts| fonts.layout_job(job))
        })
    }

    /// Paints the monospace `text` (a serial) in `font` and `colour` centred in `area`, and
    /// returns where it went. A serial is new with every unit: at 64 slots a round of units
    /// brought 60–70 new ones into one frame, each laid out whole (about 40 µs, 2.5 ms in all,
    /// measured). A text kept from an earlier frame is drawn whole; at most
    /// [`NEW_LINES_PER_FRAME`] new ones a frame are laid out whole, and the others are drawn
    /// from their laid-out characters side by side (a monospace text has no kerning, so that is
    /// the same text) until a later frame lays them out. A text wider than `area` is cut with
    /// "…" as [`CardTexts::one_line`] cuts it.
    pub fn paint_monospace(
        &mut self,
        ui: &egui::Ui,
        painter: &egui::Painter,
        text: &str,
        font: FontId,
        colour: Color32,
        area: egui::Rect,
    ) -> egui::Rect {
        let kept = self.galleys.get(&TextKey::new(text, &font, colour, area.width()));
        if kept.is_none()
            && self.new_lines_left == 0
            && let Some(size) = self.by_characters(ui, text, &font, colour, area.width())
        {
            let placed = egui::Align2::CENTER_CENTER.align_size_within_rect(size, area);
            let mut left = placed.left();
            for galley in self.scratch.drain(..) {
                let width = galley.size().x;
                painter.galley(egui::pos2(left, placed.top()), galley, colour);
                left += width;
            }
            return placed;
        }
        let galley = kept.unwrap_or_else(|| {
            self.new_lines_left = self.new_lines_left.saturating_sub(1);
            self.one_line(ui, text, font, colour, area.width())
        });
        let placed = egui::Align2::CENTER_CENTER.align_size_within_rect(galley.size(), area);
        painter.galley(placed.min, galley, colour);
        placed
    }

    /// Puts `text`'s laid-out characters in `scratch` and returns their size together, or
    /// `None` when they are wider than `width`.
    fn by_characters(
        &mut self,
        ui: &egui::Ui,
        text: &str,
        font: &FontId,
        colour: Color32,
        width: f32,
    ) -> Option<egui::Vec2> {
        self.scratch.clear();
        let mut size = egui::Vec2::ZERO;
        for character in text.chars() {
            let galley = self.character(ui, character, font, colour);
            size.x += galley.size().x;
            size.y = size.y.max(galley.size().y);
            self.scratch.push(galley);
        }
        if size.x > width + 0.5 {
            self.scratch.clear();
            return None;
        }
        Some(size)
    }

    /// One character in `font` and `colour`, laid out on its own.
    pub fn character(
        &mut self,
        ui: &egui::Ui,
        character: char,
        font: &FontId,
        colour: Color32,
    ) -> Arc<Galley> {
        let monospace = font.family == egui::FontFamily::Monospace;
        let key = CharacterKey { character, size_bits: font.size.to_bits(), monospace, colour };
        self.characters.get_or_insert_with(key, || {
            let job = LayoutJob::simple_singleline(character.to_string(), font.clone(), colour);
            ui.fonts_mut(|fonts| fonts.layout_job(job))
        })
    }

    /// The largest whole-point size up to `size` at which `text` fits `width` on one line,
    /// never below `minimum` (a text drawn at it is still cut where it does not fit).
    pub fn fitted_size(&mut self, ui: &egui::Ui, text: &str, font: FontId, width: f32, minimum: f32) -> f32 {
        let key = WidthKey {
            text: text.to_string(),
            size_bits: font.size.to_bits(),
            monospace: font.family == egui::FontFamily::Monospace,
        };
        let size = font.size;
        // The sum of the characters' advances: no shaping (kerning changes it by a hair, and a
        // text drawn at the fitted size is still cut where it does not fit).
        let natural = self.widths.get_or_insert_with(key, || {
            ui.fonts_mut(|fonts| text.chars().map(|character| fonts.glyph_width(&font, character)).sum())
        });
        whole_points((size * width / natural.max(1.0)).clamp(minimum.min(size), size))
    }
}

/// A text size rounded down to whole points (never below 1): every distinct size is a font
/// whose glyphs egui rasterizes and keeps, so sizes computed from a card's size are whole.
pub fn whole_points(size: f32) -> f32 {
    size.floor().max(1.0)
}

fn atlas_state(context: &egui::Context) -> (f32, [usize; 2], f32) {
    // Not `pixels_per_point` inside `fonts`: both take the context's lock.
    let (fill, size) = context.fonts(|fonts| (fonts.font_atlas_fill_ratio(), fonts.font_image_size()));
    (fill, size, context.pixels_per_point())
}

/// A map that forgets what was not asked for in the last one or two generations: a lookup in
/// the older map moves the entry to the newer one; a rotation retires the older map, whose
/// entries are then freed a few hundred per frame.
#[derive(Debug)]
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    started: Option<Instant>,
    /// Forgotten maps, freed [`RETIRED_PER_FRAME`] entries at a time.
    retired: Vec<std::collections::hash_map::IntoIter<K, V>>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations { current: HashMap::new(), previous: HashMap::new(), started: None, retired: Vec::new() }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Generations<K, V> {
    fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        let value = make();
        self.current.insert(key, value.clone());
        value
    }

    /// The value kept for `key` (moved to the current generation), if any.
    fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.current.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.previous.remove_entry(key)?;
        self.current.insert(key, value.clone());
        Some(value)
    }

    /// Call once a frame: rotates when a generation is over and frees some retired entries.
    fn rotate_when_due(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        if now.duration_since(started) >= GENERATION {
            let forgotten = std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
            self.retire(forgotten);
            self.started = Some(now);
        }
        let mut budget = RETIRED_PER_FRAME;
        while budget > 0
            && let Some(oldest) = self.retired.first_mut()
        {
            // Each `next` moves one entry out, dropped at once; an emptied iterator frees the
            // map's table.
            if oldest.next().is_some() {
                budget -= 1;
            } else {
                self.retired.remove(0);
            }
        }
    }

    fn clear(&mut self) {
        let current = std::mem::take(&mut self.current);
        let previous = std::mem::take(&mut self.previous);
        self.retire(current);
        self.retire(previous);
    }

    fn retire(&mut self, map: HashMap<K, V>) {
        if !map.is_empty() {
            self.retired.push(map.into_iter());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    #[cfg(test)]
    fn retired_len(&self) -> usize {
        self.retired.iter().map(|retired| retired.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_while_it_is_asked_for_and_goes_two_generations_after() {
        let mut map = Generations::<&str, u32>::default();
        let start = Instant::now();
        map.rotate_when_due(start);
        let mut made = 0;
        let mut get = |map: &mut Generations<&str, u32>, key| {
            map.get_or_insert_with(key, || {
                made += 1;
                made
            })
        };
        assert_eq!(get(&mut map, "a"), 1);
        assert_eq!(get(&mut map, "a"), 1, "kept");
        map.rotate_when_due(start + GENERATION);
        assert_eq!(get(&mut map, "a"), 1, "moved from the older generation");
        map.rotate_when_due(start + GENERATION * 2);
        map.rotate_when_due(start + GENERATION * 3);
        assert_eq!(map.len(), 0, "two generations without a lookup: gone");
        assert_eq!(get(&mut map, "a"), 2, "made again");
    }

    #[test]
    fn forgotten_entries_are_freed_a_few_hundred_a_frame() {
        let mut map = Generations::<u32, String>::default();
        let start = Instant::now();
        map.rotate_when_due(start);
        for key in 0..1000 {
            map.get_or_insert_with(key, || key.to_string());
        }
        map.rotate_when_due(start + GENERATION);
        assert_eq!((map.len(), map.retired_len()), (1000, 0), "one generation old: still kept");
        map.rotate_when_due(start + GENERATION * 2);
        assert_eq!(map.len(), 0, "forgotten");
        assert_eq!(map.retired_len(), 1000 - RETIRED_PER_FRAME, "the rest freed in later frames");
        map.clear();
        for frame in 1..=3 {
            map.rotate_when_due(start + GENERATION * 2 + Duration::from_millis(frame * 16));
        }
        assert_eq!(map.retired_len(), 0);
        assert!(map.retired.is_empty(), "emptied maps are dropped");
        assert_eq!(map.get_or_insert_with(7, || "again".to_string()), "again", "made again once forgotten");
    }

    /// One frame drawing every serial with [`CardTexts::paint_monospace`]: where each went, and
    /// how many texts the frame painted.
    fn paint_serials(
        context: &egui::Context,
        texts: &mut CardTexts,
        serials: &[String],
    ) -> (Vec<egui::Rect>, usize) {
        let area = egui::Rect::from_min_size(egui::pos2(10.0, 10.0), egui::vec2(400.0, 30.0));
        let mut placed = Vec::new();
        let mut output = context.run_ui(Default::default(), |ui| {
            texts.begin_frame(ui.ctx(), Instant::now());
            for serial in serials {
                let font = FontId::monospace(17.0);
                placed.push(texts.paint_monospace(ui, ui.painter(), serial, font, Color32::WHITE, area));
            }
            texts.end_frame(ui.ctx());
        });
        output.textures_delta.clear();
        let painted =
            output.shapes.iter().filter(|clipped| matches!(clipped.shape, egui::Shape::Text(_))).count();
        (placed, painted)
    }

    #[test]
    fn new_serials_past_the_frames_budget_are_drawn_from_their_characters_in_the_same_place() {
        let context = egui::Context::default();
        let mut texts = CardTexts::default();
        let serials: Vec<String> = (0..20).map(|number| format!("DS1-{number:06}")).collect();
        let (first, painted) = paint_serials(&context, &mut texts, &serials);
        // 8 laid out whole, 12 from their 10 characters each.
        assert_eq!(painted, NEW_LINES_PER_FRAME + (20 - NEW_LINES_PER_FRAME) * 10);
        assert_eq!(texts.galleys.len(), NEW_LINES_PER_FRAME);
        paint_serials(&context, &mut texts, &serials);
        let (last, painted) = paint_serials(&context, &mut texts, &serials);
        assert_eq!((painted, texts.galleys.len()), (20, 20), "by the third frame every serial is whole");
        for ((serial, by_characters), whole) in serials.iter().zip(&first).zip(&last) {
            let apart =
                (by_characters.min - whole.min).length().max((by_characters.max - whole.max).length());
            assert!(apart < 0.5, "{serial}: {by_characters:?} drawn by characters, {whole:?} whole");
        }
        // Too wide for its area: cut whole, never drawn past the card.
        let long = ["0123456789".repeat(6)];
        let (placed, painted) = paint_serials(&context, &mut texts, &long);
        assert_eq!(painted, 1);
        assert!(placed[0].width() <= 400.5, "{:?}", placed[0]);
    }

    #[test]
    fn whole_points_round_down() {
        assert_eq!(whole_points(17.9), 17.0);
        assert_eq!(whole_points(0.2), 1.0);
    }
}
