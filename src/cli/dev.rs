//! `imprint dev ...`: developer credentials for trying Imprint before a real PKI exists.
//!
//! Everything this noun writes is for development only (an unencrypted key in a file), and it
//! says so each time, so a developer key does not drift into a production profile unnoticed.

use std::path::PathBuf;
use std::process::ExitCode;

use imprint::trust::{self, DevInitOptions};
use uuid::Uuid;

#[derive(clap::Subcommand)]
pub enum DevCommand {
    /// Create a developer signing key, update certificate, vendor/class IDs and the firmware's
    /// update_default_resources.c (compatible with `manifest-dev-tool init`).
    #[command(after_help = "Examples:\n  \
        imprint dev init dev-credentials\n  \
        imprint dev init dev-credentials --vendor-domain example.com --model-name thermostat-v2\n  \
        imprint dev init legacy-credentials --schema v1 --vendor-domain example.com --model-name m1\n  \
        imprint dev init dev-credentials --vendor-id 6f0bdfd4-5a7c-4f52-9c1b-8f2d61c3a1e0 \\\n      \
        --class-id 0f8c3c53-2d8e-4f0c-b0c6-6a1f0b3a7d21 --force")]
    Init {
        /// Directory to write into (created if missing).
        dir: PathBuf,
        /// Derive the vendor ID as uuid5(NAMESPACE_DNS, DOMAIN).
        #[arg(long, value_name = "DOMAIN", conflicts_with = "vendor_id")]
        vendor_domain: Option<String>,
        /// Derive the class ID as uuid5(vendor ID, MODEL).
        #[arg(long, value_name = "MODEL", conflicts_with = "class_id")]
        model_name: Option<String>,
        /// Use this vendor ID (random if neither it nor --vendor-domain is given).
        #[arg(long, value_name = "UUID")]
        vendor_id: Option<Uuid>,
        /// Use this class ID (random if neither it nor --model-name is given).
        #[arg(long, value_name = "UUID")]
        class_id: Option<Uuid>,
        /// Replace existing credential files.
        #[arg(long)]
        force: bool,
        /// Which update client the firmware's update_default_resources.c is for: v3 (current,
        /// manifest-dev-tool compatible) or v1 (legacy update-client-hub, v1 manifests; holds
        /// the certificate's real SHA-256 fingerprint and subject key identifier).
        #[arg(long, value_name = "v1|v3", default_value = "v3", value_parser = ["v1", "v3"])]
        schema: String,
    },
}

pub fn run(command: DevCommand) -> anyhow::Result<ExitCode> {
    match command {
        DevCommand::Init { dir, vendor_domain, model_name, vendor_id, class_id, force, schema } => {
            let options = DevInitOptions {
                vendor_domain,
                model_name,
                vendor_id,
                class_id,
                force,
                v1_update_resources: schema == "v1",
            };
            let credentials = trust::dev_init(&dir, &options).map_err(|error| {
                let hint = if matches!(error, trust::TrustError::AlreadyExists { .. }) {
                    " (pass --force to replace the existing credentials)"
                } else {
                    ""
                };
                anyhow::Error::new(error)
                    .context(format!("creating developer credentials in {}{hint}", dir.display()))
            })?;
            println!("DEVELOPMENT ONLY: these credentials must never sign updates for production units.");
            println!("wrote {} (private key, mode 0600)", credentials.signing_key_path.display());
            println!("wrote {} (update certificate, DER)", credentials.certificate_path.display());
            println!("wrote {} (firmware update resources)", credentials.c_source_path.display());
            println!("wrote {} (summary for a profile)", credentials.summary_path.display());
            println!("vendor ID: {}", credentials.vendor_id);
            println!("class ID: {}", credentials.class_id);
            println!("certificate SHA-256: {}", credentials.certificate.fingerprint_hex());
            println!(
                "\nTo provision with them, put these lines in the product profile (they replace its \
                 [identity] and [trust] sections):\n\n{}",
                trust::profile_snippet(&dir, credentials.vendor_id, credentials.class_id)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
