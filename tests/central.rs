//! The central PostgreSQL ledger against a real PostgreSQL server (Debian `postgresql`, which
//! scripts/test installs): each test starts a private server with `initdb` + `pg_ctl` in a
//! temporary directory on a free loopback port (as the `postgres` user when running as root,
//! since PostgreSQL refuses to run as root), drives real `imprint run` processes against it,
//! and checks the outcome with outside tools: `psql` for the central rows (including
//! PostgreSQL's own `sha256()` re-hashing every stored record), `sqlite3` for the local
//! ledgers, `openssl` for the TLS certificates. The operator window (`imprint gui`) is checked
//! the same way, driven headless through egui_kittest. The server is stopped and removed by a Drop
//! guard, also when a test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{imprint, repo_root, run_checked};

const ROLE: &str = "imprint";
const PASSWORD: &str = "imprint-test-secret";

/// How the private server accepts TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerTls {
    /// `ssl = off`; password (SCRAM) over plain TCP.
    Off,
    /// `ssl = on` with an openssl-made certificate, and only `hostssl` lines in pg_hba.conf.
    Required,
}

/// A PostgreSQL server private to one test.
struct PostgresServer {
    directory: tempfile::TempDir,
    binaries: PathBuf,
    port: u16,
    /// Run server programs as the `postgres` user (we are root).
    as_postgres_user: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|output| output.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// The newest /usr/lib/postgresql/<version>/bin holding initdb.
fn postgres_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql missing): scripts/test installs Debian postgresql")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb: scripts/test installs Debian postgresql").1
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().expect("port").port()
}

impl PostgresServer {
    fn start(tls: ServerTls) -> PostgresServer {
        let binaries = postgres_binaries();
        let as_postgres_user = is_root();
        let directory = tempfile::Builder::new().prefix("imprint-pg-").tempdir().expect("temp dir");
        let server = PostgresServer { directory, binaries, port: free_port(), as_postgres_user };
        std::fs::create_dir(server.socket_directory()).expect("socket dir");
        if tls == ServerTls::Required {
            server.make_certificates();
        }
        if as_postgres_user {
            run_checked(
                Command::new("chown").arg("-R").arg("postgres:postgres").arg(server.directory.path()),
            );
        }
        run_checked(
            server
                .server_command("initdb")
                .args([
                    "--username=postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(server.data_directory()),
        );
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nlog_connections = on\nmax_connections = 40\nshared_buffers = 16MB\n",
            server.port,
            server.socket_directory().display()
        );
        let mut hba = "local all all trust\n".to_owned();
        match tls {
            ServerTls::Off => hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n"),
            ServerTls::Required => {
                settings.push_str(&format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                    server.path("server.crt").display(),
                    server.path("server.key").display()
                ));
                hba.push_str("hostssl all all 127.0.0.1/32 scram-sha-256\n");
            }
        }
        server.write_as_server_user(&server.data_directory().join("postgresql.auto.conf"), &settings);
        server.write_as_server_user(&server.data_directory().join("pg_hba.conf"), &hba);
        server.start_server();
        server.psql_database("postgres", &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"));
        server.create_database(ROLE);
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn data_directory(&self) -> PathBuf {
        self.path("data")
    }

    fn socket_directory(&self) -> PathBuf {
        self.path("socket")
    }

    fn write_as_server_user(&self, path: &Path, text: &str) {
        std::fs::write(path, text).expect("write server file");
        if self.as_postgres_user {
            run_checked(Command::new("chown").arg("postgres:postgres").arg(path));
        }
    }

    /// A server program (initdb, pg_ctl, psql), as the postgres user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let executable = self.binaries.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(executable);
            command
        } else {
            Command::new(executable)
        }
    }

    /// A self-made certificate authority and a server certificate for 127.0.0.1 and
    /// localhost, made with openssl (the same commands an operator would use).
    fn make_certificates(&self) {
        let openssl = |arguments: &[&str]| {
            run_checked(Command::new("openssl").args(arguments).current_dir(self.directory.path()));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=imprint test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            self.path("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        // A second, unrelated authority: a client trusting only it must refuse the server.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=unrelated CA",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path("server.key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
    }

    fn start_server(&self) {
        run_checked(
            self.server_command("pg_ctl")
                .arg("-D")
                .arg(self.data_directory())
                .arg("-l")
                .arg(self.path("server.log"))
                .args(["-w", "-t", "60", "start"]),
        );
    }

    fn stop_server(&self) {
        run_checked(
            self.server_command("pg_ctl")
                .arg("-D")
                .arg(self.data_directory())
                .args(["-w", "-m", "fast", "stop"]),
        );
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Runs SQL as the superuser over the unix socket; returns psql's unaligned output.
    fn psql_database(&self, database: &str, sql: &str) -> String {
        let output = run_checked(
            self.server_command("psql")
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
                .arg(self.socket_directory())
                .args(["-p", &self.port.to_string(), "-d", database, "-c", sql]),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_database(ROLE, sql)
    }

    fn create_database(&self, name: &str) {
        self.psql_database("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE};"));
    }

    /// The URL a station uses (TCP, password from PGPASSWORD), plus URL parameters.
    fn url(&self, database: &str, parameters: &str) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/{database}?{parameters}", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate: the data is thrown away with the directory anyway.
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_directory())
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `imprint` with the central password in the environment (never in the URL).
fn imprint_central() -> Command {
    let mut command = imprint();
    command.env("PGPASSWORD", PASSWORD).env_remove("IMPRINT_CENTRAL_URL").env_remove("PGPASSFILE");
    command
}

fn demo_profile() -> PathBuf {
    repo_root().join("profiles/demo.toml")
}

/// `imprint run` on simulated fixtures at full speed, feeding `url`.
fn station_command(db: &Path, station: &str, url: &str, count: u64, extra: &[&str]) -> Command {
    let mut command = imprint_central();
    command
        .args(["run", "--sim", "2", "--sim-timing", "zero", "--operator", "tester", "--profile"])
        .arg(demo_profile())
        .arg("--db")
        .arg(db)
        .args(["--station", station, "--central", url, "--count", &count.to_string()])
        .args(extra);
    command
}

fn output_text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sqlite3(db: &Path, sql: &str) -> String {
    let output = run_checked(Command::new("sqlite3").arg(db).arg(sql));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Every run of a local ledger as `station|sequence|RECORD_HASH`, in chain order (sqlite3).
fn local_runs(db: &Path) -> Vec<String> {
    let text = sqlite3(
        db,
        "SELECT s.name || '|' || r.station_sequence || '|' || hex(r.record_hash) FROM runs r
         JOIN stations s ON s.id = r.station_id ORDER BY s.name, r.station_sequence",
    );
    text.lines().map(str::to_owned).collect()
}

/// The central runs of `station` in the same form (psql).
fn central_runs(server: &PostgresServer, database: &str, station: &str) -> Vec<String> {
    let text = server.psql_database(
        database,
        &format!(
            "SELECT station || '|' || station_sequence || '|' || upper(encode(record_hash, 'hex'))
             FROM imprint.runs WHERE station = '{station}' ORDER BY station_sequence"
        ),
    );
    text.lines().map(str::to_owned).collect()
}

/// The central copy of every station equals the local ledgers run for run, every local run is
/// marked shipped, PostgreSQL's own sha256() reproduces every record_hash from the stored
/// canonical text and prev_hash, and `imprint log verify --central` passes.
fn check_central_matches(server: &PostgresServer, database: &str, ledgers: &[(&str, &Path)]) {
    for (station, db) in ledgers {
        let local = local_runs(db);
        assert!(!local.is_empty(), "station {station} recorded no runs");
        assert_eq!(
            central_runs(server, database, station),
            local,
            "station {station}: central vs local runs"
        );
        assert_eq!(
            sqlite3(db, "SELECT count(*) FROM runs WHERE shipped_at IS NULL"),
            "0",
            "{station}: outbox"
        );
    }
    let total: usize = ledgers.iter().map(|(_, db)| local_runs(db).len()).sum();
    assert_eq!(server.psql_database(database, "SELECT count(*) FROM imprint.runs"), total.to_string());
    assert_eq!(
        server.psql_database(
            database,
            "SELECT count(*) FROM imprint.runs
             WHERE sha256(prev_hash || convert_to(canonical_record, 'UTF8')) <> record_hash"
        ),
        "0",
        "PostgreSQL's sha256() disagrees with a stored record_hash"
    );
    assert_eq!(server.psql_database(database, "SELECT count(*) FROM imprint.alarms"), "0", "alarms raised");
    let verify = imprint_central()
        .args(["log", "verify", "--central", &server.url(database, "sslmode=disable")])
        .output()
        .expect("log verify");
    assert!(verify.status.success(), "log verify --central: {}", output_text(&verify));
}

/// The runs of a JSON lines export, without `shipped_at` (the local mark time locally, the
/// arrival time centrally), keyed by (station, sequence).
fn export_runs(path: &Path) -> BTreeMap<(String, u64), serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read export")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record.get("record_hash").is_some())
        .map(|mut record| {
            record.as_object_mut().expect("object").remove("shipped_at");
            let key = (
                record["station"].as_str().unwrap_or_default().to_owned(),
                record["station_sequence"].as_u64().unwrap_or(0),
            );
            (key, record)
        })
        .collect()
}

/// `imprint log export --central` in every format verifies (with imprint and with the
/// standalone Python verifier), and holds exactly the local ledgers' runs, field for field.
fn check_central_export(url: &str, ledgers: &[&Path], directory: &Path) {
    for format in ["csv", "json", "jsonl"] {
        let file = directory.join(format!("central.{format}"));
        let exported = imprint_central()
            .args(["log", "export", "--central", url, "--format", format, "-o"])
            .arg(&file)
            .output()
            .expect("log export");
        assert!(exported.status.success(), "{}", output_text(&exported));
        let verified = imprint().args(["log", "verify"]).arg(&file).output().expect("log verify FILE");
        assert!(verified.status.success(), "{format}: {}", output_text(&verified));
        let python = Command::new("python3")
            .arg(repo_root().join("tests/data/ledger/verify_export.py"))
            .arg(&file)
            .output()
            .expect("python3 verifier");
        assert!(python.status.success(), "{format}: python verifier: {}", output_text(&python));
    }
    let mut local = BTreeMap::new();
    for (index, db) in ledgers.iter().enumerate() {
        let file = directory.join(format!("local-{index}.jsonl"));
        let exported = imprint()
            .args(["log", "export", "--format", "jsonl", "--db"])
            .arg(db)
            .arg("-o")
            .arg(&file)
            .output()
            .expect("export");
        assert!(exported.status.success(), "{}", output_text(&exported));
        local.extend(export_runs(&file));
    }
    let central = export_runs(&directory.join("central.jsonl"));
    assert_eq!(central.len(), local.len());
    assert!(central == local, "the central export differs from the local ledgers' exports");
}

/// Reads `imprint run --json` events of a child on a thread; sends (station, event).
fn forward_events(
    child: &mut Child,
    station: &'static str,
    sender: mpsc::Sender<(&'static str, serde_json::Value)>,
) {
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str(&line) else { continue };
            if sender.send((station, event)).is_err() {
                break;
            }
        }
    });
}

fn is_pass(event: &serde_json::Value) -> bool {
    event["event"] == "unit-finished" && event["result"] == "pass"
}

#[test]
fn two_stations_at_once_never_issue_the_same_serial() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let (db_a, db_b) = (directory.path().join("a.db"), directory.path().join("b.db"));
    // Small blocks: the two stations lease often and compete for the counter row. Three
    // blocks leased ahead: a lease slowed by a loaded machine (CI once met one) does not run a
    // station dry, which would fail a unit at allocate-identity and is not what this tests.
    let block = ["--central-block-size", "4", "--central-lease-ahead", "12"];
    // Both processes run at once against the one database.
    let spawn = |db: &Path, station: &str| {
        station_command(db, station, &url, 40, &block)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a station")
    };
    let (child_a, child_b) = (spawn(&db_a, "line-a"), spawn(&db_b, "line-b"));
    let output_a = child_a.wait_with_output().expect("station a");
    let output_b = child_b.wait_with_output().expect("station b");
    assert!(output_a.status.success(), "station a: {}", output_text(&output_a));
    assert!(output_b.status.success(), "station b: {}", output_text(&output_b));

    let serials_a: BTreeSet<String> =
        sqlite3(&db_a, "SELECT serial FROM units").lines().map(str::to_owned).collect();
    let serials_b: BTreeSet<String> =
        sqlite3(&db_b, "SELECT serial FROM units").lines().map(str::to_owned).collect();
    assert_eq!((serials_a.len(), serials_b.len()), (40, 40));
    let shared: Vec<&String> = serials_a.intersection(&serials_b).collect();
    assert!(shared.is_empty(), "both stations issued {shared:?}");
    assert_eq!(
        server.psql("SELECT count(*) || ' ' || count(DISTINCT serial) FROM imprint.issued_serials"),
        "80 80"
    );
    // No two blocks overlap (the exclusion constraint says so; check it independently).
    assert_eq!(
        server.psql(
            "SELECT count(*) FROM imprint.serial_blocks x JOIN imprint.serial_blocks y
             ON x.id < y.id AND x.prefix = y.prefix AND x.first_value <= y.last_value AND y.first_value <= x.last_value"
        ),
        "0"
    );
    // Every serial a station issued lies in a block leased to that station.
    for (station, db) in [("line-a", &db_a), ("line-b", &db_b)] {
        let outside = server.psql(&format!(
            "SELECT count(*) FROM imprint.issued_serials s WHERE s.station = '{station}' AND NOT EXISTS (
                 SELECT 1 FROM imprint.serial_blocks b WHERE b.station = s.station
                 AND substr(s.serial, length(b.prefix) + 1)::bigint BETWEEN b.first_value AND b.last_value)"
        ));
        assert_eq!(outside, "0", "{station} issued serials outside its blocks");
        let local_blocks = sqlite3(db, "SELECT count(*) FROM serial_blocks");
        let central_blocks =
            server.psql(&format!("SELECT count(*) FROM imprint.serial_blocks WHERE station = '{station}'"));
        assert_eq!(local_blocks, central_blocks, "{station}: blocks recorded locally vs leased");
    }
    check_central_matches(&server, ROLE, &[("line-a", &db_a), ("line-b", &db_b)]);
    // One place to look a unit up, whichever station made it: by serial and by chip UID.
    for (db, station) in [(&db_a, "line-a"), (&db_b, "line-b")] {
        let unit = sqlite3(db, "SELECT serial || ' ' || chip_uid FROM units ORDER BY serial LIMIT 1");
        let (serial, chip_uid) = unit.split_once(' ').expect("a unit");
        for key in [serial, chip_uid] {
            let shown = imprint_central()
                .args(["log", "show", "--json", "--central", &url, key])
                .output()
                .expect("log show");
            assert!(shown.status.success(), "{}", output_text(&shown));
            let history: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("history JSON");
            assert_eq!(history["chip_uid"], chip_uid);
            assert_eq!(history["current"]["serial"], serial);
            assert_eq!(history["runs"][0]["station"], station);
        }
    }
    check_central_export(&url, &[&db_a, &db_b], directory.path());
    for output in [&output_a, &output_b] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "{}",
            stderr.lines().filter(|line| line.starts_with("central:")).collect::<Vec<_>>().join("\n")
        );
    }
}

/// Waits for `count` more events matching `wanted` from `station` (other events pass by).
fn wait_for(
    receiver: &mpsc::Receiver<(&'static str, serde_json::Value)>,
    passes: &mut BTreeMap<&'static str, usize>,
    until: impl Fn(&BTreeMap<&'static str, usize>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !until(passes) {
        assert!(Instant::now() < deadline, "timed out; passes so far {passes:?}");
        let (station, event) =
            receiver.recv_timeout(Duration::from_secs(60)).expect("the stations stopped emitting events");
        if is_pass(&event) {
            *passes.entry(station).or_default() += 1;
        }
    }
}

#[test]
fn stopping_postgres_mid_run_loses_and_duplicates_nothing() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let (db_a, db_b) = (directory.path().join("a.db"), directory.path().join("b.db"));
    let (sender, receiver) = mpsc::channel();
    let mut children = Vec::new();
    for (station, db) in [("line-a", &db_a), ("line-b", &db_b)] {
        let stderr =
            std::fs::File::create(directory.path().join(format!("{station}.stderr"))).expect("stderr file");
        let mut child = station_command(db, station, &url, 100, &["--json", "--central-block-size", "30"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start a station");
        forward_events(&mut child, station, sender.clone());
        children.push(child);
    }
    drop(sender);
    let mut passes = BTreeMap::new();
    wait_for(&receiver, &mut passes, |passes| passes.len() == 2 && passes.values().all(|count| *count >= 8));
    server.stop_server();
    let at_stop = passes.clone();
    // Both stations go on provisioning from their blocks while the database is down.
    wait_for(&receiver, &mut passes, |passes| {
        passes.iter().all(|(station, count)| *count >= at_stop[station] + 10)
    });
    let during_outage: Vec<usize> = passes.iter().map(|(station, count)| count - at_stop[station]).collect();
    server.start_server();
    for mut child in children {
        let status = child.wait().expect("station exit");
        assert!(status.success(), "a station failed: {status}");
    }
    for event in receiver.try_iter() {
        if is_pass(&event.1) {
            *passes.entry(event.0).or_default() += 1;
        }
    }
    assert_eq!(passes.values().copied().collect::<Vec<_>>(), vec![100, 100], "passes per station");
    eprintln!("units passed while PostgreSQL was down: {during_outage:?}");
    check_central_matches(&server, ROLE, &[("line-a", &db_a), ("line-b", &db_b)]);
    let serials = server.psql("SELECT count(*) || ' ' || count(DISTINCT serial) FROM imprint.issued_serials");
    assert_eq!(serials, "200 200");
    for station in ["line-a", "line-b"] {
        let stderr =
            std::fs::read_to_string(directory.path().join(format!("{station}.stderr"))).unwrap_or_default();
        assert!(stderr.contains("0 pending"), "{station} did not drain its outbox:\n{stderr}");
    }
}

#[test]
fn killing_a_station_mid_upload_loses_and_duplicates_nothing() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let db = directory.path().join("station.db");
    let blocks = ["--central-block-size", "300", "--central-batch-size", "10"];
    let first = station_command(&db, "line-k", &url, 1, &blocks).output().expect("first run");
    assert!(first.status.success(), "{}", output_text(&first));
    // A backlog: 120 runs provisioned offline from the leased block.
    server.stop_server();
    let offline = station_command(
        &db,
        "line-k",
        &url,
        120,
        &[&blocks[..], &["--central-drain-timeout-ms", "0"]].concat(),
    )
    .output()
    .expect("offline run");
    assert!(offline.status.success(), "{}", output_text(&offline));
    assert_eq!(sqlite3(&db, "SELECT count(*) FROM runs WHERE shipped_at IS NULL"), "120");
    server.start_server();

    // The station ships the backlog in batches of 10 while provisioning more; SIGKILL it
    // right after its first central commit.
    let mut child = station_command(&db, "line-k", &url, 100_000, &blocks)
        .env("IMPRINT_LOG", "imprint::central=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the station");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("the station ended before shipping").expect("read stderr");
        if line.contains("shipped a batch") {
            break;
        }
    }
    child.kill().expect("SIGKILL the station");
    child.wait().expect("reap the station");
    let local = local_runs(&db);
    let central = central_runs(&server, ROLE, "line-k");
    assert!(
        central.len() < local.len(),
        "the kill landed after the upload finished ({} of {})",
        central.len(),
        local.len()
    );
    assert_eq!(central, local[..central.len()], "the central rows are not a prefix of the local chain");
    eprintln!("killed with {} of {} runs shipped", central.len(), local.len());

    // After a restart everything is shipped, once.
    let restart = station_command(&db, "line-k", &url, 2, &blocks).output().expect("restart");
    assert!(restart.status.success(), "{}", output_text(&restart));
    check_central_matches(&server, ROLE, &[("line-k", &db)]);
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok");
    // Every serial in a local run is issued centrally, to the same chip (units killed before
    // their run was recorded have an identity but no run: nothing to ship for them).
    let central_serials = server.psql(
        "SELECT string_agg(serial || ':' || chip_uid, ' ' ORDER BY serial) FROM imprint.issued_serials",
    );
    let local_serials = sqlite3(
        &db,
        "SELECT group_concat(serial || ':' || chip_uid, ' ') FROM (SELECT DISTINCT serial, chip_uid FROM runs WHERE serial IS NOT NULL ORDER BY serial)",
    );
    assert_eq!(central_serials, local_serials);
}

#[test]
fn redelivery_is_harmless_and_a_different_record_under_a_shipped_sequence_is_an_alarm() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let db = directory.path().join("station.db");
    let run = station_command(&db, "line-r", &url, 6, &[]).output().expect("run");
    assert!(run.status.success(), "{}", output_text(&run));
    check_central_matches(&server, ROLE, &[("line-r", &db)]);
    let ship = || {
        imprint_central()
            .args(["log", "ship", "--db"])
            .arg(&db)
            .args(["--central", &url])
            .output()
            .expect("log ship")
    };

    // The crash window: the central commit happened, the local mark did not.
    sqlite3(&db, "UPDATE runs SET shipped_at = NULL");
    let redelivered = ship();
    assert!(redelivered.status.success(), "{}", output_text(&redelivered));
    assert!(
        String::from_utf8_lossy(&redelivered.stdout).contains("(6 were already in the central database)"),
        "{}",
        output_text(&redelivered)
    );
    check_central_matches(&server, ROLE, &[("line-r", &db)]);

    // A different record under a sequence the central database already holds.
    server.psql("UPDATE imprint.runs SET record_hash = sha256('forged') WHERE station = 'line-r' AND station_sequence = 4");
    sqlite3(&db, "UPDATE runs SET shipped_at = NULL WHERE station_sequence >= 4");
    let alarmed = ship();
    assert_eq!(alarmed.status.code(), Some(1), "{}", output_text(&alarmed));
    let stderr = String::from_utf8_lossy(&alarmed.stderr);
    assert!(stderr.contains("ALARM duplicate-mismatch") && stderr.contains("sequence 4"), "{stderr}");
    assert_eq!(
        server.psql("SELECT kind || ' ' || station_sequence FROM imprint.alarms"),
        "duplicate-mismatch 4"
    );
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM runs WHERE shipped_at IS NULL"),
        "3",
        "alarmed runs stay in the outbox"
    );

    // Another ledger under the same station name is refused at start and ships nothing.
    let impostor = directory.path().join("impostor.db");
    let refused = station_command(&impostor, "line-r", &url, 1, &["--central-drain-timeout-ms", "500"])
        .output()
        .expect("run");
    // Refused at start (issue 19): exit 2 before any unit, not one FAIL after another.
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("station name \"line-r\" is registered in the central database to ledger"),
        "{stderr}"
    );
    assert_eq!(server.psql("SELECT count(*) FROM imprint.runs"), "6");
}

#[test]
fn tls_works_and_a_server_requiring_it_refuses_plain_connections_clearly() {
    let server = PostgresServer::start(ServerTls::Required);
    let directory = tempfile::tempdir().expect("temp dir");
    let db = directory.path().join("station.db");
    let ca = server.path("ca.crt");
    let verify_full = server.url(ROLE, &format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    // The password from a 0600 password file this time.
    let password_file = directory.path().join("pgpass");
    let port = server.port;
    std::fs::write(
        &password_file,
        format!("127.0.0.1:{port}:{ROLE}:{ROLE}:{PASSWORD}\nlocalhost:{port}:*:{ROLE}:{PASSWORD}\n"),
    )
    .expect("pgpass");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let with_password_file = |mut command: Command| {
        command.env_remove("PGPASSWORD").env("PGPASSFILE", &password_file);
        command
    };

    let run = with_password_file(station_command(&db, "line-t", &verify_full, 4, &[])).output().expect("run");
    assert!(run.status.success(), "{}", output_text(&run));
    let verify = |url: &str| {
        let mut command = imprint_central();
        command.args(["log", "verify", "--central", url]);
        with_password_file(command).output().expect("log verify")
    };
    let verified = verify(&verify_full);
    assert!(verified.status.success(), "{}", output_text(&verified));
    let localhost = format!(
        "postgresql://{ROLE}@localhost:{}/{ROLE}?sslmode=verify-full&sslrootcert={}",
        server.port,
        ca.display()
    );
    let by_name = verify(&localhost);
    assert!(by_name.status.success(), "verify-full by host name: {}", output_text(&by_name));
    assert!(
        server.server_log().contains("SSL enabled"),
        "the server logged no TLS connection:\n{}",
        server.server_log()
    );
    assert_eq!(server.psql("SELECT count(*) FROM imprint.runs"), "4");

    let check_refused = |url: String, fragments: &[&str]| {
        let refused = verify(&url);
        assert_eq!(refused.status.code(), Some(2), "{url}: {}", output_text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        eprintln!("refused as expected: {stderr}");
        for fragment in fragments {
            assert!(stderr.contains(fragment), "{url}: {stderr:?} lacks {fragment:?}");
        }
        assert!(!stderr.contains(PASSWORD), "the password leaked into an error: {stderr}");
    };
    check_refused(server.url(ROLE, "sslmode=disable"), &["no encryption", "accepts only TLS"]);
    check_refused(
        server
            .url(ROLE, &format!("sslmode=verify-full&sslrootcert={}", server.path("other-ca.crt").display())),
        &["cannot connect", "certificate"],
    );
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    check_refused(verify_full.clone(), &["chmod 600"]);
}

#[test]
fn tampering_with_a_central_row_is_detected_and_named() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let check = |case: usize, sql: &str, fragments: &[&str]| {
        let database = format!("tamper{case}");
        server.create_database(&database);
        let url = server.url(&database, "sslmode=disable");
        let db = directory.path().join(format!("{database}.db"));
        let run = station_command(&db, "line-x", &url, 5, &[]).output().expect("run");
        assert!(run.status.success(), "{}", output_text(&run));
        let verify =
            || imprint_central().args(["log", "verify", "--central", &url]).output().expect("log verify");
        let intact = verify();
        assert!(intact.status.success(), "before tampering: {}", output_text(&intact));
        server.psql_database(&database, sql);
        let tampered = verify();
        assert_eq!(tampered.status.code(), Some(1), "{sql}: {}", output_text(&tampered));
        let stdout = String::from_utf8_lossy(&tampered.stdout);
        for fragment in fragments {
            assert!(stdout.contains(fragment), "{sql}: {stdout:?} lacks {fragment:?}");
        }
    };
    check(
        1,
        "UPDATE imprint.runs SET operator = 'mallory' WHERE station_sequence = 3",
        &["TAMPERED", "sequence 3", "hash mismatch"],
    );
    check(
        2,
        "UPDATE imprint.runs SET canonical_record = replace(canonical_record, 'tester', 'mallory') WHERE station_sequence = 2",
        &["TAMPERED", "canonical_record", "sequence 2", "hash mismatch"],
    );
    check(
        3,
        "DELETE FROM imprint.runs WHERE station_sequence = 4",
        &["TAMPERED", "sequence 5", "missing record"],
    );
    check(4, "DELETE FROM imprint.runs WHERE station_sequence = 5", &["TAMPERED", "truncated"]);
}

#[test]
fn an_offline_station_out_of_serials_fails_units_at_allocate_identity() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let db = directory.path().join("station.db");
    let small = ["--central-block-size", "3", "--central-lease-ahead", "1"];
    let first = station_command(&db, "line-o", &url, 1, &small).output().expect("first run");
    assert!(first.status.success(), "{}", output_text(&first));
    server.stop_server();
    let offline = station_command(
        &db,
        "line-o",
        &url,
        5,
        &[&small[..], &["--json", "--central-drain-timeout-ms", "0"]].concat(),
    )
    .output()
    .expect("offline run");
    assert_eq!(offline.status.code(), Some(1), "{}", output_text(&offline));
    let finished: Vec<serde_json::Value> = String::from_utf8_lossy(&offline.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "unit-finished")
        .collect();
    let passed = finished.iter().filter(|event| event["result"] == "pass").count();
    assert_eq!((passed, finished.len()), (2, 5), "{}", output_text(&offline));
    for failed in finished.iter().filter(|event| event["result"] == "fail") {
        assert_eq!(failed["failing_step"], "allocate-identity", "{failed}");
        let reason = failed["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("no serial number left") && reason.contains("reachable"), "{reason}");
    }
    server.start_server();
    let back = station_command(&db, "line-o", &url, 2, &small).output().expect("run after the outage");
    assert!(back.status.success(), "{}", output_text(&back));
    assert_eq!(
        sqlite3(&db, "SELECT group_concat(serial, ' ') FROM (SELECT serial FROM units ORDER BY serial)"),
        "DS1-000001 DS1-000002 DS1-000003 DS1-000004 DS1-000005"
    );
    check_central_matches(&server, ROLE, &[("line-o", &db)]);
}

/// The operator window is a station like `imprint run`: with a central URL its line takes
/// serials from blocks leased from PostgreSQL and ships every run there, so a headless station
/// and a window station never issue the same serial and one central record holds both.
#[cfg(feature = "gui")]
#[test]
fn the_operator_window_leases_serials_and_ships_its_runs_like_imprint_run() {
    use eframe::egui;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use imprint::gui::{GuiOptions, ImprintApp};
    use imprint::station::session::CentralSettings;

    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let (db_a, db_b) = (directory.path().join("a.db"), directory.path().join("b.db"));
    let output =
        station_command(&db_a, "line-a", &url, 6, &["--central-block-size", "4"]).output().expect("run");
    assert!(output.status.success(), "{}", output_text(&output));

    // The window's password comes from a libpq password file named in the URL (0600).
    let passfile = directory.path().join("pgpass");
    std::fs::write(&passfile, format!("*:*:*:{ROLE}:{PASSWORD}\n")).expect("pgpass");
    std::fs::set_permissions(&passfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let mut options = GuiOptions::new(db_b.clone(), "gui-b".to_string());
    options.create_ledger = true;
    options.profile = Some(demo_profile());
    options.operator = Some("tester".to_string());
    options.sim_slot_count = Some(2);
    options.sim_timing_zero = Some(true);
    options.unit_change_delay_ms = Some(0);
    options.remember_settings = false;
    // The same central settings as `imprint run --central-block-size 4` above.
    let mut central = CentralSettings::new(format!("{url}&passfile={}", passfile.display()));
    central.block_size = 4;
    central.lease_ahead = Some(2);
    central.batch_size = 2;
    options.central = Some(central);
    options.unit_limit = Some(5);
    options.autostart = true;
    let mut harness = Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .build_eframe(move |creation| ImprintApp::new(creation, options, None));
    let deadline = Instant::now() + Duration::from_secs(120);
    while harness.query_by_label_contains("line status: line finished: 5 units, 5 pass").is_none() {
        assert!(Instant::now() < deadline, "the window's line did not finish 5 passing units");
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    // The line ships what is left while it closes; wait for the central copy.
    while central_runs(&server, ROLE, "gui-b").len() < 5
        || !sqlite3(&db_b, "SELECT count(*) FROM runs WHERE shipped_at IS NULL").eq("0")
    {
        assert!(Instant::now() < deadline, "the window's runs were not shipped");
        harness.step();
        std::thread::sleep(Duration::from_millis(50));
    }

    let serials = |db: &Path| -> BTreeSet<String> {
        sqlite3(db, "SELECT serial FROM units").lines().map(str::to_owned).collect()
    };
    let (serials_a, serials_b) = (serials(&db_a), serials(&db_b));
    assert_eq!((serials_a.len(), serials_b.len()), (6, 5));
    assert!(serials_a.is_disjoint(&serials_b), "{serials_a:?} and {serials_b:?} share serials");
    let outside = server.psql(
        "SELECT count(*) FROM imprint.issued_serials s WHERE s.station = 'gui-b' AND NOT EXISTS (
             SELECT 1 FROM imprint.serial_blocks b WHERE b.station = s.station
             AND substr(s.serial, length(b.prefix) + 1)::bigint BETWEEN b.first_value AND b.last_value)",
    );
    assert_eq!(outside, "0", "the window issued serials outside its blocks");
    // Both front ends leased blocks of the size they were given.
    let block_sizes = server.psql(
        "SELECT station || ':' || string_agg(DISTINCT (last_value - first_value + 1)::text, ',') \
         FROM imprint.serial_blocks GROUP BY station ORDER BY station",
    );
    assert_eq!(block_sizes, "gui-b:4\nline-a:4", "block sizes by station");
    check_central_matches(&server, ROLE, &[("line-a", &db_a), ("gui-b", &db_b)]);
}

/// A database that will never accept the station (wrong password, plain connection to a
/// TLS-only server, unknown CA, missing database, a station name bound to another ledger) stops
/// `imprint run` at start with exit 2, before any unit is touched; a database that is only away
/// lets the line start offline (issue 19).
#[test]
fn a_database_that_refuses_the_station_for_good_stops_the_line_before_any_unit() {
    let server = PostgresServer::start(ServerTls::Required);
    let directory = tempfile::tempdir().expect("temp dir");
    let ca = server.path("ca.crt");
    let good = server.url(ROLE, &format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let first_db = directory.path().join("first.db");
    let first = station_command(&first_db, "line-p", &good, 2, &[]).output().expect("first station");
    assert!(first.status.success(), "{}", output_text(&first));

    let check_refused_at_start = |name: &str, mut command: Command, fragments: &[&str]| {
        let db = directory.path().join(format!("{name}.db"));
        let ledger_before = std::fs::read(&db).ok();
        command.arg("--json");
        let output = command.output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{name}: {}", output_text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("\"unit-started\""), "{name}: a unit was touched:\n{stdout}");
        let text = output_text(&output);
        for fragment in fragments {
            assert!(text.contains(fragment), "{name}: {text} lacks {fragment:?}");
        }
        assert!(!text.contains(PASSWORD), "{name}: the password leaked: {text}");
        if db.exists() {
            assert_eq!(sqlite3(&db, "SELECT count(*) FROM runs"), "0", "{name}: a run was recorded");
        }
        let _ = ledger_before;
    };
    let db = |name: &str| directory.path().join(format!("{name}.db"));

    let mut wrong_password = station_command(&db("password"), "line-w", &good, 2, &[]);
    wrong_password.env("PGPASSWORD", "not-the-password");
    check_refused_at_start("password", wrong_password, &["password authentication failed"]);

    let plain = server.url(ROLE, "sslmode=disable");
    check_refused_at_start(
        "plain",
        station_command(&db("plain"), "line-x", &plain, 2, &[]),
        &["accepts only TLS"],
    );

    let other_ca = server
        .url(ROLE, &format!("sslmode=verify-full&sslrootcert={}", server.path("other-ca.crt").display()));
    check_refused_at_start(
        "unknown-ca",
        station_command(&db("unknown-ca"), "line-y", &other_ca, 2, &[]),
        &["certificate"],
    );

    let missing_database = format!(
        "postgresql://{ROLE}@127.0.0.1:{}/no_such_database?sslmode=verify-full&sslrootcert={}",
        server.port,
        ca.display()
    );
    check_refused_at_start(
        "no-database",
        station_command(&db("no-database"), "line-z", &missing_database, 2, &[]),
        &["no_such_database"],
    );

    // A second ledger under the first station's name (a cloned station image).
    check_refused_at_start(
        "clone",
        station_command(&db("clone"), "line-p", &good, 2, &[]),
        &["station name \"line-p\" is registered", "docs/central.md"],
    );

    // Not now: nothing listens on the port. The line starts offline (and, holding no serial
    // block yet, fails its units at allocate-identity: an outage, not a refusal).
    let away = format!("postgresql://{ROLE}@127.0.0.1:1/{ROLE}?sslmode=disable");
    let offline =
        station_command(&db("away"), "line-a", &away, 1, &["--json", "--central-drain-timeout-ms", "0"])
            .output()
            .expect("offline run");
    assert_eq!(offline.status.code(), Some(1), "{}", output_text(&offline));
    assert!(
        String::from_utf8_lossy(&offline.stdout).contains("\"unit-started\""),
        "{}",
        output_text(&offline)
    );
}

/// profiles/demo.toml with a mailbox big enough for identity requests and a `[device_identity]`
/// section issuing from the demo factory CA, written to `directory`.
fn identity_profile(directory: &Path) -> PathBuf {
    let demo = common::demo_profile_text();
    let small_mailbox = "mailbox     = { address = 0x2003_FF00, size = 0x100 }";
    assert!(demo.contains(small_mailbox), "demo.toml changed shape; update this test");
    let credentials = repo_root().join("profiles/demo-credentials");
    let text = format!(
        "{}\n[device_identity]\nkey_origin = \"station\"\nca_certificate = \"{}\"\nca_key = \"{}\"\nvalidity_days = 7300\norganization = \"Imprint Tests\"\n",
        demo.replace(small_mailbox, "mailbox     = { address = 0x2003_FC00, size = 0x400 }"),
        credentials.join("factory-ca.pem").display(),
        credentials.join("factory-ca.key.pem").display()
    );
    common::write_profile(directory, "identity.toml", &text)
}

/// The PEM blocks of a bundle, sorted.
fn pem_blocks(bundle: &str) -> Vec<String> {
    let end = "-----END CERTIFICATE-----";
    let mut blocks: Vec<String> = bundle
        .split_inclusive(&format!("{end}\n"))
        .filter(|block| block.contains(end))
        .map(str::to_owned)
        .collect();
    blocks.sort();
    blocks
}

/// Issue 19: `log stats --central` (with the export's filters and the failure breakdown) and
/// `log certificates --central` read every station's runs from the central database, and agree
/// with the stations' own ledgers.
#[test]
fn stats_and_certificates_read_the_central_ledger_across_stations() {
    let server = PostgresServer::start(ServerTls::Off);
    let directory = tempfile::tempdir().expect("temp dir");
    let url = server.url(ROLE, "sslmode=disable");
    let profile = identity_profile(directory.path());
    // line-a: 4 units, its last lost at erase; line-b: 3 units, all pass.
    let stations = [("line-a", 4, Some("0.4:probe-lost=erase")), ("line-b", 3, None)];
    let mut ledgers = Vec::new();
    for (station, count, fault) in stations {
        let db = directory.path().join(format!("{station}.db"));
        let mut command = imprint_central();
        command
            .args(["run", "--sim", "1", "--sim-timing", "zero", "--operator", "tester", "--profile"])
            .arg(&profile)
            .arg("--db")
            .arg(&db)
            .args(["--station", station, "--central", &url, "--count", &count.to_string()]);
        if let Some(fault) = fault {
            command.args(["--sim-fault", fault]);
        }
        let run = command.output().expect("run");
        assert_eq!(run.status.code(), Some(if fault.is_some() { 1 } else { 0 }), "{}", output_text(&run));
        ledgers.push((station, db));
    }
    let ledger_refs: Vec<(&str, &Path)> =
        ledgers.iter().map(|(station, db)| (*station, db.as_path())).collect();
    check_central_matches(&server, ROLE, &ledger_refs);

    let stats = |source: &[&str], filter: &[&str]| -> serde_json::Value {
        let output = imprint_central()
            .args(["log", "stats", "--json"])
            .args(source)
            .args(filter)
            .output()
            .expect("log stats");
        assert!(output.status.success(), "{source:?} {filter:?}: {}", output_text(&output));
        serde_json::from_slice(&output.stdout).expect("stats JSON")
    };
    let central = ["--central", url.as_str()];
    let all = stats(&central, &[]);
    for (field, expected) in [
        ("units", 6),
        ("retired_identities", 0),
        ("runs", 7),
        ("runs_passed", 6),
        ("runs_failed", 1),
        ("runs_without_chip_uid", 0),
        ("chips_tested", 7),
        ("chips_passed_first_time", 6),
    ] {
        assert_eq!(all[field], expected, "{field}: {all}");
    }
    assert_eq!(all["failures_by_step"], serde_json::json!([{"failing_step": "erase", "runs": 1}]));
    assert_eq!(all["failures_by_category"], serde_json::json!([{"category": "flash-verify", "runs": 1}]));
    // Per step, the central counts are the sum of the stations' own.
    let local: Vec<serde_json::Value> =
        ledgers.iter().map(|(_, db)| stats(&["--db", db.to_str().expect("utf-8 path")], &[])).collect();
    let central_steps = all["steps"].as_array().expect("steps");
    let names: Vec<&str> = central_steps.iter().filter_map(|step| step["name"].as_str()).collect();
    let local_names: Vec<&str> = local[0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|step| step["name"].as_str())
        .collect();
    assert_eq!(names, local_names, "steps in pipeline order");
    for step in central_steps {
        for count in ["passed", "failed", "skipped"] {
            let sum: u64 = local
                .iter()
                .flat_map(|stats| stats["steps"].as_array().cloned().unwrap_or_default())
                .filter(|local_step| local_step["name"] == step["name"])
                .filter_map(|local_step| local_step[count].as_u64())
                .sum();
            assert_eq!(step[count], sum, "{} {count}", step["name"]);
        }
        let executed = step["passed"].as_u64().unwrap_or(0) + step["failed"].as_u64().unwrap_or(0);
        assert_eq!(step["median_duration_ms"].is_u64(), executed > 0, "{step}");
    }
    assert!(all["median_run_ms"].is_u64(), "{all}");
    // The filters select what they select locally.
    assert_eq!(stats(&central, &["--result", "fail"])["runs"], 1);
    assert_eq!(stats(&central, &["--result", "pass", "--profile", "demo-sensor"])["runs"], 6);
    assert_eq!(stats(&central, &["--profile", "no-such-profile"])["runs"], 0);
    assert_eq!(stats(&central, &["--since", "2999-01-01"])["runs"], 0);
    assert_eq!(stats(&central, &["--until", "2999-01-01"])["runs"], 7);
    let text = imprint_central().args(["log", "stats", "--central", &url]).output().expect("log stats");
    assert!(text.status.success(), "{}", output_text(&text));
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(printed.contains("flash-verify") && printed.contains("central "), "{printed}");

    // Certificates: the central bundle is the union of the stations' bundles.
    for selection in [&[][..], &["--all"][..]] {
        let mut local_blocks = Vec::new();
        for (station, db) in &ledgers {
            let bundle = directory.path().join(format!("{station}.pem"));
            let output = imprint()
                .args(["log", "certificates", "--db"])
                .arg(db)
                .args(selection)
                .arg("--force") // the second selection replaces the first one's bundle
                .arg("-o")
                .arg(&bundle)
                .output()
                .expect("log certificates");
            assert!(output.status.success(), "{}", output_text(&output));
            local_blocks.extend(pem_blocks(&std::fs::read_to_string(&bundle).expect("bundle")));
        }
        local_blocks.sort();
        let bundle = directory.path().join("central.pem");
        let output = imprint_central()
            .args(["log", "certificates", "--central", &url])
            .args(selection)
            .arg("--force")
            .arg("-o")
            .arg(&bundle)
            .output()
            .expect("log certificates --central");
        assert!(output.status.success(), "{}", output_text(&output));
        let central_blocks = pem_blocks(&std::fs::read_to_string(&bundle).expect("bundle"));
        assert_eq!(central_blocks.len(), 6, "{selection:?}");
        assert_eq!(central_blocks, local_blocks, "{selection:?}");
    }
}
