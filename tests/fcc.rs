//! The FCC protocol against the real device: the unmodified upstream
//! factory-configurator-client-example application (Linux, TCP), built from IMPRINT_FCC_SOURCE
//! by scripts/fcc-device.sh, one process per test device. Its answers and its own verification
//! of the stored data (Imprint's fcc-verify tool around `fcc_verify_device_configured_4mbed_cloud`)
//! are the oracle.

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::fcc::{
    DevelopmentCredentials, FccDevice, Unit, full_bundle, identity_bundle, identity_bundle_with_vendor_id,
    start_fcc_devices, with_station_made_key,
};
use der::zeroize::Zeroizing;
use imprint::fcc::{
    ConfigValue, CsrRequest, FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH, FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
    FccBundle, FccError, FccResponse, FccSession, FccStatus, FccTimeouts, FtcdStatus, KeyType, connect_tcp,
    encode_request_frame,
};
use imprint::trust::verify_certificate_request;

fn open_session(device: &FccDevice, session_id: &str) -> FccSession<TcpStream> {
    let connection = connect_tcp(&device.endpoint(), FccTimeouts::default()).expect("connect to the device");
    FccSession::new(connection, session_id)
}

/// The device's answer, or a panic naming `what` with the device's own output (a device that
/// never answers shows why only there).
fn answer(
    result: Result<FccResponse, imprint::fcc::FccError>,
    what: &str,
    device: &FccDevice,
) -> FccResponse {
    result.unwrap_or_else(|error| panic!("{what}: {error}; device output:\n{}", device.log()))
}

fn assert_status(response: &FccResponse, expected: FccStatus, device: &FccDevice) {
    assert_eq!(
        response.return_status,
        expected,
        "expected {expected}, the device answered {} ({:?}, warnings {:?}); device output:\n{}",
        response.return_status,
        response.info_message,
        response.warning_info,
        device.log()
    );
}

fn provision_full(device: &mut FccDevice, credentials: &DevelopmentCredentials, unit: &Unit) -> FccResponse {
    let mut session = open_session(device, &format!("sid-{}", unit.serial_number));
    let response = answer(session.send(&full_bundle(credentials, unit)), "full bundle exchange", device);
    assert_status(&response, FccStatus::SUCCESS, device);
    response
}

#[test]
fn full_bundle_succeeds_and_the_fcc_verifies_the_stored_device() {
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(1);
    let mut device = FccDevice::start();
    let response = provision_full(&mut device, &credentials, &unit);
    assert_eq!(response.info_message.as_deref().map(str::trim_end), Some("The Factory process succeeded"));
    assert_eq!(response.session_id.as_deref(), Some("sid-IMP-FCC-000001"));
    let warnings = response.warning_info.unwrap_or_default();
    assert!(warnings.contains("Certificate validity is less than 10 years"), "warnings: {warnings}");
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

#[test]
fn vendor_id_of_15_bytes_is_refused_with_wrong_item_size() {
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(2);
    let device = FccDevice::start();
    let bundle_with_short_id = with_station_made_key(
        &credentials,
        &unit,
        identity_bundle_with_vendor_id(&credentials, &unit, vec![7; 15]),
    );
    let mut session = open_session(&device, "sid-short-vendor-id");
    let response = answer(session.send(&bundle_with_short_id), "exchange", &device);
    assert_status(&response, FccStatus::WRONG_ITEM_DATA_SIZE, &device);
    assert_eq!(response.return_status.name(), "FCC_STATUS_WRONG_ITEM_DATA_SIZE");
    assert_eq!(response.info_message.as_deref().map(str::trim_end), Some("Item size is wrong:mbed.VendorId"));
}

#[test]
fn an_item_that_already_exists_is_refused_with_17() {
    let device = FccDevice::start();
    let mut session = open_session(&device, "sid-exists");
    let first = FccBundle::new()
        .keep_alive(true)
        .verify(false)
        .config_param("mbed.Manufacturer", ConfigValue::Text("first".to_string()));
    assert_status(&answer(session.send(&first), "first message", &device), FccStatus::SUCCESS, &device);
    let second = FccBundle::new()
        .verify(false)
        .config_param("mbed.Manufacturer", ConfigValue::Text("second".to_string()));
    let response = answer(session.send(&second), "second message", &device);
    assert_status(&response, FccStatus::ITEM_ALREADY_EXISTS, &device);
    assert_eq!(response.return_status.name(), "FCC_STATUS_KCM_FILE_EXIST_ERROR");
    let info = response.info_message.unwrap_or_default();
    assert!(info.contains("mbed.Manufacturer"), "info: {info}");
}

/// After `Disable` the device refuses every bundle: the bundle handler prepares no response and
/// the frame carries status 9 (`FTCD_COMM_FAILED_TO_PROCESS_DATA`; `FCC_STATUS_FACTORY_DISABLED_ERROR`
/// is 9 too). The example application wipes the storage when a new process gets its first
/// message, so the unit comes back through fcc-serve, which keeps the storage as a product does.
#[test]
fn a_second_provisioning_after_disable_is_refused_with_9() {
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(3);
    let mut device = FccDevice::start();
    let mut session = open_session(&device, "sid-disable");
    let response = answer(session.send(&full_bundle(&credentials, &unit).disable(true)), "exchange", &device);
    assert_status(&response, FccStatus::SUCCESS, &device);
    drop(session);
    assert!(device.verify_stored().output.contains("factory-disabled yes"));
    let device = device.resume_without_wipe();
    let mut session = open_session(&device, "sid-after-disable");
    let error = session.send(&full_bundle(&credentials, &unit)).expect_err("a disabled device refuses");
    match &error {
        FccError::CommunicationStatus { status, .. } => {
            assert_eq!(*status, FtcdStatus::FAILED_TO_PROCESS_DATA, "device output:\n{}", device.log());
            assert_eq!(status.0, 9);
        }
        other => panic!("expected status 9, found {other}; device output:\n{}", device.log()),
    }
    assert!(error.to_string().contains("FTCD_COMM_FAILED_TO_PROCESS_DATA"), "{error}");
}

/// A unit that already holds an item and comes back without a wipe: "already exists" (17).
#[test]
fn reprovisioning_a_provisioned_device_without_a_wipe_is_refused_with_17() {
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(5);
    let mut device = FccDevice::start();
    provision_full(&mut device, &credentials, &unit);
    assert!(device.wait_for_exit(Duration::from_secs(10)).is_some(), "{}", device.log());
    let device = device.resume_without_wipe();
    let mut session = open_session(&device, "sid-again");
    let response = answer(session.send(&full_bundle(&credentials, &unit)), "exchange", &device);
    assert_status(&response, FccStatus::ITEM_ALREADY_EXISTS, &device);
}

#[test]
fn a_framing_error_closes_the_connection() {
    let device = FccDevice::start();
    let connection = connect_tcp(&device.endpoint(), FccTimeouts::default()).expect("connect");
    let mut session = FccSession::new(connection, "sid-framing");
    let bundle_cbor = FccBundle::new().to_cbor().expect("cbor");
    let mut frame = encode_request_frame(&bundle_cbor);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    session.connection_mut().send_raw(&frame).expect("send");
    let error = session.connection_mut().read_response().expect_err("a broken frame gets no answer");
    assert!(matches!(error, FccError::ConnectionClosed { .. }), "{error}; device output:\n{}", device.log());
    assert!(error.to_string().contains("closed the connection"), "{error}");
}

#[test]
fn a_device_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = listener.local_addr().expect("address").to_string();
    let silent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        std::thread::sleep(Duration::from_secs(2));
        drop(stream);
    });
    let timeouts = FccTimeouts { connect: Duration::from_secs(2), response: Duration::from_millis(300) };
    let mut session = FccSession::new(connect_tcp(&endpoint, timeouts).expect("connect"), "sid-silent");
    let started = std::time::Instant::now();
    let error = session.send(&FccBundle::new()).expect_err("silence");
    assert!(matches!(error, FccError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(error.to_string().contains("did not answer within 300 ms"), "{error}");
    silent.join().expect("listener thread");
}

#[test]
fn a_device_killed_mid_session_is_a_closed_connection() {
    let mut device = FccDevice::start();
    let mut session = open_session(&device, "sid-killed");
    let first = FccBundle::new()
        .keep_alive(true)
        .verify(false)
        .config_param("mbed.Manufacturer", ConfigValue::Text("Imprint".to_string()));
    assert_status(&answer(session.send(&first), "first message", &device), FccStatus::SUCCESS, &device);
    device.kill();
    let second = FccBundle::new().config_param("mbed.ModelNumber", ConfigValue::Text("x".to_string()));
    let error = session.send(&second).expect_err("the device is gone");
    assert!(matches!(error, FccError::ConnectionClosed { .. }), "{error}");
}

#[test]
fn csr_flow_device_key_certificate_issued_and_verified() {
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(4);
    let mut device = FccDevice::start();
    let mut session = open_session(&device, "sid-csr");
    let csr_message = FccBundle::new().keep_alive(true).verify(false).csr_request(CsrRequest {
        private_key_name: "mbed.BootstrapDevicePrivateKey".to_string(),
        subject: format!("CN={}", unit.endpoint_name),
        key_usage: FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
        extended_key_usage: FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH,
    });
    let response = answer(session.send(&csr_message), "CSR message", &device);
    assert_status(&response, FccStatus::SUCCESS, &device);
    assert_eq!(response.csrs.len(), 1, "{response:?}");
    assert_eq!(response.csrs[0].private_key_name, "mbed.BootstrapDevicePrivateKey");
    let verified =
        verify_certificate_request(&response.csrs[0].request_der).expect("the device's CSR verifies");
    assert_eq!(verified.subject_common_name.as_deref(), Some(unit.endpoint_name.as_str()));
    let certificate = credentials.issue_device_certificate(&verified.public_key, &unit.endpoint_name);
    let final_message = identity_bundle(&credentials, &unit)
        .certificate("mbed.BootstrapDeviceCert", certificate.der().to_vec())
        .verify(true);
    let response = answer(session.send(&final_message), "certificate message", &device);
    assert_status(&response, FccStatus::SUCCESS, &device);
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

/// The serial transport: the station's end of a pty pair; the other end is bridged to the real
/// device's socket, with console text before the response (as a UART console prints around its
/// frames), which the reader skips up to the "mbedprov" token.
#[test]
fn full_bundle_over_a_serial_port() {
    use serialport::SerialPort;
    use std::io::{Read, Write};
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(6);
    let mut device = FccDevice::start();
    let (device_end, station_end) = serialport::TTYPort::pair().expect("a pty pair");
    let socket = TcpStream::connect(device.endpoint()).expect("connect");
    let mut socket_reader = socket.try_clone().expect("socket clone");
    let mut socket_writer = socket;
    let mut pty_reader = device_end.try_clone_native().expect("pty clone");
    let mut pty_writer = device_end;
    pty_reader.set_timeout(Duration::from_secs(60)).expect("pty timeout");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count) = pty_reader.read(&mut buffer) {
            if count == 0 || socket_writer.write_all(&buffer[..count]).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let _ = pty_writer.write_all(b"[INFO][fce ]: console output before the frame\r\nmbed");
        let mut buffer = [0u8; 4096];
        while let Ok(count) = socket_reader.read(&mut buffer) {
            if count == 0 || pty_writer.write_all(&buffer[..count]).is_err() {
                break;
            }
        }
    });
    let station_port: Box<dyn serialport::SerialPort> = Box::new(station_end);
    let connection =
        imprint::fcc::FccConnection::new(station_port, "pty".to_string(), FccTimeouts::default());
    let mut session = FccSession::new(connection, "sid-serial");
    let response = answer(session.send(&full_bundle(&credentials, &unit)), "exchange over the pty", &device);
    assert_status(&response, FccStatus::SUCCESS, &device);
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}

#[test]
fn eight_devices_at_once() {
    let credentials = DevelopmentCredentials::new();
    let mut devices = start_fcc_devices(8);
    std::thread::scope(|scope| {
        for (index, device) in devices.iter_mut().enumerate() {
            let credentials = &credentials;
            scope.spawn(move || {
                let unit = Unit::new(100 + index);
                provision_full(device, credentials, &unit);
            });
        }
    });
    for device in &mut devices {
        let report = device.verify_stored();
        assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
    }
}

/// The status names are the upstream header's, every value (`fcc_status.h` is the oracle).
#[test]
fn status_names_match_the_upstream_header() {
    let source = std::env::var_os("IMPRINT_FCC_SOURCE").expect("IMPRINT_FCC_SOURCE is not set (docs/fcc.md)");
    let header = std::path::Path::new(&source).join(
        "mbed-cloud-client/factory-configurator-client/factory-configurator-client/factory-configurator-client/fcc_status.h",
    );
    let text =
        std::fs::read_to_string(&header).unwrap_or_else(|error| panic!("{}: {error}", header.display()));
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("FCC_STATUS_"))
        .map(|line| line.split([',', ' ']).next().unwrap_or(""))
        .collect();
    let ours: Vec<&str> = FccStatus::all().map(FccStatus::name).collect();
    assert_eq!(ours, names);
}

/// Without IMPRINT_FCC_SOURCE, or with a directory that is not the sources, the build script
/// fails with a message that says what to set: the FCC tests never skip silently.
#[test]
fn the_device_build_names_a_missing_or_wrong_source_directory() {
    let script = common::repo_root().join("scripts/fcc-device.sh");
    let build_dir = tempfile::tempdir().expect("build directory");
    let unset = std::process::Command::new(&script)
        .arg(build_dir.path())
        .env_remove("IMPRINT_FCC_SOURCE")
        .output()
        .expect("run the script");
    assert_eq!(unset.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unset.stderr).contains("IMPRINT_FCC_SOURCE is not set"));
    let wrong = std::process::Command::new(&script)
        .arg(build_dir.path())
        .env("IMPRINT_FCC_SOURCE", build_dir.path())
        .output()
        .expect("run the script");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("lacks mbed-cloud-client/factory-configurator-client")
    );
}

/// Sends the full bundle with `update_certificate` as `mbed.UpdateAuthCert` to a fresh device.
fn send_full_bundle_with_update_certificate(
    update_certificate: imprint::trust::Certificate,
) -> (FccDevice, FccResponse) {
    let credentials =
        DevelopmentCredentials { update_auth: update_certificate, ..DevelopmentCredentials::new() };
    let unit = Unit::new(7);
    let device = FccDevice::start();
    let mut session = open_session(&device, "sid-update-certificate");
    let response = answer(session.send(&full_bundle(&credentials, &unit)), "exchange", &device);
    (device, response)
}

/// Makes a P-384 key and a self-signed certificate for `subject` with openssl in `directory`;
/// returns the certificate's DER and the key's PKCS#8 DER.
fn openssl_p384_certificate(directory: &std::path::Path, subject: &str) -> (Vec<u8>, Vec<u8>) {
    let certificate = common::fcc::openssl_p384_certificate(directory, subject, &[]);
    common::openssl_ok(
        &["pkcs8", "-topk8", "-nocrypt", "-in", "p384.key.pem", "-outform", "DER", "-out", "p384.key.der"],
        directory,
    );
    (certificate, std::fs::read(directory.join("p384.key.der")).expect("read openssl's key"))
}

/// An expired update certificate: the device's own verification refuses it by name (13). A
/// profile with such a `trust.certificate` never reaches a device: it is refused at start
/// (tests/fcc_line.rs).
#[test]
fn an_expired_update_certificate_is_refused_by_the_device_with_13() {
    let key = imprint::trust::generate_signing_key();
    let mut request = imprint::trust::CertificateRequest::update_authority("Expired update authority", 30);
    request.not_before = Some(std::time::SystemTime::now() - Duration::from_secs(400 * 24 * 3600));
    let certificate = imprint::trust::self_signed_certificate(&key, &request).expect("expired certificate");
    let (device, response) = send_full_bundle_with_update_certificate(certificate);
    assert_status(&response, FccStatus::EXPIRED_CERTIFICATE, &device);
    assert_eq!(response.return_status.name(), "FCC_STATUS_EXPIRED_CERTIFICATE");
    assert_eq!(
        response.info_message.as_deref().map(str::trim_end),
        Some("Certificate expired:mbed.UpdateAuthCert")
    );
}

/// A device key that is not P-256 (P-384, with its certificate, made by openssl): the device's
/// KCM refuses the curve (18, naming the item).
#[test]
fn a_device_key_that_is_not_p256_is_refused_by_the_device_with_18() {
    let directory = tempfile::tempdir().expect("temp dir");
    let credentials = DevelopmentCredentials::new();
    let unit = Unit::new(8);
    let (certificate_der, key_der) =
        openssl_p384_certificate(directory.path(), &format!("/CN={}", unit.endpoint_name));
    let bundle = identity_bundle(&credentials, &unit)
        .key("mbed.BootstrapDevicePrivateKey", KeyType::EccPrivate, Zeroizing::new(key_der))
        .certificate("mbed.BootstrapDeviceCert", certificate_der)
        .verify(true);
    let device = FccDevice::start();
    let mut session = open_session(&device, "sid-p384-device-key");
    let response = answer(session.send(&bundle), "exchange", &device);
    assert_status(&response, FccStatus::KCM_CRYPTO_ERROR, &device);
    assert_eq!(response.return_status.name(), "FCC_STATUS_KCM_CRYPTO_ERROR");
    assert_eq!(
        response.info_message.as_deref().map(str::trim_end),
        Some("Curve unsupported:mbed.BootstrapDevicePrivateKey")
    );
}

/// An update certificate that is not P-256 is **stored** by the device: its FCC checks no curve
/// for `mbed.UpdateAuthCert` (answer 0), so the station's check at start is the only guard: a
/// profile whose `trust.certificate` is not P-256 is refused before any unit (tests/fcc_line.rs).
#[test]
fn the_device_stores_an_update_certificate_that_is_not_p256() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (certificate_der, _) = openssl_p384_certificate(directory.path(), "/CN=P-384 update authority");
    let certificate = imprint::trust::Certificate::from_der(&certificate_der).expect("P-384 certificate");
    assert!(certificate.verifying_key().is_err(), "Imprint takes it for P-256");
    let (mut device, response) = send_full_bundle_with_update_certificate(certificate);
    assert_status(&response, FccStatus::SUCCESS, &device);
    let report = device.verify_stored();
    assert!(report.success && report.status == 0, "fcc-verify: {report:?}");
}
