//! The QEMU harness: every unit is a fresh `qemu-system-arm -M mps2-an385` process, reached
//! the way a real unit on a fixture is — a GDB connection for the debug port, a serial port for
//! the console — so that the station runs unchanged against an emulated Cortex-M.
//!
//! QEMU starts halted (`-S`) with nothing loaded: images given with `-kernel` would be restored
//! on every reset, and a probe loads nothing either, so every byte arrives through the GDB
//! stub. The GDB stub listens on a free loopback port; UART0 goes to a pseudo-terminal
//! (`-serial pty`, QEMU prints which one), read by the same [`SerialConsole`] the station uses
//! for USB-UARTs. QEMU drops UART bytes while nobody has the terminal open, so the console is
//! opened before the unit is handed out.
//!
//! The emulated board has no factory-programmed unique ID, so the harness plays the factory:
//! it writes one (random, or derived from a seed) at the profile's `chip.unique_id` before
//! handing the unit out, and checks it reads back. The memory map is in
//! `docs/device-contract.md`, section "Reference board: QEMU mps2-an385".
//!
//! Several fixtures may run at once; each process is killed when its unit is dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::device::console::{ConsoleError, SerialConsole};
use crate::device::gdb::{GdbClient, GdbError, GdbOptions, GdbTarget, GdbTargetConfig, TcpTransport};
use crate::device::{Fixture, Target, TargetError};

/// The board QEMU emulates (Cortex-M3, RAM-backed code memory at 0, RAM at 0x2000_0000).
pub const QEMU_MACHINE: &str = "mps2-an385";
/// Length of the unique ID the harness programs (96 bits, like an STM32's).
pub const QEMU_UNIQUE_ID_SIZE_BYTES: usize = 12;
/// Baud rate of the console (a pty ignores it; set for the look of it).
const CONSOLE_BAUD_RATE: u32 = 115_200;
/// How many times a start is retried when the chosen port was taken in the meantime.
const START_ATTEMPTS: u32 = 3;
/// QEMU output lines kept for error messages.
const OUTPUT_TAIL_LINES: usize = 20;

/// Why a QEMU unit could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU executable is missing or does not run.
    #[error("{executable} is not usable ({reason}); install it (Debian: apt-get install qemu-system-arm)")]
    NotInstalled { executable: String, reason: String },
    /// QEMU did not come up as expected.
    #[error("qemu ({executable}) did not start: {reason}{}", format_tail(output_tail))]
    Startup { executable: String, reason: String, output_tail: Vec<String> },
    /// The GDB stub misbehaved.
    #[error("qemu gdb stub at {address}: {source}")]
    Gdb {
        address: String,
        #[source]
        source: GdbError,
    },
    /// The console pty could not be opened.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The unique ID could not be programmed.
    #[error("programming the unique ID: {reason}")]
    UniqueId { reason: String },
}

fn format_tail(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!("; qemu said: {}", lines.join(" | ")) }
}

/// How QEMU is started.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// The executable (`qemu-system-arm` from PATH by default).
    pub executable: PathBuf,
    /// How long QEMU may take to announce its pty and accept the GDB connection.
    pub startup_timeout: Duration,
    /// GDB client settings.
    pub gdb: GdbOptions,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            executable: PathBuf::from("qemu-system-arm"),
            startup_timeout: Duration::from_secs(10),
            gdb: GdbOptions::qemu(),
        }
    }
}

/// One running QEMU process; killed when dropped.
pub struct QemuInstance {
    child: Child,
    gdb_port: u16,
    pty_path: String,
    output_tail: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for QemuInstance {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QemuInstance")
            .field("pid", &self.child.id())
            .field("gdb_port", &self.gdb_port)
            .field("pty_path", &self.pty_path)
            .finish()
    }
}

impl QemuInstance {
    /// Starts `qemu-system-arm -M mps2-an385 -S` with the GDB stub on a free loopback port and
    /// UART0 on a pty, and connects to the stub.
    pub fn start(options: &QemuOptions) -> Result<(QemuInstance, GdbClient), QemuError> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let attempt = QemuInstance::start_once(options)
                .and_then(|mut instance| instance.connect_gdb(options).map(|client| (instance, client)));
            match attempt {
                Ok(started) => return Ok(started),
                // The port we picked may have been taken between choosing it and QEMU binding it.
                Err(error @ QemuError::Startup { .. }) => last_error = Some(error),
                Err(other) => return Err(other),
            }
        }
        Err(last_error.unwrap_or_else(|| QemuError::Startup {
            executable: options.executable.display().to_string(),
            reason: "no attempt was made".to_string(),
            output_tail: Vec::new(),
        }))
    }

    fn start_once(options: &QemuOptions) -> Result<QemuInstance, QemuError> {
        let executable = options.executable.display().to_string();
        let startup = |reason: String, output_tail: Vec<String>| QemuError::Startup {
            executable: executable.clone(),
            reason,
            output_tail,
        };
        let gdb_port =
            free_loopback_port().map_err(|error| startup(format!("no free port: {error}"), Vec::new()))?;
        let mut child = Command::new(&options.executable)
            .args(["-M", QEMU_MACHINE, "-S", "-nographic", "-monitor", "none", "-serial", "pty"])
            .args(["-gdb", &format!("tcp:127.0.0.1:{gdb_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| QemuError::NotInstalled {
                executable: executable.clone(),
                reason: error.to_string(),
            })?;
        let output_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (pty_sender, pty_receiver) = crossbeam_channel::bounded::<String>(1);
        // QEMU names the pty on stdout and reports errors on stderr. Both are drained for the
        // process's whole life (a full pipe would stall QEMU).
        let streams: [(&str, Option<Box<dyn std::io::Read + Send>>); 2] = [
            (
                "qemu stdout",
                child.stdout.take().map(|stream| Box::new(stream) as Box<dyn std::io::Read + Send>),
            ),
            (
                "qemu stderr",
                child.stderr.take().map(|stream| Box::new(stream) as Box<dyn std::io::Read + Send>),
            ),
        ];
        for (thread_name, stream) in streams {
            let Some(stream) = stream else { continue };
            let tail = output_tail.clone();
            let pty_sender = pty_sender.clone();
            let spawned = std::thread::Builder::new().name(thread_name.to_string()).spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(path) = pty_path_in(&line) {
                        let _ = pty_sender.try_send(path);
                    }
                    let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if tail.len() >= OUTPUT_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
            if let Err(error) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(startup(format!("cannot start the output reader: {error}"), Vec::new()));
            }
        }
        let mut instance = QemuInstance { child, gdb_port, pty_path: String::new(), output_tail };
        let deadline = Instant::now() + options.startup_timeout;
        loop {
            match pty_receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(path) => {
                    instance.pty_path = path;
                    break;
                }
                Err(_) if instance.is_running() && Instant::now() < deadline => {}
                Err(_) => {
                    let reason = if instance.is_running() {
                        format!(
                            "no \"char device redirected to /dev/pts/N\" line within {:?}",
                            options.startup_timeout
                        )
                    } else {
                        "qemu exited during start-up".to_string()
                    };
                    // Give the reader a moment to collect QEMU's last words before reporting them.
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(startup(reason, instance.output_tail()));
                }
            }
        }
        Ok(instance)
    }

    /// The GDB stub's `host:port`.
    pub fn gdb_address(&self) -> String {
        format!("127.0.0.1:{}", self.gdb_port)
    }

    /// The pty UART0 is connected to.
    pub fn pty_path(&self) -> &str {
        &self.pty_path
    }

    /// The process ID.
    pub fn process_id(&self) -> u32 {
        self.child.id()
    }

    /// The last lines QEMU wrote (stdout and stderr).
    pub fn output_tail(&self) -> Vec<String> {
        self.output_tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Connects to the GDB stub, retrying while QEMU finishes starting up.
    fn connect_gdb(&mut self, options: &QemuOptions) -> Result<GdbClient, QemuError> {
        let address = self.gdb_address();
        let deadline = Instant::now() + options.startup_timeout;
        let transport = loop {
            match TcpTransport::connect(&address, Duration::from_millis(500)) {
                Ok(transport) => break transport,
                Err(error) => {
                    if !self.is_running() {
                        return Err(QemuError::Startup {
                            executable: options.executable.display().to_string(),
                            reason: format!("qemu exited before accepting the gdb connection ({error})"),
                            output_tail: self.output_tail(),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Err(QemuError::Gdb { address, source: error });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        GdbClient::connect(Box::new(transport), options.gdb.clone())
            .map_err(|source| QemuError::Gdb { address, source })
    }
}

impl Drop for QemuInstance {
    fn drop(&mut self) {
        // Already exited is fine; anything else leaves a process we can do nothing more about.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `char device redirected to /dev/pts/3 (label serial0)` -> `/dev/pts/3`.
fn pty_path_in(line: &str) -> Option<String> {
    let rest = line.split("char device redirected to ").nth(1)?;
    let path = rest.split_whitespace().next()?;
    (line.contains("serial0") || !line.contains("(label")).then(|| path.to_string())
}

/// Asks the kernel for a free loopback port. The port is released before QEMU binds it; a
/// collision in between makes QEMU exit, and [`QemuInstance::start`] tries again.
fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Checks that the QEMU executable runs, and returns its version line.
pub fn qemu_version(executable: &std::path::Path) -> Result<String, QemuError> {
    let not_installed =
        |reason: String| QemuError::NotInstalled { executable: executable.display().to_string(), reason };
    let output = Command::new(executable)
        .arg("--version")
        .output()
        .map_err(|error| not_installed(error.to_string()))?;
    if !output.status.success() {
        return Err(not_installed(format!("--version exited with {}", output.status)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().to_string())
}

/// A virtual fixture: each unit is a fresh QEMU process with a fresh unique ID.
pub struct QemuFixture {
    name: String,
    config: GdbTargetConfig,
    options: QemuOptions,
    uid_seed: Option<u64>,
    units_started: u64,
    /// How long an FCC on the emulated UART may take to answer (profiles with `[fcc]`).
    fcc_timeouts: crate::fcc::FccTimeouts,
}

impl QemuFixture {
    /// A fixture named `name` for chips shaped by `config`; fails when QEMU is not installed
    /// or the profile names no unique-ID location.
    pub fn new(name: &str, config: GdbTargetConfig, options: QemuOptions) -> Result<QemuFixture, QemuError> {
        qemu_version(&options.executable)?;
        let Some(location) = config.unique_id_location else {
            return Err(QemuError::UniqueId {
                reason: "the profile names no chip.unique_id (docs/device-contract.md, reference board)"
                    .to_string(),
            });
        };
        if location.size_bytes as usize != QEMU_UNIQUE_ID_SIZE_BYTES {
            return Err(QemuError::UniqueId {
                reason: format!(
                    "the profile's chip.unique_id is {} bytes; the QEMU harness programs {QEMU_UNIQUE_ID_SIZE_BYTES}",
                    location.size_bytes
                ),
            });
        }
        Ok(QemuFixture {
            name: name.to_string(),
            config,
            options,
            uid_seed: None,
            units_started: 0,
            fcc_timeouts: crate::fcc::FccTimeouts::default(),
        })
    }

    /// Derives unique IDs from `seed`, the fixture name and the unit number (repeatable runs).
    pub fn with_uid_seed(mut self, seed: u64) -> QemuFixture {
        self.uid_seed = Some(seed);
        self
    }

    /// How long an FCC on the unit's console may take to answer (the profile's `[fcc]`).
    pub fn with_fcc_timeouts(mut self, timeouts: crate::fcc::FccTimeouts) -> QemuFixture {
        self.fcc_timeouts = timeouts;
        self
    }

    fn next_unique_id(&self) -> Result<Vec<u8>, QemuError> {
        match self.uid_seed {
            Some(seed) => {
                let mut hasher = Sha256::new();
                hasher.update(seed.to_le_bytes());
                hasher.update(self.name.as_bytes());
                hasher.update(self.units_started.to_le_bytes());
                Ok(hasher.finalize()[..QEMU_UNIQUE_ID_SIZE_BYTES].to_vec())
            }
            None => {
                let mut bytes = vec![0u8; QEMU_UNIQUE_ID_SIZE_BYTES];
                getrandom::fill(&mut bytes)
                    .map_err(|error| QemuError::UniqueId { reason: format!("no randomness: {error}") })?;
                Ok(bytes)
            }
        }
    }

    /// Starts a fresh unit: QEMU, its console, a GDB connection and a programmed unique ID.
    pub fn start_unit(&mut self) -> Result<GdbTarget, QemuError> {
        let unique_id = self.next_unique_id()?;
        self.units_started += 1;
        let (instance, mut client) = QemuInstance::start(&self.options)?;
        // The core stays halted until the station resets it, so nothing is printed before the
        // console is open; QEMU would drop it otherwise.
        let console =
            SerialConsole::open(instance.pty_path(), CONSOLE_BAUD_RATE)?.with_fcc_timeouts(self.fcc_timeouts);
        let location = self.config.unique_id_location.ok_or_else(|| QemuError::UniqueId {
            reason: "the profile names no chip.unique_id".to_string(),
        })?;
        let address = instance.gdb_address();
        let gdb_error = |source| QemuError::Gdb { address: address.clone(), source };
        client.write_memory(location.address, &unique_id).map_err(gdb_error)?;
        let mut read_back = vec![0u8; unique_id.len()];
        client.read_memory(location.address, &mut read_back).map_err(gdb_error)?;
        if read_back != unique_id {
            return Err(QemuError::UniqueId {
                reason: format!(
                    "wrote {} at {:#010x}, read back {}",
                    hex::encode(&unique_id),
                    location.address,
                    hex::encode(&read_back)
                ),
            });
        }
        let probe_name = format!("{} (qemu pid {}, gdb {})", self.name, instance.process_id(), address);
        tracing::debug!(%probe_name, pty = instance.pty_path(), uid = %hex::encode(&unique_id), "qemu unit ready");
        Ok(GdbTarget::new(client, self.config.clone(), &probe_name)
            .with_console(console)
            .keep_alive(Box::new(instance)))
    }
}

impl Fixture for QemuFixture {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        if !keep_waiting() {
            return Ok(None);
        }
        let target = self.start_unit().map_err(|error| TargetError::Other(error.to_string()))?;
        Ok(Some(Box::new(target)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_lines() {
        for (line, expected) in [
            ("char device redirected to /dev/pts/3 (label serial0)", Some("/dev/pts/3")),
            ("char device redirected to /dev/pts/12 (label serial1)", None),
            ("char device redirected to /dev/pts/4", Some("/dev/pts/4")),
            ("qemu-system-arm: -gdb tcp:127.0.0.1:1: Failed to bind socket", None),
        ] {
            assert_eq!(pty_path_in(line).as_deref(), expected, "{line}");
        }
    }
}
