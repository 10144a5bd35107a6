//! mbed-bootloader metadata headers against the device's own code: update-client-hub's
//! metadata-header module built as the `uc-header` host oracle (tests/common/uchub.rs). Imprint's
//! bytes must equal the oracle's, parse there (internal, and external with the RoT), and any bit
//! flipped in the checked part must be refused by both.

mod common;

use common::uchub;
use imprint::mbed_header::{
    EXTERNAL_HEADER_SIZE_BYTES, EXTERNAL_HMAC_CHECKED_BYTES, EXTERNAL_HMAC_OFFSET, FirmwareDetails,
    INTERNAL_HEADER_SIZE_BYTES, RootOfTrust, decode_external_header, decode_internal_header,
    encode_external_header, encode_internal_header,
};
use sha2::{Digest, Sha256};

const ROOT_OF_TRUST: [u8; 16] =
    [0x3c, 0x11, 0x9a, 0x07, 0x5e, 0xd2, 0x48, 0x81, 0x00, 0xff, 0x6b, 0x23, 0x90, 0x4e, 0xa7, 0x15];

fn sample_details() -> Vec<FirmwareDetails> {
    let mut samples = vec![
        FirmwareDetails { version: 42, size: 1000, sha256: Sha256::digest(b"app").into(), campaign: [0; 16] },
        FirmwareDetails {
            version: (1 << 55) | (1 << 40) | (2 << 16) | 3,
            size: 0x0001_0000,
            sha256: Sha256::digest(b"application image").into(),
            campaign: *b"campaign-0000001",
        },
        FirmwareDetails { version: u64::MAX, size: u64::MAX, sha256: [0xff; 32], campaign: [0xff; 16] },
        FirmwareDetails { version: 0, size: 0, sha256: [0; 32], campaign: [0; 16] },
    ];
    // A few pseudo-random ones (fixed seed: failures reproduce).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..6 {
        let mut sha256 = [0u8; 32];
        let mut campaign = [0u8; 16];
        sha256.iter_mut().chain(campaign.iter_mut()).for_each(|byte| *byte = next() as u8);
        samples.push(FirmwareDetails { version: next(), size: next() >> 20, sha256, campaign });
    }
    samples
}

fn oracle_line(details: &FirmwareDetails) -> String {
    format!(
        "accepted version={} size={} hash={} campaign={}",
        details.version,
        details.size,
        hex::encode(details.sha256),
        hex::encode(details.campaign)
    )
}

#[test]
fn internal_headers_are_byte_identical_to_the_devices_and_parse_there() {
    let directory = tempfile::tempdir().expect("temp dir");
    for (index, details) in sample_details().iter().enumerate() {
        let ours = encode_internal_header(details);
        let theirs_path = directory.path().join(format!("theirs-{index}.bin"));
        let theirs = uchub::create_header(
            None,
            details.version,
            details.size,
            &details.sha256,
            &details.campaign,
            &theirs_path,
        );
        assert_eq!(hex::encode(ours), hex::encode(&theirs), "internal header {index}");
        assert_eq!(decode_internal_header(&theirs).as_ref(), Ok(details));

        let ours_path = directory.path().join(format!("ours-{index}.bin"));
        std::fs::write(&ours_path, ours).expect("write header");
        assert_eq!(uchub::parse_internal_header(&ours_path).line, oracle_line(details));
    }
}

#[test]
fn external_headers_are_byte_identical_to_the_devices_and_parse_there_with_the_root_of_trust() {
    let directory = tempfile::tempdir().expect("temp dir");
    let root_of_trust = RootOfTrust::new(ROOT_OF_TRUST);
    for (index, details) in sample_details().iter().enumerate() {
        let ours = encode_external_header(details, &root_of_trust);
        let theirs_path = directory.path().join(format!("theirs-{index}.bin"));
        let theirs = uchub::create_header(
            Some(&ROOT_OF_TRUST),
            details.version,
            details.size,
            &details.sha256,
            &details.campaign,
            &theirs_path,
        );
        assert_eq!(hex::encode(ours), hex::encode(&theirs), "external header {index}");
        assert_eq!(decode_external_header(&theirs, &root_of_trust).as_ref(), Ok(details));

        let ours_path = directory.path().join(format!("ours-{index}.bin"));
        std::fs::write(&ours_path, ours).expect("write header");
        assert_eq!(uchub::parse_external_header(&ROOT_OF_TRUST, &ours_path).line, oracle_line(details));
        // Another device's root of trust: both refuse.
        let mut other_root = ROOT_OF_TRUST;
        other_root[index % 16] ^= 0x01;
        assert!(!uchub::parse_external_header(&other_root, &ours_path).accepted);
        assert!(decode_external_header(&ours, &RootOfTrust::new(other_root)).is_err());
    }
}

#[test]
fn every_bit_flipped_in_the_internal_header_is_refused_by_both() {
    let directory = tempfile::tempdir().expect("temp dir");
    let details = sample_details()[1];
    let header = encode_internal_header(&details);
    let path = directory.path().join("flipped.bin");
    for bit in 0..INTERNAL_HEADER_SIZE_BYTES * 8 {
        let mut flipped = header;
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, flipped).expect("write header");
        let device = uchub::parse_internal_header(&path);
        assert!(!device.accepted, "device accepted bit {bit} flipped: {}", device.line);
        assert!(decode_internal_header(&flipped).is_err(), "Imprint accepted bit {bit} flipped");
    }
}

#[test]
fn every_bit_flipped_in_the_external_headers_checked_part_is_refused_by_both_and_the_rest_is_ignored_by_both()
{
    let directory = tempfile::tempdir().expect("temp dir");
    let root_of_trust = RootOfTrust::new(ROOT_OF_TRUST);
    let details = sample_details()[1];
    let header = encode_external_header(&details, &root_of_trust);
    let path = directory.path().join("flipped.bin");
    let checked_bytes = EXTERNAL_HMAC_OFFSET + EXTERNAL_HMAC_CHECKED_BYTES;
    let mut refused = 0;
    for bit in 0..EXTERNAL_HEADER_SIZE_BYTES * 8 {
        let mut flipped = header;
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, flipped).expect("write header");
        let device = uchub::parse_external_header(&ROOT_OF_TRUST, &path);
        let imprint = decode_external_header(&flipped, &root_of_trust);
        if bit / 8 < checked_bytes {
            assert!(!device.accepted, "device accepted bit {bit} flipped: {}", device.line);
            assert!(imprint.is_err(), "Imprint accepted bit {bit} flipped");
            refused += 1;
        } else {
            // The upper half of the 64-byte HMAC field is not compared, by the device or by Imprint.
            assert!(device.accepted, "device refused bit {bit} (unchecked HMAC half): {}", device.line);
            assert_eq!(imprint.as_ref(), Ok(&details), "bit {bit}");
        }
    }
    assert_eq!(refused, checked_bytes * 8);
}

#[test]
fn headers_shorter_than_their_size_are_refused() {
    let details = sample_details()[0];
    let internal = encode_internal_header(&details);
    assert!(decode_internal_header(&internal[..INTERNAL_HEADER_SIZE_BYTES - 1]).is_err());
    let root_of_trust = RootOfTrust::new(ROOT_OF_TRUST);
    let external = encode_external_header(&details, &root_of_trust);
    assert!(decode_external_header(&external[..EXTERNAL_HEADER_SIZE_BYTES - 1], &root_of_trust).is_err());
    // A header followed by the application: the header is read, the rest ignored.
    let mut with_application = internal.to_vec();
    with_application.extend_from_slice(b"application bytes");
    assert_eq!(decode_internal_header(&with_application), Ok(details));
}
