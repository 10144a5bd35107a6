//! What the window ships with, embedded at build time from the top-level `assets/` folder
//! (made by `scripts/make-assets.py`; licences in `assets/LICENSES.md`): the application icon
//! and the attention sound. Nothing is read from the disk at run time, so an installed binary
//! needs no data files.

/// The application icon, PNG, 256x256 RGBA.
pub const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");

/// The attention sound of a latched failure, WAV (16-bit PCM).
pub const ATTENTION_WAV: &[u8] = include_bytes!("../../assets/attention.wav");

/// The window icon, decoded; `None` (logged) if the embedded PNG could not be decoded, in which
/// case the window opens with the platform's default icon.
pub fn window_icon() -> Option<eframe::egui::IconData> {
    match eframe::icon_data::from_png_bytes(ICON_PNG) {
        Ok(icon) => Some(icon),
        Err(error) => {
            tracing::error!(%error, "the embedded application icon (assets/icon.png) does not decode");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_icon_decodes_to_a_square_rgba_image() {
        let icon = window_icon().expect("assets/icon.png decodes");
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
        // Not blank: the card's frame, its inside and the check mark have different colours.
        let distinct: std::collections::BTreeSet<&[u8]> = icon.rgba.chunks(4).collect();
        assert!(distinct.len() >= 4, "{} colours", distinct.len());
    }
}
