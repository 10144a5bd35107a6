//! The GUI's worker threads: the UI thread never waits on a probe, the disk or the database.
//!
//! - [`start_line`] runs the line on its own thread: it opens the station's
//!   [`LineSession`] (the same one `imprint run` opens), puts each slot behind its start gate
//!   and runs it; station events come back through [`ChannelEventSink`], which wakes the UI
//!   through a [`UiWaker`] (one `request_repaint` per frame, not one per event).
//! - [`ChoreWorker`] answers everything else that touches the disk: listing and checking
//!   profiles, and the ledger's read API (history, a unit's runs, statistics, export). Requests
//!   that a newer one makes stale (history, statistics) are coalesced, so a busy line finishing
//!   units quickly does not queue up queries. Requests made while a frame is laid out are posted
//!   when the layout is done ([`ChoreWorker::post`]): waking the worker mid-layout lets it take
//!   the UI thread's core for the length of a query on a machine with no core to spare.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use eframe::egui;

use crate::ledger::{
    ExportFilter, ExportFormat, Ledger, LedgerStats, RecordedRun, ReworkPolicy, SerialScheme, UnitHistory,
    format_timestamp,
};
use crate::profile::{Profile, SkippableStep};
use crate::station::session::{CentralStart, SLOTS_MAX, SerialSource};
use crate::station::{
    CancelToken, EventKind, EventSink, LinePlan, LineReport, LineSession, StationEvent, UnitLabels,
    UnitResult,
};

use super::fixture::{GatedFixture, StartGate, StartMode};
use super::settings::ExportChoice;
use super::store::{HistoryRow, HistoryScope, ProfileSummary};

/// The most rows the history table holds when listing recent runs.
pub const HISTORY_ROWS_MAX: usize = 500;

/// Everything a line run needs, chosen in the window: the station's plan plus the operator's
/// start behaviour. The plan's labels are made by [`start_line`] (the scanner field feeds them).
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub plan: LinePlan,
    pub start_mode: StartMode,
    /// A FAIL holds its slot until acknowledged. Off for a line with a unit limit
    /// (`--exit-after-units`): nobody is there to acknowledge, and a held slot would keep the
    /// unit it claimed from the budget, so the line would never reach its end.
    pub latch_failures: bool,
}

/// What the line thread tells the UI.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every message is an event: boxing it was one allocation more per event, freed on the UI thread"
)]
pub enum LineMessage {
    /// The fixtures are open; the slots run. With `serials_are_scanned` (the profile's
    /// `serial.scheme = "scanned"`) each unit waits for its serial label to be scanned.
    Started { fixture_names: Vec<String>, serials_are_scanned: bool },
    /// The line could not start (nothing was written to a device or the ledger).
    StartFailed { reason: String },
    /// Manual start: the slot waits for the operator.
    SlotWaiting { slot: usize },
    /// The slot's fixture saw its failed board taken off and released the slot's latch (the
    /// failure counts as acknowledged).
    FailedBoardRemoved { slot: usize },
    /// A station event (not boxed: one allocation less per event).
    Event(StationEvent),
    /// The line thread ended (after the line's `line-finished` event, or after `StartFailed`).
    Ended,
}

/// Wakes the UI thread once for everything sent since it last looked, rather than once per
/// message: each `request_repaint` takes egui's context lock (which the UI thread holds while it
/// builds a frame) and posts a wake-up to the event loop, and 64 slots send more than a
/// thousand events a second.
#[derive(Clone)]
pub struct UiWaker {
    context: egui::Context,
    /// A repaint was requested and the UI has not yet looked at its channels since.
    pending: Arc<AtomicBool>,
}

impl UiWaker {
    pub fn new(context: egui::Context) -> UiWaker {
        UiWaker { context, pending: Arc::new(AtomicBool::new(false)) }
    }

    /// Call after sending: requests a repaint unless one is already pending.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.context.request_repaint();
        }
    }

    /// The UI thread calls this before it drains its channels: whatever is sent after this
    /// wakes it again.
    pub fn looking(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// Sends messages to the UI and wakes it.
#[derive(Clone)]
pub struct UiSender {
    sender: crossbeam_channel::Sender<LineMessage>,
    waker: UiWaker,
}

impl UiSender {
    pub fn new(sender: crossbeam_channel::Sender<LineMessage>, waker: UiWaker) -> UiSender {
        UiSender { sender, waker }
    }

    fn send(&self, message: LineMessage) {
        // A closed receiver means the window is gone; the line carries on to its end.
        let _ = self.sender.send(message);
        self.waker.wake();
    }
}

/// The station's [`EventSink`] for the GUI: a channel to the UI thread plus a repaint request.
/// A failed unit latches its slot's gate here, on the slot's own thread, before the slot asks
/// for its next unit: no race with the UI thread can let a failed slot start again.
pub struct ChannelEventSink {
    ui: UiSender,
    /// The slots' gates to latch on a FAIL (empty: failures do not latch).
    gates: Vec<Arc<StartGate>>,
}

impl EventSink for ChannelEventSink {
    fn emit(&self, mut event: StationEvent) {
        // What the window does not show is dropped here, on the slot's thread, rather than freed
        // on the UI thread (at 64 slots it folds over a thousand events a frame): a step's
        // `detail` (the ledger keeps it) and the time of step events (the cards show a unit's
        // start and a failure's time, not each step's). A progress event then carries nothing
        // on the heap.
        if let EventKind::StepFinished { detail, .. } = &mut event.kind {
            *detail = serde_json::Value::Null;
        }
        if matches!(
            event.kind,
            EventKind::StepStarted { .. }
                | EventKind::StepProgress { .. }
                | EventKind::StepFinished { .. }
                | EventKind::StepSkipped { .. }
        ) {
            event.time = String::new();
        }
        if let (EventKind::UnitFinished { result: UnitResult::Fail, .. }, Some(slot)) =
            (&event.kind, event.slot)
            && let Some(gate) = self.gates.get(slot)
        {
            gate.latch();
        }
        self.ui.send(LineMessage::Event(event));
    }
}

/// A line running on its thread.
pub struct RunningLine {
    pub cancel: CancelToken,
    /// One start button per slot (manual start).
    pub gates: Vec<Arc<StartGate>>,
    /// Where the scanner field's serials and work orders go.
    pub labels: Arc<UnitLabels>,
}

impl RunningLine {
    /// Asks every slot to finish its unit in flight and start no other.
    pub fn stop(&self) {
        self.cancel.stop();
        for gate in &self.gates {
            gate.wake();
        }
    }

    /// Asks every slot to end its unit in flight after the current step (recorded ABORTED).
    pub fn abort(&self) {
        self.cancel.abort();
        for gate in &self.gates {
            gate.wake();
        }
    }
}

/// Starts the line on a new thread.
pub fn start_line(mut request: LineRequest, ui: UiSender) -> RunningLine {
    let cancel = CancelToken::default();
    // One start button per possible slot: how many slots the line has is known only once the
    // line thread has read the profile (its `[fixture] default`).
    let gates: Vec<Arc<StartGate>> = (0..SLOTS_MAX).map(|_| Arc::new(StartGate::default())).collect();
    let labels = Arc::new(UnitLabels::with_work_order(request.plan.work_order.clone()));
    request.plan.serials = SerialSource::Scanner(labels.clone());
    let running = RunningLine { cancel: cancel.clone(), gates: gates.clone(), labels };
    let thread_ui = ui.clone();
    let spawned = std::thread::Builder::new().name("line".to_string()).spawn(move || {
        let operator = request.plan.operator.clone();
        let latch_failures = request.latch_failures;
        match open_line(request, gates.clone(), &thread_ui) {
            Ok(session) => {
                let serials_are_scanned = matches!(session.profile().serial_scheme, SerialScheme::Scanned);
                let fixture_names = session.fixture_names();
                tracing::info!(slots = fixture_names.len(), %operator, "line started");
                thread_ui.send(LineMessage::Started { fixture_names, serials_are_scanned });
                let gates = if latch_failures { gates } else { Vec::new() };
                let sink = ChannelEventSink { ui: thread_ui.clone(), gates };
                let report = session.run(Arc::new(sink), cancel);
                log_report(&report);
            }
            Err(reason) => {
                tracing::error!(%reason, "the line could not start");
                thread_ui.send(LineMessage::StartFailed { reason });
            }
        }
        thread_ui.send(LineMessage::Ended);
    });
    if let Err(error) = spawned {
        ui.send(LineMessage::StartFailed { reason: format!("cannot start the line thread: {error}") });
        ui.send(LineMessage::Ended);
    }
    running
}

/// Opens the line session and puts each slot behind its start gate.
fn open_line(request: LineRequest, gates: Vec<Arc<StartGate>>, ui: &UiSender) -> Result<LineSession, String> {
    let profile_path = request.plan.profile_path.clone();
    let mut session = LineSession::open(request.plan).map_err(|error| error.to_string())?;
    for warning in &session.profile().warnings {
        tracing::warn!(profile = %profile_path.display(), "{warning}");
    }
    let profile = session.profile();
    if !profile.lock.enabled {
        tracing::warn!(profile = %profile_path.display(), "this profile does not lock the units: every PASS is an unlocked board");
    }
    if profile.skips(SkippableStep::SelfTest) || profile.skips(SkippableStep::NegativeSelfTest) {
        tracing::warn!(profile = %profile_path.display(), "this profile skips the forged-update test: no PASS proves forged updates are refused");
    }
    if let Some(start) = session.central_start() {
        log_central_start(start);
    }
    let mut gates = gates.into_iter();
    session.wrap_fixtures(|slot, fixture| {
        let gate = gates.next().unwrap_or_default();
        let waiting_ui = ui.clone();
        let on_waiting = Box::new(move || waiting_ui.send(LineMessage::SlotWaiting { slot }));
        let removed_ui = ui.clone();
        let on_board_removed = Box::new(move || removed_ui.send(LineMessage::FailedBoardRemoved { slot }));
        Box::new(
            GatedFixture::new(fixture, request.start_mode, gate, on_waiting)
                .with_board_removed_notice(on_board_removed),
        )
    });
    Ok(session)
}

/// The central link at start, in the window's log.
fn log_central_start(start: &CentralStart) {
    if let Some(alarm) = &start.alarm {
        tracing::error!(central = %start.target, "{alarm}");
    }
    if start.serials_stocked {
        tracing::info!(central = %start.target, "central database connected: serial blocks leased");
    } else {
        let reason = start.last_error.as_deref().unwrap_or("no answer yet");
        tracing::warn!(
            central = %start.target,
            "no serial block from the central database ({reason}); provisioning from the blocks already leased"
        );
    }
}

/// The line's end, in the window's log.
fn log_report(report: &LineReport) {
    let summary = &report.summary;
    tracing::info!(
        units = summary.outcomes.len(),
        passed = summary.passed(),
        failed = summary.failed(),
        "line stopped"
    );
    if let Some(status) = &report.central {
        tracing::info!(
            shipped = status.runs_shipped,
            pending = status.outbox_pending,
            blocks_leased = status.blocks_leased,
            "central database: {} runs shipped, {} left for the next start",
            status.runs_shipped,
            status.outbox_pending
        );
        if let Some(alarm) = &status.alarm {
            tracing::error!("central database: {alarm}");
        }
    }
}

/// Work for the chore thread.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoreRequest {
    /// List the `*.toml` files of a folder.
    ScanProfiles { directory: PathBuf },
    /// Load and check one profile.
    CheckProfile { path: PathBuf },
    /// Rows for the history table: `search` (a serial or chip ID; a part of one filters the
    /// scope's runs) or, when empty, the scope's most recent runs. With `started_since` (the
    /// stored time form) only runs started since then: an incremental refresh, so a long
    /// history is not re-read every time a unit finishes.
    History {
        ledger_path: PathBuf,
        search: String,
        scope: HistoryScope,
        session_started: SystemTime,
        started_since: Option<String>,
    },
    /// A unit's identities and runs with their steps.
    UnitDetails { ledger_path: PathBuf, key: String },
    /// The ledger's totals.
    Stats { ledger_path: PathBuf },
    /// Export every run to a file.
    Export { ledger_path: PathBuf, path: PathBuf, format: ExportChoice },
    /// Whether a scanned serial label may be taken (read-only, before any slot starts with it).
    CheckSerial { ledger_path: PathBuf, label: ScannedLabel, policy: ReworkPolicy },
}

/// A serial label scanned in the window, on its way to a slot once the ledger had its say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedLabel {
    pub serial: String,
    /// The slot it was scanned for (a slot label or prefix), if any.
    pub slot: Option<usize>,
}

/// The ledger's word on a scanned serial label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialVerdict {
    /// Never issued: any unit may take it.
    New,
    /// Issued to chip `chip_uid` and the rework policy keeps identities: only that chip coming
    /// back takes it (any other unit FAILs at `identify`, before it is flashed).
    OwnedBy { chip_uid: String },
    /// Refused (issued to another unit under a policy that never reuses it, malformed, or the
    /// ledger could not be read): the reason.
    Refused(String),
}

/// Answers from the chore thread.
#[derive(Debug, Clone)]
pub enum ChoreReply {
    Profiles {
        directory: PathBuf,
        result: Result<Vec<PathBuf>, String>,
    },
    ProfileChecked {
        path: PathBuf,
        result: Result<ProfileSummary, String>,
    },
    History {
        search: String,
        is_incremental: bool,
        result: Result<Vec<HistoryRow>, String>,
    },
    UnitDetails {
        key: String,
        result: Result<Option<Box<UnitHistory>>, String>,
    },
    /// The totals and how long computing them took (the app spaces its requests by it).
    Stats {
        result: Result<Option<LedgerStats>, String>,
        took: Duration,
    },
    Exported {
        path: PathBuf,
        result: Result<u64, String>,
    },
    SerialChecked {
        label: ScannedLabel,
        verdict: SerialVerdict,
    },
}

/// The chore thread's handle: queue requests, post them, receive replies.
pub struct ChoreWorker {
    requests: crossbeam_channel::Sender<ChoreRequest>,
    /// Requests queued since the last [`ChoreWorker::post`].
    queued: Vec<ChoreRequest>,
    pub replies: crossbeam_channel::Receiver<ChoreReply>,
}

impl ChoreWorker {
    /// Starts the thread; replies wake `repaint`.
    pub fn start(repaint: egui::Context) -> ChoreWorker {
        let (requests, request_receiver) = crossbeam_channel::unbounded::<ChoreRequest>();
        let (reply_sender, replies) = crossbeam_channel::unbounded::<ChoreReply>();
        let spawned = std::thread::Builder::new().name("chores".to_string()).spawn(move || {
            let mut ledgers = LedgerCache::default();
            while let Ok(first) = request_receiver.recv() {
                let mut batch = vec![first];
                batch.extend(request_receiver.try_iter());
                for request in coalesce(batch) {
                    let reply = answer(request, &mut ledgers);
                    if reply_sender.send(reply).is_err() {
                        return;
                    }
                    repaint.request_repaint();
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the chore thread: profiles and history will not load");
        }
        ChoreWorker { requests, queued: Vec::new(), replies }
    }

    /// Queues a request for the next [`ChoreWorker::post`] (never blocks, wakes nothing).
    pub fn request(&mut self, request: ChoreRequest) {
        self.queued.push(request);
    }

    /// Hands the queued requests to the thread, waking it. The app calls this once a frame,
    /// after its layout.
    pub fn post(&mut self) {
        for request in self.queued.drain(..) {
            // The thread only stops when this handle is dropped.
            let _ = self.requests.send(request);
        }
    }
}

/// Keeps only the newest history and statistics request of a batch, and drops duplicates. The
/// kept history request becomes a full one if any request it replaces was full.
fn coalesce(batch: Vec<ChoreRequest>) -> Vec<ChoreRequest> {
    let last_history = batch.iter().rposition(|request| matches!(request, ChoreRequest::History { .. }));
    let last_stats = batch.iter().rposition(|request| matches!(request, ChoreRequest::Stats { .. }));
    let any_full_history =
        batch.iter().any(|request| matches!(request, ChoreRequest::History { started_since: None, .. }));
    let mut kept: Vec<ChoreRequest> = Vec::with_capacity(batch.len());
    for (index, mut request) in batch.into_iter().enumerate() {
        let stale = match &mut request {
            ChoreRequest::History { started_since, .. } => {
                if any_full_history {
                    *started_since = None;
                }
                Some(index) != last_history
            }
            ChoreRequest::Stats { .. } => Some(index) != last_stats,
            _ => kept.contains(&request),
        };
        if !stale {
            kept.push(request);
        }
    }
    kept
}

/// Read-only ledger handles by path, opened once each (only once the file exists, so looking
/// at the history never creates a ledger).
#[derive(Default)]
struct LedgerCache {
    open: Vec<(PathBuf, Ledger)>,
}

impl LedgerCache {
    fn get(&mut self, path: &Path) -> Result<Option<Ledger>, String> {
        if let Some((_, ledger)) = self.open.iter().find(|(open_path, _)| open_path == path) {
            return Ok(Some(ledger.clone()));
        }
        if !path.exists() {
            return Ok(None);
        }
        let ledger = Ledger::open_read_only(path)
            .map_err(|error| format!("cannot open the ledger {}: {error}", path.display()))?;
        self.open.push((path.to_owned(), ledger.clone()));
        Ok(Some(ledger))
    }
}

fn answer(request: ChoreRequest, ledgers: &mut LedgerCache) -> ChoreReply {
    match request {
        ChoreRequest::ScanProfiles { directory } => {
            let result = scan_profiles(&directory);
            ChoreReply::Profiles { directory, result }
        }
        ChoreRequest::CheckProfile { path } => {
            let result = Profile::load(&path)
                .map(|profile| ProfileSummary {
                    name: profile.name.clone(),
                    model_name: profile.model_name.clone(),
                    chip_name: profile.chip_name.clone(),
                    warnings: profile.warnings.clone(),
                    skips_lock: !profile.lock.enabled,
                    skips_negative_self_test: profile.skips(SkippableStep::SelfTest)
                        || profile.skips(SkippableStep::NegativeSelfTest),
                    scanner: profile.scanner.clone(),
                    serials_are_scanned: matches!(profile.serial_scheme, SerialScheme::Scanned),
                    rework_policy: profile.rework_policy,
                })
                .map_err(|error| error.to_string());
            ChoreReply::ProfileChecked { path, result }
        }
        ChoreRequest::History { ledger_path, search, scope, session_started, started_since } => {
            let is_incremental = started_since.is_some();
            let result = ledgers.get(&ledger_path).and_then(|ledger| match ledger {
                Some(ledger) => history(&ledger, search.trim(), scope, session_started, started_since),
                None => Ok(Vec::new()),
            });
            ChoreReply::History { search, is_incremental, result }
        }
        ChoreRequest::UnitDetails { ledger_path, key } => {
            let result = ledgers.get(&ledger_path).and_then(|ledger| match ledger {
                Some(ledger) => ledger
                    .unit_history(key.trim())
                    .map(|found| found.map(Box::new))
                    .map_err(|error| error.to_string()),
                None => Ok(None),
            });
            ChoreReply::UnitDetails { key, result }
        }
        ChoreRequest::Stats { ledger_path } => {
            let started = std::time::Instant::now();
            let result = ledgers.get(&ledger_path).and_then(|ledger| match ledger {
                Some(ledger) => ledger.stats().map(Some).map_err(|error| error.to_string()),
                None => Ok(None),
            });
            ChoreReply::Stats { result, took: started.elapsed() }
        }
        ChoreRequest::Export { ledger_path, path, format } => {
            let result = ledgers.get(&ledger_path).and_then(|ledger| match ledger {
                Some(ledger) => export(&ledger, &path, format),
                None => Err(format!("the ledger {} holds no runs yet", ledger_path.display())),
            });
            ChoreReply::Exported { path, result }
        }
        ChoreRequest::CheckSerial { ledger_path, label, policy } => {
            let verdict = match ledgers.get(&ledger_path) {
                Ok(Some(ledger)) => serial_verdict(&ledger, &label.serial, policy),
                Ok(None) => SerialVerdict::New,
                Err(error) => SerialVerdict::Refused(error),
            };
            ChoreReply::SerialChecked { label, verdict }
        }
    }
}

/// What the ledger says about a scanned label before any unit is known to take it.
fn serial_verdict(ledger: &Ledger, serial: &str, policy: ReworkPolicy) -> SerialVerdict {
    if let Err(refusal) = ledger.check_scanned_serial(None, serial, policy) {
        return SerialVerdict::Refused(refusal.to_string());
    }
    match ledger.serial_owner(serial) {
        Ok(Some(chip_uid)) => SerialVerdict::OwnedBy { chip_uid },
        Ok(None) => SerialVerdict::New,
        Err(error) => SerialVerdict::Refused(error.to_string()),
    }
}

fn scan_profiles(directory: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(directory)
        .map_err(|error| format!("cannot list profiles in {}: {error}", directory.display()))?;
    let mut profiles: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml") && path.is_file())
        .collect();
    profiles.sort();
    Ok(profiles)
}

/// The history rows, newest first.
fn history(
    ledger: &Ledger,
    search: &str,
    scope: HistoryScope,
    session_started: SystemTime,
    started_since: Option<String>,
) -> Result<Vec<HistoryRow>, String> {
    if !search.is_empty() && started_since.is_none() {
        // An exact serial or chip ID: the unit's whole history, whatever the scope.
        if let Some(unit) = ledger.unit_history(search).map_err(|error| error.to_string())? {
            let mut rows: Vec<HistoryRow> = unit.runs.iter().map(HistoryRow::from_run).collect();
            rows.reverse();
            return Ok(rows);
        }
    }
    let since = match scope {
        HistoryScope::Session => Some(session_started),
        HistoryScope::LastDay => SystemTime::now().checked_sub(Duration::from_secs(24 * 3600)),
        HistoryScope::All => None,
    };
    let scope_since =
        since.map(|time| format_timestamp("since", time)).transpose().map_err(|error| error.to_string())?;
    // Stored times compare as text, so the later bound is the larger string.
    let since = match (scope_since, started_since) {
        (Some(scope), Some(incremental)) => Some(scope.max(incremental)),
        (scope, incremental) => scope.or(incremental),
    };
    let filter = ExportFilter { since, ..ExportFilter::default() };
    let needle = search.to_ascii_lowercase();
    let mut collector = RunCollector::new(move |run: &RecordedRun| {
        needle.is_empty()
            || [&run.serial, &run.chip_uid]
                .into_iter()
                .flatten()
                .any(|value| value.to_ascii_lowercase().contains(&needle))
    });
    ledger.export(ExportFormat::Jsonl, &filter, &mut collector).map_err(|error| error.to_string())?;
    collector.finish()
}

/// Turns the ledger's streaming JSON-lines export into the newest [`HISTORY_ROWS_MAX`] rows
/// that pass a filter, one line at a time (memory stays bounded for any ledger size).
struct RunCollector<F> {
    keep: F,
    pending: Vec<u8>,
    rows: VecDeque<HistoryRow>,
    error: Option<String>,
}

impl<F: FnMut(&RecordedRun) -> bool> RunCollector<F> {
    fn new(keep: F) -> Self {
        RunCollector { keep, pending: Vec::new(), rows: VecDeque::new(), error: None }
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() || self.error.is_some() {
            return;
        }
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(error) => {
                self.error = Some(format!("the ledger export is not valid JSON lines: {error}"));
                return;
            }
        };
        // The header and the trailer carry no run.
        if value.get("record_hash").is_none() || value.get("run_id").is_none() {
            return;
        }
        match serde_json::from_value::<RecordedRun>(value) {
            Ok(run) if (self.keep)(&run) => {
                if self.rows.len() == HISTORY_ROWS_MAX {
                    self.rows.pop_front();
                }
                self.rows.push_back(HistoryRow::from_run(&run));
            }
            Ok(_) => {}
            Err(error) => self.error = Some(format!("a run in the ledger export is not readable: {error}")),
        }
    }

    fn finish(mut self) -> Result<Vec<HistoryRow>, String> {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest);
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut rows: Vec<HistoryRow> = self.rows.into();
        rows.sort_by(|left, right| right.started_at.cmp(&left.started_at));
        Ok(rows)
    }
}

impl<F: FnMut(&RecordedRun) -> bool> Write for RunCollector<F> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line[..end]);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports every run to `path` (through a `.partial` file renamed at the end, so a reader
/// never sees half an export); returns the number of runs written.
fn export(ledger: &Ledger, path: &Path, format: ExportChoice) -> Result<u64, String> {
    let mut partial_name = path.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let write = || -> Result<u64, String> {
        let mut file = std::fs::File::create(&partial)
            .map_err(|error| format!("cannot create {}: {error}", partial.display()))?;
        let summary = ledger
            .export(format.format(), &ExportFilter::default(), &mut file)
            .map_err(|error| format!("exporting to {}: {error}", partial.display()))?;
        file.sync_all().map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
        std::fs::rename(&partial, path)
            .map_err(|error| format!("cannot rename {} to {}: {error}", partial.display(), path.display()))?;
        Ok(summary.record_count)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(batch: Vec<ChoreRequest>, expected: Vec<ChoreRequest>) {
        assert_eq!(coalesce(batch), expected);
    }

    fn history_request(search: &str) -> ChoreRequest {
        ChoreRequest::History {
            ledger_path: "l.db".into(),
            search: search.into(),
            scope: HistoryScope::All,
            session_started: SystemTime::UNIX_EPOCH,
            started_since: None,
        }
    }

    fn incremental_history_request(since: &str) -> ChoreRequest {
        ChoreRequest::History {
            ledger_path: "l.db".into(),
            search: String::new(),
            scope: HistoryScope::All,
            session_started: SystemTime::UNIX_EPOCH,
            started_since: Some(since.into()),
        }
    }

    #[test]
    fn stale_history_and_stats_requests_are_dropped() {
        let stats = ChoreRequest::Stats { ledger_path: "l.db".into() };
        let export = ChoreRequest::Export {
            ledger_path: "l.db".into(),
            path: "a.csv".into(),
            format: ExportChoice::Csv,
        };
        check(vec![], vec![]);
        check(
            vec![history_request("a"), stats.clone(), history_request("b"), stats.clone()],
            vec![history_request("b"), stats.clone()],
        );
        check(vec![export.clone(), export.clone()], vec![export.clone()]);
        check(vec![export.clone(), history_request("")], vec![export, history_request("")]);
        // A full refresh is never lost behind a later incremental one.
        check(
            vec![history_request(""), incremental_history_request("2026-11-26T10:00:00.000Z")],
            vec![history_request("")],
        );
        check(
            vec![incremental_history_request("a"), incremental_history_request("b")],
            vec![incremental_history_request("b")],
        );
    }
}
