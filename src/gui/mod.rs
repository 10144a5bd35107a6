//! The operator GUI (`imprint gui`): the line operator's window, built with eframe/egui.
//!
//! It is a second view of the same event stream as `imprint run` and adds nothing to the
//! station's logic: the line runs through the same [`crate::station::LineSession`] on a worker
//! thread (same slot rule, fault grammar and central settings), and the window folds the
//! [`crate::station::StationEvent`]s it receives into its stores. The ledger is read through its
//! public API on another worker thread.
//!
//! Shape (after rerun and egui_demo_app):
//! - [`store`]: what the window shows, plain data with no UI code, fed by events and replies;
//! - [`panels`]: `*_ui` functions that draw the stores and return [`command::Command`]s;
//! - [`app`]: owns stores, settings and workers; applies every command in one place;
//! - [`workers`]: the line thread and the chore thread (profiles, ledger queries, export);
//!   they send through channels and call `request_repaint`;
//! - [`fixture`]: manual start and the failure latch as a thin wrapper around the fixtures;
//! - [`shift`]: the operator's shift (log-in, the failed boards, the latched slots);
//! - [`attention`]: the flashing frame's clock and the sound of a latched failure;
//! - [`supervisor`]: the supervisor PIN's salted hash; [`assets`]: the embedded icon and sound;
//! - [`log_layer`]: a `tracing` layer that forwards log events to the log panel;
//! - [`frame_timing`]: measured frame times (docs/performance.md).
//!
//! **Invariants:** this is the only module that imports egui/eframe; the UI thread never
//! waits on a probe, the disk or the database.

pub mod app;
pub mod assets;
pub mod attention;
pub mod command;
pub mod fixture;
pub mod frame_timing;
pub mod log_layer;
pub mod panels;
pub mod settings;
pub mod shift;
pub mod store;
pub mod supervisor;
pub mod theme;
pub mod workers;

pub use crate::station::session::SLOTS_MAX;
pub use app::ImprintApp;
pub use frame_timing::FrameStats;
pub use log_layer::{GuiLogLayer, LogReceiver, log_channel};
pub use settings::{GuiOptions, Settings};

/// The window's title and eframe's application name (its settings file is named after it).
pub const APP_NAME: &str = "Imprint";

/// Why the window could not run.
#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    /// eframe could not open a window or set up rendering (no display, no GPU driver).
    #[error("cannot open the window (is DISPLAY or WAYLAND_DISPLAY set, and Mesa installed?): {reason}")]
    Window { reason: String },
    /// `IMPRINT_GUI_SIZE` is not `WIDTHxHEIGHT`.
    #[error("{WINDOW_SIZE_VARIABLE}: expected WIDTHxHEIGHT in points, e.g. 1024x600, found {found:?}")]
    WindowSize { found: String },
}

/// The environment variable that sets the window's first size (`WIDTHxHEIGHT`, e.g. a panel
/// PC's 1024x600); without it the window opens at 1280x800 (or its remembered size).
pub const WINDOW_SIZE_VARIABLE: &str = "IMPRINT_GUI_SIZE";

/// The window size `text` names (`WIDTHxHEIGHT`, each 200 to 8192 points).
pub fn parse_window_size(text: &str) -> Result<[f32; 2], GuiError> {
    let error = || GuiError::WindowSize { found: text.to_string() };
    let (width, height) = text.trim().split_once(['x', 'X']).ok_or_else(error)?;
    let parse = |part: &str| part.trim().parse::<u32>().ok().filter(|value| (200..=8192).contains(value));
    match (parse(width), parse(height)) {
        (Some(width), Some(height)) => Ok([width as f32, height as f32]),
        _ => Err(error()),
    }
}

/// Opens the window and runs until it is closed.
pub fn run(options: GuiOptions, log_receiver: Option<LogReceiver>) -> Result<(), GuiError> {
    let size = match std::env::var(WINDOW_SIZE_VARIABLE) {
        Ok(text) => Some(parse_window_size(&text)?),
        Err(_) => None,
    };
    let mut viewport = eframe::egui::ViewportBuilder::default()
        .with_title("Imprint — provisioning station")
        .with_app_id("imprint")
        .with_inner_size(size.unwrap_or([1280.0, 800.0]))
        .with_min_inner_size([800.0, 520.0]);
    if let Some(icon) = assets::window_icon() {
        viewport = viewport.with_icon(icon);
    }
    // A size from the environment wins over the remembered one.
    let persist_window = options.remember_settings && size.is_none();
    let native_options = eframe::NativeOptions { viewport, persist_window, ..Default::default() };
    eframe::run_native(
        APP_NAME,
        native_options,
        Box::new(move |creation| Ok(Box::new(ImprintApp::new(creation, options, log_receiver)))),
    )
    .map_err(|error| GuiError::Window { reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_are_width_by_height() {
        assert_eq!(parse_window_size("1024x600").unwrap(), [1024.0, 600.0]);
        assert_eq!(parse_window_size("3840X2160").unwrap(), [3840.0, 2160.0]);
        for bad in ["1024", "1024x", "x600", "10x600", "1024x600x2", "big"] {
            let error = parse_window_size(bad).unwrap_err().to_string();
            assert!(error.contains("IMPRINT_GUI_SIZE") && error.contains(bad), "{error}");
        }
    }
}
