//! Command-line front end: one file per noun (`imprint profile ...`, `imprint manifest ...`).
//!
//! Exit codes are part of the interface: 0 when everything passed, 1 when a unit failed,
//! 2 for bad usage, bad input or bad configuration (nothing was written to a device or the ledger).

mod dev;
#[cfg(feature = "gui")]
mod gui;
mod keys;
mod log;
mod manifest;
mod probes;
mod profile;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad usage, input or configuration.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when at least one unit failed.
pub const EXIT_UNITS_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "imprint",
    version,
    about = "Factory provisioning station: flash, inject identity and trust, self-test, lock, audit",
    after_help = "Examples:\n  imprint run --profile profiles/demo.toml --sim 4 --count 20\n  imprint profile check profiles/demo.toml\n  imprint manifest verify update.manifest --cert update.der\n  imprint log verify"
)]
struct Cli {
    /// Log filter for diagnostics on stderr (e.g. `info`, `imprint=debug`).
    #[arg(long, global = true, default_value = "warn", env = "IMPRINT_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check product profiles.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Create, inspect and verify Pelion v3 update manifests.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Developer credentials (development only, never for production).
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Signing keys in hardware tokens (PKCS#11): generate, show.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Provision units headless (terminal progress or JSON lines).
    Run(run::RunArgs),
    /// Query, export and verify the audit ledger.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// List attached debug probes, GDB endpoints and the simulator, with their selectors.
    Probes(probes::ProbesArgs),
    /// The operator's window: slots, statistics, history, export, log.
    #[cfg(feature = "gui")]
    Gui(gui::GuiArgs),
}

/// Parses the command line, sets up diagnostics and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The GUI installs its own subscriber: stderr as here, plus its log panel.
    #[cfg(feature = "gui")]
    let has_own_subscriber = matches!(cli.command, Command::Gui(_));
    #[cfg(not(feature = "gui"))]
    let has_own_subscriber = false;
    if !has_own_subscriber {
        init_tracing(&cli.log);
    }
    let outcome = match cli.command {
        Command::Profile(command) => profile::run(command),
        Command::Manifest(command) => manifest::run(command),
        Command::Dev(command) => dev::run(command),
        Command::Keys(command) => keys::run(command),
        Command::Run(args) => run::run(args),
        Command::Log(command) => log::run(command),
        Command::Probes(args) => probes::run(args),
        #[cfg(feature = "gui")]
        Command::Gui(args) => gui::run(args, &cli.log),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// The station name and operator for records: flags or environment, else the host name and
/// the login name.
pub fn station_identity(station: Option<String>, operator: Option<String>) -> (String, String) {
    let station = station.unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "station".to_string())
    });
    let operator = operator.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".to_string());
    (station, operator)
}

/// Splits a `--sim-fault` value `SLOT.UNIT:FAULT` (as `imprint run` and `imprint gui` take it)
/// into the slot, the unit counted from 1 on that slot, and the fault text after the colon.
pub fn split_sim_fault(spec: &str) -> anyhow::Result<(usize, u64, &str)> {
    use anyhow::Context;
    let expected = "expected SLOT.UNIT:KIND[=VALUE], e.g. 0.2:probe-lost=erase";
    let (position, fault) =
        spec.split_once(':').with_context(|| format!("--sim-fault {spec}: {expected}"))?;
    let (slot, unit) = position.split_once('.').with_context(|| format!("--sim-fault {spec}: {expected}"))?;
    let slot: usize = slot.parse().with_context(|| format!("--sim-fault {spec}: slot must be a number"))?;
    let unit: u64 =
        unit.parse().with_context(|| format!("--sim-fault {spec}: unit must be a number from 1"))?;
    if unit == 0 {
        anyhow::bail!("--sim-fault {spec}: units count from 1");
    }
    Ok((slot, unit, fault))
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
