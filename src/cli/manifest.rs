//! `imprint manifest create|inspect|verify`: Pelion update manifests (v3, and v1 for the legacy
//! update client) from the command line.
//!
//! These are thin wrappers over `imprint::manifest` so that a release engineer can make the
//! same manifests the station stages, look inside any manifest (ours or manifest-tool's; the
//! schema is detected), and check one against the certificate a device holds before it ever
//! reaches a fixture. The v1 rows and verdicts live in the child module `manifest/v1.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use imprint::manifest::{
    self, DecodedManifest, MANIFEST_VERSION_V3, ManifestRequest, ManifestSchema, SemanticVersion,
};
use imprint::output::ExistingFile;
use imprint::trust::{self, Certificate};
use sha2::{Digest, Sha256};

mod v1;

#[derive(clap::Subcommand)]
pub enum ManifestCommand {
    /// Create and sign a raw-binary manifest for a payload: v3 (default, like `manifest-tool
    /// create` with `sign-image: true`) or v1 (like `manifest-tool create-v1`).
    #[command(
        after_help = "Examples:\n  imprint manifest create --payload app.bin --payload-version 1.2.3 \\\n      --key update.key.pem --vendor-id 3e6e5c2a-9c8b-4f0f-a1d2-b3c4d5e6f708 \\\n      --class-id 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 -o app.manifest\n  imprint manifest create --schema v1 --payload app.bin --payload-version 1700000000 \\\n      --vendor-id 3e6e5c2a-9c8b-4f0f-a1d2-b3c4d5e6f708 --class-id 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 \\\n      --key update.key.pem --cert update.cert.der --payload-uri https://example.com/app.bin -o app.manifest"
    )]
    Create(CreateArgs),
    /// Print every field of a manifest without checking signatures.
    #[command(
        after_help = "Examples:\n  imprint manifest inspect app.manifest\n  imprint manifest inspect app.manifest --json"
    )]
    Inspect(InspectArgs),
    /// Verify a manifest's signatures with a certificate's key, and optionally its payload; for
    /// v1, the legacy update client's verdict (fingerprint, hash, signature, vendor/class, timestamp).
    ///
    /// Exits 0 when everything checked is valid, 2 otherwise with the reason.
    #[command(
        after_help = "Examples:\n  imprint manifest verify app.manifest --cert update.cert.der\n  imprint manifest verify app.manifest --cert update.cert.pem --payload app.bin\n  imprint manifest verify legacy.manifest --cert update.cert.der --vendor-id VENDOR --class-id CLASS"
    )]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Manifest schema: v3 (current update client) or v1 (legacy update-client-hub).
    #[arg(long, value_name = "v1|v3", default_value = "v3", value_parser = ["v1", "v3"])]
    schema: String,
    /// The firmware image the manifest describes.
    #[arg(long, value_name = "FILE")]
    payload: PathBuf,
    /// Version the payload installs. v3: MAJOR.MINOR.PATCH, each 0..=999, at least 0.0.1.
    /// v1: the integer timestamp (at least 1), or MAJOR.MINOR.PATCH mapped as manifest-tool's
    /// `--fw-migrate-ver` maps it (bit 55 | major << 40 | minor << 16 | patch).
    #[arg(long, value_name = "VERSION")]
    payload_version: String,
    /// v1 only: the update certificate (DER or PEM) whose SHA-256 the signature block names.
    #[arg(long, value_name = "CERT")]
    cert: Option<PathBuf>,
    /// ECDSA P-256 private key that signs the manifest: a file (PKCS#8 or SEC1, PEM or DER) or a
    /// PKCS#11 URI (`pkcs11:token=...;object=...?module-path=...&pin-source=env:VAR`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Vendor UUID (hyphenated or 32 hex digits), as stored in the device's mbed.VendorId.
    #[arg(long, value_name = "UUID")]
    vendor_id: uuid::Uuid,
    /// Device class UUID, as stored in the device's mbed.ClassId.
    #[arg(long, value_name = "UUID")]
    class_id: uuid::Uuid,
    /// Where the device would download the payload; defaults to the payload's file name.
    #[arg(long, value_name = "URI")]
    payload_uri: Option<String>,
    /// Update priority (v3 default 0; v1 writes it only when given, as manifest-tool does).
    #[arg(long, value_name = "N")]
    priority: Option<u64>,
    /// Component to update (v3 only).
    #[arg(long, value_name = "NAME")]
    component: Option<String>,
    /// File whose bytes go into vendor-data (v3) or vendorInfo (v1), passed through to the device.
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<PathBuf>,
    /// Where to write the manifest (DER): a new file, never one of the inputs.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// Replace FILE if it exists (without it an existing file is refused, never overwritten).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The manifest file (DER).
    manifest: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The manifest file (DER).
    manifest: PathBuf,
    /// Certificate (DER or PEM) whose public key must have signed the manifest.
    #[arg(long, value_name = "CERT")]
    cert: PathBuf,
    /// The payload; its size and SHA-256 must match payload-size and payload-digest.
    #[arg(long, value_name = "FILE")]
    payload: Option<PathBuf>,
    /// The device's vendor UUID (mbed.VendorId); the manifest must name it.
    #[arg(long, value_name = "UUID")]
    vendor_id: Option<uuid::Uuid>,
    /// The device's class UUID (mbed.ClassId); the manifest must name it.
    #[arg(long, value_name = "UUID")]
    class_id: Option<uuid::Uuid>,
    /// v1 only: the installed firmware's timestamp; the manifest's must be newer (default 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    installed_timestamp: u64,
}

pub fn run(command: ManifestCommand) -> anyhow::Result<ExitCode> {
    match command {
        ManifestCommand::Create(args) => create(args),
        ManifestCommand::Inspect(args) => inspect(args),
        ManifestCommand::Verify(args) => verify(args),
    }
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The signer `--key` names: a key file or a PKCS#11 URI.
fn open_signer(key: &Path) -> anyhow::Result<Box<dyn trust::Signer>> {
    let key_text = key.to_string_lossy();
    Ok(if trust::is_pkcs11_uri(&key_text) {
        Box::new(trust::Pkcs11Signer::open_uri(&key_text)?)
    } else {
        Box::new(trust::load_signing_key(key)?)
    })
}

/// `--payload-uri`, or the payload's file name.
fn payload_uri_or_file_name(args: &CreateArgs) -> anyhow::Result<String> {
    match &args.payload_uri {
        Some(uri) => Ok(uri.clone()),
        None => args.payload.file_name().map(|name| name.to_string_lossy().into_owned()).with_context(|| {
            format!(
                "--payload {} has no file name to use as the payload URI; give --payload-uri",
                args.payload.display()
            )
        }),
    }
}

/// The files `manifest create` reads: its output may be none of them.
fn create_inputs(args: &CreateArgs) -> Vec<PathBuf> {
    let mut inputs = vec![args.payload.clone()];
    inputs.extend(args.vendor_data.iter().cloned());
    inputs.extend(args.cert.iter().cloned());
    if !trust::is_pkcs11_uri(&args.key.to_string_lossy()) {
        inputs.push(args.key.clone());
    }
    inputs
}

/// Writes the finished manifest to `-o` through [`imprint::output`] (checked again: the path
/// was checked at start).
pub(super) fn write_manifest(
    output: &Path,
    inputs: &[PathBuf],
    existing: ExistingFile,
    der: &[u8],
) -> anyhow::Result<()> {
    imprint::output::write_output_file(output, inputs, existing, |out| {
        out.write_all(der).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("cannot write manifest {}", output.display()))
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    // Knowable before any key is opened: the output is no input and no file it would overwrite.
    let inputs = create_inputs(&args);
    let existing = ExistingFile::from_force(args.force);
    imprint::output::check_output(&args.output, &inputs, existing)?;
    if args.schema == "v1" {
        if args.component.is_some() {
            anyhow::bail!("--component is a v3 field: v1 manifests have no component name");
        }
        let certificate_path = args.cert.as_deref().context(
            "--schema v1 needs --cert CERT: the signature block names the update certificate by its SHA-256",
        )?;
        let payload = read_file(&args.payload, "payload")?;
        let vendor_info =
            args.vendor_data.as_deref().map(|path| read_file(path, "vendor data")).transpose()?;
        let options = v1::CreateV1 {
            payload_path: &args.payload,
            payload: &payload,
            payload_version: &args.payload_version,
            vendor_id: args.vendor_id,
            class_id: args.class_id,
            payload_uri: payload_uri_or_file_name(&args)?,
            priority: args.priority,
            vendor_info: vendor_info.unwrap_or_default(),
            signer: open_signer(&args.key)?,
            certificate: Certificate::load(certificate_path)?,
            output: &args.output,
            inputs: &inputs,
            existing,
        };
        return v1::create(options);
    }
    if args.cert.is_some() {
        anyhow::bail!("--cert is for --schema v1: a v3 manifest does not name its certificate");
    }
    let payload_version: SemanticVersion = args.payload_version.parse().with_context(|| {
        format!("--payload-version {:?} is not a v3 version (MAJOR.MINOR.PATCH)", args.payload_version)
    })?;
    let payload = read_file(&args.payload, "payload")?;
    let signer = open_signer(&args.key)?;
    let vendor_data = args.vendor_data.as_deref().map(|path| read_file(path, "vendor data")).transpose()?;
    let payload_uri = payload_uri_or_file_name(&args)?;
    let request = ManifestRequest {
        vendor_id: args.vendor_id,
        class_id: args.class_id,
        update_priority: args.priority.unwrap_or(0),
        component_name: args.component.unwrap_or_else(|| manifest::DEFAULT_COMPONENT_NAME.to_string()),
        payload_version,
        payload: &payload,
        payload_uri,
        vendor_data,
    };
    let manifest_der = manifest::create_manifest(&request, signer.as_ref())
        .with_context(|| format!("cannot create a manifest for {}", args.payload.display()))?;
    write_manifest(&args.output, &inputs, existing, &manifest_der)?;
    println!(
        "wrote {} ({} bytes): version {}, payload {} bytes sha256 {}",
        args.output.display(),
        manifest_der.len(),
        request.payload_version,
        payload.len(),
        hex::encode(Sha256::digest(&payload))
    );
    Ok(ExitCode::SUCCESS)
}

fn decode_file(path: &Path) -> anyhow::Result<(Vec<u8>, DecodedManifest)> {
    let manifest_der = read_file(path, "manifest")?;
    let decoded = manifest::decode_manifest(&manifest_der)
        .with_context(|| format!("{} is not a Pelion v3 manifest", path.display()))?;
    Ok((manifest_der, decoded))
}

fn hex_or_none(bytes: &[u8]) -> String {
    if bytes.is_empty() { "(empty)".to_string() } else { hex::encode(bytes) }
}

/// The schema of a manifest file, with the file's name in the error.
fn schema_of(path: &Path, manifest_der: &[u8]) -> anyhow::Result<ManifestSchema> {
    manifest::detect_schema(manifest_der)
        .with_context(|| format!("{} is not a Pelion v3 manifest, nor a v1 one", path.display()))
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let manifest_der = read_file(&args.manifest, "manifest")?;
    if schema_of(&args.manifest, &manifest_der)? == ManifestSchema::V1 {
        return v1::inspect(&args.manifest, &manifest_der, args.json);
    }
    let (_, decoded) = decode_file(&args.manifest)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest_json(&decoded))?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = manifest_rows(&decoded);
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        println!("{name:<width$}  {value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Field name and printed value, in schema order.
fn manifest_rows(decoded: &DecodedManifest) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("manifest-version", format!("{MANIFEST_VERSION_V3} (v3)")),
        ("vendor-id", format!("{} (hex {})", decoded.vendor_uuid(), hex::encode(decoded.vendor_id))),
        ("class-id", format!("{} (hex {})", decoded.class_uuid(), hex::encode(decoded.class_id))),
        ("update-priority", decoded.update_priority.to_string()),
        ("component-name", decoded.component_name.clone()),
        ("payload-version", decoded.payload_version.to_string()),
        ("payload-digest", hex::encode(&decoded.payload_digest)),
        ("payload-size", format!("{} bytes", decoded.payload_size)),
        ("payload-uri", decoded.payload_uri.clone()),
        ("payload-format", format!("{} ({})", decoded.payload_format, decoded.payload_format.schema_value())),
        ("installed-signature", hex_or_none(&decoded.installed_signature)),
    ];
    match &decoded.payload_metadata {
        Some(metadata) => {
            rows.push(("payload-metadata.installed-size", format!("{} bytes", metadata.installed_size)));
            rows.push(("payload-metadata.installed-digest", hex::encode(&metadata.installed_digest)));
            rows.push((
                "payload-metadata.precursor-digest",
                metadata.precursor_digest.as_deref().map_or_else(|| "(absent)".to_string(), hex::encode),
            ));
        }
        None => rows.push(("payload-metadata", "(absent)".to_string())),
    }
    rows.push((
        "vendor-data",
        decoded.vendor_data.as_deref().map_or_else(
            || "(absent)".to_string(),
            |data| format!("{} ({} bytes)", hex_or_none(data), data.len()),
        ),
    ));
    rows.push(("signature", hex::encode(&decoded.signature)));
    rows.push((
        "signed-bytes",
        format!(
            "{} bytes, sha256 {}",
            decoded.signed_bytes.len(),
            hex::encode(Sha256::digest(&decoded.signed_bytes))
        ),
    ));
    rows
}

fn manifest_json(decoded: &DecodedManifest) -> serde_json::Value {
    let payload_metadata = decoded.payload_metadata.as_ref().map(|metadata| {
        serde_json::json!({
            "installed_size": metadata.installed_size,
            "installed_digest": hex::encode(&metadata.installed_digest),
            "precursor_digest": metadata.precursor_digest.as_deref().map(hex::encode),
        })
    });
    serde_json::json!({
        "manifest_version": MANIFEST_VERSION_V3,
        "vendor_id": decoded.vendor_uuid().to_string(),
        "vendor_id_hex": hex::encode(decoded.vendor_id),
        "class_id": decoded.class_uuid().to_string(),
        "class_id_hex": hex::encode(decoded.class_id),
        "update_priority": decoded.update_priority,
        "component_name": decoded.component_name,
        "payload_version": decoded.payload_version.to_string(),
        "payload_digest": hex::encode(&decoded.payload_digest),
        "payload_size": decoded.payload_size,
        "payload_uri": decoded.payload_uri,
        "payload_format": decoded.payload_format.schema_name(),
        "payload_format_value": decoded.payload_format.schema_value(),
        "installed_signature": hex::encode(&decoded.installed_signature),
        "payload_metadata": payload_metadata,
        "vendor_data": decoded.vendor_data.as_deref().map(hex::encode),
        "signature": hex::encode(&decoded.signature),
        "signed_bytes_size": decoded.signed_bytes.len(),
        "signed_bytes_sha256": hex::encode(Sha256::digest(&decoded.signed_bytes)),
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let certificate = Certificate::load(&args.cert)?;
    let manifest_bytes = read_file(&args.manifest, "manifest")?;
    if schema_of(&args.manifest, &manifest_bytes)? == ManifestSchema::V1 {
        let expectations = manifest::v1::DeviceExpectations {
            vendor_id: args.vendor_id,
            class_id: args.class_id,
            installed_timestamp: args.installed_timestamp,
        };
        let payload = args.payload.as_deref().map(|path| read_file(path, "payload")).transpose()?;
        return v1::verify(&args.manifest, &manifest_bytes, &certificate, &expectations, payload);
    }
    let verifying_key = certificate.verifying_key()?;
    // Decode first so that a file that is no manifest at all is reported as such.
    let (manifest_der, _) = decode_file(&args.manifest)?;
    let decoded = manifest::verify_manifest(&manifest_der, &verifying_key).with_context(|| {
        format!(
            "{} does not verify with certificate {} (sha256 {})",
            args.manifest.display(),
            args.cert.display(),
            certificate.fingerprint_hex()
        )
    })?;
    for (field, expected, found) in [
        ("vendor-id", args.vendor_id, decoded.vendor_uuid()),
        ("class-id", args.class_id, decoded.class_uuid()),
    ] {
        if let Some(expected) = expected
            && expected != found
        {
            anyhow::bail!("{}: {field} is {found}, the device's is {expected}", args.manifest.display());
        }
    }
    // Check the payload before printing anything, so a failure prints only the reason.
    if let Some(payload_path) = &args.payload {
        let payload = read_file(payload_path, "payload")?;
        decoded.check_payload(&payload).with_context(|| {
            format!("{} is not the payload of {}", payload_path.display(), args.manifest.display())
        })?;
    }
    println!(
        "signature: ok (certificate {}, sha256 {})",
        certificate.subject(),
        certificate.fingerprint_hex()
    );
    if decoded.installed_signature.is_empty() {
        println!("installed-signature: absent (image not signed)");
    } else {
        println!("installed-signature: ok");
    }
    if args.payload.is_some() {
        println!(
            "payload: ok ({} bytes, sha256 {})",
            decoded.payload_size,
            hex::encode(&decoded.payload_digest)
        );
    }
    println!(
        "manifest: {} {} for vendor {} class {}",
        decoded.component_name,
        decoded.payload_version,
        decoded.vendor_uuid(),
        decoded.class_uuid()
    );
    Ok(ExitCode::SUCCESS)
}
