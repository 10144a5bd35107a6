//! `imprint run`: headless batch provisioning, with terminal progress bars or JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use imprint::central::{CentralConfig, CentralLink, LinkSettings, LinkStatus, SerialCounterSpec};
use imprint::device::sim::{FaultPlan, FaultSchedule};
use imprint::ledger::{Ledger, SerialScheme};
use imprint::profile::{Profile, SimTiming};
use imprint::station::fixtures::{FixtureSelector, SimOptions, open_fixtures};
use imprint::station::{
    CancelToken, EventKind, EventSink, LineSummary, SelfTestMaterial, StationContext, StationEvent,
    UnitLabels, UnitResult, run_line,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{EXIT_UNITS_FAILED, split_sim_fault, station_identity};

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

Exit status: 0 when every unit passed, 1 when any unit failed, 2 for bad usage or configuration.")]
pub struct RunArgs {
    /// The product profile (TOML).
    #[arg(long, value_name = "FILE")]
    profile: PathBuf,
    /// Number of simulated fixtures (slots), each presenting fresh virtual units (default 1
    /// when no --probe is given).
    #[arg(long, value_name = "N")]
    sim: Option<usize>,
    /// A fixture to run a slot on, once per slot (see `imprint probes`); the simulated slots of
    /// --sim come after these.
    #[arg(long, value_name = "SELECTOR")]
    probe: Vec<String>,
    /// Units to provision in all (across slots); without it the line runs until Ctrl-C.
    #[arg(long, value_name = "K")]
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
    /// Print one JSON object per event on stdout (see docs/events.md) instead of progress bars.
    #[arg(long)]
    json: bool,
    /// `zero` ignores the profile's simulated timing model (as fast as the host allows).
    #[arg(long, value_name = "MODEL", default_value = "profile", value_parser = ["profile", "zero"])]
    sim_timing: String,
    /// Derive simulated unique IDs from this seed (repeatable runs) instead of randomly.
    #[arg(long, value_name = "SEED")]
    sim_uid_seed: Option<u64>,
    /// Feed a central PostgreSQL ledger (docs/central.md): serial numbers come from blocks
    /// leased from it, and every run is shipped to it in the background. Give the password
    /// through PGPASSWORD or a ~/.pgpass file, not in the URL.
    #[arg(long, value_name = "URL", env = "IMPRINT_CENTRAL_URL")]
    central: Option<String>,
    /// Serial numbers per block leased from the central database.
    #[arg(long, value_name = "N", env = "IMPRINT_CENTRAL_BLOCK_SIZE", default_value_t = imprint::central::DEFAULT_BLOCK_SIZE)]
    central_block_size: u64,
    /// Lease the next block ahead of time when fewer serials than this remain [default: the
    /// block size]: how many units the station can provision offline.
    #[arg(long, value_name = "N", env = "IMPRINT_CENTRAL_LEASE_AHEAD")]
    central_lease_ahead: Option<u64>,
    /// Runs per central transaction when shipping the outbox.
    #[arg(long, value_name = "N", default_value_t = imprint::central::DEFAULT_BATCH_SIZE)]
    central_batch_size: usize,
    /// After the last unit, how long to keep shipping the outbox before exiting (what is left
    /// ships at the next start).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    central_drain_timeout_ms: u64,
    /// Inject a fault into a simulated unit: SLOT.UNIT:KIND[=VALUE], where UNIT counts the
    /// slot's units from 1 and KIND is power-cut (=flash operations), probe-lost (=step),
    /// hang (=step: the probe stops answering), uid-read-fails, flip-bit (=address) or transient
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

/// Checks `--work-order`: printable text, as it goes into every unit's record.
fn checked_work_order(work_order: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(work_order) = work_order.map(str::trim) else {
        return Ok(None);
    };
    if work_order.is_empty()
        || work_order.len() > WORK_ORDER_LENGTH_MAX
        || work_order.chars().any(char::is_control)
    {
        bail!("--work-order {work_order:?}: expected 1 to {WORK_ORDER_LENGTH_MAX} printable characters");
    }
    Ok(Some(work_order.to_string()))
}

/// The longest work order accepted.
const WORK_ORDER_LENGTH_MAX: usize = 128;

/// Feeds `--serials` into `labels`: a file is read and checked at once (its serial count is
/// returned); `-` is read line by line in the background as serials are scanned. A profile
/// with `serial.scheme = "scanned"` needs it; a counter profile refuses it.
fn feed_scanned_serials(
    source: Option<&std::path::Path>,
    profile: &Profile,
    labels: &Arc<UnitLabels>,
) -> anyhow::Result<Option<u64>> {
    let is_scanned = matches!(profile.serial_scheme, SerialScheme::Scanned);
    let source = match (source, is_scanned) {
        (Some(source), true) => source,
        (None, false) => return Ok(None),
        (None, true) => bail!(
            "{}: serial.scheme is \"scanned\": give the units' serials with --serials FILE (one per line, - for standard input)",
            profile.path.display()
        ),
        (Some(_), false) => bail!(
            "--serials: {} allocates serials from a counter (serial.scheme); --serials is for \"scanned\" profiles",
            profile.path.display()
        ),
    };
    if source == std::path::Path::new("-") {
        let labels = labels.clone();
        std::thread::Builder::new()
            .name("serials-stdin".to_string())
            .spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    match parse_serial_line(&line) {
                        Ok(Some(serial)) => labels.push_serial(None, serial),
                        Ok(None) => {}
                        Err(error) => eprintln!("--serials -: {error}; line ignored"),
                    }
                }
                labels.close_serials();
            })
            .context("cannot start the thread reading serials from standard input")?;
        return Ok(None);
    }
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("--serials {}: cannot read the file", source.display()))?;
    let mut first_line_of = std::collections::HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let Some(serial) =
            parse_serial_line(line).with_context(|| format!("{}:{line_number}", source.display()))?
        else {
            continue;
        };
        if let Some(first) = first_line_of.insert(serial.clone(), line_number) {
            bail!("{}:{line_number}: serial {serial} is also on line {first}", source.display());
        }
        labels.push_serial(None, serial);
    }
    labels.close_serials();
    if first_line_of.is_empty() {
        bail!("--serials {}: expected one serial per line, found none", source.display());
    }
    Ok(Some(first_line_of.len() as u64))
}

/// One line of a serials source: `None` for a blank line or a `#` comment.
fn parse_serial_line(line: &str) -> anyhow::Result<Option<String>> {
    let serial = line.trim();
    if serial.is_empty() || serial.starts_with('#') {
        return Ok(None);
    }
    imprint::ledger::check_serial_text("serial", serial)?;
    Ok(Some(serial.to_string()))
}

/// One `--sim-fault` entry.
#[derive(Debug, Clone, PartialEq)]
struct SimFaultSpec {
    slot: usize,
    unit: u64,
    plan: FaultPlan,
}

fn parse_sim_fault(spec: &str) -> anyhow::Result<SimFaultSpec> {
    let (slot, unit, fault) = split_sim_fault(spec)?;
    let (kind, value) = match fault.split_once('=') {
        Some((kind, value)) => (kind, Some(value)),
        None => (fault, None),
    };
    let number = |value: Option<&str>| -> anyhow::Result<u64> {
        let text = value.with_context(|| format!("--sim-fault {spec}: {kind} needs =VALUE"))?;
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.with_context(|| format!("--sim-fault {spec}: expected a number, found {text}"))
    };
    let mut plan = FaultPlan::default();
    match kind {
        "power-cut" => plan.power_cut_after_flash_operations = Some(number(value)?),
        "probe-lost" | "hang" => {
            let step = value.with_context(|| format!("--sim-fault {spec}: {kind} needs =STEP"))?;
            if !imprint::station::StepName::ALL.iter().any(|name| name.as_str() == step) {
                bail!("--sim-fault {spec}: unknown step {step}");
            }
            if kind == "hang" {
                plan.hang_at_step = Some(step.to_string());
            } else {
                plan.probe_lost_at_step = Some(step.to_string());
            }
        }
        "uid-read-fails" => plan.unique_id_read_fails = true,
        "flip-bit" => plan.flip_bit_at_address = Some(number(value)?),
        "transient" => {
            plan.transient_errors = u32::try_from(number(value)?).context("--sim-fault: count too large")?
        }
        other => bail!(
            "--sim-fault {spec}: unknown fault {other}; expected power-cut, probe-lost, hang, uid-read-fails, flip-bit or transient"
        ),
    }
    Ok(SimFaultSpec { slot, unit, plan })
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let profile = Profile::load(&args.profile)?;
    for warning in &profile.warnings {
        eprintln!("warning: {warning}");
    }
    if args.sim == Some(0) {
        bail!("--sim: expected at least 1 simulated fixture");
    }
    let faults =
        args.sim_fault.iter().map(|spec| parse_sim_fault(spec)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut selectors =
        args.probe.iter().map(|text| FixtureSelector::parse(text)).collect::<Result<Vec<_>, _>>()?;
    // Without --sim or --probe, the profile's `[fixture] default` (else one simulated slot).
    let sim_count = match (args.sim, args.probe.is_empty(), &profile.default_fixture) {
        (Some(count), _, _) => count,
        (None, true, Some(default)) => {
            selectors.push(
                FixtureSelector::parse(default)
                    .with_context(|| format!("{}: fixture.default", profile.path.display()))?,
            );
            0
        }
        (None, true, None) => 1,
        (None, false, _) => 0,
    };
    selectors.extend(std::iter::repeat_n(FixtureSelector::Sim, sim_count));
    let slot_count = selectors.len();
    let labels = Arc::new(UnitLabels::with_work_order(checked_work_order(args.work_order.as_deref())?));
    let serials_given = feed_scanned_serials(args.serials.as_deref(), &profile, &labels)?;
    let unit_limit = match (args.count, serials_given) {
        (Some(count), Some(given)) if count > given => bail!(
            "--count {count}: {} holds only {given} serials",
            args.serials.as_deref().unwrap_or_else(|| std::path::Path::new("-")).display()
        ),
        (Some(count), _) => Some(count),
        (None, given) => given,
    };
    if let Some(fault) = faults.iter().find(|fault| fault.slot >= slot_count) {
        bail!("--sim-fault: slot {} does not exist (slots are 0..{})", fault.slot, slot_count - 1);
    }
    let db_path = match args.db {
        Some(path) => path,
        None => Ledger::default_path()?,
    };
    let ledger =
        Ledger::open(&db_path).with_context(|| format!("cannot open the ledger {}", db_path.display()))?;
    let self_test = SelfTestMaterial::prepare(&profile)?;
    let (station_name, operator) = station_identity(args.station, args.operator);
    let central_link = match &args.central {
        Some(url) => Some(start_central_link(
            url,
            &ledger,
            &station_name,
            &profile.serial_scheme,
            args.central_block_size,
            args.central_lease_ahead,
            args.central_batch_size,
        )?),
        None => None,
    };

    let sim_timing = if args.sim_timing == "zero" { SimTiming::default() } else { profile.sim_timing };
    let fault_schedules = (0..slot_count)
        .map(|slot| {
            let slot_faults: Vec<(u64, FaultPlan)> = faults
                .iter()
                .filter(|fault| fault.slot == slot)
                .map(|fault| (fault.unit - 1, fault.plan.clone()))
                .collect();
            let schedule: FaultSchedule = Box::new(move |unit_index| {
                slot_faults
                    .iter()
                    .find(|(index, _)| *index == unit_index)
                    .map(|(_, plan)| plan.clone())
                    .unwrap_or_default()
            });
            (slot, schedule)
        })
        .collect();
    let sim_options = SimOptions { timing: sim_timing, uid_seed: args.sim_uid_seed, fault_schedules };
    let fixtures = open_fixtures(&selectors, &profile, sim_options)?;

    let cancel = CancelToken::default();
    let cancel_on_signal = cancel.clone();
    // A second Ctrl-C while the slots finish their step is not worth a hard error.
    let _ = ctrlc::set_handler(move || cancel_on_signal.cancel());

    let (sender, receiver) = crossbeam_channel::unbounded::<StationEvent>();
    let context = Arc::new(StationContext {
        profile: Arc::new(profile),
        self_test: Arc::new(self_test),
        ledger,
        station_name,
        operator,
        events: Arc::new(sender) as Arc<dyn EventSink>,
        cancel,
        labels,
    });
    let line_context = context.clone();
    let line = std::thread::spawn(move || run_line(line_context, fixtures, unit_limit));
    drop(context);

    if args.json {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for event in receiver {
            writeln!(out, "{}", event.to_json_line()).context("cannot write events to stdout")?;
        }
    } else {
        show_progress(receiver, slot_count);
    }
    let summary = line.join().map_err(|_| anyhow::anyhow!("the line coordinator panicked"))?;
    if !args.json {
        print_summary(&summary, &db_path);
    }
    if let Some(link) = central_link {
        let status = link.finish(Duration::from_millis(args.central_drain_timeout_ms));
        print_central_summary(&status);
    }
    Ok(if summary.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_UNITS_FAILED) })
}

/// How long `imprint run` waits at start for its first serial block before it begins with
/// whatever blocks the ledger holds.
const CENTRAL_READY_TIMEOUT: Duration = Duration::from_secs(15);

fn start_central_link(
    url: &str,
    ledger: &Ledger,
    station_name: &str,
    serial_scheme: &SerialScheme,
    block_size: u64,
    lease_ahead: Option<u64>,
    batch_size: usize,
) -> anyhow::Result<CentralLink> {
    if block_size == 0 {
        bail!("--central-block-size: expected at least 1");
    }
    if batch_size == 0 {
        bail!("--central-batch-size: expected at least 1");
    }
    let config = CentralConfig::from_url(url).context("--central")?;
    let serial_counters = SerialCounterSpec::for_scheme(serial_scheme);
    let mut settings = LinkSettings::new(station_name.to_owned(), serial_counters.clone());
    settings.block_size = block_size;
    settings.low_water = lease_ahead.unwrap_or(block_size);
    settings.batch_size = batch_size;
    let target = config.target().to_owned();
    let link = CentralLink::start(ledger.clone(), config, settings).context("starting the central link")?;
    let status = link.wait_until_ready(CENTRAL_READY_TIMEOUT);
    if let Some(alarm) = &status.alarm {
        eprintln!("central {target}: {alarm}");
    }
    if !status.serials_stocked {
        let reason = status.last_error.as_deref().unwrap_or("no answer yet");
        eprintln!(
            "warning: no serial block from the central database {target} ({reason}); provisioning from the serial blocks already leased:"
        );
        for spec in &serial_counters {
            let remaining = ledger.leased_serials_remaining(&spec.prefix)?;
            eprintln!("  prefix {:?}: {remaining} serial numbers left", spec.prefix);
        }
    }
    Ok(link)
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

fn show_progress(receiver: crossbeam_channel::Receiver<StationEvent>, slot_count: usize) {
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
    for event in receiver {
        let Some(bar) = slot_bars.get(event.slot) else { continue };
        match event.kind {
            EventKind::UnitStarted { .. } => {
                serial_by_slot[event.slot].clear();
                bar.set_length(1);
                bar.set_position(0);
                bar.set_message(format!("unit {}: starting", event.unit));
            }
            EventKind::StepStarted { step } => {
                bar.set_length(1);
                bar.set_position(0);
                bar.set_message(format!("unit {} {}: {step}", event.unit, serial_by_slot[event.slot]));
            }
            EventKind::StepProgress { bytes_done, bytes_total, .. } => {
                bar.set_length(bytes_total.max(1));
                bar.set_position(bytes_done);
            }
            EventKind::StepFinished { step, detail, .. } => {
                if step == "allocate-identity"
                    && let Some(serial) = detail.get("serial").and_then(|value| value.as_str())
                {
                    serial_by_slot[event.slot] = serial.to_string();
                }
                bar.set_position(bar.length().unwrap_or(1));
            }
            EventKind::UnitFinished { result, serial, failing_step, reason, cycle_time_ms, .. } => {
                let serial = serial.unwrap_or_else(|| "-".to_string());
                let line = match result {
                    UnitResult::Pass => {
                        format!("PASS  slot {} unit {} {serial} ({cycle_time_ms} ms)", event.slot, event.unit)
                    }
                    UnitResult::Fail => format!(
                        "FAIL  slot {} unit {} {serial} at {}: {}",
                        event.slot,
                        event.unit,
                        failing_step.unwrap_or_default(),
                        reason.unwrap_or_default()
                    ),
                };
                bars.suspend(|| println!("{line}"));
                bar.set_message(format!(
                    "idle (last: {})",
                    if result == UnitResult::Pass { "PASS" } else { "FAIL" }
                ));
            }
            EventKind::SlotError { reason } => bars.suspend(|| eprintln!("slot {}: {reason}", event.slot)),
            EventKind::StepFailed { .. } | EventKind::StepSkipped { .. } | EventKind::LineFinished { .. } => {
            }
        }
    }
    for bar in slot_bars {
        bar.finish_and_clear();
    }
}

fn print_summary(summary: &LineSummary, db_path: &std::path::Path) {
    println!(
        "units: {}  pass: {}  fail: {}  elapsed: {:.1} s  units/hour: {:.0}",
        summary.outcomes.len(),
        summary.passed(),
        summary.failed(),
        summary.elapsed.as_secs_f64(),
        summary.units_per_hour()
    );
    println!("ledger: {}", db_path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, expected: Option<(usize, u64, FaultPlan)>) {
        let parsed = parse_sim_fault(spec).ok().map(|fault| (fault.slot, fault.unit, fault.plan));
        assert_eq!(parsed, expected, "{spec}");
    }

    #[test]
    fn sim_fault_specs() {
        check(
            "0.2:probe-lost=erase",
            Some((0, 2, FaultPlan { probe_lost_at_step: Some("erase".into()), ..Default::default() })),
        );
        check(
            "1.1:power-cut=40",
            Some((1, 1, FaultPlan { power_cut_after_flash_operations: Some(40), ..Default::default() })),
        );
        check(
            "0.1:flip-bit=0x8000",
            Some((0, 1, FaultPlan { flip_bit_at_address: Some(0x8000), ..Default::default() })),
        );
        check(
            "0.1:uid-read-fails",
            Some((0, 1, FaultPlan { unique_id_read_fails: true, ..Default::default() })),
        );
        check("0.0:uid-read-fails", None);
        check("0.1:probe-lost=nowhere", None);
        check("x.1:transient=2", None);
        check("0.1:melt", None);
    }
}
