//! The fault campaign of issue 19: the special cases a factory hits, tried many times at random
//! instants or over a matrix, each run checked against the same invariants:
//!
//! - no ledger byte lost: the runs recorded before are all still there and the chain verifies
//!   (`imprint log verify`), `PRAGMA integrity_check` is ok (the real `sqlite3`);
//! - no path deleted or replaced that the command did not create;
//! - no unit touched before a refusal: a refused start emits no `unit-started`;
//! - no acknowledged PASS missing: every `unit-finished` PASS read is a PASS run in the ledger,
//!   and every unit that got an identity has a run record (none abandoned in flight);
//! - the exit code is 0 only when every requested unit passed.
//!
//! Sizes: `IMPRINT_SIGNAL_CAMPAIGN_RUNS` (default 30) runs with SIGTERM / SIGINT / two signals at
//! random instants, `IMPRINT_PIPE_CAMPAIGN_RUNS` (default 15) runs whose reader closes standard
//! output at a random instant; the output and database matrices are tried whole. Each test
//! prints its counts (tried / correct), which docs/reliability.md records.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{imprint, repo_root, text};

/// A small xorshift generator: the campaign is random but repeatable from its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit
    }
}

fn campaign_size(variable: &str, default: usize) -> usize {
    std::env::var(variable).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

fn sqlite(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3").arg(db).arg(sql).output().expect("run sqlite3");
    assert!(output.status.success(), "sqlite3 {sql}: {}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

/// What a ledger held: its run count and the record hash of every run.
fn recorded_runs(db: &Path) -> BTreeSet<String> {
    if !db.exists() {
        return BTreeSet::new();
    }
    sqlite(db, "SELECT hex(record_hash) FROM runs;").lines().map(str::to_owned).collect()
}

/// The ledger invariants after any run: integrity, chain, nothing earlier lost, no unit
/// abandoned with an identity and no run, every acknowledged PASS present.
fn check_ledger(
    db: &Path,
    before: &BTreeSet<String>,
    acknowledged: &[String],
    case: &str,
) -> BTreeSet<String> {
    assert_eq!(sqlite(db, "PRAGMA integrity_check;"), "ok", "{case}: integrity_check");
    let verify = imprint().args(["log", "verify", "--db"]).arg(db).output().expect("run log verify");
    assert!(verify.status.success(), "{case}: log verify: {}{}", text(&verify.stdout), text(&verify.stderr));
    let after = recorded_runs(db);
    assert!(before.is_subset(&after), "{case}: a run recorded before is gone");
    assert_eq!(
        sqlite(
            db,
            "SELECT count(*) FROM units u WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.chip_uid = u.chip_uid);"
        ),
        "0",
        "{case}: a unit got an identity and no run record"
    );
    if !acknowledged.is_empty() {
        let list = acknowledged.iter().map(|serial| format!("'{serial}'")).collect::<Vec<_>>().join(",");
        let found = sqlite(
            db,
            &format!("SELECT count(DISTINCT serial) FROM runs WHERE result = 'pass' AND serial IN ({list});"),
        );
        let distinct: BTreeSet<&String> = acknowledged.iter().collect();
        assert_eq!(
            found,
            distinct.len().to_string(),
            "{case}: a unit reported PASS is missing from the ledger"
        );
    }
    after
}

/// `imprint run --json` on four simulated slots at zero latency, `count` units.
fn line_command(db: &Path, count: u64, extra: &[String]) -> Command {
    let mut command = imprint();
    command
        .args([
            "run",
            "--json",
            "--sim",
            "4",
            "--sim-timing",
            "zero",
            "--operator",
            "campaign",
            "--create-ledger",
        ])
        .args(["--count", &count.to_string()])
        .args(extra)
        .arg("--profile")
        .arg(repo_root().join("profiles/demo.toml"))
        .arg("--db")
        .arg(db);
    command
}

/// One `imprint run --json` on the simulated line, read event by event.
struct Line {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Line {
    fn start(db: &Path, count: u64, extra: &[String]) -> Line {
        let mut child = line_command(db, count, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imprint run");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, events) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: serde_json::Value =
                    serde_json::from_str(&line).expect("every line is a JSON event");
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Line { child, events, reader: Some(reader) }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.expect("run kill").success() || self.has_exited(), "kill -{name} failed");
    }

    fn has_exited(&self) -> bool {
        Path::new(&format!("/proc/{}/stat", self.child.id()))
            .exists()
            .then(|| std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default())
            .is_none_or(|stat| stat.split_whitespace().nth(2) == Some("Z"))
    }

    /// Waits for the process and collects every event it wrote; returns (exit code, stderr).
    fn finish(mut self, seen: &mut Vec<serde_json::Value>) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "imprint run did not end within 120 s of its signal");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader thread");
        }
        seen.extend(self.events.try_iter());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        (status.code().unwrap_or(-1), stderr)
    }
}

fn is_event(event: &serde_json::Value, name: &str) -> bool {
    event["event"] == name
}

fn passed_serials(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|event| is_event(event, "unit-finished") && event["result"] == "pass")
        .map(|event| event["serial"].as_str().expect("a PASS has a serial").to_owned())
        .collect()
}

/// The stream invariants of a line that ended on its own or by a signal: it ends with
/// `line-finished`, every unit started was finished and reported, and the exit code matches
/// the results.
fn check_stream(events: &[serde_json::Value], count: u64, code: i32, stopped: bool, case: &str) {
    let last = events.last().unwrap_or_else(|| panic!("{case}: no event at all"));
    assert!(is_event(last, "line-finished"), "{case}: the stream does not end with line-finished: {last}");
    let started: BTreeSet<u64> = events
        .iter()
        .filter(|event| is_event(event, "unit-started"))
        .map(|event| event["unit"].as_u64().unwrap())
        .collect();
    let finished: BTreeMap<u64, &str> = events
        .iter()
        .filter(|event| is_event(event, "unit-finished"))
        .map(|event| (event["unit"].as_u64().unwrap(), event["result"].as_str().unwrap()))
        .collect();
    assert_eq!(started, finished.keys().copied().collect(), "{case}: a unit started and was never reported");
    let passed = finished.values().filter(|result| **result == "pass").count() as u64;
    let failed = finished.values().filter(|result| **result == "fail").count();
    let all_passed = passed == count;
    match code {
        0 => assert!(all_passed, "{case}: exit 0 with {passed} of {count} units passed"),
        1 => assert!(
            failed > 0 || events.iter().any(|event| is_event(event, "slot-error")),
            "{case}: exit 1 without a failure"
        ),
        3 => assert!(
            stopped && !all_passed && failed == 0,
            "{case}: exit 3 (stopped) but {passed}/{count} passed, {failed} failed"
        ),
        other => panic!("{case}: unexpected exit code {other}"),
    }
    if !all_passed {
        assert_ne!(code, 0, "{case}: exit 0 although not every requested unit passed");
    }
}

/// SIGTERM, SIGINT, or two of them (stop, then abort) at a random instant of a running line,
/// sometimes with a unit that fails on its own; ten runs per ledger, each continuing the last.
#[test]
fn signals_at_random_instants_lose_nothing_and_exit_truthfully() {
    let runs = campaign_size("IMPRINT_SIGNAL_CAMPAIGN_RUNS", 30);
    let mut random = Random(0x5EED_0019);
    let mut directory = tempfile::tempdir().unwrap();
    let mut before = BTreeSet::new();
    let (mut stopped_runs, mut aborted_units, mut acknowledged_total, mut completed_runs) = (0, 0, 0, 0);
    for run in 0..runs {
        if run % 10 == 0 {
            directory = tempfile::tempdir().unwrap();
            before = BTreeSet::new();
        }
        let db = directory.path().join("ledger.db");
        let count = 1 + random.below(40);
        let mut extra = Vec::new();
        if random.below(3) == 0 {
            extra.extend(["--sim-fault".to_owned(), format!("{}.2:probe-lost=erase", random.below(4))]);
        }
        let signals: &[&str] = match random.below(4) {
            0 => &["TERM"],
            1 => &["INT"],
            2 => &["TERM", "TERM"],
            _ => &["INT", "TERM"],
        };
        let wait_events = 1 + random.below(count * 12);
        let case =
            format!("run {run}: --count {count} {extra:?}, kill -{signals:?} after {wait_events} events");
        let line = Line::start(&db, count, &extra);
        let mut seen = Vec::new();
        while (seen.len() as u64) < wait_events {
            match line.events.recv_timeout(Duration::from_secs(60)) {
                Ok(event) => seen.push(event),
                Err(_) => break, // the line ended before the instant: the signal lands on a finished process
            }
        }
        for (index, signal) in signals.iter().enumerate() {
            if index > 0 {
                std::thread::sleep(Duration::from_millis(random.below(30)));
            }
            line.signal(signal);
        }
        let (code, stderr) = line.finish(&mut seen);
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        check_stream(&seen, count, code, true, &case);
        let acknowledged = passed_serials(&seen);
        before = check_ledger(&db, &before, &acknowledged, &case);
        acknowledged_total += acknowledged.len();
        aborted_units += seen
            .iter()
            .filter(|event| is_event(event, "unit-finished") && event["result"] == "aborted")
            .count();
        match code {
            3 => stopped_runs += 1,
            _ => completed_runs += 1,
        }
    }
    println!(
        "signal campaign: {runs} runs tried / {runs} correct ({stopped_runs} stopped early with exit 3, {completed_runs} ended on their own); \
         {acknowledged_total} acknowledged PASS all in their ledgers; {aborted_units} units aborted and recorded"
    );
}

/// The reader of `--json` closes standard output at a random instant (a fixture controller that
/// went away, `| head`): the line records its units in flight and exits 141 (or 0 when every
/// unit had already passed), never a panic.
#[test]
fn a_reader_that_goes_away_at_random_instants_loses_nothing() {
    let runs = campaign_size("IMPRINT_PIPE_CAMPAIGN_RUNS", 15);
    let mut random = Random(0xC105_ED00);
    let (mut closed_early, mut acknowledged_total) = (0, 0);
    for run in 0..runs {
        let directory = tempfile::tempdir().unwrap();
        let db = directory.path().join("ledger.db");
        let count = 5 + random.below(60);
        let close_after = 1 + random.below(count * 10);
        let case = format!("run {run}: --count {count}, reader closes after {close_after} events");
        let mut child = line_command(&db, count, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imprint run");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut seen = Vec::new();
        let mut line = String::new();
        while (seen.len() as u64) < close_after {
            line.clear();
            if reader.read_line(&mut line).expect("read") == 0 {
                break;
            }
            seen.push(serde_json::from_str::<serde_json::Value>(&line).expect("JSON event"));
        }
        drop(reader);
        let status = child.wait().expect("wait");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        let reached_end = seen.last().is_some_and(|event| is_event(event, "line-finished"));
        match status.code() {
            Some(141) => closed_early += 1,
            Some(0) => assert!(
                reached_end || passed_serials(&seen).len() as u64 == count || stderr.is_empty(),
                "{case}: exit 0"
            ),
            other => panic!("{case}: exit {other:?}: {stderr}"),
        }
        if status.code() == Some(0) {
            let passes = sqlite(&db, "SELECT count(*) FROM runs WHERE result = 'pass';");
            assert_eq!(passes, count.to_string(), "{case}: exit 0 although not every unit passed");
        }
        let acknowledged = passed_serials(&seen);
        acknowledged_total += acknowledged.len();
        check_ledger(&db, &BTreeSet::new(), &acknowledged, &case);
    }
    println!(
        "closed-stdout campaign: {runs} runs tried / {runs} correct ({closed_early} ended 141 with their units in flight recorded); \
         {acknowledged_total} acknowledged PASS all in their ledgers"
    );
}

/// A path's kind and content, to see that a command left a path it did not create alone.
#[derive(Debug, PartialEq)]
enum PathState {
    Missing,
    Regular(Vec<u8>),
    Directory,
    Fifo,
    Symlink(PathBuf),
}

fn path_state(path: &Path) -> PathState {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => PathState::Missing,
        Ok(metadata) if metadata.file_type().is_symlink() => {
            PathState::Symlink(std::fs::read_link(path).unwrap())
        }
        Ok(metadata) if metadata.is_dir() => PathState::Directory,
        Ok(metadata) if metadata.file_type().is_fifo() => PathState::Fifo,
        Ok(_) => PathState::Regular(std::fs::read(path).unwrap()),
    }
}

/// A ledger with a few runs, made by the station itself.
fn small_ledger(directory: &Path) -> PathBuf {
    let db = directory.join("ledger.db");
    let output = imprint()
        .args([
            "run",
            "--json",
            "--sim",
            "2",
            "--count",
            "6",
            "--sim-timing",
            "zero",
            "--create-ledger",
            "--profile",
        ])
        .arg(repo_root().join("profiles/demo.toml"))
        .arg("--db")
        .arg(&db)
        .output()
        .expect("run imprint");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    db
}

/// Every output-writing command against every kind of special target: the ledger and its
/// companions (by path, hard link, symlink), an existing file of someone else's, a directory, a
/// path under a missing directory, a FIFO with a reader, a symlink to a missing file. The ledger
/// keeps every byte, a path the command did not create keeps its kind and content (only `--force`
/// replaces a regular file), and a refusal is exit 2 naming the path.
#[test]
fn outputs_to_special_targets_never_delete_or_replace_what_the_command_did_not_create() {
    let directory = tempfile::tempdir().unwrap();
    let db = small_ledger(directory.path());
    let database = db.to_str().unwrap().to_owned();
    let ledger_before = (std::fs::read(&db).unwrap(), recorded_runs(&db));
    let scratch = directory.path().join("targets");
    std::fs::create_dir(&scratch).unwrap();
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("export jsonl", vec!["log", "export", "--db", &database]),
        ("export csv", vec!["log", "export", "--db", &database, "--format", "csv"]),
        ("export json", vec!["log", "export", "--db", &database, "--format", "json"]),
        ("certificates", vec!["log", "certificates", "--db", &database, "--all"]),
        ("backup", vec!["log", "backup", "--db", &database]),
    ]
    .into_iter()
    .map(|(name, arguments)| (name, arguments.into_iter().map(str::to_owned).collect()))
    .collect();
    // (target name, how to make it, the exit codes allowed, whether the command may create it)
    type Make = fn(&Path, &Path);
    let targets: Vec<(&str, Make, &[i32])> = vec![
        ("the ledger", |_, _| {}, &[2]),
        ("the ledger's -wal", |_, _| {}, &[2]),
        ("a hard link to the ledger", |db, target| std::fs::hard_link(db, target).unwrap(), &[2]),
        ("a symlink to the ledger", |db, target| std::os::unix::fs::symlink(db, target).unwrap(), &[2]),
        ("someone else's file", |_, target| std::fs::write(target, b"not yours").unwrap(), &[2]),
        ("a directory", |_, target| std::fs::create_dir(target).unwrap(), &[2]),
        ("a path under a missing directory", |_, _| {}, &[1, 2]),
        (
            "a symlink to a missing file",
            |_, target| std::os::unix::fs::symlink("gone/nowhere", target).unwrap(),
            &[1, 2],
        ),
        ("a new file", |_, _| {}, &[0]),
        (
            "a FIFO with a reader",
            |_, target| assert!(Command::new("mkfifo").arg(target).status().unwrap().success()),
            &[0, 2],
        ),
    ];
    let mut tried = 0;
    for (command_name, arguments) in &commands {
        for (index, (target_name, make, allowed)) in targets.iter().enumerate() {
            let case = format!("{command_name} -o {target_name}");
            let target = match *target_name {
                "the ledger" => db.clone(),
                "the ledger's -wal" => PathBuf::from(format!("{database}-wal")),
                "a path under a missing directory" => scratch.join(format!("missing-{index}/out")),
                _ => scratch.join(format!("{}-{index}", command_name.replace(' ', "-"))),
            };
            if !matches!(*target_name, "the ledger" | "the ledger's -wal") {
                let _ = std::fs::remove_file(&target);
                let _ = std::fs::remove_dir(&target);
                make(&db, &target);
            }
            let state_before = path_state(&target);
            let fifo_reader = (*target_name == "a FIFO with a reader").then(|| {
                let path = target.clone();
                std::thread::spawn(move || std::fs::read(path).unwrap())
            });
            let output = imprint().args(arguments).arg("-o").arg(&target).output().expect("run imprint");
            if let Some(reader) = fifo_reader {
                if output.status.code() != Some(0) {
                    // Nobody opened the FIFO for writing: release the reader.
                    let _ = std::fs::OpenOptions::new().write(true).open(&target);
                }
                reader.join().unwrap();
            }
            let code = output.status.code().unwrap_or(-1);
            assert!(allowed.contains(&code), "{case}: exit {code}: {}", text(&output.stderr));
            if code != 0 {
                let stderr = text(&output.stderr);
                assert!(
                    stderr.contains(&target.display().to_string())
                        || stderr.contains(target.file_name().unwrap().to_str().unwrap()),
                    "{case}: the error does not name the path: {stderr}"
                );
            }
            let state_after = path_state(&target);
            match *target_name {
                "a new file" => {
                    assert!(matches!(state_after, PathState::Regular(_)), "{case}: {state_after:?}")
                }
                // SQLite's own companion file, which opening the ledger may create: the ledger's
                // bytes are compared below.
                "the ledger's -wal" => {}
                _ => assert_eq!(state_after, state_before, "{case}: the target changed"),
            }
            if *target_name == "a path under a missing directory" {
                assert!(!target.parent().unwrap().exists(), "{case}: a directory was created");
            }
            let leftovers: Vec<_> = std::fs::read_dir(&scratch)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{case}: temporary files left: {leftovers:?}");
            tried += 1;
        }
    }
    assert_eq!(std::fs::read(&db).unwrap(), ledger_before.0, "a command changed the ledger file");
    check_ledger(&db, &ledger_before.1, &[], "after the output matrix");
    println!(
        "output matrix: {tried} command × target cases tried / {tried} correct; the ledger unchanged byte for byte"
    );
}

/// Every kind of wrong `--db` a station can be given, with and without `--json`: the line is
/// refused at start (exit 2, the path named; with `--json` a `line-refused` event), no unit is
/// touched, and the file keeps every byte (nothing created beside it).
#[test]
fn wrong_ledgers_are_refused_before_any_unit_and_left_as_they_were() {
    let directory = tempfile::tempdir().unwrap();
    let make_sqlite = |name: &str, sql: &str| {
        let path = directory.path().join(name);
        sqlite(&path, sql);
        path
    };
    let future = small_ledger(&directory.path().join("future").tap_mkdir());
    sqlite(&future, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 99;");
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "another application's database",
            make_sqlite(
                "inventory.db",
                "PRAGMA journal_mode = DELETE; CREATE TABLE parts (id INTEGER PRIMARY KEY);",
            ),
        ),
        ("a ledger of a future schema", future),
        ("garbage bytes", {
            let path = directory.path().join("garbage.db");
            std::fs::write(&path, vec![0x5Au8; 8192]).unwrap();
            path
        }),
        ("a text file", {
            let path = directory.path().join("notes.txt");
            std::fs::write(&path, "shift notes\n").unwrap();
            path
        }),
        ("an empty file", {
            let path = directory.path().join("empty.db");
            std::fs::write(&path, b"").unwrap();
            path
        }),
        ("a directory", directory.path().join("a-directory").tap_mkdir()),
        ("a missing file (no --create-ledger)", directory.path().join("typo/ledger.db")),
    ];
    let mut tried = 0;
    for (name, db) in &cases {
        for json in [false, true] {
            let case = format!("--db {name}{}", if json { " --json" } else { "" });
            let listing_before = listing(directory.path());
            let state_before = path_state(db);
            let mut command = imprint();
            command.args(["run", "--sim", "2", "--count", "2", "--sim-timing", "zero", "--profile"]);
            command.arg(repo_root().join("profiles/demo.toml")).arg("--db").arg(db);
            command.env_remove("IMPRINT_CREATE_LEDGER");
            if json {
                command.arg("--json");
            }
            let output = command.output().expect("run imprint");
            let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
            assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
            assert!(
                stderr.contains(&db.display().to_string()),
                "{case}: the error does not name the path: {stderr}"
            );
            assert!(
                !stdout.contains("unit-started") && !stdout.contains("step-started"),
                "{case}: a unit was touched: {stdout}"
            );
            if json {
                let event: serde_json::Value =
                    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{case}: {stdout}"));
                assert_eq!(event["event"], "line-refused", "{case}: {event}");
            }
            assert_eq!(path_state(db), state_before, "{case}: the file changed");
            assert_eq!(listing(directory.path()), listing_before, "{case}: a file was created or removed");
            tried += 1;
        }
    }
    println!(
        "wrong-ledger matrix: {tried} cases tried / {tried} correct; no unit started, every file as it was"
    );
}

/// The names under `directory`, recursively.
fn listing(directory: &Path) -> BTreeSet<PathBuf> {
    let mut names = BTreeSet::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                pending.push(path.clone());
            }
            names.insert(path);
        }
    }
    names
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl TapMkdir for PathBuf {
    /// Creates the directory and returns its path.
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
