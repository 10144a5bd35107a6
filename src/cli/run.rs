//! `imprint run`: headless batch provisioning, with terminal progress bars or JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use imprint::central::LinkStatus;
use imprint::ledger::Ledger;
use imprint::station::session::{CentralStart, FaultInjector, SerialSource, SlotChoice};
use imprint::station::{
    CancelToken, EVENT_QUEUE_CAPACITY, EventKind, EventQueue, EventSink, LinePlan, LineSession, LineSummary,
    SessionError, StationEvent, UnitResult,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{
    CentralArgs, EXIT_LINE_STOPPED, EXIT_STDOUT_CLOSED, EXIT_UNITS_FAILED, parse_sim_faults, positive_count,
    station_identity,
};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  imprint run --profile profiles/demo.toml --sim 4 --count 20
  imprint run --profile profiles/demo.toml --sim 2 --count 5 --json > events.jsonl
  imprint run --profile profiles/demo.toml --sim 2 --count 6 --sim-fault 1.2:probe-lost=erase
  PGPASSWORD=... imprint run --profile profiles/demo.toml --sim 4 --station line1-a \
      --central 'postgresql://imprint@db.example/factory?sslmode=verify-full&sslrootcert=ca.pem'
  imprint run --profile profiles/qemu-mps2-an385.toml --count 3     (QEMU units: [fixture] default)
  imprint run --profile profiles/qemu-mps2-an385.toml --probe qemu --probe qemu --count 4
  imprint run --profile PRODUCT.toml --probe gdb:127.0.0.1:3333 --count 1   (OpenOCD, pyOCD, J-Link)
  imprint run --profile SCANNED.toml --serials serials.txt --work-order WO-1234
  scanner-reader | imprint run --profile SCANNED.toml --serials -      (serials as they are scanned)

Exit status: 0 when every requested unit passed; 1 when a unit failed; 2 for bad usage or
configuration (nothing touched); 3 when the line was stopped (Ctrl-C, SIGTERM) before the requested
units were done and none failed. The first Ctrl-C lets the units in flight finish; a second one
aborts them (recorded ABORTED). 141 when standard output was closed by its reader.")]
pub struct RunArgs {
    /// The product profile (TOML).
    #[arg(long, value_name = "FILE")]
    profile: PathBuf,
    /// Number of slots. After --probe slots: that many simulated slots. Without --probe: that
    /// many slots of the profile's `[fixture] default` when it makes fresh units (`sim`,
    /// `qemu`), else simulated ones (default 1); a default naming one device is one slot.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive_count::<usize>)]
    sim: Option<usize>,
    /// A fixture to run a slot on, once per slot (see `imprint probes`); the simulated slots of
    /// --sim come after these.
    #[arg(long, value_name = "SELECTOR")]
    probe: Vec<String>,
    /// Units to provision in all (across slots); without it the line runs until Ctrl-C.
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = positive_count::<u64>)]
    count: Option<u64>,
    /// Operator ID recorded with every run.
    #[arg(long, env = "IMPRINT_OPERATOR")]
    operator: Option<String>,
    /// Station name recorded with every run (default: the host name).
    #[arg(long, env = "IMPRINT_STATION")]
    station: Option<String>,
    /// The ledger database (default: ledger.db in the platform's data directory).
    #[arg(long, value_name = "PATH", env = "IMPRINT_DB")]
    db: Option<PathBuf>,
    /// Create the ledger if it does not exist yet (without it a missing ledger is refused, so a
    /// mistyped --db never starts a second ledger that issues the same serials again).
    #[arg(long, env = "IMPRINT_CREATE_LEDGER", value_parser = clap::builder::BoolishValueParser::new())]
    create_ledger: bool,
    /// Print one JSON object per event on stdout (see docs/events.md) instead of progress bars.
    #[arg(long)]
    json: bool,
    /// `zero` ignores the profile's simulated timing model (as fast as the host allows).
    #[arg(long, value_name = "MODEL", default_value = "profile", value_parser = ["profile", "zero"])]
    sim_timing: String,
    /// Derive simulated unique IDs from this seed (repeatable runs) instead of randomly.
    #[arg(long, value_name = "SEED")]
    sim_uid_seed: Option<u64>,
    #[command(flatten)]
    central: CentralArgs,
    /// Inject a fault into a simulated unit: SLOT.UNIT:KIND[=VALUE], where UNIT counts that
    /// slot's own units from 1 (the slot's UNIT-th `unit-started`, not the line-wide `unit`
    /// number events carry; docs/events.md) and KIND is power-cut (=flash operations), probe-lost (=step),
    /// hang (=step: the probe stops answering), panic (=step: the backend
    /// panics), uid-read-fails, flip-bit (=address) or transient
    /// (=count). Repeatable.
    #[arg(long, value_name = "SPEC")]
    sim_fault: Vec<String>,
    /// Serial numbers read from the units' labels, one per line (blank lines and `#` comments
    /// skipped), for a profile whose `serial.scheme` is "scanned"; `-` reads them from standard
    /// input as they are scanned. With a file, --count defaults to the number of serials.
    #[arg(long, value_name = "FILE")]
    serials: Option<PathBuf>,
    /// The work order the units are provisioned for, recorded with each unit (in its
    /// allocate-identity step).
    #[arg(long, value_name = "ID", env = "IMPRINT_WORK_ORDER")]
    work_order: Option<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let session = match open_session(args) {
        Ok(session) => session,
        Err((error_code, error)) => {
            // A fixture controller reading --json learns of the refusal on the stream it reads,
            // beside the message on standard error (and the exit code 2).
            if json {
                print_line_refused(error_code, &format!("{error:#}"));
            }
            return Err(error);
        }
    };
    for warning in &session.profile().warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(start) = session.central_start() {
        print_central_start(start);
    }
    let slot_count = session.fixture_names().len();

    let cancel = CancelToken::default();
    let cancel_on_signal = cancel.clone();
    // Ctrl-C and SIGTERM (what systemd and supervisors send) stop the line the same way: no new
    // unit starts, the units in flight finish and are recorded, and the line reports its end. A
    // second signal aborts the units in flight after their current step (recorded ABORTED).
    let _ = ctrlc::set_handler(move || {
        if cancel_on_signal.is_stopping() {
            cancel_on_signal.abort();
            eprintln!(
                "\naborting: the units in flight end after their current step and are recorded ABORTED"
            );
        } else {
            cancel_on_signal.stop();
            eprintln!(
                "\nstopping: the units in flight finish and are recorded; interrupt again to abort them"
            );
        }
    });
    let cancel_when_reader_leaves = cancel.clone();
    let line_stopped = cancel.clone();

    // Bounded: a reader that stalls holds the slots back (and loses progress events, counted on
    // line-finished) instead of making the queue grow without bound.
    let (queue, receiver) = EventQueue::bounded(EVENT_QUEUE_CAPACITY);
    let line = std::thread::spawn(move || session.run(Arc::new(queue) as Arc<dyn EventSink>, cancel));

    let reader_left = if json {
        write_json_events(receiver, &cancel_when_reader_leaves)
    } else {
        show_progress(receiver, slot_count, &cancel_when_reader_leaves)
    };
    let report = line.join().map_err(|_| anyhow::anyhow!("the line coordinator panicked"))?;
    if !json {
        print_summary(&report.summary, &report.ledger_path);
    }
    if let Some(status) = &report.central {
        print_central_summary(status);
    }
    if reader_left {
        let _ = writeln!(
            std::io::stderr(),
            "error: standard output was closed by its reader; the line stopped after recording its units in flight"
        );
        return Ok(ExitCode::from(EXIT_STDOUT_CLOSED));
    }
    for fault in &report.summary.slot_faults {
        eprintln!("error: {fault}");
    }
    Ok(ExitCode::from(line_exit_code(&report.summary, line_stopped.is_stopping())))
}

/// 0 only when every requested unit was attempted and passed; 1 when a unit failed or a slot
/// died (whatever the units it finished did); 3 when nothing failed but the line was stopped
/// (Ctrl-C, SIGTERM) before the requested units were done, or units were aborted in flight.
fn line_exit_code(summary: &LineSummary, stopped: bool) -> u8 {
    if summary.all_requested_passed() {
        0
    } else if summary.failed() == 0 && summary.slot_faults.is_empty() && stopped {
        EXIT_LINE_STOPPED
    } else {
        EXIT_UNITS_FAILED
    }
}

/// Opens the line the arguments describe; a refusal comes with its `error_code` for
/// `line-refused` (`usage` for the arguments themselves, else the session's code).
fn open_session(args: RunArgs) -> Result<LineSession, (&'static str, anyhow::Error)> {
    let faults = parse_sim_faults(&args.sim_fault).map_err(|error| ("usage", error))?;
    let central = args.central.settings().map_err(|error| ("usage", error))?;
    let ledger_path = match args.db {
        Some(path) => path,
        None => Ledger::default_path().map_err(|error| ("ledger", anyhow::Error::new(error)))?,
    };
    let (station_name, operator) = station_identity(args.station, args.operator);
    let serials = match args.serials {
        None => SerialSource::NotGiven,
        Some(path) if path == std::path::Path::new("-") => SerialSource::StandardInput,
        Some(path) => SerialSource::File(path),
    };
    let plan = LinePlan {
        profile_path: args.profile,
        slots: SlotChoice { probes: args.probe, slot_count: args.sim },
        station_name,
        operator,
        ledger_path,
        create_ledger: args.create_ledger,
        central,
        serials,
        work_order: args.work_order,
        faults: FaultInjector::with_schedule(faults),
        unit_limit: args.count,
        sim_timing_zero: args.sim_timing == "zero",
        sim_uid_seed: args.sim_uid_seed,
    };
    LineSession::open(plan).map_err(|error| {
        let code = error.error_code();
        let error = match error {
            SessionError::Central { .. } => anyhow::Error::new(error).context("--central"),
            other => anyhow::Error::new(other),
        };
        (code, error)
    })
}

/// Prints the `line-refused` event (docs/events.md) on standard output; a closed standard
/// output leaves only the message on standard error.
pub fn print_line_refused(error_code: &str, reason: &str) {
    let event = StationEvent::for_line(EventKind::LineRefused {
        error_code: error_code.to_owned(),
        reason: reason.to_owned(),
    });
    let _ = writeln!(std::io::stdout(), "{}", event.to_json_line());
}

/// What the central link said at start: an alarm, or that the line begins offline.
fn print_central_start(start: &CentralStart) {
    if let Some(alarm) = &start.alarm {
        eprintln!("central {}: {alarm}", start.target);
    }
    if !start.serials_stocked {
        let reason = start.last_error.as_deref().unwrap_or("no answer yet");
        eprintln!(
            "warning: no serial block from the central database {} ({reason}); provisioning from the serial blocks already leased:",
            start.target
        );
        for (prefix, remaining) in &start.serials_remaining {
            eprintln!("  prefix {prefix:?}: {remaining} serial numbers left");
        }
    }
}

fn print_central_summary(status: &LinkStatus) {
    let mut latencies = status.lease_latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let median = latencies.get(latencies.len().saturating_sub(1) / 2).copied();
    eprintln!(
        "central: shipped {} runs in {} batches ({} already present), {} pending; leased {} serial blocks{}{}",
        status.runs_shipped,
        status.batches_shipped,
        status.runs_already_present,
        status.outbox_pending,
        status.blocks_leased,
        median.map_or_else(String::new, |ms| format!(" (median lease {ms:.1} ms)")),
        if status.blocks_adopted > 0 {
            format!(", adopted {}", status.blocks_adopted)
        } else {
            String::new()
        }
    );
    if let Some(alarm) = &status.alarm {
        eprintln!("central: {alarm}");
    } else if status.outbox_pending > 0
        && let Some(error) = &status.last_error
    {
        eprintln!("central: last error: {error}");
    }
}

/// The terminal view: a progress bar per slot and a line per finished unit. Returns whether
/// standard output was closed by its reader (the line is then stopped, its units recorded).
fn show_progress(
    receiver: crossbeam_channel::Receiver<StationEvent>,
    slot_count: usize,
    cancel: &CancelToken,
) -> bool {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>7} {bar:30.cyan/blue} {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let slot_bars: Vec<ProgressBar> = (0..slot_count)
        .map(|slot| {
            let bar = bars.add(ProgressBar::new(1));
            bar.set_style(style.clone());
            bar.set_prefix(format!("slot {slot}"));
            bar.set_message("idle");
            bar
        })
        .collect();
    let mut serial_by_slot = vec![String::new(); slot_count];
    let mut reader_left = false;
    for event in receiver {
        // Line-level events carry no slot; the summary is printed from the line's report.
        let Some(slot) = event.slot else { continue };
        let Some(bar) = slot_bars.get(slot) else { continue };
        let unit = event.unit.unwrap_or_default();
        match event.kind {
            EventKind::UnitStarted { .. } => {
                serial_by_slot[slot].clear();
                bar.set_length(1);
                bar.set_position(0);
                bar.set_message(format!("unit {unit}: starting"));
            }
            EventKind::StepStarted { step } => {
                bar.set_length(1);
                bar.set_position(0);
                bar.set_message(format!("unit {unit} {}: {step}", serial_by_slot[slot]));
            }
            EventKind::StepProgress { bytes_done, bytes_total, .. } => {
                bar.set_length(bytes_total.max(1));
                bar.set_position(bytes_done);
            }
            EventKind::StepFinished { facts, .. } => {
                if let Some(serial) = facts.serial {
                    serial_by_slot[slot] = serial;
                }
                bar.set_position(bar.length().unwrap_or(1));
            }
            EventKind::UnitFinished { result, serial, failing_step, reason, cycle_time_ms, .. } => {
                let serial = serial.unwrap_or_else(|| "-".to_string());
                let line = match result {
                    UnitResult::Pass => {
                        format!("PASS  slot {slot} unit {unit} {serial} ({cycle_time_ms} ms)")
                    }
                    UnitResult::Fail => format!(
                        "FAIL  slot {slot} unit {unit} {serial} at {}: {}",
                        failing_step.unwrap_or_default(),
                        reason.unwrap_or_default()
                    ),
                    UnitResult::Aborted => {
                        format!(
                            "ABORT slot {slot} unit {unit} {serial} before {}",
                            failing_step.unwrap_or_default()
                        )
                    }
                };
                let written = bars.suspend(|| writeln!(std::io::stdout(), "{line}"));
                if written.is_err() && !reader_left {
                    reader_left = true;
                    cancel.stop();
                }
                bar.set_message(format!(
                    "idle (last: {})",
                    match result {
                        UnitResult::Pass => "PASS",
                        UnitResult::Fail => "FAIL",
                        UnitResult::Aborted => "ABORTED",
                    }
                ));
            }
            EventKind::SlotError { reason } => bars.suspend(|| eprintln!("slot {slot}: {reason}")),
            EventKind::StepFailed { .. }
            | EventKind::StepSkipped { .. }
            | EventKind::LineStarted(_)
            | EventKind::LineRefused { .. }
            | EventKind::LineFinished { .. } => {}
        }
    }
    for bar in slot_bars {
        bar.finish_and_clear();
    }
    reader_left
}

/// Writes each event as a JSON line. When the reader goes away (a closed pipe: the fixture
/// controller died), the line is stopped, not abandoned: the remaining events are drained so the
/// slots can record their units in flight. Returns whether the reader left.
fn write_json_events(receiver: crossbeam_channel::Receiver<StationEvent>, cancel: &CancelToken) -> bool {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut reader_left = false;
    for event in receiver {
        if !reader_left && writeln!(out, "{}", event.to_json_line()).and_then(|()| out.flush()).is_err() {
            reader_left = true;
            cancel.stop();
        }
    }
    reader_left
}

fn print_summary(summary: &LineSummary, db_path: &std::path::Path) {
    println!(
        "units: {}  pass: {}  fail: {}  aborted: {}  elapsed: {:.1} s  units/hour: {:.0}",
        summary.outcomes.len(),
        summary.passed(),
        summary.failed(),
        summary.aborted(),
        summary.elapsed.as_secs_f64(),
        summary.units_per_hour()
    );
    println!("ledger: {}", db_path.display());
}
