//! Fuzz target: Intel HEX loading (`FirmwareImage::from_bytes` with `ImageFormat::IntelHex`).
//!
//! Firmware files arrive from build servers and operators; a broken one must be refused with a
//! message, never crash the station. Whatever loads must keep the image invariants
//! (`imprint_fuzz::check_image_invariants`): sorted, disjoint, merged, non-empty segments.
#![no_main]

use std::path::Path;

use imprint::image::{FirmwareImage, ImageFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input.hex");
    if let Ok(image) = FirmwareImage::from_bytes(data, ImageFormat::IntelHex, None, path) {
        imprint_fuzz::check_image_invariants(&image, data);
    }
    // A base address is refused for a format that carries its own, whatever the bytes.
    assert!(FirmwareImage::from_bytes(data, ImageFormat::IntelHex, Some(0), path).is_err());
});
