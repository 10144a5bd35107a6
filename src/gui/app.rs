//! The application: owns the stores, the workers and the settings; each frame it folds what
//! the workers sent into the stores, lets the panels draw and collect [`Command`]s, and applies
//! those commands here, in one place.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use eframe::egui;

use crate::station::session::{FaultInjector, SLOTS_MAX, SerialSource};
use crate::station::{EventKind, LinePlan, UnitResult};

use super::attention::{Attention, FLASH_HALF_PERIOD};
use super::command::Command;
use super::fixture::StartMode;
use super::frame_timing::{FrameTimer, FrameWork, thread_cpu_time, thread_run_delay};
use super::log_layer::LogReceiver;
use super::panels::{self, Forms};
use super::settings::{GuiOptions, Settings};
use super::shift::{ShiftStore, keep_latched_cards, start_blocker};
use super::store::{HistoryStore, LineStatus, LineStore, LogStore, ProfilesStore, UnitDetails};
use super::workers::{
    ChoreReply, ChoreRequest, ChoreWorker, HISTORY_ROWS_MAX, LineMessage, LineRequest, RunningLine, UiSender,
    UiWaker, start_line,
};

/// How often the history table is refreshed at most while units finish.
const HISTORY_REFRESH_INTERVAL: Duration = Duration::from_millis(500);
/// The ledger's totals scan the whole ledger: while units finish they are recomputed at most
/// every this many times as long as the last computation took (about 5 % of the chore
/// thread), but no more often than [`STATS_INTERVAL_MIN`] and no less than [`STATS_INTERVAL_MAX`].
const STATS_INTERVAL_FACTOR: u32 = 20;
const STATS_INTERVAL_MIN: Duration = Duration::from_secs(1);
const STATS_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// An incremental history refresh re-reads runs started this long before the previous request
/// (covers units whose start the window had not heard of yet).
const HISTORY_OVERLAP: Duration = Duration::from_secs(10);
/// How often the window repaints while the line runs even without events (clocks tick).
const RUNNING_REPAINT_INTERVAL: Duration = Duration::from_millis(100);
/// At most this many station events are folded per frame, so a flood cannot stall a frame;
/// the rest wait for the next one.
const EVENTS_PER_FRAME_MAX: usize = 20_000;

mod scan;
mod shift_commands;

pub use scan::ScanNote;

/// The operator GUI.
pub struct ImprintApp {
    options: GuiOptions,
    settings: Settings,
    forms: Forms,
    line: LineStore,
    history: HistoryStore,
    log: LogStore,
    profiles: ProfilesStore,
    shift: ShiftStore,
    attention: Attention,
    /// The supervisor unlocked the station settings with the PIN (until locked or closed).
    settings_unlocked: bool,
    /// The last answer to a PIN entry, for the station settings panel.
    supervisor_message: Option<String>,
    line_sender: crossbeam_channel::Sender<LineMessage>,
    line_receiver: crossbeam_channel::Receiver<LineMessage>,
    /// Wakes the UI once per frame for the line's messages.
    line_waker: UiWaker,
    running_line: Option<RunningLine>,
    chores: ChoreWorker,
    log_receiver: Option<LogReceiver>,
    faults: FaultInjector,
    frame_timer: FrameTimer,
    /// The slot cards' texts, laid out once and kept across frames.
    card_texts: panels::CardTexts,
    repaint: egui::Context,
    session_started: SystemTime,
    /// The last work order scanned (recorded with each unit).
    work_order: Option<String>,
    /// The running line's profile scans serials: the scanner field takes serials.
    serials_are_scanned: bool,
    /// The answer to the last scan, beside the scanner field.
    scan_note: Option<ScanNote>,
    /// The slot a slot label chose for the next serial label or start.
    selected_slot: Option<usize>,
    /// Simulator: slots whose board the operator took off the fixture.
    boards_removed: std::collections::BTreeSet<usize>,
    history_is_stale: bool,
    history_requested_at: Option<Instant>,
    stats_requested_at: Option<Instant>,
    stats_interval: Duration,
    stats_is_stale: bool,
    autostart_pending: bool,
    /// Close the window once the line has stopped (close requested while it ran).
    close_when_stopped: bool,
    /// Close the window at this time (unattended runs).
    close_at: Option<Instant>,
}

impl ImprintApp {
    /// The app for eframe's creation context: remembered settings (when `options` allow)
    /// with the command line's choices on top.
    pub fn new(
        creation: &eframe::CreationContext<'_>,
        options: GuiOptions,
        log_receiver: Option<LogReceiver>,
    ) -> ImprintApp {
        let remembered = creation
            .storage
            .filter(|_| options.remember_settings)
            .and_then(|storage| eframe::get_value::<Settings>(storage, eframe::APP_KEY))
            .unwrap_or_default();
        let settings = options.apply_to(remembered);
        let repaint = creation.egui_ctx.clone();
        panels::set_up_style(&repaint);
        if let Some(receiver) = &log_receiver {
            receiver.set_repaint(&repaint);
        }
        let faults = FaultInjector::with_schedule(options.sim_faults.clone());
        let (line_sender, line_receiver) = crossbeam_channel::unbounded();
        let chores = ChoreWorker::start(repaint.clone());
        let mut app = ImprintApp {
            forms: Forms::new(&settings),
            autostart_pending: options.autostart,
            options,
            settings,
            line: LineStore::default(),
            history: HistoryStore::default(),
            log: LogStore::default(),
            profiles: ProfilesStore::default(),
            shift: ShiftStore::default(),
            attention: Attention::default(),
            settings_unlocked: false,
            supervisor_message: None,
            line_sender,
            line_receiver,
            line_waker: UiWaker::new(repaint.clone()),
            running_line: None,
            chores,
            log_receiver,
            faults,
            frame_timer: FrameTimer::default(),
            card_texts: panels::CardTexts::default(),
            repaint,
            session_started: SystemTime::now(),
            work_order: None,
            serials_are_scanned: false,
            scan_note: None,
            selected_slot: None,
            boards_removed: std::collections::BTreeSet::new(),
            history_is_stale: true,
            history_requested_at: None,
            stats_requested_at: None,
            stats_interval: STATS_INTERVAL_MIN,
            stats_is_stale: true,
            close_when_stopped: false,
            close_at: None,
        };
        app.preview_slots();
        app.log_in_at_open();
        app.apply(Command::RescanProfiles);
        if let Some(profile) = app.settings.last_profile.clone() {
            app.apply(Command::SelectProfile(profile));
        }
        app
    }

    /// The frame timing collected so far.
    pub fn frame_timer(&self) -> &FrameTimer {
        &self.frame_timer
    }

    /// The line's store (for tests and the frame report).
    pub fn line(&self) -> &LineStore {
        &self.line
    }

    /// Applies one command: the only place the app's state changes because of the operator.
    fn apply(&mut self, command: Command) {
        match command {
            Command::Nothing => {}
            Command::RescanProfiles => {
                self.settings.profiles_directory = PathBuf::from(self.forms.profiles_directory.trim());
                self.chores.request(ChoreRequest::ScanProfiles {
                    directory: self.settings.profiles_directory.clone(),
                });
            }
            Command::SelectProfile(path) => {
                self.settings.last_profile = Some(path.clone());
                self.profiles.checked = None;
                self.chores.request(ChoreRequest::CheckProfile { path });
            }
            Command::SetSlotCount(count) => {
                self.settings.sim_slot_count = count.clamp(1, SLOTS_MAX);
                self.preview_slots();
            }
            Command::StartLine => self.start_line(),
            Command::StopLine => {
                if let Some(line) = &self.running_line {
                    tracing::info!("stop requested: the units in flight finish, no new unit starts");
                    line.stop();
                    self.line.stopping();
                }
            }
            Command::AbortLine => {
                if let Some(line) = &self.running_line {
                    tracing::warn!("abort confirmed: the units in flight end after their current step");
                    line.abort();
                    self.line.stopping();
                }
            }
            Command::StartUnit { slot } => {
                if let Some(gate) = self.running_line.as_ref().and_then(|line| line.gates.get(slot)) {
                    gate.press();
                }
            }
            Command::Scanned(text) => self.scanned(text.trim()),
            Command::RefreshHistory => self.request_history(true),
            Command::OpenUnit(key) => {
                self.history.details = Some(UnitDetails::Loading { key: key.clone() });
                self.chores.request(ChoreRequest::UnitDetails {
                    ledger_path: self.options.ledger_path.clone(),
                    key,
                });
            }
            Command::CloseUnit => self.history.details = None,
            Command::Export => {
                let path = PathBuf::from(self.settings.export_path.trim());
                if path.as_os_str().is_empty() {
                    self.history.export_message =
                        Some("export: expected a file name, found nothing".to_string());
                } else {
                    self.history.export_message = Some(format!("exporting to {} …", path.display()));
                    self.chores.request(ChoreRequest::Export {
                        ledger_path: self.options.ledger_path.clone(),
                        path,
                        format: self.settings.export_format,
                    });
                }
            }
            Command::SetBoardPresent { slot, present } => self.set_board_present(slot, present),
            Command::ArmFault { slot, fault } => {
                tracing::info!(slot, fault = %fault.describe(), "fault armed for the slot's next unit");
                self.faults.arm(slot, fault.plan());
            }
            shift_command => self.apply_shift(shift_command),
        }
    }

    /// Failures latch on an attended line; an unattended one (`--exit-after-units`) has nobody
    /// to acknowledge them and must reach its unit limit.
    fn latches_failures(&self) -> bool {
        self.options.unit_limit.is_none()
    }

    /// Why START is refused now (the toolbar shows it beside the disabled button).
    fn start_blocker(&self) -> Option<&'static str> {
        let chosen = self.settings.last_profile.as_deref();
        let check = self
            .profiles
            .checked
            .as_ref()
            .filter(|(path, _)| Some(path.as_path()) == chosen)
            .map(|(_, result)| result.as_ref().map(|_| ()).map_err(|_| ()));
        start_blocker(chosen.is_some(), check, self.shift.operator_id())
    }

    fn start_line(&mut self) {
        if self.line.is_active() {
            return;
        }
        if let Some(reason) = self.start_blocker() {
            tracing::warn!("the line cannot start: {reason}");
            return;
        }
        let (Some(profile_path), Some(operator)) =
            (self.settings.last_profile.clone(), self.shift.operator_id().map(str::to_string))
        else {
            return;
        };
        let start_mode = if self.settings.manual_start {
            StartMode::Manual
        } else {
            StartMode::Automatic { unit_change_delay: self.settings.unit_change_delay() }
        };
        let plan = LinePlan {
            profile_path,
            slots: self.options.slot_choice(&self.settings),
            station_name: self.options.station_name.clone(),
            operator,
            ledger_path: self.options.ledger_path.clone(),
            create_ledger: self.options.create_ledger,
            central: self.options.central.clone(),
            serials: SerialSource::NotGiven,
            work_order: self.work_order.clone(),
            faults: self.faults.clone(),
            unit_limit: self.options.unit_limit,
            sim_timing_zero: self.settings.sim_timing_zero,
            sim_uid_seed: self.options.sim_uid_seed,
        };
        let request = LineRequest { plan, start_mode, latch_failures: self.latches_failures() };
        self.line.starting();
        let running = start_line(request, UiSender::new(self.line_sender.clone(), self.line_waker.clone()));
        // A failure still latched from the last run holds its slot in this one too, and a
        // board taken off stays off.
        for slot in self.shift.latched_slots() {
            if let Some(gate) = running.gates.get(slot) {
                gate.latch();
            }
        }
        for slot in &self.boards_removed {
            if let Some(gate) = running.gates.get(*slot) {
                gate.set_board_present(false);
            }
        }
        self.selected_slot = None;
        self.running_line = Some(running);
    }

    /// Idle cards for the slots the next start will have: the `--probe` fixtures (and the
    /// `--sim` slots after them), else the window's number of slots.
    fn preview_slots(&mut self) {
        let previous = self.line.slots.clone();
        self.preview_new_slots();
        keep_latched_cards(&previous, &mut self.line.slots, &self.shift);
    }

    fn preview_new_slots(&mut self) {
        let choice = self.options.slot_choice(&self.settings);
        if choice.probes.is_empty() {
            self.line.preview_slots(self.settings.sim_slot_count);
        } else {
            let first_sim = choice.probes.len();
            let sims =
                (first_sim..first_sim + choice.slot_count.unwrap_or(0)).map(|slot| format!("sim-{slot}"));
            self.line.preview_named_slots(choice.probes.into_iter().chain(sims).collect());
        }
    }

    /// Simulator: the board is taken off the slot's fixture (or put back). Taking off a failed
    /// board acknowledges its failure, as the Acknowledge button does; the slot takes no unit
    /// until a board is back.
    fn set_board_present(&mut self, slot: usize, present: bool) {
        if present {
            self.boards_removed.remove(&slot);
            tracing::info!(slot, "board put on the fixture");
        } else {
            self.boards_removed.insert(slot);
            tracing::info!(slot, "board removed from the fixture");
            if self.shift.is_latched(slot) {
                tracing::info!(slot, "the failed board was removed: that acknowledges its failure");
                self.apply(Command::Acknowledge { slot });
            }
        }
        if let Some(gate) = self.running_line.as_ref().and_then(|line| line.gates.get(slot)) {
            gate.set_board_present(present);
        }
    }

    /// Asks for the history rows: in full (search, scope or refresh), or only what finished
    /// since the rows shown (units finished meanwhile). The ledger's totals follow when due.
    fn request_history(&mut self, full: bool) {
        let now = Instant::now();
        let search_unchanged = self.forms.search.trim() == self.history.shown_search.trim();
        let started_since = if full || !search_unchanged { None } else { self.history.incremental_since() };
        let overlap_start = SystemTime::now().checked_sub(HISTORY_OVERLAP).unwrap_or(SystemTime::UNIX_EPOCH);
        match crate::ledger::format_timestamp("since", overlap_start) {
            Ok(bound) => self
                .history
                .requested(bound, self.line.slots.iter().filter_map(|slot| slot.unit_started_time.clone())),
            Err(_) => self.history.refresh_bound = None,
        }
        self.history.is_loading = true;
        self.history_is_stale = false;
        self.history_requested_at = Some(now);
        self.chores.request(ChoreRequest::History {
            ledger_path: self.options.ledger_path.clone(),
            search: self.forms.search.clone(),
            scope: self.settings.history_scope,
            session_started: self.session_started,
            started_since,
        });
        self.stats_is_stale = true;
        self.request_stats_when_due(now, full || !self.line.is_active());
    }

    fn request_stats_when_due(&mut self, now: Instant, now_anyway: bool) {
        let due = self
            .stats_requested_at
            .is_none_or(|requested| now.duration_since(requested) >= self.stats_interval);
        if self.stats_is_stale && (due || now_anyway) {
            self.stats_is_stale = false;
            self.stats_requested_at = Some(now);
            self.chores.request(ChoreRequest::Stats { ledger_path: self.options.ledger_path.clone() });
        } else if self.stats_is_stale {
            self.repaint.request_repaint_after(self.stats_interval);
        }
    }

    /// Folds what the workers sent since the last frame into the stores.
    fn receive(&mut self, now: Instant) {
        let mut events = 0u64;
        self.line_waker.looking();
        while let Ok(message) = self.line_receiver.try_recv() {
            match message {
                LineMessage::Started { fixture_names, serials_are_scanned } => {
                    self.serials_are_scanned = serials_are_scanned;
                    let previous = std::mem::take(&mut self.line.slots);
                    for slot in self.shift.release_slots_from(fixture_names.len()) {
                        tracing::info!(
                            slot,
                            "the line has no such slot now: its latched failure is released"
                        );
                    }
                    self.line.started(fixture_names, now);
                    keep_latched_cards(&previous, &mut self.line.slots, &self.shift);
                }
                LineMessage::StartFailed { reason } => self.line.start_failed(reason),
                LineMessage::SlotWaiting { slot } => self.line.slot_waiting(slot),
                LineMessage::FailedBoardRemoved { slot } => {
                    // The slot's thread released its gate already (a later failure may have
                    // latched it again since): only the shift's record follows here.
                    if self.shift.acknowledge(slot) {
                        tracing::info!(
                            slot,
                            "the fixture saw the failed board taken off: that acknowledges its failure"
                        );
                    }
                }
                LineMessage::Event(event) => {
                    events += 1;
                    self.line.apply(&event, now);
                    if let Some(slot) = self.shift.apply(&event) {
                        if !self.latches_failures() {
                            self.shift.acknowledge(slot);
                        } else if self.settings.attention_signal {
                            self.attention.sound();
                        }
                    }
                    match &event.kind {
                        EventKind::UnitFinished { result, serial, failing_step, reason, .. } => {
                            self.history_is_stale = true;
                            let serial = serial.as_deref().unwrap_or("-");
                            match result {
                                UnitResult::Pass => {
                                    tracing::info!(
                                        slot = event.slot,
                                        unit = event.unit,
                                        serial,
                                        "unit passed"
                                    )
                                }
                                UnitResult::Fail => tracing::warn!(
                                    slot = event.slot,
                                    unit = event.unit,
                                    serial,
                                    step = failing_step.as_deref().unwrap_or("-"),
                                    reason = reason.as_deref().unwrap_or("-"),
                                    "unit failed"
                                ),
                                UnitResult::Aborted => tracing::warn!(
                                    slot = event.slot,
                                    unit = event.unit,
                                    serial,
                                    before = failing_step.as_deref().unwrap_or("-"),
                                    "unit aborted"
                                ),
                            }
                        }
                        EventKind::SlotError { reason } => {
                            tracing::warn!(slot = event.slot, %reason, "slot could not get a unit")
                        }
                        EventKind::LineFinished { .. } => self.history_is_stale = true,
                        _ => {}
                    }
                    if events as usize >= EVENTS_PER_FRAME_MAX {
                        self.repaint.request_repaint();
                        break;
                    }
                }
                LineMessage::Ended => {
                    self.running_line = None;
                    if self.line.is_active() {
                        self.line.start_failed("the line stopped".to_string());
                    }
                    if let Some(delay) = self.options.exit_after_line_finished {
                        println!("imprint gui: line finished, {} units", self.line.stats.units);
                        self.close_at = Some(now + delay);
                    }
                }
            }
        }
        self.frame_timer.count_events(events);
        while let Ok(reply) = self.chores.replies.try_recv() {
            self.receive_chore(reply);
        }
        if let Some(receiver) = &self.log_receiver {
            receiver.drain_into(&mut self.log);
        }
        if self.autostart_pending && self.profiles.checked.is_some() {
            self.autostart_pending = false;
            self.apply(Command::StartLine);
        }
        let history_due = self
            .history_requested_at
            .is_none_or(|requested| now.duration_since(requested) >= HISTORY_REFRESH_INTERVAL);
        self.request_stats_when_due(now, false);
        if let Some(line) = self.running_line.as_ref().filter(|_| self.serials_are_scanned) {
            self.line.slots_waiting_for_scan(&line.labels.slots_waiting_for_serial());
        }
        if self.history_is_stale && history_due {
            self.request_history(false);
        } else if self.history_is_stale {
            self.repaint.request_repaint_after(HISTORY_REFRESH_INTERVAL);
        }
    }

    fn receive_chore(&mut self, reply: ChoreReply) {
        match reply {
            ChoreReply::Profiles { directory, result } => {
                if self.settings.last_profile.is_none()
                    && let Ok(profiles) = &result
                {
                    // First run: the demo profile if the folder has it, else the first one.
                    let preferred = profiles
                        .iter()
                        .find(|path| path.file_name().is_some_and(|name| name == "demo.toml"))
                        .or_else(|| profiles.first())
                        .cloned();
                    if let Some(profile) = preferred {
                        self.apply(Command::SelectProfile(profile));
                    }
                }
                self.profiles.directory = directory;
                self.profiles.listed = result;
            }
            ChoreReply::ProfileChecked { path, result } => {
                // The answer for a profile no longer chosen is stale: it must not show.
                if self.settings.last_profile.as_ref() != Some(&path) {
                    return;
                }
                if let Err(problems) = &result {
                    tracing::warn!(profile = %path.display(), "{problems}");
                }
                self.profiles.checked = Some((path, result));
            }
            ChoreReply::History { search, is_incremental, result } => {
                self.history.is_loading = false;
                match result {
                    Ok(rows) if is_incremental => {
                        self.history.merge(rows, HISTORY_ROWS_MAX);
                        self.history.error = None;
                    }
                    Ok(rows) => {
                        self.history.rows = rows;
                        self.history.shown_search = search;
                        self.history.is_full = true;
                        self.history.error = None;
                    }
                    Err(error) => {
                        // The rows may now miss runs: the next refresh reads in full.
                        self.history.is_full = false;
                        self.history.error = Some(error);
                    }
                }
            }
            ChoreReply::UnitDetails { key, result } => {
                // A reply for a window that was closed meanwhile is dropped.
                if self.history.details.is_some() {
                    self.history.details = Some(match result {
                        Ok(Some(unit)) => UnitDetails::Found(unit),
                        Ok(None) => UnitDetails::NotFound { key },
                        Err(error) => UnitDetails::Failed { key, error },
                    });
                }
            }
            ChoreReply::Stats { result, took } => {
                self.stats_interval =
                    (took * STATS_INTERVAL_FACTOR).clamp(STATS_INTERVAL_MIN, STATS_INTERVAL_MAX);
                match result {
                    Ok(stats) => self.history.ledger_stats = stats,
                    Err(error) => self.history.error = Some(error),
                }
            }
            ChoreReply::SerialChecked { label, verdict } => self.serial_checked(label, verdict),
            ChoreReply::Exported { path, result } => {
                self.history.export_message = Some(match result {
                    Ok(count) => {
                        tracing::info!(path = %path.display(), runs = count, "ledger exported");
                        format!("exported {count} runs to {}", path.display())
                    }
                    Err(error) => {
                        tracing::error!(%error, "export failed");
                        format!("export failed: {error}")
                    }
                });
            }
        }
    }

    /// Keyboard shortcuts, read before the panels so text fields cannot swallow them.
    fn shortcuts(&mut self, context: &egui::Context) -> Vec<Command> {
        let mut commands = Vec::new();
        context.input_mut(|input| {
            if input.consume_shortcut(&panels::START_SHORTCUT) {
                commands.push(Command::StartLine);
            }
            if input.consume_shortcut(&panels::STOP_SHORTCUT) {
                commands.push(Command::StopLine);
            }
            if input.consume_shortcut(&panels::EXPORT_SHORTCUT) {
                commands.push(Command::Export);
            }
            if input.consume_shortcut(&panels::ACKNOWLEDGE_SHORTCUT) {
                commands.push(Command::AcknowledgeOldest);
            }
        });
        commands
    }

    /// Closing while the line runs stops the line first and closes when it has stopped, so no
    /// unit is cut off half-way through a step.
    fn handle_close(&mut self, context: &egui::Context, now: Instant) {
        if context.input(|input| input.viewport().close_requested()) && self.line.is_active() {
            context.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.close_when_stopped = true;
            self.apply(Command::StopLine);
        }
        let closing_after_stop = self.close_when_stopped && !self.line.is_active();
        let closing_on_schedule = self.close_at.is_some_and(|at| now >= at);
        if closing_after_stop || closing_on_schedule {
            context.send_viewport_cmd(egui::ViewportCommand::Close);
        } else if let Some(at) = self.close_at {
            context.request_repaint_after(at.saturating_duration_since(now));
        }
    }

    fn write_frame_stats(&self) {
        let Some(path) = &self.options.frame_stats_path else {
            return;
        };
        let stats = self.frame_timer.stats(self.line.slots.len());
        let written = serde_json::to_string_pretty(&stats)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(path, text + "\n"));
        if let Err(error) = written {
            tracing::error!(path = %path.display(), %error, "cannot write the frame timing report");
        }
    }
}

impl eframe::App for ImprintApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        // Read only for the report: a file read each side of the closure, outside its timing.
        let measures_waiting = self.options.frame_stats_path.is_some();
        let run_delay_before = thread_run_delay().filter(|_| measures_waiting);
        let frame_started = Instant::now();
        let closure_cpu_started = thread_cpu_time();
        let previous_frame_cpu = frame.info().cpu_usage.map(Duration::from_secs_f32);
        self.frame_timer.frame_started(
            frame_started,
            self.line.status == LineStatus::Running,
            previous_frame_cpu,
        );
        let context = ui.ctx().clone();
        self.card_texts.begin_frame(&context, frame_started);
        let folding_started = Instant::now();
        self.receive(frame_started);
        let folding = folding_started.elapsed();

        let mut commands = self.shortcuts(&context);
        let view = panels::View {
            line: &self.line,
            history: &self.history,
            log: &self.log,
            profiles: &self.profiles,
            station_name: &self.options.station_name,
            ledger_path: &self.options.ledger_path,
            work_order: self.work_order.as_deref(),
            serials_are_scanned: self.serials_are_scanned && self.line.is_active(),
            probes: &self.options.probes,
            sim_slots_after_probes: if self.options.probes.is_empty() {
                0
            } else {
                self.options.sim_slot_count.unwrap_or(0)
            },
            faults: &self.faults,
            frame_timer: &self.frame_timer,
            now: frame_started,
            shift: &self.shift,
            flash_is_on: self.settings.attention_signal && self.attention.flash_is_on(frame_started),
            start_blocker: if self.line.is_active() { None } else { self.start_blocker() },
            settings_unlocked: self.settings_unlocked || self.settings.supervisor_pin.is_none(),
            supervisor_message: self.supervisor_message.as_deref(),
            scan_note: self.scan_note.as_ref(),
            selected_slot: self.selected_slot,
            boards_removed: &self.boards_removed,
        };
        panels::app_ui(ui, &view, &mut self.settings, &mut self.forms, &mut self.card_texts, &mut commands);
        self.card_texts.end_frame(&context);
        for command in commands {
            self.apply(command);
        }
        self.handle_close(&context, frame_started);
        if self.line.is_active() {
            context.request_repaint_after(RUNNING_REPAINT_INTERVAL);
        } else if self.settings.attention_signal && self.shift.oldest_latched().is_some() {
            context.request_repaint_after(FLASH_HALF_PERIOD);
        }
        let closure = frame_started.elapsed();
        let closure_cpu = closure_cpu_started
            .zip(thread_cpu_time())
            .map(|(started, finished)| finished.saturating_sub(started));
        let waiting =
            run_delay_before.and_then(|before| thread_run_delay().map(|after| after.saturating_sub(before)));
        self.frame_timer.frame_finished(FrameWork {
            closure,
            folding,
            closure_cpu,
            waiting,
            glyph_atlas_fill: context.fonts(|fonts| fonts.font_atlas_fill_ratio()),
        });
        // Last, once the layout is done: the chore thread wakes while eframe tessellates and
        // the renderer paints, not in the middle of the layout (docs/performance.md, GUI).
        self.chores.post();
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.options.remember_settings {
            eframe::set_value(storage, eframe::APP_KEY, &self.settings.to_remember());
        }
    }

    fn on_exit(&mut self) {
        // The process ends now: the units in flight are aborted (and recorded) rather than cut.
        if let Some(line) = &self.running_line {
            line.abort();
        }
        self.write_frame_stats();
    }
}
