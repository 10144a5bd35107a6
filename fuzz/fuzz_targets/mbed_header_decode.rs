//! Fuzz target: the mbed-bootloader metadata header decoders (`imprint::mbed_header`), internal
//! (CRC-32) and external (HMAC-SHA256 from the root of trust), on arbitrary bytes.
//!
//! Headers are read back from a device's flash and its update storage, which a failing board or
//! a hostile one controls. Whatever decodes must encode to a header that decodes to the same
//! details. (Not to the same bytes: like update-client-hub, the decoder accepts any value in the
//! CRC-covered fields it does not use, such as the firmware signature size and the unused half
//! of the hash field.)
#![no_main]

use imprint::mbed_header::{
    RootOfTrust, decode_external_header, decode_internal_header, encode_external_header,
    encode_internal_header,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(details) = decode_internal_header(data) {
        let encoded = encode_internal_header(&details);
        assert_eq!(
            decode_internal_header(&encoded),
            Ok(details),
            "an accepted internal header does not round-trip"
        );
    }
    let root_of_trust = RootOfTrust::new(*b"imprint-fuzz-rot");
    if let Ok(details) = decode_external_header(data, &root_of_trust) {
        // The HMAC covers the header up to the MAC; the encoder must reproduce the checked part.
        let encoded = encode_external_header(&details, &root_of_trust);
        assert_eq!(decode_external_header(&encoded, &root_of_trust), Ok(details));
    }
});
