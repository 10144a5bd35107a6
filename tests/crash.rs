//! Killing a running `imprint run` never loses an acknowledged unit: after SIGKILL at chosen
//! points and at random instants (`IMPRINT_KILL_CAMPAIGN_RUNS`, 200 by default), the ledger passes `PRAGMA integrity_check` (checked with the real `sqlite3`
//! tool), its hash chain verifies, and every unit the run reported as PASS is in it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{imprint, repo_root};

/// When to kill the station.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// After this many units were reported PASS.
    AfterPasses(usize),
    /// After this many events of any kind (lands mid-step, mid-transaction).
    AfterEvents(usize),
}

/// Runs `imprint run`, kills it at `point`, and checks the ledger. Returns the number of PASS
/// units that were reported before the kill.
fn kill_and_check(point: KillPoint, directory: &std::path::Path) -> usize {
    let db = directory.join("ledger.db");
    let mut child = imprint()
        .args(["run", "--json", "--sim", "4", "--count", "100000", "--sim-timing", "zero", "--profile"])
        .arg(repo_root().join("profiles/demo.toml"))
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start imprint run");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str(&line) else { break };
            if sender.send(event).is_err() {
                break;
            }
        }
    });
    let mut passed_serials = Vec::new();
    let mut events_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let event =
            receiver.recv_timeout(Duration::from_secs(30)).expect("imprint run stopped emitting events");
        events_seen += 1;
        if event["event"] == "unit-finished" && event["result"] == "pass" {
            passed_serials.push(event["serial"].as_str().expect("serial").to_string());
        }
        let reached = match point {
            KillPoint::AfterPasses(count) => passed_serials.len() >= count,
            KillPoint::AfterEvents(count) => events_seen >= count,
        };
        if reached || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("kill imprint run");
    let _ = child.wait();
    // Anything still in the pipe was written before the kill: acknowledged too.
    drop(reader.join());
    for event in receiver.try_iter() {
        if event["event"] == "unit-finished" && event["result"] == "pass" {
            passed_serials.push(event["serial"].as_str().expect("serial").to_string());
        }
    }

    let integrity =
        Command::new("sqlite3").arg(&db).arg("PRAGMA integrity_check;").output().expect("run sqlite3");
    assert_eq!(String::from_utf8_lossy(&integrity.stdout).trim(), "ok", "{point:?}: integrity_check");
    let verify = imprint().args(["log", "verify", "--db"]).arg(&db).output().expect("run log verify");
    assert!(verify.status.success(), "{point:?}: {}", String::from_utf8_lossy(&verify.stdout));
    if !passed_serials.is_empty() {
        let list = passed_serials.iter().map(|serial| format!("'{serial}'")).collect::<Vec<_>>().join(",");
        let query =
            format!("SELECT count(DISTINCT serial) FROM runs WHERE result = 'pass' AND serial IN ({list});");
        let found = Command::new("sqlite3").arg(&db).arg(query).output().expect("run sqlite3");
        let distinct: std::collections::HashSet<&String> = passed_serials.iter().collect();
        assert_eq!(
            String::from_utf8_lossy(&found.stdout).trim(),
            distinct.len().to_string(),
            "{point:?}: a unit reported PASS is missing from the ledger"
        );
    }
    passed_serials.len()
}

#[test]
fn killing_a_run_loses_no_acknowledged_unit() {
    let points = [
        KillPoint::AfterEvents(1),
        KillPoint::AfterEvents(40),
        KillPoint::AfterEvents(117),
        KillPoint::AfterEvents(333),
        KillPoint::AfterPasses(1),
        KillPoint::AfterPasses(5),
        KillPoint::AfterPasses(17),
        KillPoint::AfterPasses(40),
    ];
    for point in points {
        let directory = tempfile::tempdir().unwrap();
        kill_and_check(point, directory.path());
    }
}

#[test]
fn a_killed_station_resumes_on_the_same_ledger() {
    // Several kills in a row on one database: serials keep increasing, never repeat.
    let directory = tempfile::tempdir().unwrap();
    let mut total = 0;
    for count in [3, 7, 2] {
        total += kill_and_check(KillPoint::AfterPasses(count), directory.path());
    }
    let db = directory.path().join("ledger.db");
    let distinct = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(DISTINCT serial) = count(serial) FROM units;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&distinct.stdout).trim(), "1");
    assert!(total >= 12);
}

#[test]
fn killed_at_random_instants() {
    let kills: usize =
        std::env::var("IMPRINT_KILL_CAMPAIGN_RUNS").ok().and_then(|text| text.parse().ok()).unwrap_or(200);
    let mut seed = 0xC0FFEE_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Ten kills per database: each restart continues a ledger that was killed before.
    let mut directory = tempfile::tempdir().unwrap();
    let mut acknowledged = 0;
    for kill in 0..kills {
        if kill % 10 == 0 {
            directory = tempfile::tempdir().unwrap();
        }
        // Anywhere from the first event to about 20 units in: mid-step, mid-commit, between units.
        let point = KillPoint::AfterEvents(1 + (next() % 1_200) as usize);
        acknowledged += kill_and_check(point, directory.path());
    }
    println!(
        "{kills} kills at random instants; {acknowledged} acknowledged units, all found in their ledgers"
    );
}
