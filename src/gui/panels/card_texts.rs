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

/// A text's natural width at one size (the sum of its characters' advances).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WidthKey {
    text: String,
    size_bits: u32,
    monospace: bool,
}

/// The cards' laid-out texts, kept across frames (see the module's comment).
#[derive(Debug, Default)]
pub struct CardTexts {
    galleys: Generations<TextKey, Arc<Galley>>,
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
                self.widths.clear();
            }
        }
        self.galleys.rotate_when_due(now);
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
        let key = TextKey {
            text: text.to_string(),
            size_bits: font.size.to_bits(),
            monospace: font.family == egui::FontFamily::Monospace,
            colour,
            width_bits: width.to_bits(),
        };
        self.galleys.get_or_insert_with(key, || {
            let mut job = LayoutJob::simple_singleline(text.to_string(), font, colour);
            job.wrap = TextWrapping::truncate_at_width(width);
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
/// the older map moves the entry to the newer one; a rotation drops the older map.
#[derive(Debug)]
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    started: Option<Instant>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations { current: HashMap::new(), previous: HashMap::new(), started: None }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Generations<K, V> {
    fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.current.get(&key) {
            return value.clone();
        }
        let value = self.previous.remove(&key).unwrap_or_else(make);
        self.current.insert(key, value.clone());
        value
    }

    fn rotate_when_due(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        if now.duration_since(started) >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.started = Some(now);
        }
    }

    fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
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
    fn whole_points_round_down() {
        assert_eq!(whole_points(17.9), 17.0);
        assert_eq!(whole_points(0.2), 1.0);
    }
}
