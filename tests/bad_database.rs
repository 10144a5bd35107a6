//! Bad ledgers: a corrupt database file, a database another process holds locked, and a full
//! disk. Each gives a clear error naming the database, and nothing acknowledged is ever lost.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{imprint, repo_root};

fn run(db: &Path, count: &str) -> (i32, String, String) {
    let output = imprint()
        .args(["run", "--json", "--sim-timing", "zero", "--sim", "2", "--count", count, "--profile"])
        .arg(repo_root().join("profiles/demo.toml"))
        .arg("--db")
        .arg(db)
        .output()
        .expect("run imprint");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sqlite(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3").arg(db).arg(sql).output().expect("run sqlite3");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn a_corrupt_database_is_refused_before_any_unit_starts() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let garbage: Vec<u8> = (0..8192u32).map(|index| (index * 7 + 3) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let (code, stdout, stderr) = run(&db, "2");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "the error names the database: {stderr}");
    assert!(!stdout.contains("unit-started"), "a unit started against a corrupt ledger");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the corrupt file was modified");
}

#[test]
fn a_database_locked_by_another_process_is_refused_and_loses_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let (code, ..) = run(&db, "3");
    assert_eq!(code, 0);
    // Another process takes the write lock and keeps it.
    let mut holder = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sqlite3");
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, "BEGIN EXCLUSIVE; SELECT count(*) FROM runs;").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, stdout, stderr) = run(&db, "2");
    drop(stdin);
    let _ = holder.wait();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ledger.db") && stderr.contains("locked"), "{stderr}");
    assert!(!stdout.contains("unit-started"));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM runs;"), "3");
    assert_eq!(sqlite(&db, "PRAGMA integrity_check;"), "ok");
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let directory = tempfile::tempdir().unwrap().keep();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&directory)
            .status()
            .expect("run mount (the tests run as root, as CI does)");
        assert!(status.success(), "mounting a {size} tmpfs failed");
        SmallDisk(directory)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_disk_too_full_to_hold_the_ledger_is_refused() {
    let disk = SmallDisk::mount("4k");
    let db = disk.0.join("ledger.db");
    let (code, stdout, stderr) = run(&db, "2");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(!stdout.contains("unit-started"));
}

#[test]
fn a_disk_that_fills_mid_run_fails_units_but_keeps_every_acknowledged_one() {
    let disk = SmallDisk::mount("400k");
    let db = disk.0.join("ledger.db");
    let (code, stdout, _) = run(&db, "400");
    assert_eq!(code, 1, "the disk should have filled up");
    let mut passed = Vec::new();
    let mut failed_reasons = Vec::new();
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["event"] == "unit-finished" {
            match event["result"].as_str().unwrap() {
                "pass" => passed.push(event["serial"].as_str().unwrap().to_string()),
                _ => failed_reasons.push(event["reason"].as_str().unwrap_or_default().to_string()),
            }
        }
    }
    assert!(!passed.is_empty() && !failed_reasons.is_empty());
    assert!(failed_reasons.iter().any(|reason| reason.contains("full")), "{failed_reasons:?}");
    assert_eq!(sqlite(&db, "PRAGMA integrity_check;"), "ok");
    let verify = imprint().args(["log", "verify", "--db"]).arg(&db).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let list = passed.iter().map(|serial| format!("'{serial}'")).collect::<Vec<_>>().join(",");
    let found =
        sqlite(&db, &format!("SELECT count(*) FROM runs WHERE result = 'pass' AND serial IN ({list});"));
    assert_eq!(found, passed.len().to_string(), "an acknowledged unit is missing");
}

/// Issue 19: another application's database, a ledger of a future schema and a read-only
/// ledger stop the line at start (exit 2, before any unit), and a refused file keeps every byte.
#[test]
fn a_foreign_or_future_database_is_refused_before_any_unit_and_untouched() {
    let directory = tempfile::tempdir().unwrap();
    let foreign = directory.path().join("inventory.db");
    sqlite(&foreign, "PRAGMA journal_mode = DELETE; CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT);");
    let future = directory.path().join("future.db");
    assert_eq!(run(&future, "1").0, 0);
    sqlite(&future, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 99;");
    for (db, expected) in [(&foreign, "not an imprint ledger"), (&future, "schema version 99")] {
        let before = std::fs::read(db).unwrap();
        let (code, stdout, stderr) = run(db, "2");
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected) && stderr.contains(&db.display().to_string()), "{stderr}");
        assert!(!stdout.contains("unit-started"), "a unit started");
        assert_eq!(std::fs::read(db).unwrap(), before, "{} was modified", db.display());
    }
}

#[test]
fn a_read_only_ledger_is_refused_before_any_unit() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    assert_eq!(run(&db, "1").0, 0);
    // As root, permissions do not stop a write: make the file read-only with a read-only bind
    // mount in a private mount namespace (nothing outside the test sees it).
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$0" run --json --sim-timing zero --sim 2 --count 2 --profile "$2" --db "$1""#)
        .arg(common::imprint_binary())
        .arg(&db)
        .arg(repo_root().join("profiles/demo.toml"))
        .env_remove("IMPRINT_DB")
        .env_remove("IMPRINT_LEDGER")
        .output()
        .expect("unshare (util-linux; the tests run as root, as CI does)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("cannot be written") && stderr.contains("ledger.db"), "{stderr}");
    assert!(!stdout.contains("unit-started"), "a unit started against a read-only ledger");
}

#[test]
fn after_a_run_a_copy_of_the_database_file_alone_holds_every_run() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("ledger.db");
    let (code, ..) = run(&db, "6");
    assert_eq!(code, 0);
    let copies = directory.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    let copy = copies.join("ledger.db");
    std::fs::copy(&db, &copy).unwrap();
    assert_eq!(sqlite(&copy, "SELECT count(*) FROM runs;"), "6");
    let verify = imprint().args(["log", "verify", "--db"]).arg(&copy).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
