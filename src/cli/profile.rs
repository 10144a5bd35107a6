//! `imprint profile ...`: check a product profile before it goes near a line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use imprint::profile::{FirmwareSettings, FlashRegion, Profile};
use imprint::trust::{KeyLocation, KeySource, Signer};

use super::EXIT_BAD_INPUT;

#[derive(clap::Subcommand)]
pub enum ProfileCommand {
    /// Validate a profile: print a summary, or every problem found (file and field).
    #[command(after_help = "Examples:
  imprint profile check profiles/demo.toml
  imprint profile check --skip-keys profiles/token.toml

Keys in a PKCS#11 token whose PIN comes from pin-source=env:... or file:... are opened (one
login) to prove the PIN, the key and its match to the certificate; a token key with
pin-source=prompt is never opened here (no PIN is asked for): `imprint run` opens it when the
line starts.

Exit status: 0 when the profile is valid, 2 when it has problems (each printed on its own line).")]
    Check {
        /// The profile (TOML).
        file: PathBuf,
        /// Open no token at all (the profile is still checked completely).
        #[arg(long)]
        skip_keys: bool,
    },
}

pub fn run(command: ProfileCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProfileCommand::Check { file, skip_keys } => check(&file, skip_keys),
    }
}

fn check(file: &std::path::Path, skip_keys: bool) -> anyhow::Result<ExitCode> {
    let profile = match Profile::load(file) {
        Ok(profile) => profile,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    // Loading opened no token. Open those that need nobody at the terminal, unless asked not to.
    if !skip_keys {
        for source in profile.key_sources() {
            if source.asks_for_pin() {
                continue;
            }
            if let Err(error) = source.open_signer() {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
        }
    }
    print_summary(&profile);
    Ok(ExitCode::SUCCESS)
}

/// The memory map, the images and their versions.
fn print_firmware(firmware: &FirmwareSettings) {
    println!("regions");
    for (name, region) in firmware.memory.flash_regions() {
        println!("  {name:<12} {}", describe_region(&region));
    }
    let mailbox = firmware.memory.mailbox;
    println!(
        "  {:<12} {:#010x}..{:#010x} ({} bytes, RAM)",
        "mailbox",
        mailbox.address,
        mailbox.address + mailbox.size_bytes,
        mailbox.size_bytes
    );
    println!("images");
    for (name, image) in [
        ("bootloader", &firmware.bootloader_image),
        ("application", &firmware.application_image),
        ("self-test", &firmware.self_test.payload),
    ] {
        println!(
            "  {name:<12} {} ({}, {} bytes at {:#010x}, sha256 {})",
            image.path.display(),
            image.format,
            image.size_bytes(),
            image.start_address(),
            hex::encode(image.file_sha256)
        );
    }
    println!(
        "versions     application {}, self-test payload {}",
        firmware.application_version, firmware.self_test.payload_version
    );
}

fn print_summary(profile: &Profile) {
    println!("profile      {} ({})", profile.name, profile.path.display());
    println!("sha256       {}", profile.file_sha256_hex());
    println!("product      {} / {}", profile.manufacturer, profile.model_name);
    match &profile.firmware {
        Some(firmware) => {
            println!("chip         {}", profile.chip_name);
            print_firmware(firmware);
        }
        None => println!(
            "chip         none: an FCC-only profile (no [chip], [memory], [images] or [self_test]; fcc: slots only)"
        ),
    }
    println!("vendor id    {}", profile.vendor_id);
    println!("class id     {}", profile.class_id);
    let certificate = &profile.update_certificate;
    println!("certificate  {}", certificate.subject());
    println!("  fingerprint  {}", hex::encode(certificate.fingerprint_sha256()));
    println!(
        "  valid        {} .. {}",
        format_date(certificate.not_before()),
        format_date(certificate.not_after())
    );
    println!("signing key  {}{}", profile.signer.describe(), key_state(&profile.signer));
    if let Some(identity) = &profile.device_identity {
        println!("factory CA   {}", identity.ca_certificate.subject());
        println!("  key          {}{}", identity.ca_signer.describe(), key_state(&identity.ca_signer));
    }
    let skipped: Vec<&str> = profile.skipped_steps.iter().map(|step| step.name()).collect();
    println!("lock         {}", if profile.lock.enabled { "enabled" } else { "disabled" });
    if !skipped.is_empty() {
        println!("skips        {}", skipped.join(", "));
    }
    for warning in &profile.warnings {
        println!("warning: {warning}");
    }
}

/// Whether a token key was opened by this check, or is left for the line to open.
fn key_state(source: &KeySource) -> &'static str {
    match source.location() {
        KeyLocation::File { .. } => "",
        KeyLocation::Pkcs11(_) if source.is_open() => " (opened: PIN, key and certificate match checked)",
        KeyLocation::Pkcs11(_) if source.asks_for_pin() => {
            " (not opened: pin-source=prompt; opened when a line starts)"
        }
        KeyLocation::Pkcs11(_) => " (not opened: --skip-keys)",
    }
}

fn describe_region(region: &FlashRegion) -> String {
    format!(
        "{:#010x}..{:#010x} ({} KiB, sector {} B, write {} B, erased {:#04x})",
        region.address,
        region.end_address(),
        region.size_bytes / 1024,
        region.sector_size_bytes,
        region.write_alignment_bytes,
        region.erased_value
    )
}

fn format_date(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map(|duration| duration.as_secs() as i64).unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|date| format!("{}-{:02}-{:02}", date.year(), date.month() as u8, date.day()))
        .unwrap_or_else(|_| "?".to_string())
}
