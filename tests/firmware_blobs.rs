//! The committed reference-firmware blobs (`firmware-blobs/mps2-an385/`, built by
//! `firmware/build.sh`): CI uses them without rebuilding, so this test proves they are the
//! ones `SHA256SUMS` names (checked by coreutils' `sha256sum --check` and by our own hashing),
//! that each loads through the station's image loader inside its region of the QEMU profile's
//! memory map, that every BIN is its ELF's bytes, and that each vector table is sane.

use std::path::{Path, PathBuf};
use std::process::Command;

use imprint::image::{FirmwareImage, ImageFormat};
use sha2::{Digest, Sha256};

/// Every blob the station and the conformance suite load, and nothing else.
const EXPECTED_BLOBS: [&str; 6] = [
    "bootloader.elf",
    "bootloader.bin",
    "application-1.0.0.elf",
    "application-1.0.0.bin",
    "application-1.0.1.elf",
    "application-1.0.1.bin",
];

const BOOTLOADER_REGION: (u64, u64) = (0x0000_0000, 0x2_0000);
const APPLICATION_REGION: (u64, u64) = (0x0002_0000, 0xE_0000);
/// The firmware's own RAM window (above the mailbox and the handoff word).
const FIRMWARE_RAM: (u64, u64) = (0x2000_1000, 0x2040_0000);

fn blob_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-blobs/mps2-an385")
}

/// `(file name, sha256 hex)` lines of SHA256SUMS.
fn listed_sums() -> Vec<(String, String)> {
    let path = blob_dir().join("SHA256SUMS");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .map(|line| {
            let (sum, name) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("SHA256SUMS line {line:?}: expected '<sha256>  <file>'"));
            (name.to_string(), sum.to_string())
        })
        .collect()
}

#[test]
fn sums_list_exactly_the_expected_blobs() {
    let mut listed: Vec<String> = listed_sums().into_iter().map(|(name, _)| name).collect();
    listed.sort();
    let mut expected: Vec<String> = EXPECTED_BLOBS.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn blobs_match_sha256sums_by_coreutils() {
    let output = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(blob_dir())
        .output()
        .expect("sha256sum (coreutils) must be installed");
    assert!(
        output.status.success(),
        "sha256sum --check failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn blobs_match_sha256sums_by_sha2() {
    for (name, listed_sum) in listed_sums() {
        let bytes = std::fs::read(blob_dir().join(&name)).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(hex::encode(Sha256::digest(&bytes)), listed_sum, "{name}");
    }
}

/// Loads `stem`.elf and `stem`.bin (at the ELF's start), and checks both against the region.
fn check(stem: &str, region: (u64, u64)) -> FirmwareImage {
    let elf_path = blob_dir().join(format!("{stem}.elf"));
    let elf = FirmwareImage::load(&elf_path, ImageFormat::Elf, None)
        .unwrap_or_else(|error| panic!("{stem}.elf: {error}"));
    elf.check_inside(region.0, region.1).unwrap_or_else(|error| panic!("{stem}.elf: {error}"));
    assert_eq!(elf.start_address(), region.0, "{stem}: the vector table starts the region");
    let bin_path = blob_dir().join(format!("{stem}.bin"));
    let bin = FirmwareImage::load(&bin_path, ImageFormat::Bin, Some(region.0))
        .unwrap_or_else(|error| panic!("{stem}.bin: {error}"));
    assert_eq!(bin.content_sha256(), elf.content_sha256(), "{stem}: the BIN is not the ELF's bytes");

    let vectors = &elf.segments[0].data;
    let word =
        |index: usize| u32::from_le_bytes(vectors[index * 4..index * 4 + 4].try_into().expect("4 bytes"));
    let initial_stack_pointer = u64::from(word(0));
    assert!(
        (FIRMWARE_RAM.0..=FIRMWARE_RAM.1).contains(&initial_stack_pointer),
        "{stem}: initial stack pointer {initial_stack_pointer:#x} outside the firmware's RAM window"
    );
    let reset_vector = u64::from(word(1));
    assert_eq!(reset_vector & 1, 1, "{stem}: reset vector {reset_vector:#x} lacks the Thumb bit");
    assert!(
        (region.0..region.0 + region.1).contains(&(reset_vector & !1)),
        "{stem}: reset vector {reset_vector:#x} outside its region"
    );
    elf
}

#[test]
fn images_load_inside_their_regions() {
    check("bootloader", BOOTLOADER_REGION);
    let factory = check("application-1.0.0", APPLICATION_REGION);
    let update = check("application-1.0.1", APPLICATION_REGION);
    assert_ne!(
        factory.content_sha256(),
        update.content_sha256(),
        "the update must differ from the factory image"
    );
    for (image, version) in [(&factory, "1.0.0"), (&update, "1.0.1")] {
        let bytes = &image.segments[0].data;
        assert!(
            bytes
                .windows(version.len() + 1)
                .any(|window| window[..version.len()] == *version.as_bytes() && window[version.len()] == 0),
            "application image does not embed its version {version}"
        );
    }
}
