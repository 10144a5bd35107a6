//! Fuzz target: ELF loading (`FirmwareImage::from_bytes` with `ImageFormat::Elf`).
//!
//! Like the Intel HEX target: truncated, malformed or hostile ELF files (program headers past
//! the end, huge counts, overlapping segments, 32/64-bit and both byte orders) must be refused
//! with a message; whatever loads keeps the image invariants.
#![no_main]

use std::path::Path;

use imprint::image::{FirmwareImage, ImageFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input.elf");
    if let Ok(image) = FirmwareImage::from_bytes(data, ImageFormat::Elf, None, path) {
        imprint_fuzz::check_image_invariants(&image, data);
    }
    // The raw binary path with the same bytes (the loader's third format) at an address near
    // the top of the address space: must refuse a wrap, never overflow.
    if let Ok(image) = FirmwareImage::from_bytes(data, ImageFormat::Bin, Some(u64::MAX - 4096), path) {
        imprint_fuzz::check_image_invariants(&image, data);
    }
});
