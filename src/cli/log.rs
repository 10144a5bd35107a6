//! `imprint log ...`: export, verify, show and summarise the audit ledger. Thin glue over
//! [`imprint::ledger`]; every command opens the ledger read-only, so it can run beside a
//! station that is writing. `export`, `verify`, `show`, `certificates` and `stats` also read
//! the central PostgreSQL ledger (`--central URL`, [`imprint::central`]), and `ship` drains a
//! ledger's outbox into it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use imprint::central::{
    CentralConfig, export_central, export_device_certificates_central, migrate, ship_batch, stats_central,
    unit_history_central, verify_central,
};
use imprint::ledger::{
    CertificateSelection, ExportFilter, ExportFormat, FailingStepCount, LEDGER_ENVIRONMENT_VARIABLE, Ledger,
    LedgerStats, RecordedRun, RunResult, STATION_DEFAULT_LEDGER, UnitHistory, VerifyOptions, VerifyReport,
    ledger_files, parse_hash_hex, parse_time_bound, verify_export_file,
};
use imprint::output::ExistingFile;
use imprint::station::FailureCategory;

use super::EXIT_UNITS_FAILED;

#[derive(clap::Args)]
pub struct DatabaseArgs {
    /// Ledger database file [default: $IMPRINT_LEDGER, else /var/lib/imprint/ledger.db].
    #[arg(long, value_name = "PATH", env = "IMPRINT_DB")]
    db: Option<PathBuf>,
}

impl DatabaseArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(path) => Ok(path.clone()),
            None => Ledger::default_path().context("finding the default ledger path"),
        }
    }

    /// Where the path came from, for errors that must name the paths looked at.
    fn path_source(&self) -> String {
        if self.db.is_some() {
            return "--db (or IMPRINT_DB)".to_owned();
        }
        match std::env::var_os(LEDGER_ENVIRONMENT_VARIABLE) {
            Some(value) if !value.is_empty() => format!("${LEDGER_ENVIRONMENT_VARIABLE}"),
            _ => format!(
                "the station default {STATION_DEFAULT_LEDGER} (no --db, IMPRINT_DB or ${LEDGER_ENVIRONMENT_VARIABLE})"
            ),
        }
    }

    fn open(&self) -> anyhow::Result<Ledger> {
        let path = self.path()?;
        Ledger::open_read_only(&path)
            .with_context(|| format!("opening ledger {} (from {})", path.display(), self.path_source()))
    }

    /// Opens the existing ledger read-write (never creates one).
    fn open_for_writing(&self) -> anyhow::Result<Ledger> {
        let path = self.path()?;
        Ledger::open_existing(&path)
            .with_context(|| format!("opening ledger {} (from {})", path.display(), self.path_source()))
    }
}

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Export runs with every recorded field, their steps and hashes, plus the chain head.
    #[command(
        after_help = "Examples:\n  imprint log export --format csv -o runs.csv\n  imprint log export --central 'postgresql://imprint@db.example/factory' --format jsonl -o all-stations.jsonl\n  imprint log export --format jsonl --since 2026-11-01 --until 2026-11-30 --result fail\n  imprint log export --db /var/lib/imprint/ledger.db --format json --profile demo -o demo.json"
    )]
    Export(ExportArgs),
    /// Check the hash chain of a ledger or an export file; exit 1 when it was tampered with.
    #[command(
        after_help = "Examples:\n  imprint log verify\n  imprint log verify --central 'postgresql://imprint@db.example/factory?sslmode=verify-full&sslrootcert=ca.pem'\n  imprint log verify --db station-3.db --head 5f1c...e9\n  imprint log verify runs.jsonl --head 5f1c...e9\n\nExit status: 0 intact, 1 tampering found (the first bad record is printed), 2 bad input."
    )]
    Verify(VerifyArgs),
    /// Ship the ledger's outbox (runs not yet in the central database) now, then exit.
    #[command(
        after_help = "Examples:\n  PGPASSWORD=... imprint log ship --db station-3.db --central 'postgresql://imprint@db.example/factory?sslmode=verify-full&sslrootcert=ca.pem'\n\nA station running `imprint run --central URL` ships by itself; this is for a station that stopped with runs still in its outbox.\nExit status: 0 when the outbox is empty, 1 when an alarm stopped shipping, 2 bad input or database unreachable."
    )]
    Ship(ShipArgs),
    /// Show a unit's whole history: identity, retired identities, every run with its steps.
    #[command(
        after_help = "Examples:\n  imprint log show SN000123\n  imprint log show SN000123 --central 'postgresql://imprint@db.example/factory'\n  imprint log show 0f3a5c77e1d2a4b89c001122\n  imprint log show SN000123 --json"
    )]
    Show(ShowArgs),
    /// Write the device identity certificates the factory CA issued as a PEM bundle (to register
    /// devices with a cloud service).
    #[command(
        after_help = "Examples:\n  imprint log certificates -o devices.pem\n  imprint log certificates --profile demo-sensor --since 2026-11-01 -o november.pem\n  imprint log certificates --all -o every-issued.pem\n\nBy default: for each unit whose latest run passed, the certificate that run issued (the one the\ndevice holds); units whose latest run failed are left out.\nWith --all: every certificate issued, in chain order, whether its run passed or not.\nEach certificate is checked against the fingerprint its run recorded."
    )]
    Certificates(CertificatesArgs),
    /// Create a new, empty ledger (the only way besides --create-ledger; idempotent).
    #[command(
        after_help = "Examples:\n  sudo imprint log init\n  imprint log init --db /srv/line-3/ledger.db\n\nWithout --db: $IMPRINT_LEDGER, else the station-wide /var/lib/imprint/ledger.db (shared by every\naccount of the station; make it writable for the accounts that run the line)."
    )]
    Init(InitArgs),
    /// Copy a live ledger consistently (SQLite's online backup API) to one self-contained file.
    #[command(
        after_help = "Examples:\n  imprint log backup -o /backup/ledger-2026-12-02.db\n  imprint log backup --db station-3.db -o station-3-copy.db && imprint log verify --db station-3-copy.db\n\nSafe while a station is writing. A plain copy of ledger.db alone is complete only when no\nstation has the ledger open (stations checkpoint it when a line ends)."
    )]
    Backup(BackupArgs),
    /// Units, runs, pass/fail, first-pass yield, failures by step and category, and median cycle
    /// time per step.
    #[command(
        after_help = "Examples:\n  imprint log stats\n  imprint log stats --db station-3.db --json\n  imprint log stats --since 2026-11-01 --until 2026-11-30 --profile demo-sensor\n  imprint log stats --central 'postgresql://imprint@db.example/factory' --since 2026-11-30\n\nUnits and retired identities count the whole ledger; every other number counts the runs the\nfilters select (--since/--until on the run's start time)."
    )]
    Stats(StatsArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Csv,
    Json,
    Jsonl,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ResultArg {
    Pass,
    Fail,
    Aborted,
}

/// The run filter of `export` and `stats` (the export's [`ExportFilter`]).
#[derive(clap::Args)]
pub struct RunFilterArgs {
    /// Only runs started at or after T (RFC 3339, or YYYY-MM-DD for midnight UTC).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only runs started before T (RFC 3339, or YYYY-MM-DD meaning the end of that day, UTC).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only runs of this profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Only passed or failed runs.
    #[arg(long, value_enum)]
    result: Option<ResultArg>,
}

impl RunFilterArgs {
    /// The filter, with the times checked and put in stored form.
    fn filter(self) -> anyhow::Result<ExportFilter> {
        Ok(ExportFilter {
            since: self.since.as_deref().map(|text| parse_time_bound("--since", text, false)).transpose()?,
            until: self.until.as_deref().map(|text| parse_time_bound("--until", text, true)).transpose()?,
            profile: self.profile,
            result: self.result.map(|result| match result {
                ResultArg::Pass => RunResult::Pass,
                ResultArg::Fail => RunResult::Fail,
                ResultArg::Aborted => RunResult::Aborted,
            }),
        })
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FormatArg,
    #[command(flatten)]
    filter: RunFilterArgs,
    /// Output file [default: standard output].
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists (without it an existing file is refused, never overwritten).
    #[arg(long, requires = "output")]
    force: bool,
    /// Export every station's runs from the central PostgreSQL ledger instead of a local
    /// ledger (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    central: Option<String>,
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The copy to write (a new file; with --force an existing one is replaced once the copy
    /// is complete).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct ShipArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The central PostgreSQL ledger (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL", env = "IMPRINT_CENTRAL_URL")]
    central: String,
}

#[derive(clap::Args)]
pub struct CertificatesArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Only runs started at or after T (RFC 3339, or YYYY-MM-DD for midnight UTC).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only runs started before T (RFC 3339, or YYYY-MM-DD meaning the end of that day, UTC).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only runs of this profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Every certificate issued (failed and superseded runs too), not just those of the units
    /// whose latest run passed.
    #[arg(long)]
    all: bool,
    /// Output file [default: standard output].
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists (without it an existing file is refused, never overwritten).
    #[arg(long, requires = "output")]
    force: bool,
    /// Read every station's runs from the central PostgreSQL ledger instead of a local ledger
    /// (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    central: Option<String>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Ledger database to verify [default: the platform data directory's imprint/ledger.db].
    #[arg(long, value_name = "PATH", env = "IMPRINT_DB")]
    db: Option<PathBuf>,
    /// An export file (CSV, JSON or JSON lines) to verify instead of a database.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// A record hash noted earlier (64 hex digits); it must be a link of the chain, otherwise
    /// the ledger was truncated or rewritten since. Repeatable.
    #[arg(long = "head", value_name = "HEX")]
    heads: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Verify every station's chain in the central PostgreSQL ledger instead of a local
    /// ledger (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    central: Option<String>,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// A serial number (current or retired) or a chip UID in hex.
    #[arg(value_name = "SERIAL|UID")]
    unit: String,
    /// Look the unit up in the central PostgreSQL ledger, across all stations, instead of a
    /// local ledger (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    central: Option<String>,
    /// Print the history as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    filter: RunFilterArgs,
    /// Print the numbers as JSON.
    #[arg(long)]
    json: bool,
    /// Count every station's runs in the central PostgreSQL ledger instead of a local ledger
    /// (docs/central.md; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    central: Option<String>,
}

pub fn run(command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::Export(args) => export(args),
        LogCommand::Verify(args) => verify(args),
        LogCommand::Ship(args) => ship(args),
        LogCommand::Show(args) => show(args),
        LogCommand::Certificates(args) => certificates(args),
        LogCommand::Stats(args) => stats(args),
        LogCommand::Init(args) => init(args),
        LogCommand::Backup(args) => backup(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let path = args.database.path()?;
    let existed = path.exists();
    let ledger = Ledger::create(&path).with_context(|| format!("creating ledger {}", path.display()))?;
    if existed {
        println!("ledger {} already exists; left as it was", ledger.path().display());
    } else {
        println!("created ledger {}", ledger.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let ledger = args.database.open()?;
    ledger.backup_to(&args.output, ExistingFile::from_force(args.force))?;
    eprintln!("backed up ledger {} to {}", ledger.path().display(), args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn certificates(args: CertificatesArgs) -> anyhow::Result<ExitCode> {
    let filter = RunFilterArgs { since: args.since, until: args.until, profile: args.profile, result: None }
        .filter()?;
    let selection =
        if args.all { CertificateSelection::EveryIssued } else { CertificateSelection::ProvisionedUnits };
    let central = args.central.as_deref().map(CentralConfig::from_url).transpose().context("--central")?;
    let ledger = match &central {
        Some(_) => None,
        None => Some(args.database.open()?),
    };
    let protected = ledger.as_ref().map(|ledger| ledger_files(ledger.path())).unwrap_or_default();
    let existing = ExistingFile::from_force(args.force);
    let summary = write_output(args.output.as_deref(), &protected, existing, "certificate bundle", |out| {
        match (&central, &ledger) {
            (Some(config), _) => Ok(export_device_certificates_central(config, selection, &filter, out)
                .with_context(|| format!("reading the central ledger {}", config.target()))?),
            (None, Some(ledger)) => Ok(ledger.export_device_certificates(selection, &filter, out)?),
            (None, None) => bail!("no ledger to read certificates from"),
        }
    })?;
    eprintln!(
        "exported {} device certificate{} ({})",
        summary.certificate_count,
        if summary.certificate_count == 1 { "" } else { "s" },
        match selection {
            CertificateSelection::ProvisionedUnits => "units whose latest run passed",
            CertificateSelection::EveryIssued => "every certificate issued",
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes with `write` to the file `output` through [`imprint::output`] (never over one of
/// `protected_inputs`; a regular file replaced only when complete; a device or FIFO streamed
/// to and never removed) or to standard output.
fn write_output<T>(
    output: Option<&Path>,
    protected_inputs: &[PathBuf],
    existing: ExistingFile,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(output) = output else {
        let stdout = std::io::stdout();
        return write(&mut stdout.lock()).with_context(|| format!("writing the {what} to standard output"));
    };
    imprint::output::write_output_file(output, protected_inputs, existing, write)
        .with_context(|| format!("writing the {what} to {}", output.display()))
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.filter()?;
    let format = match args.format {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Json => ExportFormat::Json,
        FormatArg::Jsonl => ExportFormat::Jsonl,
    };
    let central = args.central.as_deref().map(CentralConfig::from_url).transpose().context("--central")?;
    let ledger = match &central {
        Some(_) => None,
        None => Some(args.database.open()?),
    };
    let export_to = |out: &mut dyn Write| -> anyhow::Result<imprint::ledger::ExportSummary> {
        match (&central, &ledger) {
            (Some(config), _) => Ok(export_central(config, format, &filter, out)?),
            (None, Some(ledger)) => Ok(ledger.export(format, &filter, out)?),
            (None, None) => bail!("no ledger to export"),
        }
    };
    let protected = ledger.as_ref().map(|ledger| ledger_files(ledger.path())).unwrap_or_default();
    let existing = ExistingFile::from_force(args.force);
    let summary = write_output(args.output.as_deref(), &protected, existing, "export", export_to)?;
    for head in &summary.chain_heads {
        eprintln!(
            "exported {} runs; chain head of station {:?}: sequence {} {}",
            summary.record_count, head.station, head.station_sequence, head.record_hash
        );
    }
    if summary.chain_heads.is_empty() {
        eprintln!("exported {} runs; the ledger has no runs yet", summary.record_count);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let expected_heads = args
        .heads
        .iter()
        .map(|text| {
            parse_hash_hex(text)
                .with_context(|| format!("--head: expected a record hash of 64 hex digits, found {text:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = VerifyOptions { expected_heads };
    // `--db` and FILE exclude each other, but an `IMPRINT_DB` left in the environment must
    // not stop verifying a file (clap would count it as a conflict).
    let database_from_environment = std::env::var_os("IMPRINT_DB").map(PathBuf::from);
    if args.file.is_some() && args.db.is_some() && args.db != database_from_environment {
        bail!("give either --db PATH or an export FILE to verify, not both");
    }
    if let Some(url) = &args.central {
        if args.file.is_some() {
            bail!("give either --central URL or an export FILE to verify, not both");
        }
        let config = CentralConfig::from_url(url).context("--central")?;
        let report = verify_central(&config, &options)
            .with_context(|| format!("verifying the central ledger {}", config.target()))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_verify_report(&format!("central {}", config.target()), &report);
        }
        return Ok(if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_UNITS_FAILED) });
    }
    let (source, report) = match &args.file {
        Some(file) => (
            file.display().to_string(),
            verify_export_file(file, &options)
                .with_context(|| format!("verifying export {}", file.display()))?,
        ),
        None => {
            let database = DatabaseArgs { db: args.db.clone() };
            let ledger = database.open()?;
            let report = ledger
                .verify(&options)
                .with_context(|| format!("verifying ledger {}", ledger.path().display()))?;
            (ledger.path().display().to_string(), report)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_verify_report(&source, &report);
    }
    Ok(if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_UNITS_FAILED) })
}

fn ship(args: ShipArgs) -> anyhow::Result<ExitCode> {
    let ledger = args.database.open_for_writing()?;
    let config = CentralConfig::from_url(&args.central).context("--central")?;
    let target = config.target().to_owned();
    let ledger_id = ledger.ledger_id()?;
    let mut client = config.connect()?;
    migrate(&mut client, &target)?;
    let mut shipped = 0usize;
    let mut already_present = 0usize;
    let started = std::time::Instant::now();
    loop {
        match ship_batch(&mut client, &target, &ledger, &ledger_id, imprint::central::DEFAULT_BATCH_SIZE) {
            Ok(outcome) if outcome.runs_acknowledged() == 0 => break,
            Ok(outcome) => {
                shipped += outcome.runs_acknowledged();
                already_present += outcome.runs_already_present;
            }
            Err(error @ imprint::central::CentralError::Alarm { .. }) => {
                eprintln!("{error}");
                eprintln!("shipped {shipped} runs before the alarm");
                return Ok(ExitCode::from(EXIT_UNITS_FAILED));
            }
            Err(error) => return Err(error.into()),
        }
    }
    println!(
        "shipped {shipped} runs ({already_present} were already in the central database) to {target} in {:.1} s; outbox empty",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_verify_report(source: &str, report: &VerifyReport) {
    match &report.problem {
        None => {
            println!(
                "ok: {source}: chain intact, {} runs checked{}",
                report.records_checked,
                if report.is_filtered {
                    " (filtered export: links checked between consecutive runs only)"
                } else {
                    ""
                }
            );
            for head in &report.chain_heads {
                println!(
                    "  station {:?} head: sequence {} {}",
                    head.station, head.station_sequence, head.record_hash
                );
            }
            for found in &report.expected_heads_found {
                println!(
                    "  expected head {} found at station {:?} sequence {}",
                    found.record_hash, found.station, found.station_sequence
                );
            }
        }
        Some(problem) => {
            println!("TAMPERED: {source}: {problem}");
            println!("  {} runs checked before the first bad record", report.records_checked);
        }
    }
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.central {
        let config = CentralConfig::from_url(url).context("--central")?;
        let Some(history) = unit_history_central(&config, &args.unit)
            .with_context(|| format!("reading the central ledger {}", config.target()))?
        else {
            bail!(
                "no unit with serial or chip uid {:?} in the central ledger {}",
                args.unit,
                config.target()
            );
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&history)?);
        } else {
            print_history(&history);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = args.database.open()?;
    let Some(history) = ledger
        .unit_history(&args.unit)
        .with_context(|| format!("reading ledger {}", ledger.path().display()))?
    else {
        bail!("no unit with serial or chip uid {:?} in ledger {}", args.unit, ledger.path().display());
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&history)?);
    } else {
        print_history(&history);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_history(history: &UnitHistory) {
    println!("chip {}", history.chip_uid);
    match &history.current {
        Some(unit) => println!(
            "  identity: serial {}  device id {}  profile {}  issued {}",
            unit.serial, unit.device_id, unit.profile, unit.created_at
        ),
        None => println!("  identity: none issued"),
    }
    for retired in &history.retired {
        println!(
            "  retired:  serial {}  device id {}  profile {}  issued {}  retired {} (replaced by {})",
            retired.serial,
            retired.device_id,
            retired.profile,
            retired.created_at,
            retired.retired_at,
            retired.replaced_by_serial
        );
    }
    println!("runs: {}", history.runs.len());
    for run in &history.runs {
        print_run(run);
    }
}

fn print_run(run: &RecordedRun) {
    let outcome = match (&run.failing_step, &run.reason) {
        (Some(step), Some(reason)) => format!("{} at {step}: {reason}", run.result.to_uppercase()),
        (Some(step), None) => format!("{} at {step}", run.result.to_uppercase()),
        (None, Some(reason)) => format!("{}: {reason}", run.result.to_uppercase()),
        (None, None) => run.result.to_uppercase(),
    };
    println!(
        "  station {:?} #{}  {} .. {}  {outcome}",
        run.station, run.station_sequence, run.started_at, run.finished_at
    );
    println!(
        "    serial {}  device id {}  operator {:?}  probe {:?}  profile {} ({})",
        run.serial.as_deref().unwrap_or("-"),
        run.device_id.as_deref().unwrap_or("-"),
        run.operator,
        run.probe,
        run.profile,
        run.profile_sha256
    );
    if let Some(work_order) = &run.work_order {
        println!("    work order {work_order}");
    }
    if let Some(fingerprint) = &run.device_certificate_fingerprint {
        println!(
            "    device certificate sha256 {fingerprint}  serial {}",
            run.device_certificate_serial.as_deref().unwrap_or("-")
        );
    }
    for image in &run.images {
        println!("    image {} sha256 {}", image.name, image.sha256);
    }
    for step in &run.steps {
        println!(
            "    {:>2} {:<12} {:<7} {:>7} ms  {}",
            step.ordinal, step.name, step.status, step.duration_ms, step.detail
        );
    }
    println!("    record_hash {}", run.record_hash);
}

fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.filter()?;
    let (source, stats) = match &args.central {
        Some(url) => {
            let config = CentralConfig::from_url(url).context("--central")?;
            let stats = stats_central(&config, &filter)
                .with_context(|| format!("reading the central ledger {}", config.target()))?;
            (format!("central {}", config.target()), stats)
        }
        None => {
            let ledger = args.database.open()?;
            let stats = ledger
                .stats_filtered(&filter)
                .with_context(|| format!("reading ledger {}", ledger.path().display()))?;
            (format!("ledger {}", ledger.path().display()), stats)
        }
    };
    let report = StatsReport { failures_by_category: failures_by_category(&stats.failures_by_step), stats };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_stats(&source, &report).context("writing the statistics to standard output")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `imprint log stats` output: the ledger's numbers plus the failures by category, which only
/// the station knows how to derive from a failing step (the ledger does not import it).
#[derive(serde::Serialize)]
struct StatsReport {
    #[serde(flatten)]
    stats: LedgerStats,
    failures_by_category: Vec<CategoryCount>,
}

#[derive(serde::Serialize)]
struct CategoryCount {
    /// The `error_code` of the events (docs/events.md).
    category: &'static str,
    runs: u64,
}

/// Failed runs per failure category, most frequent first (then in pipeline order). A failing
/// step no station step has counts as `internal`, as in the events' `error_code`.
fn failures_by_category(failures: &[FailingStepCount]) -> Vec<CategoryCount> {
    let mut counts: Vec<CategoryCount> = FailureCategory::ALL
        .iter()
        .map(|category| CategoryCount { category: category.code(), runs: 0 })
        .collect();
    for failure in failures {
        let category = failure
            .failing_step
            .as_deref()
            .and_then(FailureCategory::for_step_name)
            .unwrap_or(FailureCategory::Internal);
        if let Some(count) = counts.iter_mut().find(|count| count.category == category.code()) {
            count.runs += failure.runs;
        }
    }
    counts.retain(|count| count.runs > 0);
    counts.sort_by_key(|count| std::cmp::Reverse(count.runs));
    counts
}

fn print_stats(source: &str, report: &StatsReport) -> std::io::Result<()> {
    let stats = &report.stats;
    let mut out = String::new();
    let optional = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
    out.push_str(&format!("{source}\n"));
    let filter = &stats.filter;
    if filter.is_filtered() {
        let mut selected = Vec::new();
        if let Some(since) = &filter.since {
            selected.push(format!("started at or after {since}"));
        }
        if let Some(until) = &filter.until {
            selected.push(format!("started before {until}"));
        }
        if let Some(profile) = &filter.profile {
            selected.push(format!("profile {profile}"));
        }
        if let Some(result) = filter.result {
            selected.push(format!("result {}", result.as_str()));
        }
        out.push_str(&format!("runs selected       {}\n", selected.join(", ")));
    }
    out.push_str(&format!("units               {} (whole ledger)\n", stats.units));
    out.push_str(&format!("retired identities  {} (whole ledger)\n", stats.retired_identities));
    out.push_str(&format!(
        "runs                {} (pass {}, fail {}, aborted {}; {} ended before the chip was identified)\n",
        stats.runs, stats.runs_passed, stats.runs_failed, stats.runs_aborted, stats.runs_without_chip_uid
    ));
    out.push_str(&format!(
        "first-pass yield    {} ({} of {} chips passed their first run)\n",
        stats.first_pass_yield_percent.map_or_else(|| "-".to_owned(), |percent| format!("{percent:.1} %")),
        stats.chips_passed_first_time,
        stats.chips_tested
    ));
    out.push_str(&format!("median run time     {}\n", optional(stats.median_run_ms)));
    out.push_str(&format!(
        "\n{:<20} {:>8} {:>8} {:>8} {:>12}\n",
        "step", "passed", "failed", "skipped", "median"
    ));
    for step in &stats.steps {
        out.push_str(&format!(
            "{:<20} {:>8} {:>8} {:>8} {:>12}\n",
            step.name,
            step.passed,
            step.failed,
            step.skipped,
            optional(step.median_duration_ms)
        ));
    }
    if !stats.failures_by_step.is_empty() {
        out.push_str(&format!("\n{:<20} {:>8}\n", "failed at step", "runs"));
        for failure in &stats.failures_by_step {
            out.push_str(&format!(
                "{:<20} {:>8}\n",
                failure.failing_step.as_deref().unwrap_or("(none)"),
                failure.runs
            ));
        }
        out.push_str(&format!("\n{:<20} {:>8}\n", "failure category", "runs"));
        for count in &report.failures_by_category {
            out.push_str(&format!("{:<20} {:>8}\n", count.category, count.runs));
        }
    }
    std::io::stdout().write_all(out.as_bytes())
}
