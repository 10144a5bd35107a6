//! The JSON event stream as a fixture controller reads it (docs/events.md, issue 19): the
//! `line-started` event first (from the station's line session, so the window gets it too),
//! `locked` and `skipped_steps` on `unit-finished`, line-level events without a slot or unit,
//! a refused start as one `line-refused` object, a bounded queue to a reader that stalls, and
//! `--sim-fault SLOT.UNIT` counting the slot's own units.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::run_json_events as run_json;
use common::{demo_profile_text, imprint, repo_root, text, write_profile};
use imprint::station::session::SlotChoice;
use imprint::station::{CancelToken, EventKind, EventSink, LinePlan, LineSession, StationEvent};
use sha2::Digest;

fn demo_profile_path() -> String {
    repo_root().join("profiles/demo.toml").to_str().expect("utf-8 path").to_owned()
}

fn events_named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|event| event["event"] == name).collect()
}

/// The first event names the line: profile (name, path, SHA-256 of the file), station,
/// operator, ledger, slots with their fixtures, Imprint's version and the unit limit. Line-level
/// events carry no slot or unit; every event is schema 2.
#[test]
fn the_stream_opens_with_line_started_naming_the_line() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = demo_profile_path();
    let arguments =
        ["--profile", &profile, "--sim", "2", "--count", "3", "--station", "line1-a", "--operator", "op-7"];
    let (code, events) = run_json(&arguments, &db);
    assert_eq!(code, 0, "{events:?}");
    let started = &events[0];
    assert_eq!(started["event"], "line-started", "{started}");
    assert_eq!(events_named(&events, "line-started").len(), 1);
    let sha256 = hex::encode(sha2::Sha256::digest(std::fs::read(&profile).expect("read profile")));
    assert_eq!(started["profile"]["sha256"], sha256.as_str(), "{started}");
    assert_eq!(started["profile"]["path"], profile.as_str(), "{started}");
    assert_eq!(started["profile"]["name"], "demo-sensor", "{started}");
    assert_eq!(started["station"], "line1-a");
    assert_eq!(started["operator"], "op-7");
    assert_eq!(started["ledger"], db.to_str().expect("utf-8"));
    assert_eq!(
        started["slots"],
        serde_json::json!([{ "index": 0, "fixture": "sim-0" }, { "index": 1, "fixture": "sim-1" }])
    );
    assert_eq!(started["imprint_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(started["unit_limit"], 3);
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "line-finished");
    assert_eq!(finished["progress_events_dropped"], 0, "{finished}");
    for event in [started, finished] {
        assert!(event.get("slot").is_none() && event.get("unit").is_none(), "{event}");
    }
    for event in &events {
        assert_eq!(event["schema"], 2, "{event}");
        if event["event"].as_str().is_some_and(|name| name.starts_with("unit-") || name.starts_with("step-"))
        {
            assert!(event["slot"].is_u64() && event["unit"].is_u64(), "{event}");
        }
    }
}

#[derive(Default)]
struct RecordedEvents(Mutex<Vec<StationEvent>>);

impl EventSink for RecordedEvents {
    fn emit(&self, event: StationEvent) {
        self.0.lock().expect("events").push(event);
    }
}

/// `line-started` comes from the station's line session, not from the command line's
/// renderer: a front end driving `LineSession` (the window does) gets it first too.
#[test]
fn the_line_session_sends_line_started_to_every_front_end() {
    let directory = tempfile::tempdir().expect("temp dir");
    let plan = LinePlan {
        profile_path: repo_root().join("profiles/demo.toml"),
        slots: SlotChoice { probes: Vec::new(), slot_count: Some(1) },
        station_name: "station-s".to_owned(),
        operator: "op".to_owned(),
        ledger_path: directory.path().join("ledger.db"),
        create_ledger: true,
        unit_limit: Some(1),
        sim_timing_zero: true,
        ..LinePlan::default()
    };
    let session = LineSession::open(plan).expect("open line");
    let events = Arc::new(RecordedEvents::default());
    let report = session.run(events.clone(), CancelToken::default());
    assert_eq!(report.summary.passed(), 1);
    let events = events.0.lock().expect("events");
    let EventKind::LineStarted(started) = &events[0].kind else {
        panic!("the first event is not line-started: {:?}", events[0]);
    };
    assert_eq!((started.station.as_str(), started.unit_limit), ("station-s", Some(1)));
    assert_eq!((events[0].slot, events[0].unit), (None, None));
    assert!(matches!(events.last().map(|event| &event.kind), Some(EventKind::LineFinished { .. })));
}

/// A profile that skips the lock passes, but `unit-finished` says the unit is not locked and
/// which steps were skipped; the demo profile's units are locked with nothing skipped.
#[test]
fn unit_finished_says_whether_the_unit_is_locked_and_what_was_skipped() {
    let directory = tempfile::tempdir().expect("temp dir");
    let unlocked = demo_profile_text() + "\n[steps]\nskip = [\"lock\", \"self-test\"]\n";
    let unlocked = write_profile(directory.path(), "unlocked.toml", &unlocked);
    let demo = demo_profile_path();
    for (profile, expected_locked, expected_skipped) in [
        (demo.as_str(), true, serde_json::json!([])),
        (
            unlocked.to_str().expect("utf-8"),
            false,
            serde_json::json!(["self-test", "negative-self-test", "lock", "verify-lock"]),
        ),
    ] {
        let db = directory.path().join(format!("ledger-{expected_locked}.db"));
        let (code, events) = run_json(&["--profile", profile, "--count", "2"], &db);
        assert_eq!(code, 0, "{profile}: {events:?}");
        let finished = events_named(&events, "unit-finished");
        assert_eq!(finished.len(), 2);
        for unit in finished {
            assert_eq!(unit["result"], "pass", "{unit}");
            assert_eq!(unit["locked"], expected_locked, "{profile}: {unit}");
            assert_eq!(unit["skipped_steps"], expected_skipped, "{profile}: {unit}");
        }
    }
}

/// A failed unit that never reached the lock is not locked either.
#[test]
fn a_unit_that_failed_before_the_lock_is_not_locked() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let profile = demo_profile_path();
    let (code, events) =
        run_json(&["--profile", &profile, "--count", "1", "--sim-fault", "0.1:probe-lost=erase"], &db);
    assert_eq!(code, 1);
    let finished = events_named(&events, "unit-finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["result"], "fail");
    assert_eq!(finished[0]["locked"], false);
    assert_eq!(finished[0]["skipped_steps"], serde_json::json!([]));
}

/// A start refused with `--json` prints exactly one `line-refused` object on stdout (with the
/// refusal's code and the message stderr has), exits 2 and touches nothing; without `--json`
/// stdout stays empty.
#[test]
fn a_refused_start_prints_one_line_refused_object() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = demo_profile_path();
    let broken = write_profile(directory.path(), "broken.toml", "[product]\nname = 1\n");
    let missing_db = directory.path().join("no-such-dir").join("ledgr.db");
    let db = directory.path().join("ledger.db");
    let cases: [(&str, Vec<&str>, &Path); 7] = [
        ("profile", vec!["--profile", "no-such-profile.toml"], &db),
        ("profile", vec!["--profile", broken.to_str().expect("utf-8")], &db),
        ("ledger", vec!["--profile", &profile], &missing_db),
        ("fixture", vec!["--profile", &profile, "--probe", "carrier-pigeon"], &db),
        ("plan", vec!["--profile", &profile, "--sim-fault", "9.1:uid-read-fails"], &db),
        ("usage", vec!["--profile", &profile, "--sim-fault", "0.1:melt"], &db),
        ("usage", vec!["--profile", &profile, "--count", "0"], &db),
    ];
    for (expected_code, arguments, ledger) in cases {
        let output = imprint()
            .env_remove("IMPRINT_CREATE_LEDGER")
            .args(["run", "--json", "--sim-timing", "zero", "--db"])
            .arg(ledger)
            .args(&arguments)
            .output()
            .expect("run imprint");
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {}", text(&output.stderr));
        let stdout = text(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{arguments:?}: {stdout}");
        let refused: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(refused["event"], "line-refused", "{refused}");
        assert_eq!(refused["schema"], 2, "{refused}");
        assert_eq!(refused["error_code"], expected_code, "{arguments:?}: {refused}");
        let reason = refused["reason"].as_str().expect("reason");
        assert!(
            !reason.is_empty() && text(&output.stderr).contains(reason),
            "{reason} / {}",
            text(&output.stderr)
        );
        assert!(refused.get("slot").is_none() && refused.get("unit").is_none(), "{refused}");
        assert!(!db.exists() && !missing_db.exists(), "{arguments:?} created a ledger");

        let plain = imprint()
            .env_remove("IMPRINT_CREATE_LEDGER")
            .args(["run", "--sim-timing", "zero", "--db"])
            .arg(ledger)
            .args(&arguments)
            .output()
            .expect("run imprint");
        assert_eq!(plain.status.code(), Some(2));
        assert!(plain.stdout.is_empty(), "{arguments:?}: {}", text(&plain.stdout));
    }
}

/// The resident set of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc status")
}

/// Runs recorded in the ledger so far (read beside the running line: the ledger is in WAL mode).
fn runs_recorded(db: &Path) -> u64 {
    let output =
        common::run_checked(std::process::Command::new("sqlite3").arg(db).arg("SELECT count(*) FROM runs"));
    text(&output.stdout).trim().parse().expect("a count")
}

/// A reader that stops reading for seconds while a fast multi-slot line runs: the slots are held
/// back (the ledger stops gaining runs once the queue is full), the station's memory stays
/// bounded, and once the reader resumes every unit's `unit-finished` arrives, then
/// `line-finished` with the count of progress events dropped.
#[test]
fn a_stalled_reader_keeps_memory_bounded_and_loses_no_unit() {
    const UNITS: u64 = 200;
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("ledger.db");
    let mut child = imprint()
        .args(["run", "--json", "--sim-timing", "zero", "--sim", "4", "--operator", "op", "--profile"])
        .arg(demo_profile_path())
        .arg("--count")
        .arg(UNITS.to_string())
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start imprint run");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    // Read the first line, so the line is running, then stop reading.
    let mut first = String::new();
    reader.read_line(&mut first).expect("read the first event");
    // Long enough for the pipe and the queue to fill; from then on nothing may grow.
    std::thread::sleep(Duration::from_secs(5));
    let resident_early_kib = resident_kib(child.id());
    let runs_early = runs_recorded(&db);
    let mut resident_peak_kib = resident_early_kib;
    let stall_started = Instant::now();
    while stall_started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
        resident_peak_kib = resident_peak_kib.max(resident_kib(child.id()));
    }
    let runs_late = runs_recorded(&db);
    let growth_kib = resident_peak_kib.saturating_sub(resident_early_kib);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read the rest");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(runs_early < UNITS, "the line finished before the test could stall it ({runs_early} runs)");
    assert_eq!(runs_late, runs_early, "the slots went on while the reader stalled: the queue is not bounded");
    assert!(
        growth_kib < 2 * 1024,
        "resident memory grew by {growth_kib} KiB while the reader stalled ({resident_early_kib} KiB at first)"
    );
    let events: Vec<serde_json::Value> = std::iter::once(first.as_str())
        .chain(rest.lines())
        .map(|line| serde_json::from_str(line).expect("JSON event"))
        .collect();
    let finished = events_named(&events, "unit-finished");
    assert_eq!(finished.len() as u64, UNITS, "every unit-finished must arrive after the stall");
    assert!(finished.iter().all(|event| event["result"] == "pass"));
    let line_finished = events.last().expect("events");
    assert_eq!(line_finished["event"], "line-finished");
    assert_eq!(line_finished["passed"], UNITS);
    let dropped = line_finished["progress_events_dropped"].as_u64().expect("progress_events_dropped");
    assert!(dropped > 0, "a stalled reader must have cost some progress events: {line_finished}");
    // Every unit still has every step's outcome.
    let step_outcomes = events
        .iter()
        .filter(|event| event["event"] == "step-finished" || event["event"] == "step-skipped")
        .count() as u64;
    assert_eq!(step_outcomes, UNITS * 15);
}

/// `--sim-fault SLOT.UNIT` counts the units of that slot (docs/events.md): `1.3` fails the third
/// `unit-started` on slot 1, whatever line-wide `unit` number the stream gives it.
#[test]
fn sim_fault_unit_counts_the_units_of_its_slot() {
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = demo_profile_path();
    // 24 units over 3 slots: each slot surely takes the few units named here, however the
    // slots' timing shares out the rest.
    for (slot, nth) in [(1_u64, 3_usize), (0, 2), (2, 1)] {
        let db = directory.path().join(format!("ledger-{slot}-{nth}.db"));
        let fault = format!("{slot}.{nth}:uid-read-fails");
        let (code, events) =
            run_json(&["--profile", &profile, "--sim", "3", "--count", "24", "--sim-fault", &fault], &db);
        assert_eq!(code, 1, "{fault}");
        let failed: Vec<_> = events_named(&events, "unit-finished")
            .into_iter()
            .filter(|event| event["result"] == "fail")
            .collect();
        assert_eq!(failed.len(), 1, "{fault}: {failed:?}");
        assert_eq!(failed[0]["slot"], slot, "{fault}");
        assert_eq!(failed[0]["failing_step"], "identify", "{fault}");
        let slot_units: Vec<u64> = events_named(&events, "unit-started")
            .into_iter()
            .filter(|event| event["slot"] == slot)
            .map(|event| event["unit"].as_u64().expect("unit"))
            .collect();
        assert_eq!(
            Some(&failed[0]["unit"].as_u64().expect("unit")),
            slot_units.get(nth - 1),
            "{fault}: {slot_units:?}"
        );
    }
}
