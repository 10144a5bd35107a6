//! Errors of the FCC formats and transports, each naming the device endpoint (or the bundle
//! field) and what was expected against what was found.

use std::time::Duration;

use super::status::FtcdStatus;

/// Everything that can go wrong talking FTCD to a device.
#[derive(Debug, thiserror::Error)]
pub enum FccError {
    /// The device could not be reached.
    #[error("cannot connect to FCC device {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// The serial port could not be opened or configured.
    #[error("cannot open FCC serial port {port}: {source}")]
    SerialPort {
        port: String,
        #[source]
        source: serialport::Error,
    },
    /// Reading or writing failed for another reason than a closed connection or a timeout.
    #[error("FCC device {endpoint}: {stage} failed: {source}")]
    Io {
        endpoint: String,
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The device closed the connection: what the FCC does on a framing error (a wrong hash or
    /// size, a short message) instead of answering, and what a device that died looks like.
    #[error(
        "FCC device {endpoint} closed the connection while {stage} (after {received_bytes} bytes of the response): \
         the FCC closes the connection instead of answering a framing error (wrong hash, size or token), \
         or the device process ended"
    )]
    ConnectionClosed { endpoint: String, stage: &'static str, received_bytes: usize },
    /// The device did not answer in time.
    #[error("FCC device {endpoint} did not answer within {} ms while {stage} (received {received_bytes} bytes)", timeout.as_millis())]
    Timeout { endpoint: String, stage: &'static str, timeout: Duration, received_bytes: usize },
    /// Bytes before the response token exceeded what a device prints around a frame.
    #[error(
        "FCC device {endpoint}: expected the response token \"mbedprov\", found {skipped_bytes} bytes without it"
    )]
    MissingResponseToken { endpoint: String, skipped_bytes: usize },
    /// The response's length field is implausible.
    #[error(
        "FCC device {endpoint}: response length {length_bytes} bytes exceeds the limit of {limit_bytes} bytes"
    )]
    ResponseTooLarge { endpoint: String, length_bytes: u32, limit_bytes: u32 },
    /// The response's SHA-256 does not match its CBOR.
    #[error(
        "FCC device {endpoint}: response hash mismatch (expected SHA-256 {expected_hex} of the CBOR, found {found_hex})"
    )]
    ResponseHashMismatch { endpoint: String, expected_hex: String, found_hex: String },
    /// The frame's communication status is not success: the frame carries no response.
    #[error("FCC device {endpoint} answered communication status {status} without a response")]
    CommunicationStatus { endpoint: String, status: FtcdStatus },
    /// The response CBOR is not what the FCC sends.
    #[error("FCC device {endpoint}: malformed response: expected {expected}, found {found}")]
    MalformedResponse { endpoint: String, expected: &'static str, found: String },
    /// A bundle could not be built or encoded.
    #[error("FCC bundle field {field}: expected {expected}, found {found}")]
    Bundle { field: String, expected: &'static str, found: String },
}
