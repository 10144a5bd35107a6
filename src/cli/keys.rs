//! `imprint keys ...`: signing keys that live in hardware tokens (PKCS#11).
//!
//! A production update-signing key should be born inside an HSM and never leave it. `generate`
//! makes such a key (sensitive, not extractable) and, in the same step, the two files a profile
//! needs beside the key's URI: the public key and a certificate for it — self-signed, or issued
//! by a CA key that is itself in a token. `show` prints what a URI points at.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use imprint::output::ExistingFile;
use imprint::trust::{
    self, Certificate, CertificateRequest, Pkcs11KeyConfig, Pkcs11Signer, Signer, issue_certificate,
    self_signed_certificate,
};
use sha2::{Digest, Sha256};
use spki::EncodePublicKey;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a P-256 key pair inside a PKCS#11 token (sensitive, not extractable) and write
    /// its public key and a certificate for it.
    #[command(after_help = "Examples:
  export IMPRINT_PIN=...   # the token's user PIN
  imprint keys generate --label update-ca --ca \\
      --pkcs11 'pkcs11:token=line-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:IMPRINT_PIN'
  imprint keys generate --label update-signing --id 02 \\
      --pkcs11 'pkcs11:token=line-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:IMPRINT_PIN' \\
      --issuer-key 'pkcs11:token=line-1;object=update-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:IMPRINT_PIN' \\
      --issuer-cert update-ca.cert.der

Without --pin-source in the URI the PIN is asked for on the terminal (no echo). A wrong PIN is
tried once, never again: tokens lock after a few wrong PINs.

Exit status: 0 when the key and its files were made, 2 for bad input or a token error.")]
    Generate(GenerateArgs),
    /// Show a PKCS#11 key: its exact URI, public key, fingerprint and protection attributes.
    #[command(after_help = "Examples:
  imprint keys show 'pkcs11:token=line-1;object=update-signing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:IMPRINT_PIN'

Exit status: 0 when the key was found, 2 otherwise.")]
    Show {
        /// The key, as an RFC 7512 URI with module-path (and pin-source) in its query.
        uri: String,
    },
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The token (RFC 7512 URI: token=, module-path=, pin-source=); object= and id= may name
    /// the new key instead of --label and --id.
    #[arg(long, value_name = "URI")]
    pkcs11: String,
    /// Label (CKA_LABEL) of the new key pair.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// ID (CKA_ID) of the new key pair in hex (default: 8 random bytes).
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    /// Subject common name of the certificate (default: the label).
    #[arg(long, value_name = "CN")]
    common_name: Option<String>,
    /// Subject organisation of the certificate.
    #[arg(long, value_name = "O")]
    organization: Option<String>,
    /// Certificate validity in days from now (default 20 years: devices in the field outlive
    /// a 10-year certificate, and `profile check` warns below 10 years left).
    #[arg(long, value_name = "DAYS", default_value_t = 7300)]
    validity_days: u32,
    /// Make a CA certificate (CA:TRUE, keyCertSign) instead of an update-signing certificate
    /// (digitalSignature, codeSigning).
    #[arg(long)]
    ca: bool,
    /// The CA key that issues the certificate (a pkcs11: URI); self-signed without it.
    #[arg(long, value_name = "URI", requires = "issuer_cert")]
    issuer_key: Option<String>,
    /// The CA's certificate (DER or PEM).
    #[arg(long, value_name = "FILE", requires = "issuer_key")]
    issuer_cert: Option<PathBuf>,
    /// Where to write the public key (PEM; default LABEL.pub.pem).
    #[arg(long, value_name = "FILE")]
    public_key_out: Option<PathBuf>,
    /// Where to write the certificate (PEM if the name ends in .pem, else DER; default
    /// LABEL.cert.der).
    #[arg(long, value_name = "FILE")]
    certificate_out: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
}

pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate(args) => generate(args),
        KeysCommand::Show { uri } => show(&uri),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut config = Pkcs11KeyConfig::from_uri(&args.pkcs11).context("--pkcs11")?;
    let label = match (&args.label, &config.key_label) {
        (Some(flag), Some(in_uri)) if flag != in_uri => {
            bail!("--label {flag:?} and the URI's object={in_uri:?} differ; give the label once")
        }
        (Some(label), _) | (None, Some(label)) => label.clone(),
        (None, None) => bail!("--label: expected a label for the new key (or object= in the --pkcs11 URI)"),
    };
    if let Some(id_hex) = &args.id {
        let id = hex::decode(id_hex).with_context(|| format!("--id {id_hex}: expected the key id in hex"))?;
        if id.is_empty() {
            bail!("--id: expected at least one byte of hex");
        }
        if config.key_id.as_ref().is_some_and(|in_uri| *in_uri != id) {
            bail!("--id {id_hex} and the URI's id= differ; give the id once");
        }
        config.key_id = Some(id);
    }
    config.key_label = Some(label.clone());
    let file_stem: String = label
        .chars()
        .map(
            |character| {
                if character.is_ascii_alphanumeric() || "-_.".contains(character) { character } else { '_' }
            },
        )
        .collect();
    let public_key_path =
        args.public_key_out.unwrap_or_else(|| PathBuf::from(format!("{file_stem}.pub.pem")));
    let certificate_path =
        args.certificate_out.unwrap_or_else(|| PathBuf::from(format!("{file_stem}.cert.der")));
    // Before the token is touched: the outputs overwrite nothing unasked and are no input.
    let existing = ExistingFile::from_force(args.force);
    let inputs: Vec<PathBuf> = args.issuer_cert.iter().cloned().collect();
    if public_key_path == certificate_path {
        bail!("--public-key-out and --certificate-out are the same file {}", public_key_path.display());
    }
    for path in [&public_key_path, &certificate_path] {
        imprint::output::check_output(path, &inputs, existing)?;
    }
    let mut request = if args.ca {
        CertificateRequest::certificate_authority(
            args.common_name.unwrap_or_else(|| label.clone()),
            args.validity_days,
        )
    } else {
        CertificateRequest::update_authority(
            args.common_name.unwrap_or_else(|| label.clone()),
            args.validity_days,
        )
    };
    request.organization = args.organization;

    // Everything about the issuer is checked before a key is made, so that a bad issuer does
    // not leave an orphan key in the token.
    let issuer = match (&args.issuer_key, &args.issuer_cert) {
        (Some(issuer_uri), Some(issuer_certificate_path)) => {
            let issuer_certificate = Certificate::load(issuer_certificate_path)
                .with_context(|| format!("--issuer-cert {}", issuer_certificate_path.display()))?;
            if !issuer_certificate.is_ca() {
                bail!(
                    "--issuer-cert {}: expected a CA certificate (basicConstraints CA:TRUE), found {} without it",
                    issuer_certificate_path.display(),
                    issuer_certificate.subject()
                );
            }
            let issuer_signer = open_signer(issuer_uri).context("--issuer-key")?;
            if !trust::key_matches_certificate(&issuer_signer, &issuer_certificate) {
                bail!(
                    "--issuer-key {} is not the key of --issuer-cert {} ({})",
                    issuer_signer.describe(),
                    issuer_certificate_path.display(),
                    issuer_certificate.subject()
                );
            }
            Some((issuer_signer, issuer_certificate))
        }
        _ => None,
    };

    let signer = Pkcs11Signer::generate(&config).context("generating the key pair")?;
    let key_uri = signer.key_config().to_uri();
    let certificate = match &issuer {
        Some((issuer_signer, issuer_certificate)) => {
            issue_certificate(issuer_signer, issuer_certificate, &signer.verifying_key(), &request)
        }
        None => self_signed_certificate(&signer, &request),
    }
    .with_context(|| format!("the key {key_uri} was generated, but its certificate could not be made"))?;
    let public_key_pem = signer
        .verifying_key()
        .to_public_key_pem(der::pem::LineEnding::LF)
        .context("encoding the public key as PEM")?;
    write_file(&public_key_path, public_key_pem.as_bytes(), &inputs, existing)?;
    let certificate_bytes = if certificate_path.extension().is_some_and(|extension| extension == "pem") {
        certificate.to_pem().into_bytes()
    } else {
        certificate.der().to_vec()
    };
    write_file(&certificate_path, &certificate_bytes, &inputs, existing)?;

    let protection = signer.key_protection().context("reading the new key's attributes")?;
    println!("generated P-256 key pair in token {:?}", config.token_label);
    println!("key URI      {key_uri}");
    println!("protection   {}", describe_protection(&protection));
    println!("wrote {} (public key, PEM)", public_key_path.display());
    println!("wrote {} (certificate)", certificate_path.display());
    println!("certificate  {} issued by {}", certificate.subject(), certificate.issuer());
    println!("certificate SHA-256: {}", certificate.fingerprint_hex());
    println!(
        "for a profile: [trust] certificate = {:?}, signing_key = {:?}",
        certificate_path.display().to_string(),
        key_uri
    );
    Ok(ExitCode::SUCCESS)
}

fn show(uri: &str) -> anyhow::Result<ExitCode> {
    let signer = open_signer(uri)?;
    let public_key_der = signer.verifying_key().to_public_key_der().context("encoding the public key")?;
    let protection = signer.key_protection()?;
    println!("key URI      {}", signer.key_config().to_uri());
    println!("protection   {}", describe_protection(&protection));
    println!(
        "public key SHA-256 (SubjectPublicKeyInfo DER): {}",
        hex::encode(Sha256::digest(public_key_der.as_bytes()))
    );
    print!(
        "{}",
        signer
            .verifying_key()
            .to_public_key_pem(der::pem::LineEnding::LF)
            .context("encoding the public key")?
    );
    Ok(ExitCode::SUCCESS)
}

fn open_signer(uri: &str) -> anyhow::Result<Pkcs11Signer> {
    if !trust::is_pkcs11_uri(uri) {
        bail!("{uri}: expected a pkcs11: URI (keys in files need no `keys` command: see `imprint dev init`)");
    }
    Ok(Pkcs11Signer::open_uri(uri)?)
}

fn describe_protection(protection: &trust::Pkcs11KeyProtection) -> String {
    let flag = |value: bool, yes: &str, no: &str| if value { yes.to_string() } else { no.to_string() };
    [
        flag(protection.sensitive, "sensitive", "NOT sensitive"),
        flag(protection.extractable, "EXTRACTABLE", "not extractable"),
        flag(protection.always_sensitive, "always sensitive", "not always sensitive"),
        flag(protection.never_extractable, "never extractable", "was extractable"),
        flag(protection.local, "generated in the token", "imported"),
    ]
    .join(", ")
}

fn write_file(
    path: &Path,
    contents: &[u8],
    inputs: &[PathBuf],
    existing: ExistingFile,
) -> anyhow::Result<()> {
    imprint::output::write_output_file(path, inputs, existing, |out| {
        out.write_all(contents).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("writing {}", path.display()))
}
