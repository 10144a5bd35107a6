//! Errors of the GDB remote backend, and how each maps onto the station's [`TargetError`].

use crate::device::TargetError;

/// What went wrong talking to a GDB server.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The byte stream failed (connection refused, reset, port gone).
    #[error("{operation} on {endpoint}: {source}")]
    Io {
        operation: String,
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("{operation}: {endpoint} closed the connection")]
    Disconnected { operation: String, endpoint: String },
    /// No reply in time.
    #[error("{operation}: no reply within {timeout_ms} ms")]
    Timeout { operation: String, timeout_ms: u64 },
    /// The server kept rejecting our packet's checksum.
    #[error("{operation}: the server rejected the packet {attempts} times (checksum errors on the link)")]
    RetransmitLimit { operation: String, attempts: u32 },
    /// A reply kept arriving with a wrong checksum.
    #[error("{operation}: reply checksum {carried:#04x} does not match its contents ({computed:#04x})")]
    DamagedReply { operation: String, carried: u8, computed: u8 },
    /// The server answered `Exx`.
    #[error("{operation}: the server answered error {code}")]
    ServerError { operation: String, code: String },
    /// The server answered with an empty packet: it does not implement the request.
    #[error("{operation}: the server does not support {request}")]
    Unsupported { operation: String, request: String },
    /// The reply does not have the expected shape.
    #[error("{operation}: expected {expected}, found {found:?}")]
    UnexpectedReply { operation: String, expected: String, found: String },
    /// Data inside a reply is malformed (hex, escapes, XML).
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    /// The request is not possible with what the server offers or the profile allows.
    #[error("{operation} refused at {address:#010x}: {reason}")]
    Refused { operation: &'static str, address: u64, reason: String },
    /// The target stopped for good (exited or was killed).
    #[error("the target is gone: {reason}")]
    TargetGone { reason: String },
}

impl GdbError {
    /// Truncates long found-text so that an error message stays one readable line.
    pub(crate) fn unexpected(operation: &str, expected: &str, found: &[u8]) -> GdbError {
        const SHOWN_BYTES: usize = 80;
        let mut text = String::from_utf8_lossy(&found[..found.len().min(SHOWN_BYTES)]).into_owned();
        if found.len() > SHOWN_BYTES {
            text.push_str("...");
        }
        GdbError::UnexpectedReply {
            operation: operation.to_string(),
            expected: expected.to_string(),
            found: text,
        }
    }
}

impl From<GdbError> for TargetError {
    fn from(error: GdbError) -> TargetError {
        match error {
            GdbError::Timeout { timeout_ms, .. } => {
                TargetError::Timeout { operation: "gdb request", timeout_ms }
            }
            // A damaged link may heal: the station retries these a bounded number of times.
            GdbError::RetransmitLimit { .. } | GdbError::DamagedReply { .. } => {
                TargetError::Transient { reason: error.to_string() }
            }
            GdbError::Io { .. } | GdbError::Disconnected { .. } | GdbError::TargetGone { .. } => {
                TargetError::ProbeLost { reason: error.to_string() }
            }
            GdbError::Refused { operation, address, reason } => {
                TargetError::Refused { operation, address, reason }
            }
            other => TargetError::Other(format!("gdb: {other}")),
        }
    }
}
