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

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code for bad usage, input or configuration.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when at least one unit failed.
pub const EXIT_UNITS_FAILED: u8 = 1;
/// Standard output was closed by its reader (`imprint ... | head`): 128 + SIGPIPE, what a shell
/// reports for any tool a closed pipe ends. Never "bad input": nothing was wrong with the input.
pub const EXIT_STDOUT_CLOSED: u8 = 141;
/// `imprint run` was stopped (Ctrl-C, SIGTERM) before its requested units were done and no unit
/// failed: the units in flight finished (or, after a second signal, were recorded ABORTED).
pub const EXIT_LINE_STOPPED: u8 = 3;

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
    exit_quietly_when_stdout_closes();
    let command = with_unwrapped_examples(Cli::command());
    let parsed = command.try_get_matches().and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            // `imprint run --json` refused for its arguments (`--count 0`, an unknown flag) still
            // tells its reader on the stream; help and version are not refusals.
            if error.use_stderr() && asks_for_a_json_run(std::env::args_os().skip(1)) {
                let message = error.to_string();
                let reason = message.lines().next().unwrap_or_default();
                run::print_line_refused("usage", reason.strip_prefix("error: ").unwrap_or(reason));
            }
            error.exit()
        }
    };
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
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Every command's `after_help` (its examples) moved into its help template, where clap prints
/// text as written: clap wraps `after_help` at the terminal's width, and a wrapped example is a
/// command that no longer works when copied. The rest of the help still wraps.
fn with_unwrapped_examples(command: clap::Command) -> clap::Command {
    let examples = command.get_after_help().map(ToString::to_string);
    let command = match examples {
        Some(examples) => command.help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{{all-args}}\n\n{examples}\n"
        )),
        None => command,
    };
    let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_string()).collect();
    names.into_iter().fold(command, |command, name| command.mut_subcommand(name, with_unwrapped_examples))
}

/// Whether the command line (without the program) is an `imprint run ... --json`: its words
/// before a `--` hold both. Used only when the arguments could not be parsed.
fn asks_for_a_json_run(arguments: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let words: Vec<_> = arguments.take_while(|word| word != "--").collect();
    words.iter().any(|word| word == "run") && words.iter().any(|word| word == "--json")
}

/// A count of units or slots: a whole number of at least 1 (`--count 0` would do nothing and exit
/// 0; `-1` names its option instead of being taken for an unknown flag).
pub fn positive_count<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let value: u64 =
        text.trim().parse().map_err(|_| format!("expected a whole number of at least 1, found {text:?}"))?;
    if value == 0 {
        return Err("expected at least 1, found 0".to_owned());
    }
    T::try_from(value).map_err(|_| format!("{value} is too large"))
}

/// Whether an error comes from writing to a reader that went away.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(is_broken_pipe_cause)
}

/// One cause, looking inside the writers' own error types (serde_json and csv wrap the I/O
/// error, and `io::Error::other` hides its payload from `source()`).
fn is_broken_pipe_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::BrokenPipe
            || io.get_ref().is_some_and(|inner| is_broken_pipe_cause(inner));
    }
    if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
        return json.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe);
    }
    if let Some(csv) = cause.downcast_ref::<csv::Error>() {
        return matches!(csv.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe);
    }
    false
}

/// `println!` panics when standard output is a closed pipe. A command whose reader went away
/// has nobody left to tell: it ends with [`EXIT_STDOUT_CLOSED`] instead of a panic report and
/// exit 101. (`imprint run` writes its events without `println!` and finishes its units first.)
fn exit_quietly_when_stdout_closes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_STDOUT_CLOSED));
        }
        default_hook(info);
    }));
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

/// The central database flags `imprint run` and `imprint gui` share (docs/central.md).
#[derive(clap::Args)]
pub struct CentralArgs {
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
    /// After the last unit, how long to keep shipping the outbox before the line ends (what is
    /// left ships at the next start).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    central_drain_timeout_ms: u64,
}

impl CentralArgs {
    /// The settings, checked (without connecting); `None` without `--central`.
    pub fn settings(self) -> anyhow::Result<Option<imprint::station::session::CentralSettings>> {
        use anyhow::Context;
        if self.central_block_size == 0 {
            anyhow::bail!("--central-block-size: expected at least 1");
        }
        if self.central_batch_size == 0 {
            anyhow::bail!("--central-batch-size: expected at least 1");
        }
        let Some(url) = self.central else { return Ok(None) };
        let settings = imprint::station::session::CentralSettings {
            url,
            block_size: self.central_block_size,
            lease_ahead: self.central_lease_ahead,
            batch_size: self.central_batch_size,
            drain_timeout: std::time::Duration::from_millis(self.central_drain_timeout_ms),
        };
        settings.check().context("--central")?;
        Ok(Some(settings))
    }
}

/// Parses `--sim-fault` values (the station's one grammar, the same for `run` and `gui`).
pub fn parse_sim_faults(specs: &[String]) -> anyhow::Result<Vec<imprint::station::session::SimFaultSpec>> {
    specs
        .iter()
        .map(|spec| {
            imprint::station::session::SimFaultSpec::parse(spec)
                .map_err(|error| anyhow::anyhow!("--sim-fault: {error}"))
        })
        .collect()
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a terminal: redirected to a file or a pipe, stderr gets plain text.
    let is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(is_terminal)
        .init();
}
