//! The FCC protocol against the real device: the unmodified upstream
//! factory-configurator-client-example application (Linux, TCP), built from IMPRINT_FCC_SOURCE
//! by scripts/fcc-device.sh, one process per test device. Its answers and its own verification
//! of the stored data (Imprint's fcc-verify tool around `fcc_verify_device_configured_4mbed_cloud`)
//! are the oracle.

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, SystemTime};

use common::fcc::{FccDevice, start_fcc_devices};
use imprint::fcc::{
    ConfigValue, CsrRequest, FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH, FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE, FccBundle,
    FccError, FccResponse, FccSession, FccStatus, FccTimeouts, FtcdStatus, KeyType, connect_tcp,
    encode_request_frame,
};
use imprint::trust::{
    Certificate, CertificateRequest, SoftwareSigner, device_key_pkcs8_der, generate_device_key, generate_signing_key,
    Signer, issue_certificate, self_signed_certificate, verify_certificate_request,
};

/// Development credentials made for the test with the project's trust module.
struct DevelopmentCredentials {
    factory_ca_key: SoftwareSigner,
    factory_ca: Certificate,
    bootstrap_server_ca: Certificate,
    update_auth: Certificate,
}

impl DevelopmentCredentials {
    fn new() -> Self {
        let factory_ca_key = generate_signing_key();
        let factory_ca =
            self_signed_certificate(&factory_ca_key, &CertificateRequest::certificate_authority("Imprint test factory CA", 3650))
                .expect("factory CA");
        let bootstrap_key = generate_signing_key();
        let bootstrap_server_ca = self_signed_certificate(
            &bootstrap_key,
            &CertificateRequest::certificate_authority("Imprint test bootstrap server CA", 3650),
        )
        .expect("bootstrap server CA");
        let update_key = generate_signing_key();
        let update_auth =
            self_signed_certificate(&update_key, &CertificateRequest::update_authority("Imprint test update authority", 3650))
                .expect("update certificate");
        DevelopmentCredentials {
            factory_ca_key,
            factory_ca,
            bootstrap_server_ca,
            update_auth,
        }
    }

    fn issue_device_certificate(&self, public_key: &p256::ecdsa::VerifyingKey, endpoint_name: &str) -> Certificate {
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
struct Unit {
    endpoint_name: String,
    serial_number: String,
}

impl Unit {
    fn new(index: usize) -> Unit {
        Unit {
            endpoint_name: uuid::Uuid::new_v4().to_string(),
            serial_number: format!("IMP-FCC-{index:06}"),
        }
    }
}

fn vendor_id() -> Vec<u8> {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"imprint.example").as_bytes().to_vec()
}

fn class_id() -> Vec<u8> {
    uuid::Uuid::new_v5(&uuid::Uuid::from_slice(&vendor_id()).expect("uuid"), b"fcc-linux").as_bytes().to_vec()
}

/// Everything of the README's full bundle except the device certificate and key.
fn identity_bundle(credentials: &DevelopmentCredentials, unit: &Unit) -> FccBundle {
    identity_bundle_with_vendor_id(credentials, unit, vendor_id())
}

fn identity_bundle_with_vendor_id(credentials: &DevelopmentCredentials, unit: &Unit, vendor_id: Vec<u8>) -> FccBundle {
    let now_seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    FccBundle::new()
        .config_param("mbed.UseBootstrap", ConfigValue::Unsigned(1))
        .config_param(
            "mbed.BootstrapServerURI",
            ConfigValue::Text("coaps://bootstrap.imprint.example:5684?aid=0123456789abcdef0123456789abcdef".to_string()),
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
fn full_bundle(credentials: &DevelopmentCredentials, unit: &Unit) -> FccBundle {
    with_station_made_key(credentials, unit, identity_bundle(credentials, unit))
}

/// Adds a station-made device key and its certificate from the factory CA, and Verify.
fn with_station_made_key(credentials: &DevelopmentCredentials, unit: &Unit, bundle: FccBundle) -> FccBundle {
    let device_key = generate_device_key().expect("device key");
    let device_certificate = credentials.issue_device_certificate(&device_key.verifying_key(), &unit.endpoint_name);
    bundle
        .key(
            "mbed.BootstrapDevicePrivateKey",
            KeyType::EccPrivate,
            device_key_pkcs8_der(&device_key).expect("key DER"),
        )
        .certificate("mbed.BootstrapDeviceCert", device_certificate.der().to_vec())
        .verify(true)
}

fn open_session(device: &FccDevice, session_id: &str) -> FccSession<TcpStream> {
    let connection = connect_tcp(&device.endpoint(), FccTimeouts::default()).expect("connect to the device");
    FccSession::new(connection, session_id)
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
    let response = session.send(&full_bundle(credentials, unit)).expect("full bundle exchange");
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
    let response = session.send(&bundle_with_short_id).expect("exchange");
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
    assert_status(&session.send(&first).expect("first message"), FccStatus::SUCCESS, &device);
    let second = FccBundle::new()
        .verify(false)
        .config_param("mbed.Manufacturer", ConfigValue::Text("second".to_string()));
    let response = session.send(&second).expect("second message");
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
    let response = session.send(&full_bundle(&credentials, &unit).disable(true)).expect("exchange");
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
    let response = session.send(&full_bundle(&credentials, &unit)).expect("exchange");
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
    let timeouts = FccTimeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_millis(300),
    };
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
    assert_status(&session.send(&first).expect("first message"), FccStatus::SUCCESS, &device);
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
    let csr_message = FccBundle::new()
        .keep_alive(true)
        .verify(false)
        .csr_request(CsrRequest {
            private_key_name: "mbed.BootstrapDevicePrivateKey".to_string(),
            subject: format!("CN={}", unit.endpoint_name),
            key_usage: FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
            extended_key_usage: FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH,
        });
    let response = session.send(&csr_message).expect("CSR message");
    assert_status(&response, FccStatus::SUCCESS, &device);
    assert_eq!(response.csrs.len(), 1, "{response:?}");
    assert_eq!(response.csrs[0].private_key_name, "mbed.BootstrapDevicePrivateKey");
    let verified = verify_certificate_request(&response.csrs[0].request_der).expect("the device's CSR verifies");
    assert_eq!(verified.subject_common_name.as_deref(), Some(unit.endpoint_name.as_str()));
    let certificate = credentials.issue_device_certificate(&verified.public_key, &unit.endpoint_name);
    let final_message = identity_bundle(&credentials, &unit)
        .certificate("mbed.BootstrapDeviceCert", certificate.der().to_vec())
        .verify(true);
    let response = session.send(&final_message).expect("certificate message");
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
    let text = std::fs::read_to_string(&header).unwrap_or_else(|error| panic!("{}: {error}", header.display()));
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("FCC_STATUS_"))
        .map(|line| line.split(|character: char| character == ',' || character == ' ').next().unwrap_or(""))
        .collect();
    let ours: Vec<&str> = FccStatus::all().map(FccStatus::name).collect();
    assert_eq!(ours, names);
}
