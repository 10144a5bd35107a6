//! FTCD framing, as `ftcd-comm-base` implements it.
//!
//! Request: `"mbedprov"` | u32 little-endian length | CBOR bundle | SHA-256 of the CBOR.
//! Response: `"mbedprov"` | u32 little-endian communication status | on success only: u32
//! length | CBOR | SHA-256 of the CBOR. The device scans its input for the token byte by byte,
//! so bytes before a frame are skipped; the reader here does the same for a console that prints
//! around its frames (a UART).

use sha2::{Digest, Sha256};

/// The message token of the Factory Configurator Client (`FTCD_MSG_HEADER_TOKEN_FCC`).
pub const FTCD_TOKEN: [u8; 8] = *b"mbedprov";
/// Size of the hash that ends a request and a successful response.
pub const FTCD_HASH_SIZE_BYTES: usize = 32;
/// Largest response accepted: a response with several CSRs is a few KiB.
pub const FTCD_RESPONSE_LIMIT_BYTES: u32 = 1024 * 1024;
/// Bytes accepted before the response token (console output around the frame).
pub const FTCD_TOKEN_SEARCH_LIMIT_BYTES: usize = 64 * 1024;

/// The request frame for a CBOR bundle.
pub fn encode_request_frame(bundle_cbor: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FTCD_TOKEN.len() + 4 + bundle_cbor.len() + FTCD_HASH_SIZE_BYTES);
    frame.extend_from_slice(&FTCD_TOKEN);
    // Bundles are kilobytes; the caller's CBOR never nears 4 GiB.
    frame.extend_from_slice(&(bundle_cbor.len() as u32).to_le_bytes());
    frame.extend_from_slice(bundle_cbor);
    frame.extend_from_slice(&Sha256::digest(bundle_cbor));
    frame
}

/// Size of the request frame for a CBOR bundle of `bundle_size_bytes`.
pub fn request_frame_size_bytes(bundle_size_bytes: usize) -> usize {
    FTCD_TOKEN.len() + 4 + bundle_size_bytes + FTCD_HASH_SIZE_BYTES
}

/// Size of a successful response frame carrying `response_size_bytes` of CBOR.
pub fn response_frame_size_bytes(response_size_bytes: usize) -> usize {
    FTCD_TOKEN.len() + 4 + 4 + response_size_bytes + FTCD_HASH_SIZE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_is_token_length_cbor_hash() {
        let frame = encode_request_frame(&[0xa0]);
        assert_eq!(&frame[..8], b"mbedprov");
        assert_eq!(&frame[8..12], &[1, 0, 0, 0]);
        assert_eq!(frame[12], 0xa0);
        assert_eq!(&frame[13..], Sha256::digest([0xa0]).as_slice());
        assert_eq!(frame.len(), request_frame_size_bytes(1));
    }
}
