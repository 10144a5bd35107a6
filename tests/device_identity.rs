//! Per-device identity certificates on the simulated device, for both key origins: whole
//! `imprint run`s through the binary whose every issued certificate `openssl verify -CAfile`
//! accepts (the factory CA made by openssl, or kept in a SoftHSM2 token), faults that must FAIL
//! at the right step (a bad CSR signature, a bad challenge signature, no entropy source), the
//! station-made private key nowhere but in the device (events, ledger file bytes, exports and
//! the certificate bundle are searched for it), CSRs checked against openssl in both directions,
//! profile mistakes reported by field, and the ledger's derived certificate columns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::{demo_profile_text, imprint, openssl, openssl_ok, text, write_profile};
use imprint::device::sim::{FaultPlan, SimDevice, SimTarget};
use imprint::ledger::{CertificateSelection, ExportFilter, ExportFormat, Ledger};
use imprint::profile::{Profile, SimTiming};
use imprint::station::{
    CancelToken, EventKind, EventSink, SelfTestMaterial, StationContext, StationEvent, UnitResult,
    provision_unit,
};
use imprint::store::{ConfigStore, keys};
use imprint::trust::{self, Certificate, Signer};

const USER_PIN: &str = "1234";
const SO_PIN: &str = "5678";
const PIN_VARIABLE: &str = "IMPRINT_TEST_PKCS11_PIN";

/// A factory CA made by openssl (the outside oracle): `ca.pem` and its PKCS#8 key `ca.key.pem`.
fn openssl_factory_ca(directory: &Path) {
    openssl_ok(
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key.pem",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Imprint Test Factory CA/O=Imprint Tests",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        directory,
    );
}

/// profiles/demo.toml with a mailbox big enough for identity requests and a
/// `[device_identity]` section made of `identity_lines`.
fn identity_profile_text(identity_lines: &str) -> String {
    let demo = demo_profile_text();
    let small_mailbox = "mailbox     = { address = 0x2003_FF00, size = 0x100 }";
    assert!(demo.contains(small_mailbox), "demo.toml changed shape; update this test");
    let profile = demo.replace(small_mailbox, "mailbox     = { address = 0x2003_FC00, size = 0x400 }");
    format!("{profile}\n[device_identity]\n{identity_lines}\n")
}

/// The usual identity section with an openssl CA in `directory`.
fn identity_lines(directory: &Path, key_origin: &str, extra: &str) -> String {
    format!(
        "key_origin = \"{key_origin}\"\nca_certificate = \"{}\"\nca_key = \"{}\"\nvalidity_days = 7300\norganization = \"Imprint Tests\"\n{extra}",
        directory.join("ca.pem").display(),
        directory.join("ca.key.pem").display()
    )
}

/// The `imprint` binary with extra environment variables (a SoftHSM2 configuration, a PIN).
fn imprint_with(environment: &[(String, String)]) -> Command {
    let mut command = imprint();
    command.envs(environment.iter().map(|(name, value)| (name, value)));
    command
}

fn run_json(
    profile: &Path,
    database: &Path,
    units: &str,
    environment: &[(String, String)],
) -> (Output, Vec<serde_json::Value>) {
    let output = imprint_with(environment)
        .args(["run", "--json", "--sim-timing", "zero", "--sim", "2", "--count", units, "--db"])
        .arg(database)
        .arg("--profile")
        .arg(profile)
        .output()
        .expect("run imprint");
    let events = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {line}: {error}")))
        .collect();
    (output, events)
}

/// Splits a PEM bundle into one file per certificate in `directory`; returns the paths.
fn split_bundle(bundle: &str, directory: &Path) -> Vec<PathBuf> {
    let end_marker = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(&format!("{end_marker}\n"))
        .filter(|block| block.contains(end_marker))
        .enumerate()
        .map(|(index, block)| {
            let path = directory.join(format!("issued-{index}.pem"));
            std::fs::write(&path, block).expect("write certificate");
            path
        })
        .collect()
}

/// `openssl x509 -noout <field...>` of a PEM file, the value after `=`, lowercased, without
/// colons.
fn openssl_field(certificate: &Path, field: &[&str], directory: &Path) -> String {
    let mut args = vec!["x509", "-in", certificate.to_str().unwrap(), "-noout"];
    args.extend_from_slice(field);
    let printed = openssl_ok(&args, directory);
    printed.trim().split_once('=').map(|(_, value)| value.replace(':', "").to_lowercase()).unwrap_or_default()
}

/// What a whole run through the binary must show for one key origin and subject rule.
struct BinaryRunCase {
    key_origin: &'static str,
    /// Extra `[device_identity]` lines (the subject rule).
    extra: &'static str,
    /// The CN each unit's certificate must carry, from its unit-finished event.
    expected_common_name: fn(&serde_json::Value) -> String,
    /// Identity steps each unit goes through, in order.
    identity_steps: &'static [&'static str],
}

/// Provisions four units through `imprint run`, then checks the events, the ledger's derived
/// columns, the PEM bundle (every certificate `openssl verify`-ed against the CA) and that the
/// exports still verify. Returns the temp dir for further checks.
fn check_binary_run(
    case: &BinaryRunCase,
    ca_lines: &str,
    directory: &Path,
    environment: &[(String, String)],
) {
    let profile = write_profile(
        directory,
        "identity.toml",
        &identity_profile_text(&format!("{ca_lines}{}", case.extra)),
    );
    let database = directory.join("ledger.db");
    let (output, events) = run_json(&profile, &database, "4", environment);
    assert_eq!(output.status.code(), Some(0), "{}\n{}", text(&output.stdout), text(&output.stderr));
    let stream = text(&output.stdout);
    assert!(!stream.contains("PRIVATE KEY"), "key material in the event stream");

    // Every unit went through the identity steps, in order, between allocate-identity and
    // self-test.
    let units: Vec<&serde_json::Value> =
        events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(units.len(), 4);
    let mut issued_fingerprints = Vec::new();
    for unit in &units {
        assert_eq!(unit["result"], "pass", "{unit}");
        let unit_number = unit["unit"].as_u64().unwrap();
        let slot = unit["slot"].as_u64().unwrap();
        let steps: Vec<&serde_json::Value> = events
            .iter()
            .filter(|event| {
                event["event"] == "step-finished" && event["unit"] == unit_number && event["slot"] == slot
            })
            .collect();
        let names: Vec<&str> = steps.iter().map(|event| event["step"].as_str().unwrap()).collect();
        let start = names.iter().position(|name| *name == "allocate-identity").unwrap();
        let end = names.iter().position(|name| *name == "self-test").unwrap();
        let mut expected = vec!["allocate-identity"];
        for step in case.identity_steps {
            if *step == "verify-identity" {
                expected.extend(["write-config", "verify-config"]);
            }
            expected.push(step);
        }
        assert_eq!(&names[start..end], expected.as_slice(), "unit {unit_number}");
        let issued = steps.iter().find(|event| event["step"] == "issue-identity").unwrap();
        let verified = steps.iter().find(|event| event["step"] == "verify-identity").unwrap();
        let certificate =
            Certificate::from_pem(issued["detail"]["certificate_pem"].as_str().unwrap()).unwrap();
        assert_eq!(certificate.subject_common_name(), Some((case.expected_common_name)(unit)));
        assert_eq!(issued["detail"]["key_origin"], case.key_origin);
        assert_eq!(verified["detail"]["certificate_fingerprint"], certificate.fingerprint_hex().as_str());
        assert_eq!(verified["detail"]["challenge_signature_verified"], true);
        issued_fingerprints.push(certificate.fingerprint_hex());
    }

    // The PEM bundle: one certificate per unit, each accepted by openssl against the CA.
    let bundle_path = directory.join("bundle.pem");
    let output = imprint_with(environment)
        .args(["log", "certificates", "--db"])
        .arg(&database)
        .arg("-o")
        .arg(&bundle_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let bundle = std::fs::read_to_string(&bundle_path).unwrap();
    let certificates = split_bundle(&bundle, directory);
    assert_eq!(certificates.len(), 4, "{bundle}");
    let ca_pem = directory.join("ca-for-verify.pem");
    std::fs::write(&ca_pem, ca_certificate_pem(ca_lines)).unwrap();
    let mut bundle_fingerprints = Vec::new();
    let mut serials = Vec::new();
    for certificate in &certificates {
        let name = certificate.to_str().unwrap();
        let verified = openssl_ok(&["verify", "-CAfile", ca_pem.to_str().unwrap(), name], directory);
        assert_eq!(verified.trim(), format!("{name}: OK"));
        let extensions = openssl_ok(
            &["x509", "-in", name, "-noout", "-ext", "keyUsage,extendedKeyUsage,basicConstraints"],
            directory,
        );
        for expected in ["Digital Signature", "TLS Web Client Authentication", "CA:FALSE"] {
            assert!(extensions.contains(expected), "{expected} missing from {extensions}");
        }
        bundle_fingerprints.push(openssl_field(certificate, &["-fingerprint", "-sha256"], directory));
        serials.push(openssl_field(certificate, &["-serial"], directory));
    }
    bundle_fingerprints.sort();
    issued_fingerprints.sort();
    assert_eq!(bundle_fingerprints, issued_fingerprints, "the bundle holds exactly the issued certificates");
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "serials are unique: {serials:?}");

    // The CSV export carries fingerprint and serial as columns, matching openssl's reading.
    let csv_path = directory.join("runs.csv");
    let output = imprint()
        .args(["log", "export", "--format", "csv", "--db"])
        .arg(&database)
        .arg("-o")
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|header| header == name).unwrap();
    let mut exported: Vec<(String, String)> = reader
        .records()
        .map(Result::unwrap)
        .filter(|row| &row[0] == "run")
        .map(|row| {
            (
                row[column("device_certificate_fingerprint")].to_string(),
                row[column("device_certificate_serial")].to_string(),
            )
        })
        .collect();
    exported.sort();
    let mut from_openssl: Vec<(String, String)> = certificates
        .iter()
        .map(|certificate| {
            (
                openssl_field(certificate, &["-fingerprint", "-sha256"], directory),
                openssl_field(certificate, &["-serial"], directory),
            )
        })
        .collect();
    from_openssl.sort();
    assert_eq!(exported, from_openssl);
    let output = imprint().args(["log", "verify"]).arg(&csv_path).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stdout));
    let output = imprint().args(["log", "verify", "--db"]).arg(&database).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stdout));
}

/// The CA certificate the `ca_certificate = "..."` line of `ca_lines` names, as PEM.
fn ca_certificate_pem(ca_lines: &str) -> String {
    let path = ca_lines
        .lines()
        .find_map(|line| line.strip_prefix("ca_certificate = "))
        .map(|quoted| quoted.trim_matches('"').to_string())
        .expect("a ca_certificate line");
    Certificate::load(Path::new(&path)).unwrap().to_pem()
}

fn device_id_of(unit: &serde_json::Value) -> String {
    unit["device_id"].as_str().unwrap().to_string()
}

fn serial_of(unit: &serde_json::Value) -> String {
    unit["serial"].as_str().unwrap().to_string()
}

const STATION_KEYS: BinaryRunCase = BinaryRunCase {
    key_origin: "station",
    extra: "",
    expected_common_name: device_id_of,
    identity_steps: &["issue-identity", "verify-identity"],
};

const DEVICE_KEYS: BinaryRunCase = BinaryRunCase {
    key_origin: "device",
    extra: "subject_common_name = \"endpoint-name\"\nendpoint_name = \"{serial}\"\n",
    expected_common_name: serial_of,
    identity_steps: &["device-key", "issue-identity", "verify-identity"],
};

#[test]
fn station_made_keys_pass_and_every_certificate_verifies_with_openssl() {
    let directory = tempfile::tempdir().unwrap();
    openssl_factory_ca(directory.path());
    check_binary_run(&STATION_KEYS, &identity_lines(directory.path(), "station", ""), directory.path(), &[]);
}

#[test]
fn device_made_keys_pass_and_every_certificate_verifies_with_openssl() {
    let directory = tempfile::tempdir().unwrap();
    openssl_factory_ca(directory.path());
    check_binary_run(&DEVICE_KEYS, &identity_lines(directory.path(), "device", ""), directory.path(), &[]);
}

/// Collects events for inspection.
#[derive(Default)]
struct RecordedEvents(Mutex<Vec<StationEvent>>);

impl EventSink for RecordedEvents {
    fn emit(&self, event: StationEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Station {
    context: Arc<StationContext>,
    events: Arc<RecordedEvents>,
    directory: tempfile::TempDir,
}

/// A station in-process with an openssl CA and the given identity section.
fn station(key_origin: &str, extra: &str) -> Station {
    let directory = tempfile::tempdir().unwrap();
    openssl_factory_ca(directory.path());
    let lines = identity_lines(directory.path(), key_origin, extra);
    let profile_path = write_profile(directory.path(), "identity.toml", &identity_profile_text(&lines));
    let profile = Profile::load(&profile_path).unwrap_or_else(|error| panic!("{error}"));
    let ledger = Ledger::open(&directory.path().join("ledger.db")).unwrap();
    let events = Arc::new(RecordedEvents::default());
    let context = Arc::new(StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(&profile).unwrap())),
        profile: Arc::new(profile),
        ledger,
        station_name: "identity-station".to_string(),
        operator: "tester".to_string(),
        events: events.clone(),
        cancel: CancelToken::default(),
        labels: Default::default(),
    });
    Station { context, events, directory }
}

fn sim_target(station: &Station, uid_byte: u8, faults: FaultPlan) -> SimTarget {
    let profile = &station.context.profile;
    let device = SimDevice::new(
        &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
        vec![uid_byte; 12],
    );
    SimTarget::new(device, &profile.chip_name, "sim-identity", SimTiming::default(), faults)
}

/// Provisions one unit with `faults`; it must FAIL at `failing_step` with `reason` in its
/// reason, and the ledger must say what was issued: a certificate recorded for the run or not,
/// and never in the bundle of passed units.
fn check_identity_fault(
    key_origin: &str,
    faults: FaultPlan,
    failing_step: &str,
    reason: &str,
    certificate_issued: bool,
) {
    let station = station(key_origin, "");
    let mut target = sim_target(&station, 0x61, faults.clone());
    let outcome = provision_unit(&station.context, &mut target, 0, 1);
    assert_eq!(outcome.result, UnitResult::Fail, "{faults:?}: {outcome:?}");
    assert_eq!(outcome.failing_step, Some(failing_step), "{faults:?}: {outcome:?}");
    let recorded_reason = outcome.reason.unwrap_or_default();
    assert!(recorded_reason.contains(reason), "{faults:?}: expected {reason:?} in {recorded_reason:?}");
    let failed_events: Vec<String> = station
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepFailed { step, .. } => Some(step.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(failed_events, vec![failing_step.to_string()]);

    let ledger = &station.context.ledger;
    let mut exported = Vec::new();
    ledger.export(ExportFormat::Jsonl, &ExportFilter::default(), &mut exported).unwrap();
    let run: serde_json::Value = serde_json::from_str(text(&exported).lines().nth(1).unwrap()).unwrap();
    assert_eq!(run["result"], "fail");
    assert_eq!(run["failing_step"], failing_step);
    assert_eq!(run["device_certificate_fingerprint"].is_string(), certificate_issued, "{run}");
    let bundle_count = |selection| {
        let mut bundle = Vec::new();
        ledger
            .export_device_certificates(selection, &ExportFilter::default(), &mut bundle)
            .unwrap()
            .certificate_count
    };
    assert_eq!(bundle_count(CertificateSelection::ProvisionedUnits), 0, "a failed unit is not registered");
    assert_eq!(bundle_count(CertificateSelection::EveryIssued), u64::from(certificate_issued));
}

#[test]
fn identity_faults_fail_at_the_right_step_with_a_reason() {
    check_identity_fault(
        "device",
        FaultPlan { bad_csr_signature: true, ..Default::default() },
        "device-key",
        "the device's CSR is refused: certificate signing request: expected a PKCS#10 request signed with ECDSA P-256 / SHA-256 by the key it carries, found a signature that does not verify",
        false,
    );
    check_identity_fault(
        "device",
        FaultPlan { bad_challenge_signature: true, ..Default::default() },
        "verify-identity",
        "the device does not prove it holds the certificate's key",
        true,
    );
    check_identity_fault(
        "station",
        FaultPlan { bad_challenge_signature: true, ..Default::default() },
        "verify-identity",
        "challenge signature does not verify with the certificate's public key",
        true,
    );
    check_identity_fault(
        "device",
        FaultPlan { no_entropy_source: true, ..Default::default() },
        "device-key",
        "the device refused make-key-and-csr: the device has no entropy source",
        false,
    );
    // The probe disappears when the station asks for the CSR: a probe failure at that step.
    check_identity_fault(
        "device",
        FaultPlan { probe_lost_at_step: Some("device-key".into()), ..Default::default() },
        "device-key",
        "probe lost",
        false,
    );
}

/// The fingerprints of the certificates in a bundle, in order.
fn bundle_fingerprints(ledger: &Ledger, selection: CertificateSelection) -> Vec<String> {
    let mut bundle = Vec::new();
    ledger.export_device_certificates(selection, &ExportFilter::default(), &mut bundle).unwrap();
    text(&bundle)
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(|block| Certificate::from_pem(block).unwrap().fingerprint_hex())
        .collect()
}

#[test]
fn the_bundle_holds_the_certificate_each_provisioned_unit_holds_now() {
    let station = station("station", "");
    // Unit 0x81 passes twice (a rework with a new certificate); unit 0x82 passes, then its
    // rework fails after a new certificate was issued.
    for (uid_byte, faults, result) in [
        (0x81, FaultPlan::default(), UnitResult::Pass),
        (0x81, FaultPlan::default(), UnitResult::Pass),
        (0x82, FaultPlan::default(), UnitResult::Pass),
        (0x82, FaultPlan { bad_challenge_signature: true, ..Default::default() }, UnitResult::Fail),
    ] {
        let mut target = sim_target(&station, uid_byte, faults);
        assert_eq!(provision_unit(&station.context, &mut target, 0, 1).result, result);
    }
    let issued: Vec<String> = station
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepFinished { step, detail, .. } if step == "issue-identity" => {
                Some(detail["certificate_fingerprint"].as_str().unwrap().to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(issued.len(), 4);
    let ledger = &station.context.ledger;
    assert_eq!(bundle_fingerprints(ledger, CertificateSelection::EveryIssued), issued);
    assert_eq!(bundle_fingerprints(ledger, CertificateSelection::ProvisionedUnits), vec![issued[1].clone()]);
}

/// Every form a private key's secret bytes could take in a file or a text: the PKCS#8 DER, and
/// every 12-byte window of the private scalar raw, in hex (both cases) and in base64 (a window
/// at each offset, so the scalar is found at any base64 alignment and across PEM line breaks).
/// The public half is public: it is not searched for.
fn secret_forms(pkcs8_der: &[u8]) -> Vec<Vec<u8>> {
    use p256::pkcs8::DecodePrivateKey;
    let signing_key = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8_der).unwrap();
    let scalar = signing_key.to_bytes().to_vec();
    let base64_of = |bytes: &[u8]| {
        let pem = der::pem::encode_string("X", der::pem::LineEnding::LF, bytes).unwrap();
        pem.lines().filter(|line| !line.starts_with("-----")).collect::<String>()
    };
    let mut forms = vec![pkcs8_der.to_vec()];
    for window in scalar.windows(12) {
        forms.push(window.to_vec());
        forms.push(hex::encode(window).into_bytes());
        forms.push(hex::encode_upper(window).into_bytes());
        forms.push(base64_of(window).into_bytes());
    }
    forms
}

fn assert_nowhere(haystack: &[u8], forms: &[Vec<u8>], place: &str) {
    for form in forms {
        assert!(
            !haystack.windows(form.len()).any(|window| window == form.as_slice()),
            "the private key appears in {place}"
        );
    }
}

#[test]
fn a_station_made_private_key_is_only_in_the_device() {
    let station = station("station", "");
    let mut keys_found = Vec::new();
    for uid_byte in [0x71, 0x72, 0x73] {
        let mut target = sim_target(&station, uid_byte, FaultPlan::default());
        let outcome = provision_unit(&station.context, &mut target, 0, u64::from(uid_byte));
        assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
        // The key is in the device's store, with the certificate it matches.
        let profile = &station.context.profile;
        let layout = profile.store_layout().expect("a config store");
        let store_bytes = target.device().flash_bytes(
            profile.firmware.as_ref().expect("the profile flashes firmware").memory.config.address,
            layout.capacity_bytes,
        );
        let store = ConfigStore::decode(store_bytes, target.device().unique_id()).unwrap();
        let private_key = store.get(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY.as_bytes()).unwrap().value.clone();
        let certificate = store.get(keys::BOOTSTRAP_DEVICE_CERT.as_bytes()).unwrap().value.clone();
        let ca = store.get(keys::BOOTSTRAP_SERVER_CA_CERT.as_bytes()).unwrap().value.clone();
        assert_eq!(ca, profile.device_identity.as_ref().unwrap().ca_certificate.der());
        assert_eq!(
            store.get(keys::ENDPOINT_NAME.as_bytes()).unwrap().value,
            outcome.device_id.unwrap().hyphenated().to_string().into_bytes()
        );
        let store_debug = format!("{store:?}");
        let key_debug = format!("{private_key:?}");
        assert!(!store_debug.contains(&key_debug[1..key_debug.len() - 1]), "Debug shows the key");
        assert!(store_debug.contains(&format!("<{} secret bytes>", private_key.len())), "{store_debug}");
        // openssl agrees the stored key is the certificate's key.
        let directory = station.directory.path();
        std::fs::write(directory.join("device.key.der"), &private_key).unwrap();
        std::fs::write(directory.join("device.cert.der"), &certificate).unwrap();
        let from_key = openssl_ok(&["pkey", "-inform", "DER", "-in", "device.key.der", "-pubout"], directory);
        let from_certificate =
            openssl_ok(&["x509", "-inform", "DER", "-in", "device.cert.der", "-noout", "-pubkey"], directory);
        assert_eq!(from_key, from_certificate);
        std::fs::remove_file(directory.join("device.key.der")).unwrap();
        keys_found.push(private_key);
    }

    let ledger = &station.context.ledger;
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, format) in
        [("csv", ExportFormat::Csv), ("json", ExportFormat::Json), ("jsonl", ExportFormat::Jsonl)]
    {
        let mut exported = Vec::new();
        ledger.export(format, &ExportFilter::default(), &mut exported).unwrap();
        outputs.push((format!("the {name} export"), exported));
    }
    for selection in [CertificateSelection::ProvisionedUnits, CertificateSelection::EveryIssued] {
        let mut bundle = Vec::new();
        ledger.export_device_certificates(selection, &ExportFilter::default(), &mut bundle).unwrap();
        assert_eq!(text(&bundle).matches("BEGIN CERTIFICATE").count(), 3);
        outputs.push((format!("the certificate bundle ({selection:?})"), bundle));
    }
    let events = station.events.0.lock().unwrap();
    let event_stream: Vec<u8> = events
        .iter()
        .flat_map(|event| serde_json::to_vec(event).unwrap().into_iter().chain([b'\n']))
        .collect();
    outputs.push(("the event stream".to_string(), event_stream));
    // The database file and its WAL, as they are on disk.
    for entry in std::fs::read_dir(station.directory.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("ledger.db") {
            outputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(outputs.iter().any(|(place, bytes)| place.ends_with("ledger.db") && !bytes.is_empty()));
    for private_key in &keys_found {
        let forms = secret_forms(private_key);
        for (place, bytes) in &outputs {
            assert_nowhere(bytes, &forms, place);
            assert!(!text(bytes).contains("PRIVATE KEY"), "{place}");
        }
    }
}

/// Checks `trust::verify_certificate_request` on a CSR made by openssl and openssl on a CSR
/// made by Imprint (as the simulated device makes them), intact and with a flipped last byte.
fn check_csr_against_openssl(made_by_openssl: bool, damaged: bool, directory: &Path) {
    openssl_ok(
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "device.key.pem"],
        directory,
    );
    let mut request = if made_by_openssl {
        openssl_ok(
            &[
                "req",
                "-new",
                "-key",
                "device.key.pem",
                "-subj",
                "/CN=DS1-000777",
                "-outform",
                "DER",
                "-out",
                "csr.der",
            ],
            directory,
        );
        std::fs::read(directory.join("csr.der")).unwrap()
    } else {
        let key = trust::load_signing_key(&directory.join("device.key.pem")).unwrap();
        trust::build_certificate_request(&key, "DS1-000777").unwrap()
    };
    if damaged {
        *request.last_mut().unwrap() ^= 0x01;
    }
    std::fs::write(directory.join("csr.der"), &request).unwrap();
    let ours = trust::verify_certificate_request(&request);
    let theirs = openssl(&["req", "-inform", "DER", "-in", "csr.der", "-verify", "-noout"], directory);
    // OpenSSL 3.0 exits 0 even when the self-signature fails: read what it printed.
    let printed = format!("{}{}", text(&theirs.stdout), text(&theirs.stderr));
    let openssl_accepts = printed.contains("verify OK") && !printed.contains("failure");
    let case = format!("made by {}, damaged {damaged}", if made_by_openssl { "openssl" } else { "imprint" });
    assert_eq!(ours.is_ok(), !damaged, "{case}: {ours:?}");
    assert_eq!(openssl_accepts, !damaged, "{case}: {printed}");
    if let Ok(verified) = ours {
        assert_eq!(verified.subject_common_name.as_deref(), Some("DS1-000777"), "{case}");
        let key = trust::load_signing_key(&directory.join("device.key.pem")).unwrap();
        assert_eq!(verified.public_key, key.verifying_key(), "{case}");
    }
}

#[test]
fn certificate_requests_agree_with_openssl_both_ways() {
    let directory = tempfile::tempdir().unwrap();
    for made_by_openssl in [true, false] {
        for damaged in [false, true] {
            check_csr_against_openssl(made_by_openssl, damaged, directory.path());
        }
    }
}

/// `imprint profile check` on a profile with `identity` as its `[device_identity]` section (and
/// `mailbox` as its mailbox line): exit 2 and `expected` in the output.
fn check_profile_problem(directory: &Path, identity: &str, mailbox: Option<&str>, expected: &str) {
    let mut profile_text = identity_profile_text(identity);
    if let Some(mailbox) = mailbox {
        profile_text = profile_text.replace("mailbox     = { address = 0x2003_FC00, size = 0x400 }", mailbox);
    }
    let path = write_profile(directory, "broken.toml", &profile_text);
    let output = imprint().args(["profile", "check"]).arg(&path).output().unwrap();
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{identity}: {printed}");
    assert!(printed.contains(expected), "expected {expected:?} in:\n{printed}");
}

#[test]
fn device_identity_mistakes_are_reported_by_field() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    openssl_factory_ca(directory);
    // A second, unrelated key, and a certificate that is not a CA.
    openssl_ok(
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key.pem"],
        directory,
    );
    openssl_ok(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "other.key.pem",
            "-subj",
            "/CN=leaf",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-out",
            "leaf.pem",
        ],
        directory,
    );
    let good = identity_lines(directory, "station", "");
    check_profile_problem(
        directory,
        &good.replace("\"station\"", "\"factory\""),
        None,
        "device_identity.key_origin: expected \"station\" or \"device\", found \"factory\"",
    );
    check_profile_problem(
        directory,
        &good,
        Some("mailbox     = { address = 0x2003_FF00, size = 0x100 }"),
        "memory.mailbox.size: expected at least 1024 bytes with [device_identity]",
    );
    check_profile_problem(
        directory,
        &good.replace("ca.key.pem", "other.key.pem"),
        None,
        "device_identity.ca_key: the key",
    );
    check_profile_problem(
        directory,
        &good.replace("ca.pem", "leaf.pem").replace("ca.key.pem", "other.key.pem"),
        None,
        "is not a CA",
    );
    check_profile_problem(
        directory,
        &format!("{good}subject_common_name = \"endpoint-name\"\nendpoint_name = \"{{model}}-{{serial}}\"\n"),
        None,
        "device_identity.endpoint_name: found placeholder {model}",
    );
    check_profile_problem(
        directory,
        &format!(
            "{good}subject_common_name = \"endpoint-name\"\nendpoint_name = \"{}{{serial}}\"\n",
            "x".repeat(60)
        ),
        None,
        "expected at most 64",
    );
    check_profile_problem(
        directory,
        &good.replace("validity_days = 7300", "validity_days = 0"),
        None,
        "device_identity.validity_days: expected 1 to 36500 days, found 0",
    );
    check_profile_problem(
        directory,
        &format!("{good}ca_certificate_item = \"mbed.UpdateAuthCert\"\n"),
        None,
        "device_identity.ca_certificate_item",
    );
    check_profile_problem(
        directory,
        &format!("{good}ca_certificat_item = \"x\"\n"),
        None,
        "unknown field `ca_certificat_item`",
    );
    check_profile_problem(
        directory,
        &good.replace("ca.pem", "missing.pem"),
        None,
        "device_identity.ca_certificate",
    );
}

/// One SoftHSM2 installation in a temp dir (the same way tests/pkcs11.rs makes tokens).
struct SoftHsm {
    directory: tempfile::TempDir,
    config_path: PathBuf,
    module: PathBuf,
}

fn softhsm_module() -> PathBuf {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ];
    candidates.iter().map(PathBuf::from).find(|path| path.is_file()).unwrap_or_else(|| {
        panic!("libsofthsm2.so not found in {candidates:?}; install Debian's softhsm2 (scripts/test does)")
    })
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let directory = tempfile::tempdir().unwrap();
        let tokens = directory.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let config_path = directory.path().join("softhsm2.conf");
        std::fs::write(
            &config_path,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        SoftHsm { directory, config_path, module: softhsm_module() }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = if program == "imprint" { imprint() } else { Command::new(program) };
        command
            .current_dir(self.directory.path())
            .env("SOFTHSM2_CONF", &self.config_path)
            .env(PIN_VARIABLE, USER_PIN);
        command
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn token_uri(&self, token: &str, key: &str) -> String {
        let separator = if key.is_empty() { "" } else { ";" };
        format!(
            "pkcs11:token={token}{separator}{key}?module-path={}&pin-source=env:{PIN_VARIABLE}",
            self.module.display()
        )
    }
}

#[test]
fn the_factory_ca_key_can_live_in_softhsm2() {
    let hsm = SoftHsm::new();
    hsm.run_ok(
        "softhsm2-util",
        &["--init-token", "--free", "--label", "factory", "--so-pin", SO_PIN, "--pin", USER_PIN],
    );
    let printed = hsm.run_ok(
        "imprint",
        &[
            "keys",
            "generate",
            "--pkcs11",
            &hsm.token_uri("factory", ""),
            "--label",
            "factory-ca",
            "--ca",
            "--common-name",
            "Token Factory CA",
        ],
    );
    let ca_uri = printed
        .lines()
        .find_map(|line| line.strip_prefix("key URI"))
        .map(str::trim)
        .expect("key URI printed")
        .to_string();
    let directory = hsm.directory.path();
    openssl_ok(&["x509", "-inform", "DER", "-in", "factory-ca.cert.der", "-out", "token-ca.pem"], directory);
    for case in [&STATION_KEYS, &DEVICE_KEYS] {
        let run_directory = directory.join(case.key_origin);
        std::fs::create_dir(&run_directory).unwrap();
        let ca_lines = format!(
            "key_origin = \"{}\"\nca_certificate = \"{}\"\nca_key = {ca_uri:?}\nvalidity_days = 3650\n",
            case.key_origin,
            directory.join("token-ca.pem").display()
        );
        // The binary finds the token through SOFTHSM2_CONF and the PIN through the environment.
        let environment = [
            ("SOFTHSM2_CONF".to_string(), hsm.config_path.display().to_string()),
            (PIN_VARIABLE.to_string(), USER_PIN.to_string()),
        ];
        check_binary_run(case, &ca_lines, &run_directory, &environment);
    }
}

#[test]
fn derived_certificate_columns_are_checked_and_version_1_csv_still_verifies() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    openssl_factory_ca(directory);
    let profile = write_profile(
        directory,
        "identity.toml",
        &identity_profile_text(&identity_lines(directory, "station", "")),
    );
    let database = directory.join("ledger.db");
    let (output, _) = run_json(&profile, &database, "2", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let export = |format: &str, name: &str| {
        let path = directory.join(name);
        let output = imprint()
            .args(["log", "export", "--format", format, "--db"])
            .arg(&database)
            .arg("-o")
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        path
    };
    let verify = |path: &Path| {
        let output = imprint().args(["log", "verify"]).arg(path).output().unwrap();
        (output.status.code(), text(&output.stdout))
    };
    // An edited fingerprint column (JSON lines and CSV) is reported, though the hash is intact.
    let jsonl = export("jsonl", "runs.jsonl");
    let original = std::fs::read_to_string(&jsonl).unwrap();
    let run: serde_json::Value = serde_json::from_str(original.lines().nth(1).unwrap()).unwrap();
    let fingerprint = run["device_certificate_fingerprint"].as_str().unwrap().to_string();
    let forged = format!("{}{}", &fingerprint[..63], if fingerprint.ends_with('0') { "1" } else { "0" });
    let edited_line = original.lines().nth(1).unwrap().replacen(
        &format!("\"device_certificate_fingerprint\":\"{fingerprint}\""),
        &format!("\"device_certificate_fingerprint\":\"{forged}\""),
        1,
    );
    std::fs::write(&jsonl, original.replacen(original.lines().nth(1).unwrap(), &edited_line, 1)).unwrap();
    let (code, printed) = verify(&jsonl);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("altered field: device_certificate_fingerprint"), "{printed}");

    let csv = export("csv", "runs.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, original.replacen(&fingerprint, &forged, 1)).unwrap();
    let (code, printed) = verify(&csv);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("altered field: device_certificate_fingerprint"), "{printed}");

    // A version 1 CSV (no certificate columns, header version 1) of runs without identity
    // steps still verifies: make one from a ledger of the demo profile.
    let demo_database = directory.join("demo.db");
    let demo = common::repo_root().join("profiles/demo.toml");
    let (output, _) = run_json(&demo, &demo_database, "2", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output =
        imprint().args(["log", "export", "--format", "csv", "--db"]).arg(&demo_database).output().unwrap();
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let headers = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|index| {
            !headers[*index].starts_with("device_certificate_") && &headers[*index] != "work_order"
        })
        .collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(keep.iter().map(|index| &headers[*index])).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        let mut fields: Vec<String> = keep.iter().map(|index| row[*index].to_string()).collect();
        if fields[0] == "export" {
            let last = fields.len() - 1;
            fields[last] = fields[last].replace("\"imprint_ledger_export\":3", "\"imprint_ledger_export\":1");
        }
        writer.write_record(&fields).unwrap();
    }
    let version_1 = directory.join("v1.csv");
    std::fs::write(&version_1, writer.into_inner().unwrap()).unwrap();
    let (code, printed) = verify(&version_1);
    assert_eq!(code, Some(0), "{printed}");
    // Version 1 columns under a version 2 header are not an export.
    let mixed = std::fs::read_to_string(&version_1)
        .unwrap()
        .replace("\"\"imprint_ledger_export\"\":1", "\"\"imprint_ledger_export\"\":2");
    std::fs::write(&version_1, mixed).unwrap();
    let (code, printed) = verify(&version_1);
    assert_eq!(code, Some(2), "{printed}");
}
