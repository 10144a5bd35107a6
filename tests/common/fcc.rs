//! The real FCC test device: the unmodified upstream factory-configurator-client-example
//! application, built by scripts/fcc-device.sh from IMPRINT_FCC_SOURCE, one process per slot on
//! loopback, each in a private working directory (its storage is "./pal" there). Also runs
//! Imprint's fcc-verify tool on a finished device's stored data.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use imprint::fcc::{ConfigValue, FccBundle, KeyType};
use imprint::trust::{
    Certificate, CertificateRequest, Signer, SoftwareSigner, device_key_pkcs8_der, generate_device_key,
    generate_signing_key, issue_certificate, self_signed_certificate,
};

use super::{repo_root, target_dir};

/// Paths of the two binaries the harness builds.
#[derive(Debug)]
pub struct FccDeviceBinaries {
    /// The upstream example application.
    pub example: PathBuf,
    /// Imprint's fcc-verify tool.
    pub verify: PathBuf,
    /// Imprint's fcc-serve tool (the example's loop without its storage wipe).
    pub serve: PathBuf,
}

static BINARIES: OnceLock<FccDeviceBinaries> = OnceLock::new();

/// Builds the device once per test binary (the script is idempotent and locks its build
/// directory); panics with the script's message when IMPRINT_FCC_SOURCE is missing or wrong:
/// these tests never skip.
pub fn fcc_device_binaries() -> &'static FccDeviceBinaries {
    BINARIES.get_or_init(|| {
        assert!(
            std::env::var_os("IMPRINT_FCC_SOURCE").is_some(),
            "IMPRINT_FCC_SOURCE is not set: the FCC tests need the upstream mbed-cloud-client and \
             factory-configurator-client-example sources (docs/fcc.md says how to point it at upstream checkouts)"
        );
        let build_dir = target_dir().join("fcc-device");
        let output = Command::new(repo_root().join("scripts/fcc-device.sh"))
            .arg(&build_dir)
            .output()
            .expect("run scripts/fcc-device.sh");
        assert!(
            output.status.success(),
            "scripts/fcc-device.sh failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        FccDeviceBinaries {
            example: build_dir.join("factory-configurator-client-example"),
            verify: build_dir.join("fcc-verify"),
            serve: build_dir.join("fcc-serve"),
        }
    })
}

/// What the FCC's own verification said about a device's stored data.
#[derive(Debug)]
pub struct FccVerifyReport {
    /// `fcc_status_e` of `fcc_verify_device_configured_4mbed_cloud()`.
    pub status: u32,
    /// The tool's whole output.
    pub output: String,
    /// Exit status 0.
    pub success: bool,
}

/// Development credentials made with the project's trust module: a factory CA, a bootstrap server
/// CA and a self-signed update authority certificate.
pub struct DevelopmentCredentials {
    pub factory_ca_key: SoftwareSigner,
    pub factory_ca: Certificate,
    pub bootstrap_server_ca: Certificate,
    pub update_auth: Certificate,
}

impl DevelopmentCredentials {
    pub fn new() -> Self {
        let factory_ca_key = generate_signing_key();
        let factory_ca = self_signed_certificate(
            &factory_ca_key,
            &CertificateRequest::certificate_authority("Imprint test factory CA", 3650),
        )
        .expect("factory CA");
        let bootstrap_key = generate_signing_key();
        let bootstrap_server_ca = self_signed_certificate(
            &bootstrap_key,
            &CertificateRequest::certificate_authority("Imprint test bootstrap server CA", 3650),
        )
        .expect("bootstrap server CA");
        let update_key = generate_signing_key();
        let update_auth = self_signed_certificate(
            &update_key,
            &CertificateRequest::update_authority("Imprint test update authority", 3650),
        )
        .expect("update certificate");
        DevelopmentCredentials { factory_ca_key, factory_ca, bootstrap_server_ca, update_auth }
    }

    /// A device identity certificate (CN = endpoint name, EKU clientAuth) from the factory CA.
    pub fn issue_device_certificate(
        &self,
        public_key: &p256::ecdsa::VerifyingKey,
        endpoint_name: &str,
    ) -> Certificate {
        issue_certificate(
            &self.factory_ca_key,
            &self.factory_ca,
            public_key,
            &CertificateRequest::device_identity(endpoint_name, 3650),
        )
        .expect("device certificate")
    }
}

/// One unit's identity.
pub struct Unit {
    pub endpoint_name: String,
    pub serial_number: String,
}

impl Unit {
    pub fn new(index: usize) -> Unit {
        Unit { endpoint_name: uuid::Uuid::new_v4().to_string(), serial_number: format!("IMP-FCC-{index:06}") }
    }
}

pub fn vendor_id() -> Vec<u8> {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"imprint.example").as_bytes().to_vec()
}

pub fn class_id() -> Vec<u8> {
    uuid::Uuid::new_v5(&uuid::Uuid::from_slice(&vendor_id()).expect("uuid"), b"fcc-linux").as_bytes().to_vec()
}

/// Everything of the README's full bundle except the device certificate and key.
pub fn identity_bundle(credentials: &DevelopmentCredentials, unit: &Unit) -> FccBundle {
    identity_bundle_with_vendor_id(credentials, unit, vendor_id())
}

pub fn identity_bundle_with_vendor_id(
    credentials: &DevelopmentCredentials,
    unit: &Unit,
    vendor_id: Vec<u8>,
) -> FccBundle {
    let now_seconds =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock after 1970").as_secs();
    FccBundle::new()
        .config_param("mbed.UseBootstrap", ConfigValue::Unsigned(1))
        .config_param(
            "mbed.BootstrapServerURI",
            ConfigValue::Text(
                "coaps://bootstrap.imprint.example:5684?aid=0123456789abcdef0123456789abcdef".to_string(),
            ),
        )
        .config_param("mbed.Manufacturer", ConfigValue::Text("Imprint Example Ltd".to_string()))
        .config_param("mbed.ModelNumber", ConfigValue::Text("fcc-linux".to_string()))
        .config_param("mbed.DeviceType", ConfigValue::Text("gateway".to_string()))
        .config_param("mbed.HardwareVersion", ConfigValue::Text("1.0".to_string()))
        .config_param("mbed.MemoryTotalKB", ConfigValue::Unsigned(512))
        .config_param("mbed.SerialNumber", ConfigValue::Text(unit.serial_number.clone()))
        .config_param("mbed.CurrentTime", ConfigValue::Unsigned(now_seconds))
        .config_param("mbed.EndpointName", ConfigValue::Text(unit.endpoint_name.clone()))
        .config_param("mbed.VendorId", ConfigValue::Bytes(vendor_id))
        .config_param("mbed.ClassId", ConfigValue::Bytes(class_id()))
        .certificate("mbed.BootstrapServerCACert", credentials.bootstrap_server_ca.der().to_vec())
        .certificate("mbed.UpdateAuthCert", credentials.update_auth.der().to_vec())
}

/// The README's full bundle: identity, a station-made device key and its certificate, Verify.
pub fn full_bundle(credentials: &DevelopmentCredentials, unit: &Unit) -> FccBundle {
    with_station_made_key(credentials, unit, identity_bundle(credentials, unit))
}

/// Adds a station-made device key and its certificate from the factory CA, and Verify.
pub fn with_station_made_key(
    credentials: &DevelopmentCredentials,
    unit: &Unit,
    bundle: FccBundle,
) -> FccBundle {
    let device_key = generate_device_key().expect("device key");
    let device_certificate =
        credentials.issue_device_certificate(&device_key.verifying_key(), &unit.endpoint_name);
    bundle
        .key(
            "mbed.BootstrapDevicePrivateKey",
            KeyType::EccPrivate,
            device_key_pkcs8_der(&device_key).expect("key DER"),
        )
        .certificate("mbed.BootstrapDeviceCert", device_certificate.der().to_vec())
        .verify(true)
}

/// One running device process.
pub struct FccDevice {
    child: Option<Child>,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    work_dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;

impl FccDevice {
    /// Starts a device in a fresh working directory.
    pub fn start() -> FccDevice {
        let work_dir =
            tempfile::Builder::new().prefix("imprint-fcc-device-").tempdir().expect("device directory");
        FccDevice::start_in(work_dir, &fcc_device_binaries().example, &[])
    }

    /// Starts fcc-serve --keep-serving in a fresh working directory: a product-like device
    /// that keeps its storage and serves one factory session after another (as after each
    /// reset), so a unit provisioned once answers 17 for items it holds the next time.
    pub fn start_keeping_storage() -> FccDevice {
        let work_dir =
            tempfile::Builder::new().prefix("imprint-fcc-device-").tempdir().expect("device directory");
        FccDevice::start_in(work_dir, &fcc_device_binaries().serve, &["--keep-serving"])
    }

    /// Starts a device process in `work_dir` (its storage persists there between processes).
    /// The example picks a random port; on a collision it exits and is started again.
    fn start_in(work_dir: tempfile::TempDir, program: &std::path::Path, arguments: &[&str]) -> FccDevice {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut child = Command::new(program)
                .args(arguments)
                .current_dir(work_dir.path())
                .env("ETHERNET_LINUX_IFACE_NAME", "lo")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start factory-configurator-client-example");
            let stdout = child.stdout.take().expect("device stdout");
            let log = Arc::new(Mutex::new(String::new()));
            let (line_sender, line_receiver) = mpsc::channel::<String>();
            let thread_log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    thread_log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_str(&line);
                    thread_log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push('\n');
                    let _ = line_sender.send(line);
                }
            });
            let deadline = Instant::now() + START_TIMEOUT;
            let mut port = None;
            while let Ok(line) =
                line_receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                if let Some(address) = line.split("Client IP Address and Port :").nth(1) {
                    port = address.trim().rsplit(':').next().and_then(|text| text.parse::<u16>().ok());
                }
                // Printed once the socket listens.
                if line.contains("Factory flow begins") {
                    break;
                }
            }
            let listening =
                log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains("Factory flow begins");
            match port {
                Some(port) if listening => {
                    return FccDevice { child: Some(child), port, work_dir, log };
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                }
            }
        }
        panic!(
            "{} did not start listening after {START_ATTEMPTS} attempts; last output:\n{}",
            program.display(),
            tail(&last_log)
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The end of the device's output so far (its debug trace is long).
    pub fn log(&self) -> String {
        tail(&self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Waits for the process to end (the example exits when a session ends).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (a device that dies mid-session).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Ends this process and serves the same storage again with fcc-serve, which keeps what the
    /// device holds (the example would wipe it): a finished unit brought back to the station.
    pub fn resume_without_wipe(mut self) -> FccDevice {
        self.kill();
        let work_dir =
            tempfile::Builder::new().prefix("imprint-fcc-device-").tempdir().expect("device directory");
        let old_dir = std::mem::replace(&mut self.work_dir, work_dir);
        FccDevice::start_in(old_dir, &fcc_device_binaries().serve, &[])
    }

    /// Runs fcc-verify on this device's stored data, after the process ended.
    pub fn verify_stored(&mut self) -> FccVerifyReport {
        assert!(
            self.wait_for_exit(Duration::from_secs(10)).is_some(),
            "the device did not exit after its session; output:\n{}",
            self.log()
        );
        self.verify_stored_now()
    }

    /// Runs fcc-verify on this device's stored data now (a device that keeps serving: between
    /// two sessions its storage is at rest).
    pub fn verify_stored_now(&mut self) -> FccVerifyReport {
        let output = Command::new(&fcc_device_binaries().verify)
            .current_dir(self.work_dir.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run fcc-verify");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let status = text
            .lines()
            .find_map(|line| line.strip_prefix("fcc-verify: status "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|code| code.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("fcc-verify printed no status:\n{text}"));
        FccVerifyReport { status, output: text, success: output.status.success() }
    }
}

impl Drop for FccDevice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A serial port bridged to a device's FCC socket, as a device's UART on a USB-UART: the
/// station opens [`PtyBridge::port`]; what it writes goes to the device's socket, and the
/// device's answers come back with console text printed ahead of the first one (as a UART
/// console prints around its frames). Keep it alive while the station uses the port.
pub struct PtyBridge {
    /// The path the station opens (`/dev/pts/N`).
    pub port: String,
    _station_end: serialport::TTYPort,
}

/// Bridges a fresh pty pair to `device`'s socket (one TCP connection for the bridge's life).
pub fn bridge_pty_to(device: &FccDevice) -> PtyBridge {
    use std::io::{Read, Write};
    let (device_end, station_end) = serialport::TTYPort::pair().expect("a pty pair");
    let port = serialport::SerialPort::name(&station_end).expect("the pty's path");
    let socket = std::net::TcpStream::connect(device.endpoint()).expect("connect to the device");
    let mut socket_reader = socket.try_clone().expect("socket clone");
    let mut socket_writer = socket;
    let mut pty_reader = device_end.try_clone_native().expect("pty clone");
    let mut pty_writer = device_end;
    serialport::SerialPort::set_timeout(&mut pty_reader, Duration::from_secs(600)).expect("pty timeout");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count) = pty_reader.read(&mut buffer) {
            if count == 0 || socket_writer.write_all(&buffer[..count]).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut console_written = false;
        while let Ok(count) = socket_reader.read(&mut buffer) {
            if !console_written {
                let _ = pty_writer.write_all(b"[INFO][fce ]: console output before the frame\r\nmbed");
                console_written = true;
            }
            if count == 0 || pty_writer.write_all(&buffer[..count]).is_err() {
                break;
            }
        }
    });
    PtyBridge { port, _station_end: station_end }
}

/// Starts `count` devices (one per slot), each on its own port and storage.
pub fn start_fcc_devices(count: usize) -> Vec<FccDevice> {
    (0..count).map(|_| FccDevice::start()).collect()
}

/// The last lines of a device's output.
fn tail(log: &str) -> String {
    const TAIL_LINES: usize = 60;
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Makes a P-384 key (`p384.key.pem`) and a self-signed certificate for `subject` (`p384.pem`,
/// and its DER in `p384.der`) with openssl in `directory`, `extra` going to `openssl req`;
/// returns the certificate's DER.
pub fn openssl_p384_certificate(directory: &std::path::Path, subject: &str, extra: &[&str]) -> Vec<u8> {
    let mut arguments = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:secp384r1",
        "-nodes",
        "-keyout",
        "p384.key.pem",
        "-subj",
        subject,
        "-days",
        "3650",
        "-out",
        "p384.pem",
    ];
    arguments.extend_from_slice(extra);
    let openssl = |arguments: &[&str]| {
        let output =
            Command::new("openssl").args(arguments).current_dir(directory).output().expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&arguments);
    openssl(&["x509", "-in", "p384.pem", "-outform", "DER", "-out", "p384.der"]);
    std::fs::read(directory.join("p384.der")).expect("read openssl's certificate")
}
