//! What the GUI remembers between runs ([`Settings`], kept in eframe's storage) and what the
//! command line decides for one run ([`GuiOptions`], which wins over the remembered settings).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::HistoryScope;
use crate::ledger::ExportFormat;
use crate::station::session::{CentralSettings, SimFaultSpec, SlotChoice};

/// The log panel's level filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LogLevelFilter {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl LogLevelFilter {
    pub const ALL: [LogLevelFilter; 4] =
        [LogLevelFilter::Error, LogLevelFilter::Warn, LogLevelFilter::Info, LogLevelFilter::Debug];

    pub fn label(self) -> &'static str {
        match self {
            LogLevelFilter::Error => "ERROR",
            LogLevelFilter::Warn => "WARN",
            LogLevelFilter::Info => "INFO",
            LogLevelFilter::Debug => "DEBUG",
        }
    }

    /// Whether a line at `level` is shown.
    pub fn shows(self, level: tracing::Level) -> bool {
        let most_verbose = match self {
            LogLevelFilter::Error => tracing::Level::ERROR,
            LogLevelFilter::Warn => tracing::Level::WARN,
            LogLevelFilter::Info => tracing::Level::INFO,
            LogLevelFilter::Debug => tracing::Level::DEBUG,
        };
        // In `tracing`, more verbose levels compare greater.
        level <= most_verbose
    }
}

/// The export file formats the window offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ExportChoice {
    #[default]
    Csv,
    Json,
    Jsonl,
}

impl ExportChoice {
    pub const ALL: [ExportChoice; 3] = [ExportChoice::Csv, ExportChoice::Json, ExportChoice::Jsonl];

    pub fn label(self) -> &'static str {
        match self {
            ExportChoice::Csv => "CSV",
            ExportChoice::Json => "JSON",
            ExportChoice::Jsonl => "JSON lines",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportChoice::Csv => "csv",
            ExportChoice::Json => "json",
            ExportChoice::Jsonl => "jsonl",
        }
    }

    /// The ledger's export format.
    pub fn format(self) -> ExportFormat {
        match self {
            ExportChoice::Csv => ExportFormat::Csv,
            ExportChoice::Json => ExportFormat::Json,
            ExportChoice::Jsonl => ExportFormat::Jsonl,
        }
    }
}

/// Remembered between runs (eframe storage, key [`eframe::APP_KEY`]). Window position and
/// panel sizes are remembered by eframe and egui themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where the profile picker looks for `*.toml` profiles.
    pub profiles_directory: PathBuf,
    /// The profile picked last.
    pub last_profile: Option<PathBuf>,
    /// The operator logged in last; kept between runs only with `remember_operator` (else the
    /// next person would work under the last one's ID).
    pub operator: String,
    /// Station setting: log the last operator in again when the window opens.
    pub remember_operator: bool,
    /// Station setting: a latched failure flashes its card and sounds (assets/attention.wav).
    pub attention_signal: bool,
    /// Station setting: the supervisor PIN's salted hash; `None` leaves the station settings
    /// open to everyone.
    pub supervisor_pin: Option<super::supervisor::PinHash>,
    /// Simulated slots.
    pub sim_slot_count: usize,
    /// Each unit waits for the operator's start (the profile format has no such setting yet,
    /// so it lives here).
    pub manual_start: bool,
    /// Automatic start: pause between units, as if an operator swapped boards.
    pub unit_change_delay_ms: u64,
    /// Ignore the profile's simulated timing model.
    pub sim_timing_zero: bool,
    pub export_path: String,
    pub export_format: ExportChoice,
    pub log_level: LogLevelFilter,
    pub history_scope: HistoryScope,
    /// The supervisor view: history, export, simulator, station settings and log shown (false:
    /// the operator view, cards only). Remembered; with a supervisor PIN set the window always
    /// reopens in the operator view.
    pub supervisor_view: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profiles_directory: PathBuf::from("profiles"),
            last_profile: None,
            operator: String::new(),
            remember_operator: false,
            attention_signal: true,
            supervisor_pin: None,
            sim_slot_count: 4,
            manual_start: false,
            unit_change_delay_ms: 800,
            sim_timing_zero: false,
            export_path: "imprint-export.csv".to_string(),
            export_format: ExportChoice::Csv,
            log_level: LogLevelFilter::Info,
            history_scope: HistoryScope::LastDay,
            supervisor_view: false,
        }
    }
}

impl Settings {
    /// What is written to eframe's storage: the operator only when the station says so.
    pub fn to_remember(&self) -> Settings {
        let mut remembered = self.clone();
        if !remembered.remember_operator {
            remembered.operator.clear();
        }
        remembered
    }

    /// The pause between units in automatic mode.
    pub fn unit_change_delay(&self) -> Duration {
        Duration::from_millis(self.unit_change_delay_ms)
    }
}

/// One run's choices from the command line (or a test). `None` keeps the remembered setting.
#[derive(Debug, Clone)]
pub struct GuiOptions {
    /// The ledger database.
    pub ledger_path: PathBuf,
    /// Create the ledger when it does not exist yet (`--create-ledger`); otherwise a missing
    /// ledger is refused when a line starts.
    pub create_ledger: bool,
    /// This station's name in every record.
    pub station_name: String,
    pub profiles_directory: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub operator: Option<String>,
    pub sim_slot_count: Option<usize>,
    /// The slots' fixtures as `imprint run --probe` selectors (`probe-rs:...`, `gdb:...`,
    /// `qemu`, `sim`), one slot each; empty: the profile's `[fixture] default`, else simulated
    /// slots.
    pub probes: Vec<String>,
    /// The central PostgreSQL ledger (docs/central.md), from `--central` (or
    /// `IMPRINT_CENTRAL_URL`) and its block size, lease-ahead and batch size, as
    /// `imprint run` takes them: the station's configuration, not the profile's.
    pub central: Option<CentralSettings>,
    pub sim_timing_zero: Option<bool>,
    pub manual_start: Option<bool>,
    pub unit_change_delay_ms: Option<u64>,
    /// Repeatable simulated unique IDs.
    pub sim_uid_seed: Option<u64>,
    /// Faults for chosen units (`--sim-fault`).
    pub sim_faults: Vec<SimFaultSpec>,
    /// Units to attempt in all per start; `None` runs until stopped.
    pub unit_limit: Option<u64>,
    /// Start the line as soon as the window opens.
    pub autostart: bool,
    /// Close the window this long after the line finished by itself (unattended runs).
    pub exit_after_line_finished: Option<Duration>,
    /// Write the frame timing report (JSON) here at exit.
    pub frame_stats_path: Option<PathBuf>,
    /// Read and write settings in eframe's storage (false: defaults and options only).
    pub remember_settings: bool,
    /// Open in the supervisor view (`Some(true)`) or the operator view; `None` keeps the
    /// remembered view.
    pub supervisor_view: Option<bool>,
}

impl GuiOptions {
    /// Options that change nothing but the ledger and station name.
    pub fn new(ledger_path: PathBuf, station_name: String) -> GuiOptions {
        GuiOptions {
            ledger_path,
            create_ledger: false,
            station_name,
            profiles_directory: None,
            profile: None,
            operator: None,
            sim_slot_count: None,
            probes: Vec::new(),
            central: None,
            sim_timing_zero: None,
            manual_start: None,
            unit_change_delay_ms: None,
            sim_uid_seed: None,
            sim_faults: Vec::new(),
            unit_limit: None,
            autostart: false,
            exit_after_line_finished: None,
            frame_stats_path: None,
            remember_settings: true,
            supervisor_view: None,
        }
    }

    /// The slots a start asks for (the station's one slot rule decides): the `--probe`
    /// selectors with the `--sim` slots after them; without `--probe`, the window's slot count.
    pub fn slot_choice(&self, settings: &Settings) -> SlotChoice {
        if self.probes.is_empty() {
            SlotChoice { probes: Vec::new(), slot_count: Some(settings.sim_slot_count) }
        } else {
            SlotChoice { probes: self.probes.clone(), slot_count: self.sim_slot_count }
        }
    }

    /// The remembered settings with this run's choices applied.
    pub fn apply_to(&self, mut settings: Settings) -> Settings {
        if let Some(directory) = &self.profiles_directory {
            settings.profiles_directory = directory.clone();
        }
        if let Some(profile) = &self.profile {
            settings.last_profile = Some(profile.clone());
            if self.profiles_directory.is_none()
                && let Some(parent) = profile.parent().filter(|parent| !parent.as_os_str().is_empty())
            {
                settings.profiles_directory = parent.to_owned();
            }
        }
        if let Some(operator) = &self.operator {
            settings.operator = operator.clone();
        }
        if let Some(count) = self.sim_slot_count {
            settings.sim_slot_count = count;
        }
        if let Some(zero) = self.sim_timing_zero {
            settings.sim_timing_zero = zero;
        }
        if let Some(manual) = self.manual_start {
            settings.manual_start = manual;
        }
        if let Some(delay) = self.unit_change_delay_ms {
            settings.unit_change_delay_ms = delay;
        }
        // A PIN guards the supervisor view: it is never open when the window opens.
        if settings.supervisor_pin.is_some() {
            settings.supervisor_view = false;
        }
        if let Some(view) = self.supervisor_view {
            settings.supervisor_view = view;
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_choices_win_over_remembered_settings() {
        let remembered = Settings { operator: "alice".into(), sim_slot_count: 8, ..Settings::default() };
        let mut options = GuiOptions::new("l.db".into(), "s".into());
        assert_eq!(options.apply_to(remembered.clone()), remembered);
        options.operator = Some("bob".into());
        options.profile = Some("elsewhere/product.toml".into());
        let applied = options.apply_to(remembered);
        assert_eq!(applied.operator, "bob");
        assert_eq!(applied.sim_slot_count, 8);
        assert_eq!(applied.profiles_directory, PathBuf::from("elsewhere"));
        assert_eq!(applied.last_profile, Some(PathBuf::from("elsewhere/product.toml")));
    }

    #[test]
    fn level_filter_shows_its_level_and_more_severe() {
        assert!(LogLevelFilter::Warn.shows(tracing::Level::ERROR));
        assert!(LogLevelFilter::Warn.shows(tracing::Level::WARN));
        assert!(!LogLevelFilter::Warn.shows(tracing::Level::INFO));
        assert!(LogLevelFilter::Debug.shows(tracing::Level::DEBUG));
        assert!(!LogLevelFilter::Debug.shows(tracing::Level::TRACE));
    }
}
