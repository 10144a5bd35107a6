//! The v1 half of `imprint manifest`: create (like `manifest-tool create-v1`), inspect every
//! field, and give the legacy update client's verdict.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use imprint::manifest::v1::{
    self, DecodedManifestV1, DeviceExpectations, EnumOrObjectId, ManifestRequestV1, encryption_mode_name,
    payload_format_name,
};
use imprint::output::ExistingFile;
use imprint::trust::{self, Certificate};
use sha2::{Digest, Sha256};

/// What `create --schema v1` was given, files already read.
pub(super) struct CreateV1<'a> {
    pub payload_path: &'a Path,
    pub payload: &'a [u8],
    pub payload_version: &'a str,
    pub vendor_id: uuid::Uuid,
    pub class_id: uuid::Uuid,
    pub payload_uri: String,
    pub priority: Option<u64>,
    pub vendor_info: Vec<u8>,
    pub signer: Box<dyn trust::Signer>,
    pub certificate: Certificate,
    pub output: &'a Path,
    /// The files read, which the output may not be.
    pub inputs: &'a [PathBuf],
    pub existing: ExistingFile,
}

pub(super) fn create(options: CreateV1) -> anyhow::Result<ExitCode> {
    let timestamp = v1::parse_payload_timestamp(options.payload_version)
        .with_context(|| format!("--payload-version {:?} is not a v1 timestamp", options.payload_version))?;
    if !trust::key_matches_certificate(options.signer.as_ref(), &options.certificate) {
        anyhow::bail!(
            "--key {} is not the key of --cert {} (sha256 {}): the device would refuse the signature",
            options.signer.describe(),
            options.certificate.subject(),
            options.certificate.fingerprint_hex()
        );
    }
    let mut request = ManifestRequestV1::new(
        options.vendor_id,
        options.class_id,
        timestamp,
        options.payload,
        options.payload_uri,
    );
    request.priority = options.priority;
    request.vendor_info = options.vendor_info;
    let manifest_der =
        v1::create_manifest_v1(&request, options.signer.as_ref(), options.certificate.der())
            .with_context(|| format!("cannot create a v1 manifest for {}", options.payload_path.display()))?;
    super::write_manifest(options.output, options.inputs, options.existing, &manifest_der)?;
    println!(
        "wrote {} ({} bytes): v1, timestamp {timestamp}, payload {} bytes sha256 {}, certificate sha256 {}",
        options.output.display(),
        manifest_der.len(),
        options.payload.len(),
        hex::encode(Sha256::digest(options.payload)),
        options.certificate.fingerprint_hex()
    );
    Ok(ExitCode::SUCCESS)
}

fn hex_or_empty(bytes: &[u8]) -> String {
    if bytes.is_empty() { "(empty)".to_string() } else { hex::encode(bytes) }
}

fn optional<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "(absent)".to_string(), show)
}

fn enum_or_oid(value: &EnumOrObjectId, name: fn(u32) -> &'static str) -> String {
    match value {
        EnumOrObjectId::Enumerated(number) => format!("{} ({number})", name(*number)),
        EnumOrObjectId::ObjectId(oid) => format!("object identifier {oid}"),
    }
}

/// Field name and printed value, in schema order.
fn rows(decoded: &DecodedManifestV1) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = vec![
        ("schema".into(), "v1 (legacy update client)".into()),
        ("resource.uri".into(), optional(decoded.resource_uri.as_ref(), Clone::clone)),
        ("resource.resourceType".into(), decoded.resource_type.to_string()),
        ("manifestVersion".into(), decoded.manifest_version.to_string()),
        ("description".into(), optional(decoded.description.as_ref(), Clone::clone)),
        ("timestamp".into(), decoded.timestamp.to_string()),
        ("vendorId".into(), hex_or_empty(&decoded.vendor_id)),
        ("classId".into(), hex_or_empty(&decoded.class_id)),
        ("deviceId".into(), hex_or_empty(&decoded.device_id)),
        ("nonce".into(), hex_or_empty(&decoded.nonce)),
        ("vendorInfo".into(), hex_or_empty(&decoded.vendor_info)),
        ("precursorDigest".into(), optional(decoded.precursor_digest.as_deref(), hex::encode)),
        ("applyPeriod".into(), optional(decoded.apply_period, |(from, to)| format!("{from}..{to}"))),
        ("applyImmediately".into(), decoded.apply_immediately.to_string()),
        ("priority".into(), optional(decoded.priority, |priority| priority.to_string())),
        ("encryptionMode".into(), enum_or_oid(&decoded.encryption_mode, encryption_mode_name)),
        ("aliases".into(), decoded.aliases.len().to_string()),
        ("dependencies".into(), decoded.dependencies.len().to_string()),
    ];
    match &decoded.payload {
        Some(payload) => {
            rows.push(("payload.format".into(), enum_or_oid(&payload.format, payload_format_name)));
            rows.push((
                "payload.encryptionInfo".into(),
                optional(payload.encryption_info_der.as_deref(), |info| format!("{} bytes", info.len())),
            ));
            rows.push(("payload.storageIdentifier".into(), payload.storage_identifier.clone()));
            rows.push(("payload.reference.hash".into(), hex_or_empty(&payload.reference.hash)));
            rows.push((
                "payload.reference.uri".into(),
                optional(payload.reference.uri.as_ref(), Clone::clone),
            ));
            rows.push(("payload.reference.size".into(), format!("{} bytes", payload.reference.size)));
            rows.push((
                "payload.installedSize".into(),
                optional(payload.installed_size, |size| format!("{size} bytes")),
            ));
            rows.push((
                "payload.installedDigest".into(),
                optional(payload.installed_digest.as_deref(), hex::encode),
            ));
            rows.push(("payload.version".into(), optional(payload.version.as_ref(), Clone::clone)));
        }
        None => rows.push(("payload".into(), "(absent)".into())),
    }
    rows.push(("signature.hash".into(), hex_or_empty(&decoded.hash)));
    for (index, block) in decoded.signatures.iter().enumerate() {
        rows.push((format!("signature.signatures[{index}].signature"), hex_or_empty(&block.signature)));
        for (certificate_index, reference) in block.certificates.iter().enumerate() {
            let prefix = format!("signature.signatures[{index}].certificates[{certificate_index}]");
            rows.push((format!("{prefix}.fingerprint"), hex_or_empty(&reference.fingerprint)));
            rows.push((
                format!("{prefix}.uri"),
                if reference.uri.is_empty() { "(empty)".into() } else { reference.uri.clone() },
            ));
        }
    }
    rows.push((
        "signature.macs".into(),
        optional(decoded.macs.as_ref(), |macs| format!("{} blocks", macs.len())),
    ));
    rows.push((
        "signed-bytes".into(),
        format!(
            "{} bytes, sha256 {}",
            decoded.signed_bytes.len(),
            hex::encode(Sha256::digest(&decoded.signed_bytes))
        ),
    ));
    rows
}

fn json(decoded: &DecodedManifestV1) -> serde_json::Value {
    let enum_json = |value: &EnumOrObjectId| match value {
        EnumOrObjectId::Enumerated(number) => serde_json::json!({ "enum": number }),
        EnumOrObjectId::ObjectId(oid) => serde_json::json!({ "objectId": oid }),
    };
    let payload = decoded.payload.as_ref().map(|payload| {
        serde_json::json!({
            "format": enum_json(&payload.format),
            "encryptionInfo": payload.encryption_info_der.as_deref().map(hex::encode),
            "storageIdentifier": payload.storage_identifier,
            "reference": {
                "hash": hex::encode(&payload.reference.hash),
                "uri": payload.reference.uri,
                "size": payload.reference.size,
            },
            "installedSize": payload.installed_size,
            "installedDigest": payload.installed_digest.as_deref().map(hex::encode),
            "version": payload.version,
        })
    });
    let signatures: Vec<_> = decoded
        .signatures
        .iter()
        .map(|block| {
            let certificates: Vec<_> = block
                .certificates
                .iter()
                .map(|reference| serde_json::json!({ "fingerprint": hex::encode(&reference.fingerprint), "uri": reference.uri }))
                .collect();
            serde_json::json!({ "signature": hex::encode(&block.signature), "certificates": certificates })
        })
        .collect();
    serde_json::json!({
        "schema": "v1",
        "resource": {
            "uri": decoded.resource_uri,
            "resourceType": decoded.resource_type,
            "manifest": {
                "manifestVersion": decoded.manifest_version,
                "description": decoded.description,
                "timestamp": decoded.timestamp,
                "vendorId": hex::encode(&decoded.vendor_id),
                "classId": hex::encode(&decoded.class_id),
                "deviceId": hex::encode(&decoded.device_id),
                "nonce": hex::encode(&decoded.nonce),
                "vendorInfo": hex::encode(&decoded.vendor_info),
                "precursorDigest": decoded.precursor_digest.as_deref().map(hex::encode),
                "applyPeriod": decoded.apply_period.map(|(from, to)| serde_json::json!({ "validFrom": from, "validTo": to })),
                "applyImmediately": decoded.apply_immediately,
                "priority": decoded.priority,
                "encryptionMode": enum_json(&decoded.encryption_mode),
                "aliases": decoded.aliases.len(),
                "dependencies": decoded.dependencies.len(),
                "payload": payload,
            },
        },
        "signature": {
            "hash": hex::encode(&decoded.hash),
            "signatures": signatures,
            "macs": decoded.macs.as_ref().map(Vec::len),
        },
        "signed_bytes_size": decoded.signed_bytes.len(),
        "signed_bytes_sha256": hex::encode(Sha256::digest(&decoded.signed_bytes)),
    })
}

pub(super) fn inspect(path: &Path, manifest_der: &[u8], as_json: bool) -> anyhow::Result<ExitCode> {
    let decoded = v1::decode_manifest_v1(manifest_der)
        .with_context(|| format!("{} is not a Pelion v3 manifest, nor a valid v1 one", path.display()))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json(&decoded))?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = rows(&decoded);
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        println!("{name:<width$}  {value}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify(
    path: &Path,
    manifest_der: &[u8],
    certificate: &Certificate,
    expectations: &DeviceExpectations,
    payload: Option<Vec<u8>>,
) -> anyhow::Result<ExitCode> {
    let decoded = v1::verify_manifest_v1(manifest_der, certificate, expectations).with_context(|| {
        format!(
            "{}: the legacy update client would refuse this v1 manifest (certificate {}, sha256 {})",
            path.display(),
            certificate.subject(),
            certificate.fingerprint_hex()
        )
    })?;
    if let Some(payload) = &payload {
        decoded
            .check_payload(payload)
            .with_context(|| format!("the payload is not the one {} names", path.display()))?;
    }
    println!("schema: v1");
    println!("hash: ok (sha256 of the resource)");
    println!(
        "signature: ok ({} block(s), certificate {}, sha256 {})",
        decoded.signatures.len(),
        certificate.subject(),
        certificate.fingerprint_hex()
    );
    let checked = |value: Option<uuid::Uuid>| if value.is_some() { "matches" } else { "not checked" };
    println!(
        "vendorId: {} ({}), classId: {} ({})",
        hex::encode(&decoded.vendor_id),
        checked(expectations.vendor_id),
        hex::encode(&decoded.class_id),
        checked(expectations.class_id)
    );
    println!("timestamp: {} (newer than installed {})", decoded.timestamp, expectations.installed_timestamp);
    if let Some(described) = &decoded.payload {
        let format = enum_or_oid(&described.format, payload_format_name);
        println!(
            "payload: {format}, {} bytes, sha256 {}{}",
            described.reference.size,
            hex::encode(&described.reference.hash),
            if payload.is_some() { " (matches the given file)" } else { "" }
        );
    }
    println!("verdict: accepted");
    Ok(ExitCode::SUCCESS)
}
