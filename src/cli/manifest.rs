//! `imprint manifest create|inspect|verify`: Pelion v3 update manifests from the command line.
//!
//! These are thin wrappers over `imprint::manifest` so that a release engineer can make the
//! same manifests the station stages, look inside any manifest (ours or manifest-tool's), and
//! check one against the certificate a device holds before it ever reaches a fixture.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use imprint::manifest::{self, DecodedManifest, MANIFEST_VERSION_V3, ManifestRequest, SemanticVersion};
use imprint::trust::{self, Certificate};
use sha2::{Digest, Sha256};

#[derive(clap::Subcommand)]
pub enum ManifestCommand {
    /// Create and sign a raw-binary v3 manifest for a payload (like `manifest-tool create`
    /// with `sign-image: true`).
    #[command(
        after_help = "Example:\n  imprint manifest create --payload app.bin --payload-version 1.2.3 \\\n      --key update.key.pem --vendor-id 3e6e5c2a-9c8b-4f0f-a1d2-b3c4d5e6f708 \\\n      --class-id 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 -o app.manifest"
    )]
    Create(CreateArgs),
    /// Print every field of a manifest without checking signatures.
    #[command(
        after_help = "Examples:\n  imprint manifest inspect app.manifest\n  imprint manifest inspect app.manifest --json"
    )]
    Inspect(InspectArgs),
    /// Verify a manifest's signatures with a certificate's key, and optionally its payload.
    ///
    /// Exits 0 when everything checked is valid, 2 otherwise with the reason.
    #[command(
        after_help = "Examples:\n  imprint manifest verify app.manifest --cert update.cert.der\n  imprint manifest verify app.manifest --cert update.cert.pem --payload app.bin"
    )]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The firmware image the manifest describes.
    #[arg(long, value_name = "FILE")]
    payload: PathBuf,
    /// Version the payload installs: MAJOR.MINOR.PATCH, each 0..=999, at least 0.0.1.
    #[arg(long, value_name = "X.Y.Z")]
    payload_version: SemanticVersion,
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
    /// Update priority.
    #[arg(long, value_name = "N", default_value_t = 0)]
    priority: u64,
    /// Component to update.
    #[arg(long, value_name = "NAME", default_value = manifest::DEFAULT_COMPONENT_NAME)]
    component: String,
    /// File whose bytes go into vendor-data (passed through to the device).
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<PathBuf>,
    /// Where to write the manifest (DER).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
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

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let payload = read_file(&args.payload, "payload")?;
    let key_text = args.key.to_string_lossy();
    let signer: Box<dyn trust::Signer> = if trust::is_pkcs11_uri(&key_text) {
        Box::new(trust::Pkcs11Signer::open_uri(&key_text)?)
    } else {
        Box::new(trust::load_signing_key(&args.key)?)
    };
    let vendor_data = args.vendor_data.as_deref().map(|path| read_file(path, "vendor data")).transpose()?;
    let payload_uri = match args.payload_uri {
        Some(uri) => uri,
        None => {
            args.payload.file_name().map(|name| name.to_string_lossy().into_owned()).with_context(|| {
                format!(
                    "--payload {} has no file name to use as the payload URI; give --payload-uri",
                    args.payload.display()
                )
            })?
        }
    };
    let request = ManifestRequest {
        vendor_id: args.vendor_id,
        class_id: args.class_id,
        update_priority: args.priority,
        component_name: args.component,
        payload_version: args.payload_version,
        payload: &payload,
        payload_uri,
        vendor_data,
    };
    let manifest_der = manifest::create_manifest(&request, signer.as_ref())
        .with_context(|| format!("cannot create a manifest for {}", args.payload.display()))?;
    std::fs::write(&args.output, &manifest_der)
        .with_context(|| format!("cannot write manifest {}", args.output.display()))?;
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

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
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
