//! A forgiving splitter for PEM files as openssl writes them.
//!
//! `pem-rfc7468` decodes exactly one strict block, but real key files often hold more: `openssl
//! ecparam -genkey` writes an "EC PARAMETERS" block before the "EC PRIVATE KEY", and certificate
//! files may carry "Bag Attributes" text or a whole chain. We cut the text into blocks here and
//! let the strict decoder handle each block on its own.

use der::zeroize::Zeroizing;

/// One decoded PEM block: its label and the DER bytes (zeroized on drop, as they may be a key).
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// True when the bytes look like PEM text rather than DER (DER starts with a SEQUENCE tag).
pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|window| window == b"-----BEGIN ")
}

/// Splits `text` into its PEM blocks, in order; text between blocks is ignored.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after_begin = &rest[begin + "-----BEGIN ".len()..];
        let Some(label_end) = after_begin.find("-----") else {
            return Err("found a PEM \"-----BEGIN\" line without its closing dashes".to_string());
        };
        let label = &after_begin[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[begin..].find(&end_marker) else {
            return Err(format!("found PEM \"BEGIN {label}\" without \"END {label}\""));
        };
        let block_text = &rest[begin..begin + end + end_marker.len()];
        let (decoded_label, der) = der::pem::decode_vec(block_text.as_bytes())
            .map_err(|error| format!("PEM block \"{label}\" does not decode: {error}"))?;
        blocks.push(PemBlock { label: decoded_label.to_string(), der: Zeroizing::new(der) });
        rest = &rest[begin + end + end_marker.len()..];
    }
    Ok(blocks)
}

/// Encodes DER bytes as one PEM block with LF line endings.
pub(crate) fn encode_pem(label: &str, der_bytes: &[u8]) -> String {
    // Encoding into a String cannot fail for a valid label and any input length; fall back to an
    // empty string rather than panicking if the library ever disagrees.
    der::pem::encode_string(label, der::pem::LineEnding::LF, der_bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` and compares labels and decoded bytes, or the error fragment.
    fn check(text: &str, expected: Result<&[(&str, &[u8])], &str>) {
        match (pem_blocks(text), expected) {
            (Ok(blocks), Ok(expected_blocks)) => {
                let found: Vec<(&str, &[u8])> =
                    blocks.iter().map(|block| (block.label.as_str(), block.der.as_slice())).collect();
                assert_eq!(found, expected_blocks);
            }
            (Err(error), Err(fragment)) => assert!(error.contains(fragment), "{error}"),
            (outcome, expected) => {
                panic!("got {:?}, expected {expected:?}", outcome.map(|blocks| blocks.len()))
            }
        }
    }

    #[test]
    fn pem_blocks_are_found_among_other_text() {
        check("", Ok(&[]));
        check("no pem here", Ok(&[]));
        check(
            "Bag Attributes\n-----BEGIN A-----\nAQID\n-----END A-----\ntext\n-----BEGIN B C-----\nBA==\n-----END B C-----\n",
            Ok(&[("A", &[1, 2, 3]), ("B C", &[4])]),
        );
        check(&encode_pem("CERTIFICATE", &[9; 100]), Ok(&[("CERTIFICATE", &[9; 100])]));
        check("-----BEGIN A-----\nAQID\n", Err("without \"END A\""));
        check("-----BEGIN A", Err("without its closing dashes"));
        check("-----BEGIN A-----\n!!!!\n-----END A-----\n", Err("does not decode"));
        assert!(looks_like_pem(b"junk\n-----BEGIN X-----"));
        assert!(!looks_like_pem(&[0x30, 0x82, 0x01, 0x00]));
    }
}
