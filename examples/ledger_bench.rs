//! Ledger benchmark: builds a ledger of many runs through the public API, then exports and
//! verifies it, printing times, throughput and peak memory (VmHWM), and measures how many
//! single-run commits per second the disk allows with `synchronous = FULL`.
//!
//! It measures; it asserts nothing except that the chain it built verifies.
//!
//! ```text
//! cargo run --release --example ledger_bench -- --runs 1000000
//! ```
//!
//! `--keep --dir DIR` keeps the ledger; a later `--dir DIR --reuse` measures its exports again
//! without rebuilding it, and `--csv-only` times only the CSV export beside its peer (for a
//! profiler: `perf record -g -- ledger_bench --dir DIR --reuse --csv-only`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use imprint::ledger::{
    ExportFilter, ExportFormat, Ledger, RunRecord, RunResult, StepRecord, StepStatus, VerifyOptions,
    verify_export_file,
};

struct Options {
    runs: u64,
    batch_size: usize,
    single_commits: u64,
    directory: Option<PathBuf>,
    keep: bool,
    /// Measure the ledger already in `directory` instead of building one.
    reuse: bool,
    /// Time only the CSV export and its peer.
    csv_only: bool,
    /// How many times to time the CSV export and its peer, alternating (the machine's load
    /// changes; the median ratio is printed).
    repeat: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        runs: 1_000_000,
        batch_size: 10_000,
        single_commits: 2_000,
        directory: None,
        keep: false,
        reuse: false,
        csv_only: false,
        repeat: 1,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = |name: &str| arguments.next().ok_or_else(|| format!("{name} needs a value"));
        match argument.as_str() {
            "--runs" => options.runs = value("--runs")?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--batch" => {
                options.batch_size = value("--batch")?.parse().map_err(|e| format!("--batch: {e}"))?
            }
            "--commits" => {
                options.single_commits = value("--commits")?.parse().map_err(|e| format!("--commits: {e}"))?
            }
            "--dir" => options.directory = Some(PathBuf::from(value("--dir")?)),
            "--keep" => options.keep = true,
            "--reuse" => options.reuse = true,
            "--csv-only" => options.csv_only = true,
            "--repeat" => {
                options.repeat = value("--repeat")?.parse().map_err(|e| format!("--repeat: {e}"))?;
                if options.repeat == 0 {
                    return Err("--repeat: expected at least 1".to_owned());
                }
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: ledger_bench [--runs N] [--batch N] [--commits N] [--dir DIR] [--keep] [--reuse] [--csv-only] [--repeat N]"
                ));
            }
        }
    }
    Ok(options)
}

/// Peak resident set size of this process so far, from /proc/self/status (Linux).
fn peak_rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or_else(|| "unknown".to_owned(), |kib| format!("{:.1} MiB", kib / 1024.0))
}

const STEP_NAMES: [&str; 7] = ["connect", "identify", "flash", "inject", "self-test", "lock", "record"];

/// A plausible run: seven steps with small details; one in twenty fails at flash.
fn sample_run(index: u64) -> RunRecord {
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + index * 7);
    let failed = index % 20 == 19;
    let steps = STEP_NAMES
        .iter()
        .enumerate()
        .map(|(ordinal, name)| {
            let status = match (failed, ordinal) {
                (true, 2) => StepStatus::Failed,
                (true, 3..) => StepStatus::Skipped,
                _ => StepStatus::Passed,
            };
            StepRecord {
                name: (*name).to_owned(),
                status,
                started_at: started_at + Duration::from_millis(ordinal as u64 * 700),
                duration_ms: 100 + (index * 37 + ordinal as u64 * 11) % 900,
                detail: serde_json::json!({"bytes": 262_144, "attempt": 1, "rate_kib_s": 812.5}),
            }
        })
        .collect();
    RunRecord {
        station: "bench-station".to_owned(),
        operator: "bench".to_owned(),
        probe: format!("sim:{}", index % 4),
        profile_name: "demo".to_owned(),
        profile_sha256: "ab".repeat(32),
        image_sha256s: vec![
            ("bootloader".to_owned(), "cd".repeat(32)),
            ("application".to_owned(), "ef".repeat(32)),
        ],
        chip_uid_hex: Some(format!("{:024x}", 0x5eed_0000_0000u64 + index)),
        serial: Some(format!("SN{index:08}")),
        device_id: Some(uuid::Uuid::from_u128(0x1000 + u128::from(index))),
        started_at,
        finished_at: started_at + Duration::from_millis(4_900),
        result: if failed { RunResult::Fail } else { RunResult::Pass },
        failing_step: failed.then(|| "flash".to_owned()),
        reason: failed.then(|| "verify mismatch at 0x08004000".to_owned()),
        steps,
    }
}

fn file_size_mib(path: &std::path::Path) -> f64 {
    let main = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let wal = std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    (main + wal) as f64 / (1024.0 * 1024.0)
}

/// What the sqlite3 shell dumps as the CSV peer: the rows `imprint log export --format csv`
/// writes (each run's columns, its profile, and its steps as one JSON array), in chain order.
const SQLITE3_CSV_QUERY: &str = "SELECT 'run', s.name, r.station_sequence, r.id, r.started_at, r.finished_at, r.result, \
    r.failing_step, r.reason, o.name, r.probe, p.name, p.profile_sha256, p.images, r.chip_uid, r.serial, r.device_id, \
    (SELECT json_group_array(json_object('detail', json(st.detail), 'duration_ms', st.duration_ms, 'name', st.name, \
        'ordinal', st.ordinal, 'started_at', st.started_at, 'status', st.status)) \
     FROM (SELECT * FROM steps WHERE run_id = r.id ORDER BY ordinal) st), \
    hex(r.prev_hash), hex(r.record_hash), r.shipped_at \
    FROM runs r JOIN stations s ON s.id = r.station_id JOIN operators o ON o.id = r.operator_id \
    JOIN profiles p ON p.id = r.profile_id ORDER BY r.station_id, r.station_sequence";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Builds the ledger: batched runs, then single-run commits; returns the number of runs.
fn build(ledger: &Ledger, options: &Options, database: &std::path::Path) -> BenchResult<u64> {
    let started = Instant::now();
    let mut next_index = 0u64;
    while next_index < options.runs {
        let end = (next_index + options.batch_size as u64).min(options.runs);
        let batch: Vec<RunRecord> = (next_index..end).map(sample_run).collect();
        ledger.record_runs(&batch)?;
        next_index = end;
    }
    let elapsed = started.elapsed();
    println!(
        "build:   {} runs in {:.1} s ({:.0} runs/s, batched transactions); database {:.0} MiB; peak RSS {}",
        options.runs,
        elapsed.as_secs_f64(),
        options.runs as f64 / elapsed.as_secs_f64(),
        file_size_mib(database),
        peak_rss_mib()
    );

    let started = Instant::now();
    for index in 0..options.single_commits {
        ledger.record_run(&sample_run(options.runs + index))?;
    }
    let elapsed = started.elapsed();
    println!(
        "commits: {} single-run transactions in {:.2} s: {:.0} commits/s with synchronous=FULL ({:.2} ms each); peak RSS {}",
        options.single_commits,
        elapsed.as_secs_f64(),
        options.single_commits as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / options.single_commits.max(1) as f64,
        peak_rss_mib()
    );
    Ok(options.runs + options.single_commits)
}

/// CSV beside its peer: the sqlite3 shell dumping the same rows (every run with its steps as a
/// JSON array, in chain order) as CSV, timed in the same run on the same file, alternately
/// `repeat` times; returns the median ratio imprint / sqlite3.
fn csv_beside_peer(
    ledger: &Ledger,
    directory: &std::path::Path,
    database: &std::path::Path,
    total_runs: u64,
    repeat: usize,
) -> BenchResult<f64> {
    ledger.checkpoint()?;
    let csv_path = directory.join("bench.csv");
    let peer_path = directory.join("bench-sqlite3.csv");
    let mut ratios = Vec::new();
    for attempt in 1..=repeat {
        let started = Instant::now();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
        ledger.export(ExportFormat::Csv, &ExportFilter::default(), &mut file)?;
        drop(file);
        let csv_elapsed = started.elapsed();
        println!(
            "export:  {} runs to CSV in {:.2} s, {:.0} MiB; peak RSS {}",
            total_runs,
            csv_elapsed.as_secs_f64(),
            file_size_mib(&csv_path),
            peak_rss_mib()
        );
        let started = Instant::now();
        let peer = std::process::Command::new("sqlite3")
            .arg("-csv")
            .arg("-readonly")
            .arg(database)
            .arg(SQLITE3_CSV_QUERY)
            .stdout(std::fs::File::create(&peer_path)?)
            .status()?;
        let peer_elapsed = started.elapsed();
        if !peer.success() {
            return Err("sqlite3 -csv failed (is the sqlite3 shell installed?)".into());
        }
        let ratio = csv_elapsed.as_secs_f64() / peer_elapsed.as_secs_f64();
        println!(
            "peer:    sqlite3 -csv, the same runs with their steps in {:.2} s, {:.0} MiB; imprint CSV / sqlite3 = {ratio:.2} (attempt {attempt} of {repeat})",
            peer_elapsed.as_secs_f64(),
            file_size_mib(&peer_path),
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[(ratios.len() - 1) / 2];
    println!(
        "ratio:   imprint CSV / sqlite3 -csv: median {median:.2} of {repeat} (min {:.2}, max {:.2})",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(median)
}

fn main() -> BenchResult<()> {
    let options = parse_options()?;
    let directory = options
        .directory
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("imprint-ledger-bench-{}", std::process::id())));
    std::fs::create_dir_all(&directory)?;
    let database = directory.join("bench.db");
    if !options.reuse {
        let _ = std::fs::remove_file(&database);
    }
    println!(
        "ledger_bench: {} runs (batches of {}), {} single-run commits, in {}",
        options.runs,
        options.batch_size,
        options.single_commits,
        directory.display()
    );

    let ledger = Ledger::open(&database)?;
    let total_runs = if options.reuse {
        let runs = ledger.stats()?.runs;
        println!("reuse:   the ledger in {} holds {runs} runs", database.display());
        runs
    } else {
        build(&ledger, &options, &database)?
    };

    let export_path = directory.join("bench.jsonl");
    if !options.csv_only {
        let started = Instant::now();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&export_path)?);
        let summary = ledger.export(ExportFormat::Jsonl, &ExportFilter::default(), &mut file)?;
        drop(file);
        let elapsed = started.elapsed();
        println!(
            "export:  {} runs to JSON lines in {:.1} s ({:.0} runs/s), {:.0} MiB; peak RSS {}",
            summary.record_count,
            elapsed.as_secs_f64(),
            summary.record_count as f64 / elapsed.as_secs_f64(),
            file_size_mib(&export_path),
            peak_rss_mib()
        );
    }

    csv_beside_peer(&ledger, &directory, &database, total_runs, options.repeat)?;

    let mut intact = true;
    if !options.csv_only {
        let started = Instant::now();
        let report = ledger.verify(&VerifyOptions::default())?;
        let elapsed = started.elapsed();
        println!(
            "verify:  database, {} runs in {:.1} s ({:.0} runs/s), intact: {}; peak RSS {}",
            report.records_checked,
            elapsed.as_secs_f64(),
            report.records_checked as f64 / elapsed.as_secs_f64(),
            report.is_intact(),
            peak_rss_mib()
        );

        let started = Instant::now();
        let file_report = verify_export_file(&export_path, &VerifyOptions::default())?;
        let elapsed = started.elapsed();
        println!(
            "verify:  JSON lines export, {} runs in {:.1} s ({:.0} runs/s), intact: {}; peak RSS {}",
            file_report.records_checked,
            elapsed.as_secs_f64(),
            file_report.records_checked as f64 / elapsed.as_secs_f64(),
            file_report.is_intact(),
            peak_rss_mib()
        );
        intact = report.is_intact() && file_report.is_intact() && report.records_checked == total_runs;
    }

    if !options.keep {
        drop(ledger);
        std::fs::remove_dir_all(&directory)?;
    }
    if !intact {
        return Err("the benchmark ledger did not verify".into());
    }
    Ok(())
}
