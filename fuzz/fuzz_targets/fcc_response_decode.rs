//! Fuzz target: the FCC response decoder (`imprint::fcc::FccResponse::decode`), on arbitrary
//! bytes.
//!
//! The response CBOR comes from the device under provisioning, over a UART or TCP: a broken or
//! hostile device chooses every byte. Decoding must return an answer or an error, never panic,
//! abort or recurse without bound.
#![no_main]

use imprint::fcc::FccResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = FccResponse::decode(data, "fuzz-device") {
        // The status must have a name, whatever number the device sent.
        let _ = format!("{response:?}");
    }
});
