//! Identifier derivation checked against outside oracles: vectors from Python's `uuid.uuid5`
//! and from manifest-tool 2.6.2's own code (committed, see tests/data/identity/README.md), and
//! a live comparison with `python3` over random names and chip UIDs.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use imprint::identity::{
    ChipUid, IdentityError, check_vendor_domain, class_id_from_model, device_id_from_chip_uid, parse_uuid,
    vendor_id_from_domain,
};
use serde_json::Value;
use uuid::Uuid;

/// Compares one derived identifier with what the oracle computed for the same inputs.
fn check(what: &str, computed: Uuid, expected: &str) {
    let expected = Uuid::parse_str(expected)
        .unwrap_or_else(|error| panic!("{what}: oracle value {expected:?} is not a uuid: {error}"));
    assert_eq!(computed, expected, "{what}");
}

fn text<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key].as_str().unwrap_or_else(|| panic!("vector {entry} has no string field {key:?}"))
}

fn load_vectors() -> Value {
    let path = common::repo_root().join("tests/data/identity/uuid5_vectors.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn section<'a>(vectors: &'a Value, name: &str) -> &'a Vec<Value> {
    let entries = vectors[name].as_array().unwrap_or_else(|| panic!("vectors have no array {name:?}"));
    assert!(!entries.is_empty(), "vector section {name:?} is empty");
    entries
}

#[test]
fn derivations_match_committed_python_uuid5_vectors() {
    let vectors = load_vectors();
    for entry in section(&vectors, "vendor") {
        let domain = text(entry, "domain");
        check(&format!("vendor id of {domain:?}"), vendor_id_from_domain(domain), text(entry, "vendor_id"));
    }
    for entry in section(&vectors, "class") {
        let vendor_id = parse_uuid(text(entry, "vendor_id"), "vendor_id").unwrap();
        let model_name = text(entry, "model_name");
        check(
            &format!("class id of {model_name:?} under {vendor_id}"),
            class_id_from_model(vendor_id, model_name),
            text(entry, "class_id"),
        );
    }
    for entry in section(&vectors, "device") {
        let class_id = parse_uuid(text(entry, "class_id"), "class_id").unwrap();
        let chip_uid = ChipUid::from_hex(text(entry, "chip_uid_hex")).unwrap();
        check(
            &format!("device id of chip {chip_uid} under {class_id}"),
            device_id_from_chip_uid(class_id, &chip_uid),
            text(entry, "device_id"),
        );
    }
}

#[test]
fn derivations_match_manifest_tool_vectors() {
    let vectors = load_vectors();
    for entry in section(&vectors, "manifest_tool") {
        let domain = text(entry, "domain");
        let model_name = text(entry, "model_name");
        let vendor_id = vendor_id_from_domain(domain);
        check(&format!("manifest-tool vendor id of {domain:?}"), vendor_id, text(entry, "vendor_id"));
        check(
            &format!("manifest-tool class id of {domain:?}/{model_name:?}"),
            class_id_from_model(vendor_id, model_name),
            text(entry, "class_id"),
        );
    }
    for entry in section(&vectors, "manifest_tool_domain_checks") {
        let domain = text(entry, "domain");
        let accepted_by_manifest_tool = entry["accepted"].as_bool().unwrap();
        assert_eq!(
            check_vendor_domain(domain).is_ok(),
            accepted_by_manifest_tool,
            "vendor domain {domain:?}: manifest-tool accepts it: {accepted_by_manifest_tool}"
        );
    }
}

/// Random text from an alphabet that mixes ASCII with multi-byte UTF-8, so that an encoding
/// mismatch (UTF-8 versus anything else) would show.
fn random_names(random_bytes: &[u8], count: usize) -> Vec<String> {
    const ALPHABET: &[char] = &[
        'a', 'b', 'z', 'A', 'Z', '0', '9', '-', '.', '_', ' ', '/', 'é', 'ü', 'ß', '✓', '日', '本', '🚀',
        '\u{0}', '\n', '"', '\\',
    ];
    let mut bytes = random_bytes.iter().copied().cycle();
    (0..count)
        .map(|_| {
            let length = usize::from(bytes.next().unwrap_or(0) % 40);
            (0..length).map(|_| ALPHABET[usize::from(bytes.next().unwrap_or(0)) % ALPHABET.len()]).collect()
        })
        .collect()
}

#[test]
fn derivations_match_live_python_uuid5_on_random_inputs() {
    const CASE_COUNT: usize = 40;
    let mut random_bytes = vec![0u8; 4096];
    getrandom::fill(&mut random_bytes).expect("operating system random source");
    let domains = random_names(&random_bytes[..2048], CASE_COUNT);
    let model_names = random_names(&random_bytes[2048..], CASE_COUNT);
    let chip_uids: Vec<ChipUid> = random_bytes
        .chunks(64)
        .take(CASE_COUNT)
        .enumerate()
        .map(|(index, chunk)| ChipUid::new(chunk[..1 + index % 64].to_vec()).unwrap())
        .collect();

    let cases: Vec<Value> = (0..CASE_COUNT)
        .map(|index| {
            serde_json::json!({
                "domain": domains[index],
                "model_name": model_names[index],
                "chip_uid_hex": chip_uids[index].to_hex(),
            })
        })
        .collect();
    let python_program = r#"
import json, sys, uuid
out = []
for case in json.load(sys.stdin):
    vendor_id = uuid.uuid5(uuid.NAMESPACE_DNS, case["domain"])
    class_id = uuid.uuid5(vendor_id, case["model_name"])
    device_id = uuid.uuid5(class_id, case["chip_uid_hex"])
    out.append([str(vendor_id), str(class_id), str(device_id)])
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new("python3")
        .args(["-c", python_program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test (scripts/test installs it)");
    let input = serde_json::to_vec(&cases).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 failed: {output:?}");
    let python_results: Vec<[String; 3]> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(python_results.len(), CASE_COUNT);

    for (index, [vendor_id, class_id, device_id]) in python_results.iter().enumerate() {
        let inputs = &cases[index];
        let computed_vendor_id = vendor_id_from_domain(&domains[index]);
        let computed_class_id = class_id_from_model(computed_vendor_id, &model_names[index]);
        check(&format!("vendor id for {inputs}"), computed_vendor_id, vendor_id);
        check(&format!("class id for {inputs}"), computed_class_id, class_id);
        check(
            &format!("device id for {inputs}"),
            device_id_from_chip_uid(computed_class_id, &chip_uids[index]),
            device_id,
        );
    }
}

#[test]
fn parse_uuid_accepts_hyphenated_and_32_hex_digits_only() {
    let expected = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
    for accepted in [
        "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE",
        "fa6b4a53d5ad5fdfbe9de663e4d41ffe",
        "FA6B4A53d5ad5fdfbe9de663e4d41ffe",
    ] {
        assert_eq!(parse_uuid(accepted, "vendor_id"), Ok(expected), "{accepted:?}");
    }
    for refused in [
        "",
        "{fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe}",
        "urn:uuid:fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        "fa6b4a53d5ad5fdfbe9de663e4d41ff",
        "fa6b4a53d5ad5fdfbe9de663e4d41ffe0",
        "fa6b4a53d5ad5fdfbe9de663e4d41ffg",
        "fa6b4a5-3d5ad-5fdf-be9d-e663e4d41ffe",
        "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ff-",
        " fa6b4a53d5ad5fdfbe9de663e4d41ffe",
        "fa6b4a53d5ad5fdfbe9de663e4d41ff\u{e9}",
    ] {
        let error = parse_uuid(refused, "device.class_id").unwrap_err();
        assert_eq!(
            error,
            IdentityError::MalformedUuid { field: "device.class_id".to_string(), text: refused.to_string() }
        );
        let message = error.to_string();
        assert!(message.starts_with("device.class_id: expected a uuid"), "{message}");
    }
}

#[test]
fn chip_uid_construction_and_hex() {
    let chip_uid = ChipUid::from_hex("00AbCdEf").unwrap();
    assert_eq!(chip_uid.as_bytes(), &[0x00, 0xab, 0xcd, 0xef]);
    assert_eq!(chip_uid.to_hex(), "00abcdef");
    assert_eq!(chip_uid.to_string(), "00abcdef");
    assert_eq!(ChipUid::new(vec![7; 64]).unwrap().as_bytes().len(), 64);

    for (length_bytes, bytes) in [(0, vec![]), (65, vec![1; 65])] {
        let error = ChipUid::new(bytes).unwrap_err();
        assert_eq!(error, IdentityError::ChipUidLength { length_bytes, max_length_bytes: 64 });
        assert_eq!(
            error.to_string(),
            format!("chip unique id: expected 1 to 64 bytes, found {length_bytes}")
        );
    }
    for malformed in ["abc", "0xab", "ab cd", "zz"] {
        let error = ChipUid::from_hex(malformed).unwrap_err();
        assert!(
            matches!(&error, IdentityError::MalformedChipUidHex { text, .. } if text == malformed),
            "{malformed:?}: {error}"
        );
    }
    assert!(matches!(ChipUid::from_hex(""), Err(IdentityError::ChipUidLength { length_bytes: 0, .. })));
}

#[test]
fn device_ids_differ_across_classes_and_chips() {
    let vendor_id = vendor_id_from_domain("example.com");
    let class_a = class_id_from_model(vendor_id, "sensor-a");
    let class_b = class_id_from_model(vendor_id, "sensor-b");
    let chip_1 = ChipUid::from_hex("000102030405060708090a0b").unwrap();
    let chip_2 = ChipUid::from_hex("000102030405060708090a0c").unwrap();
    let ids = [
        device_id_from_chip_uid(class_a, &chip_1),
        device_id_from_chip_uid(class_a, &chip_2),
        device_id_from_chip_uid(class_b, &chip_1),
    ];
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    assert_eq!(ids[0].get_version_num(), 5);
    // The hex is hashed in lowercase whatever case it was read in.
    assert_eq!(
        device_id_from_chip_uid(class_a, &ChipUid::from_hex("000102030405060708090A0B").unwrap()),
        ids[0]
    );
}
