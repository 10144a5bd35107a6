//! A factory session with one device: bundles sent in order over one connection, each answered
//! by a decoded response. Intermediate messages carry `KpAlvSess` (the CSR flow: the device
//! answers CSRs, the station issues certificates and sends them in the next message); the last
//! one closes the session, and the Linux example application then exits.

use super::bundle::FccBundle;
use super::error::FccError;
use super::response::FccResponse;
use super::transport::{FccConnection, FccStream};

/// One session: a connection and the session ID every message carries.
#[derive(Debug)]
pub struct FccSession<S: FccStream> {
    connection: FccConnection<S>,
    session_id: String,
    messages_sent: usize,
}

impl<S: FccStream> FccSession<S> {
    /// Starts a session on an open connection; `session_id` is sent as `SID` in every message.
    pub fn new(connection: FccConnection<S>, session_id: impl Into<String>) -> Self {
        FccSession { connection, session_id: session_id.into(), messages_sent: 0 }
    }

    /// The device's name (`HOST:PORT` or the serial port).
    pub fn endpoint(&self) -> &str {
        self.connection.endpoint()
    }

    /// How many messages this session sent.
    pub fn messages_sent(&self) -> usize {
        self.messages_sent
    }

    /// Sends a bundle (with this session's `SID` unless it has one) and decodes the answer. A
    /// non-success `ReturnStatus` is a response, not an error: the caller names the failure.
    pub fn send(&mut self, bundle: &FccBundle) -> Result<FccResponse, FccError> {
        let with_session_id;
        let bundle = if bundle.session_id_value().is_none() {
            with_session_id = bundle.clone().session_id(self.session_id.clone());
            &with_session_id
        } else {
            bundle
        };
        let request_cbor = der::zeroize::Zeroizing::new(bundle.to_cbor()?);
        self.messages_sent += 1;
        let response_cbor = self.connection.exchange(&request_cbor)?;
        FccResponse::decode(&response_cbor, self.connection.endpoint())
    }

    /// Ends the session and gives the connection back (a console port returns to its reader).
    pub fn into_connection(self) -> FccConnection<S> {
        self.connection
    }

    /// The underlying connection.
    pub fn connection(&self) -> &FccConnection<S> {
        &self.connection
    }

    /// The underlying connection (to send raw bytes in tests of the device's framing).
    pub fn connection_mut(&mut self) -> &mut FccConnection<S> {
        &mut self.connection
    }
}
