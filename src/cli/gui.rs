//! `imprint gui`: the operator's window. Parses the flags into [`GuiOptions`], sets up logging
//! (stderr plus the window's log panel) and opens the window; everything else is in
//! `imprint::gui`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use imprint::device::factory::FixtureSelector;
use imprint::gui::GuiOptions;
use imprint::ledger::Ledger;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::{CentralArgs, parse_sim_faults, positive_count, station_identity};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  imprint gui
  imprint gui --profile profiles/demo.toml --sim 8 --operator alice
  imprint gui --sim 4 --autostart --exit-after-units 12 --frame-stats frames.json
  imprint gui --sim 2 --sim-fault 1.2:probe-lost=erase
  imprint gui --profile profiles/nrf52840-dk.toml --probe probe-rs:1366:1015:000683000000 \
      --probe probe-rs:1366:1015:000683000001
  imprint gui --profile profiles/qemu-mps2-an385.toml --sim 2     (two QEMU slots: [fixture] default)

Without flags the window opens on profiles/demo.toml (or the profile used last) with 4
simulated slots. Keys: F5 start the line, F6 stop it, Ctrl+E export the ledger.")]
pub struct GuiArgs {
    /// The product profile to select (default: the one used last, else profiles/demo.toml).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// The folder the profile picker lists (default: the profile's folder, else `profiles`).
    #[arg(long, value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
    /// Number of slots, as for `imprint run`: after --probe slots, that many simulated slots;
    /// without --probe, that many slots of the profile's `[fixture] default` when it makes
    /// fresh units (`sim`, `qemu`), else simulated (default: the number used last, else 4).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive_count::<usize>)]
    sim: Option<usize>,
    /// A fixture to run a slot on, once per slot, as for `imprint run` (see `imprint probes`):
    /// probe-rs:VID:PID[:SERIAL], gdb:HOST:PORT, qemu or sim. Without it the slots are the
    /// profile's `[fixture] default`, else simulated.
    #[arg(long, value_name = "SELECTOR")]
    probe: Vec<String>,
    #[command(flatten)]
    central: CentralArgs,
    /// Operator ID, logged in when the window opens (default: nobody; the operator logs in with
    /// a badge scan or a typed ID, or the last one comes back when the station settings say so).
    /// Needed by --autostart and --exit-after-units.
    #[arg(long, env = "IMPRINT_OPERATOR")]
    operator: Option<String>,
    /// Station name recorded with every run (default: the host name).
    #[arg(long, env = "IMPRINT_STATION")]
    station: Option<String>,
    /// The ledger database (default: ledger.db in the platform's data directory).
    #[arg(long, value_name = "PATH", env = "IMPRINT_DB")]
    db: Option<PathBuf>,
    /// Create the ledger if it does not exist yet (without it a missing ledger is refused).
    #[arg(long, env = "IMPRINT_CREATE_LEDGER", value_parser = clap::builder::BoolishValueParser::new())]
    create_ledger: bool,
    /// `zero` ignores the profile's simulated timing model (as fast as the host allows).
    #[arg(long, value_name = "MODEL", value_parser = ["profile", "zero"])]
    sim_timing: Option<String>,
    /// Derive simulated unique IDs from this seed (repeatable runs) instead of randomly.
    #[arg(long, value_name = "SEED")]
    sim_uid_seed: Option<u64>,
    /// Inject a fault into a simulated unit: SLOT.UNIT:KIND[=VALUE] as for `imprint run`.
    /// Repeatable.
    #[arg(long, value_name = "SPEC")]
    sim_fault: Vec<String>,
    /// Each unit waits for the operator (Start unit button, or Enter in the scanner field).
    #[arg(long)]
    manual_start: bool,
    /// Automatic start: pause between units on a slot (board swap time) in milliseconds.
    #[arg(long, value_name = "MS")]
    unit_change_delay_ms: Option<u64>,
    /// Start the line as soon as the window opens.
    #[arg(long)]
    autostart: bool,
    /// Unattended: start the line, provision N units in all, then close the window.
    #[arg(long, value_name = "N")]
    exit_after_units: Option<u64>,
    /// With --exit-after-units: how long the window stays open after the last unit.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    linger_ms: u64,
    /// Write frame timing as JSON at exit: p50/p99/max of the UI closure, of each frame's CPU
    /// time and of the interval between frames, over the frames painted while the line ran.
    #[arg(long, value_name = "FILE")]
    frame_stats: Option<PathBuf>,
    /// Neither read nor write remembered settings and window layout.
    #[arg(long)]
    fresh_settings: bool,
}

pub fn run(args: GuiArgs, log_filter: &str) -> anyhow::Result<ExitCode> {
    if args.sim == Some(0) {
        bail!("--sim: expected at least 1 simulated slot");
    }
    if (args.autostart || args.exit_after_units.is_some()) && args.operator.is_none() {
        bail!(
            "--autostart/--exit-after-units: expected --operator ID (or IMPRINT_OPERATOR): an unattended line records its units under an operator, and nobody is logged in"
        );
    }
    if args.exit_after_units == Some(0) {
        bail!("--exit-after-units: expected at least 1 unit");
    }
    let ledger_path = match args.db {
        Some(path) => path,
        None => Ledger::default_path()?,
    };
    // The operator flag (or IMPRINT_OPERATOR) logs that operator in; without it nobody is
    // logged in (unless the station settings remember the last one).
    let operator = args.operator.clone();
    let (station_name, _) = station_identity(args.station, args.operator);
    let mut options = GuiOptions::new(ledger_path, station_name);
    options.create_ledger = args.create_ledger;
    options.profile = args.profile;
    options.profiles_directory = args.profiles_dir;
    options.operator = operator;
    options.sim_slot_count = args.sim;
    for selector in &args.probe {
        FixtureSelector::parse(selector)?;
    }
    let slots_asked = args.probe.len() + if args.probe.is_empty() { 0 } else { args.sim.unwrap_or(0) };
    if slots_asked > imprint::gui::SLOTS_MAX {
        bail!("--probe, --sim: at most {} slots, found {slots_asked}", imprint::gui::SLOTS_MAX);
    }
    options.probes = args.probe;
    options.central = args.central.settings()?;
    options.sim_timing_zero = args.sim_timing.map(|model| model == "zero");
    options.sim_uid_seed = args.sim_uid_seed;
    options.sim_faults = parse_sim_faults(&args.sim_fault)?;
    options.manual_start = args.manual_start.then_some(true);
    options.unit_change_delay_ms = args.unit_change_delay_ms;
    options.autostart = args.autostart || args.exit_after_units.is_some();
    options.unit_limit = args.exit_after_units;
    options.exit_after_line_finished = args.exit_after_units.map(|_| Duration::from_millis(args.linger_ms));
    options.frame_stats_path = args.frame_stats;
    options.remember_settings = !args.fresh_settings;
    if let Some(slots) = options.sim_slot_count
        && options.probes.is_empty()
        && let Some(spec) = options.sim_faults.iter().find(|spec| spec.slot >= slots)
    {
        bail!("--sim-fault: slot {} does not exist (slots are 0..{})", spec.slot, slots - 1);
    }

    let (log_layer, log_receiver) = imprint::gui::log_channel();
    let stderr_filter = tracing_subscriber::EnvFilter::try_new(log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // The operator's log panel: the station and the window in detail, other crates (the
    // graphics stack, windowing) only when something is broken. stderr still gets --log.
    let panel_filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::ERROR)
        .with_target("imprint", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(stderr_filter))
        .with(log_layer.with_filter(panel_filter))
        .init();

    imprint::gui::run(options, Some(log_receiver))?;
    Ok(ExitCode::SUCCESS)
}
