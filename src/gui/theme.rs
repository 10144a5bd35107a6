//! How states look: a colour-blind safe palette (Okabe and Ito, "Color Universal Design"),
//! one icon and one word per slot state, and the text sizes that keep a slot readable from two
//! metres.
//!
//! Colour never carries meaning alone: every state has an icon and a word as well, so an
//! operator with any colour vision (or a monochrome screen) reads the same thing.

use eframe::egui::Color32;

/// Okabe-Ito bluish green: PASS.
pub const PASS_COLOUR: Color32 = Color32::from_rgb(0x00, 0x9E, 0x73);
/// Okabe-Ito vermillion: FAIL.
pub const FAIL_COLOUR: Color32 = Color32::from_rgb(0xD5, 0x5E, 0x00);
/// Okabe-Ito sky blue: a step is running.
pub const RUNNING_COLOUR: Color32 = Color32::from_rgb(0x56, 0xB4, 0xE9);
/// Okabe-Ito blue: the progress bar (white text reads on it and on the dark track).
pub const PROGRESS_COLOUR: Color32 = Color32::from_rgb(0x00, 0x72, 0xB2);
/// Okabe-Ito orange: waiting for the operator.
pub const WAITING_COLOUR: Color32 = Color32::from_rgb(0xE6, 0x9F, 0x00);
/// Okabe-Ito yellow: warnings in the log.
pub const WARNING_COLOUR: Color32 = Color32::from_rgb(0xF0, 0xE4, 0x42);
/// A neutral grey: idle, nothing on the fixture.
pub const IDLE_COLOUR: Color32 = Color32::from_rgb(0x9A, 0x9A, 0x9A);

/// The kinds of state a slot shows, each with its icon, word and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateLook {
    Idle,
    Waiting,
    Running,
    Pass,
    Fail,
}

impl StateLook {
    /// The icon drawn before the word (glyphs from egui's bundled fonts).
    pub fn icon(self) -> &'static str {
        match self {
            StateLook::Idle => "⏹",
            StateLook::Waiting => "⏸",
            StateLook::Running => "⟳",
            StateLook::Pass => "✔",
            StateLook::Fail => "✖",
        }
    }

    /// The state's colour.
    pub fn colour(self) -> Color32 {
        match self {
            StateLook::Idle => IDLE_COLOUR,
            StateLook::Waiting => WAITING_COLOUR,
            StateLook::Running => RUNNING_COLOUR,
            StateLook::Pass => PASS_COLOUR,
            StateLook::Fail => FAIL_COLOUR,
        }
    }

    /// A dark tint of the colour for a slot's background, so the large text on it keeps a
    /// high contrast (light text on a dark, coloured card).
    pub fn background(self) -> Color32 {
        let [red, green, blue, _] = self.colour().to_array();
        let darken = |channel: u8| (channel as f32 * 0.28) as u8 + 14;
        Color32::from_rgb(darken(red), darken(green), darken(blue))
    }
}

/// The height of a slot's state line in points, from the card's size (a fifth of its height,
/// an eighth of its width, whichever is less): large enough to read from three metres on big
/// cards (four slots on a 24" screen: letters about 15 mm tall; one slot at 4K: 200 points),
/// never smaller than body text. Longer words shrink further to fit the card's width.
pub fn state_text_size(card: eframe::egui::Vec2) -> f32 {
    (card.y * 0.2).min(card.x * 0.125).clamp(18.0, 200.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui;

    /// The window's symbols come from egui's bundled fonts, so they show on any machine
    /// (the operator station may have no emoji font installed).
    #[test]
    fn every_symbol_is_in_the_bundled_fonts() {
        let context = egui::Context::default();
        let mut output = context.run_ui(Default::default(), |_| {});
        output.textures_delta.clear();
        let states =
            [StateLook::Idle, StateLook::Waiting, StateLook::Running, StateLook::Pass, StateLook::Fail];
        let symbols: Vec<&str> =
            states.iter().map(|state| state.icon()).chain(["▶", "⚠", "⟳", "…", "–", "·"]).collect();
        for symbol in symbols {
            let found =
                context.fonts_mut(|fonts| fonts.has_glyphs(&egui::FontId::proportional(14.0), symbol));
            assert!(found, "{symbol} is not in egui's bundled fonts");
        }
    }

    #[test]
    fn states_differ_in_icon_and_colour() {
        let states =
            [StateLook::Idle, StateLook::Waiting, StateLook::Running, StateLook::Pass, StateLook::Fail];
        for (index, left) in states.iter().enumerate() {
            for right in &states[index + 1..] {
                assert_ne!(left.icon(), right.icon());
                assert_ne!(left.colour(), right.colour());
            }
        }
    }
}
