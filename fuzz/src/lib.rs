//! Helpers shared by the fuzz targets: the repository's fixture paths, the developer key and
//! certificate the device-contract targets sign with, and the invariants every successfully
//! decoded firmware image must satisfy.
//!
//! The targets live in `fuzz_targets/`; each one feeds arbitrary bytes to one decoder of outside
//! input and asserts that it returns (never panics, never aborts) and that whatever it accepts is
//! self-consistent. Keeping the shared pieces here keeps each target about its decoder.

use std::path::{Path, PathBuf};

use imprint::image::FirmwareImage;
use imprint::store::{ConfigStore, StoreItem, StoreLayout, keys};
use imprint::trust::SoftwareSigner;

/// The repository root (the fuzz crate sits in `fuzz/`).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture under `tests/data/`.
pub fn test_data(relative: &str) -> PathBuf {
    repository_root().join("tests/data").join(relative)
}

/// The manifest fixtures' developer signing key (made by manifest-dev-tool; public on purpose).
pub fn developer_signer() -> SoftwareSigner {
    let path = test_data("manifest/dev.key.pem");
    match imprint::trust::load_signing_key(&path) {
        Ok(signer) => signer,
        Err(error) => panic!("fuzz setup: cannot load {}: {error}", path.display()),
    }
}

/// The certificate of [`developer_signer`]'s key, DER.
pub fn developer_certificate_der() -> Vec<u8> {
    let path = test_data("manifest/dev.cert.der");
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => panic!("fuzz setup: cannot read {}: {error}", path.display()),
    }
}

/// Vendor and class IDs of the manifest fixtures (tests/data/manifest/README.md).
pub const FIXTURE_VENDOR_ID: uuid::Uuid = uuid::uuid!("3e6e5c2a-9c8b-4f0f-a1d2-b3c4d5e6f708");
/// See [`FIXTURE_VENDOR_ID`].
pub const FIXTURE_CLASS_ID: uuid::Uuid = uuid::uuid!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");

/// The chip unique ID the store targets bind their stores to.
pub const FUZZ_CHIP_UID: &[u8] = b"fuzz-chip-0001";

/// A provisioned store as the station writes it (identity items, factory version 1.0.0 and the
/// developer certificate), encoded for [`FUZZ_CHIP_UID`].
pub fn provisioned_store_bytes() -> Vec<u8> {
    let mut store = ConfigStore::default();
    store.set(StoreItem::binary(keys::VENDOR_ID, FIXTURE_VENDOR_ID.as_bytes()));
    store.set(StoreItem::binary(keys::CLASS_ID, FIXTURE_CLASS_ID.as_bytes()));
    store.set(StoreItem::binary(keys::DEVICE_ID, &[0x5a; 16]));
    store.set(StoreItem::text(keys::SERIAL_NUMBER, "FUZZ-000001"));
    store.set(StoreItem::text(keys::MANUFACTURER_NAME, "Imprint Fuzzing"));
    store.set(StoreItem::text(keys::FACTORY_APP_VERSION, "1.0.0"));
    store.set_update_certificate(&developer_certificate_der());
    let layout = StoreLayout { capacity_bytes: 0x7000, write_alignment_bytes: 8, erased_value: 0xFF };
    match store.encode(FUZZ_CHIP_UID, &layout) {
        Ok(bytes) => bytes,
        Err(error) => panic!("fuzz setup: cannot encode the provisioned store: {error}"),
    }
}

/// What a loaded image promises (`FirmwareImage` docs): at least one segment, none empty,
/// sorted by address, never overlapping, adjacent runs merged, no segment past the 64-bit
/// address space, and a file digest over the exact input.
pub fn check_image_invariants(image: &FirmwareImage, input: &[u8]) {
    use sha2::Digest;
    assert!(!image.segments.is_empty(), "an accepted image has no segments");
    for segment in &image.segments {
        assert!(!segment.data.is_empty(), "empty segment at {:#x}", segment.address);
        assert!(
            segment.address.checked_add(segment.data.len() as u64).is_some(),
            "segment at {:#x} of {} bytes wraps the address space",
            segment.address,
            segment.data.len()
        );
    }
    for pair in image.segments.windows(2) {
        assert!(
            pair[0].end_address() < pair[1].address,
            "segments not sorted, overlapping or not merged: {:?}",
            image.segments
        );
    }
    let expected_sha256: [u8; 32] = sha2::Sha256::digest(input).into();
    assert_eq!(image.file_sha256, expected_sha256, "file digest is not over the input");
    let total_bytes: u64 = image.segments.iter().map(|segment| segment.data.len() as u64).sum();
    assert_eq!(image.size_bytes(), total_bytes, "size_bytes is not the data it holds");
    // The image's own span always contains it, and one byte less never does.
    let span_bytes = image.end_address() - image.start_address();
    assert!(span_bytes >= total_bytes, "span smaller than the data");
    if let Err(error) = image.check_inside(image.start_address(), span_bytes) {
        panic!("an image is not inside its own span: {error}");
    }
    assert!(image.check_inside(image.start_address(), span_bytes - 1).is_err(), "last byte not checked");
    // Every accessor must work on anything the loader accepted.
    let _ = image.content_sha256();
    let _ = image.check_inside(0x0800_0000, 0x10_0000);
}

/// A GDB server played back from bytes: each read hands out the next piece of the script (the
/// piece lengths vary, so packets arrive split at every possible point); writes are counted and
/// dropped; the end of the script is the server closing the connection.
pub struct ScriptedTransport {
    script: Vec<u8>,
    position: usize,
    read_count: usize,
}

impl ScriptedTransport {
    /// A server that will send `script`, then close.
    pub fn new(script: Vec<u8>) -> ScriptedTransport {
        ScriptedTransport { script, position: 0, read_count: 0 }
    }
}

impl imprint::device::gdb::transport::Transport for ScriptedTransport {
    fn read(&mut self, buffer: &mut [u8], _timeout: std::time::Duration) -> std::io::Result<usize> {
        const PIECE_LENGTHS: [usize; 7] = [1, 7, 64, 3, 4096, 2, 31];
        let remaining = self.script.len() - self.position;
        let length = PIECE_LENGTHS[self.read_count % PIECE_LENGTHS.len()].min(remaining).min(buffer.len());
        self.read_count += 1;
        buffer[..length].copy_from_slice(&self.script[self.position..self.position + length]);
        self.position += length;
        Ok(length)
    }

    fn write_all(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "fuzz:scripted".to_string()
    }

    fn is_reliable(&self) -> bool {
        true
    }
}

/// Turns fuzz input into a server byte stream. Input starting with an even byte is the stream
/// itself. Otherwise the rest is a list of reply payloads separated by NUL bytes, each sent
/// as an acknowledgement followed by a correctly framed packet, so the fuzzer does not have to
/// find checksums to get past the framing.
pub fn gdb_server_script(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else { return Vec::new() };
    if mode & 1 == 0 {
        return rest.to_vec();
    }
    let mut script = Vec::with_capacity(rest.len() * 2);
    for payload in rest.split(|byte| *byte == 0) {
        script.push(b'+');
        imprint::device::gdb::protocol::frame_packet(payload, &mut script);
    }
    script
}
