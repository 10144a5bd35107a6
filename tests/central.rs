//! The central PostgreSQL ledger against a real PostgreSQL server (Debian `postgresql`, which
//! scripts/test installs): each test starts a private server with `initdb` + `pg_ctl` in a
//! temporary directory on a free loopback port (as the `postgres` user when running as root,
//! since PostgreSQL refuses to run as root), drives real `imprint run` processes against it,
//! and checks the outcome with outside tools: `psql` for the central rows (including
//! PostgreSQL's own `sha256()` re-hashing every stored record), `sqlite3` for the local
//! ledgers, `openssl` for the TLS certificates. The server is stopped and removed by a Drop
//! guard, also when a test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{imprint, repo_root};

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

fn run_checked(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
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
            run_checked(Command::new("chown").arg("-R").arg("postgres:postgres").arg(server.directory.path()));
        }
        run_checked(server.server_command("initdb").args([
            "--username=postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
        ]).arg(server.data_directory()));
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nlog_connections = on\nmax_connections = 40\n",
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
        openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=imprint test CA"]);
        openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
        std::fs::write(
            self.path("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .expect("write server.ext");
        openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"]);
        // A second, unrelated authority: a client trusting only it must refuse the server.
        openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "2", "-subj", "/CN=unrelated CA"]);
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
            self.server_command("pg_ctl").arg("-D").arg(self.data_directory()).args(["-w", "-m", "fast", "stop"]),
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
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
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
        assert_eq!(central_runs(server, database, station), local, "station {station}: central vs local runs");
        assert_eq!(sqlite3(db, "SELECT count(*) FROM runs WHERE shipped_at IS NULL"), "0", "{station}: outbox");
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
    let verify = imprint_central().args(["log", "verify", "--central", &server.url(database, "sslmode=disable")]).output().expect("log verify");
    assert!(verify.status.success(), "log verify --central: {}", output_text(&verify));
}

/// Reads `imprint run --json` events of a child on a thread; sends (station, event).
fn forward_events(child: &mut Child, station: &'static str, sender: mpsc::Sender<(&'static str, serde_json::Value)>) {
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
    // Small blocks: the two stations lease often and compete for the counter row.
    let block = ["--central-block-size", "4"];
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

    let serials_a: BTreeSet<String> = sqlite3(&db_a, "SELECT serial FROM units").lines().map(str::to_owned).collect();
    let serials_b: BTreeSet<String> = sqlite3(&db_b, "SELECT serial FROM units").lines().map(str::to_owned).collect();
    assert_eq!((serials_a.len(), serials_b.len()), (40, 40));
    let shared: Vec<&String> = serials_a.intersection(&serials_b).collect();
    assert!(shared.is_empty(), "both stations issued {shared:?}");
    assert_eq!(server.psql("SELECT count(*) || ' ' || count(DISTINCT serial) FROM imprint.issued_serials"), "80 80");
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
        let central_blocks = server.psql(&format!("SELECT count(*) FROM imprint.serial_blocks WHERE station = '{station}'"));
        assert_eq!(local_blocks, central_blocks, "{station}: blocks recorded locally vs leased");
    }
    check_central_matches(&server, ROLE, &[("line-a", &db_a), ("line-b", &db_b)]);
    for output in [&output_a, &output_b] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{}", stderr.lines().filter(|line| line.starts_with("central:")).collect::<Vec<_>>().join("\n"));
    }
}
