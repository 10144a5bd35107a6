//! Transports that carry FTCD frames to a device: a TCP socket (the Linux FCC) or a serial port
//! (an Mbed OS device's UART, the slot's console port), with one deadline per response.
//!
//! A device answers a framing error by closing the connection (no error frame): that, and a
//! device process that died, surface as [`FccError::ConnectionClosed`]; silence past the
//! deadline as [`FccError::Timeout`].

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::FccError;
use super::frame::{
    FTCD_HASH_SIZE_BYTES, FTCD_RESPONSE_LIMIT_BYTES, FTCD_TOKEN, FTCD_TOKEN_SEARCH_LIMIT_BYTES,
    encode_request_frame,
};
use super::status::FtcdStatus;

/// How long to wait for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FccTimeouts {
    /// Establishing a TCP connection.
    pub connect: Duration,
    /// From the end of a request to the end of its response (the device verifies certificates
    /// and generates keys in between).
    pub response: Duration,
}

impl Default for FccTimeouts {
    fn default() -> Self {
        FccTimeouts { connect: Duration::from_secs(5), response: Duration::from_secs(30) }
    }
}

/// A byte stream whose read timeout can be changed between reads.
pub trait FccStream: Read + Write + Send {
    /// Sets how long one read may block.
    fn set_read_timeout_for(&mut self, timeout: Duration) -> std::io::Result<()>;
}

impl FccStream for TcpStream {
    fn set_read_timeout_for(&mut self, timeout: Duration) -> std::io::Result<()> {
        // A zero duration is an error for set_read_timeout: wait at least a millisecond.
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

impl FccStream for Box<dyn serialport::SerialPort> {
    fn set_read_timeout_for(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.set_timeout(timeout.max(Duration::from_millis(1))).map_err(std::io::Error::from)
    }
}

impl FccStream for Box<dyn FccStream> {
    fn set_read_timeout_for(&mut self, timeout: Duration) -> std::io::Result<()> {
        (**self).set_read_timeout_for(timeout)
    }
}

/// A connection to one FCC device.
pub struct FccConnection<S: FccStream> {
    stream: S,
    endpoint: String,
    timeouts: FccTimeouts,
    bytes_written: u64,
    bytes_read: u64,
}

impl<S: FccStream> std::fmt::Debug for FccConnection<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FccConnection")
            .field("endpoint", &self.endpoint)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Connects to a device's TCP port (`HOST:PORT`).
pub fn connect_tcp(endpoint: &str, timeouts: FccTimeouts) -> Result<FccConnection<TcpStream>, FccError> {
    let connect_error = |source| FccError::Connect { endpoint: endpoint.to_string(), source };
    let addresses: Vec<_> = endpoint.to_socket_addrs().map_err(connect_error)?.collect();
    let mut last_error = std::io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeouts.connect) {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(connect_error)?;
                return Ok(FccConnection::new(stream, endpoint.to_string(), timeouts));
            }
            Err(error) => last_error = error,
        }
    }
    Err(connect_error(last_error))
}

/// Opens a serial port (8N1, no flow control) at `baud_rate`.
pub fn open_serial(
    port: &str,
    baud_rate: u32,
    timeouts: FccTimeouts,
) -> Result<FccConnection<Box<dyn serialport::SerialPort>>, FccError> {
    let stream = serialport::new(port, baud_rate)
        .timeout(timeouts.response)
        .open()
        .map_err(|source| FccError::SerialPort { port: port.to_string(), source })?;
    Ok(FccConnection::new(stream, port.to_string(), timeouts))
}

impl<S: FccStream> FccConnection<S> {
    /// Wraps an open stream; `endpoint` names the device in errors.
    pub fn new(stream: S, endpoint: String, timeouts: FccTimeouts) -> Self {
        FccConnection { stream, endpoint, timeouts, bytes_written: 0, bytes_read: 0 }
    }

    /// The same connection over a boxed stream: one type for TCP and serial devices.
    pub fn into_boxed(self) -> FccConnection<Box<dyn FccStream>>
    where
        S: 'static,
    {
        FccConnection {
            stream: Box::new(self.stream),
            endpoint: self.endpoint,
            timeouts: self.timeouts,
            bytes_written: self.bytes_written,
            bytes_read: self.bytes_read,
        }
    }

    /// Gives the stream back (a serial port lent by the device's console returns to it).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Bytes written to and read from the device so far (frames and anything around them).
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_written, self.bytes_read)
    }

    /// The device's name in errors (`HOST:PORT` or the serial port).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one CBOR bundle and returns the CBOR of the device's response (hash checked).
    pub fn exchange(&mut self, bundle_cbor: &[u8]) -> Result<Vec<u8>, FccError> {
        self.send_raw(&encode_request_frame(bundle_cbor))?;
        self.read_response()
    }

    /// Writes bytes as they are (a frame, or a deliberately broken one in tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), FccError> {
        let stage = "sending the request";
        let result = self.stream.write_all(bytes).and_then(|()| self.stream.flush());
        if result.is_ok() {
            self.bytes_written += bytes.len() as u64;
        }
        result.map_err(|source| match source.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                FccError::ConnectionClosed { endpoint: self.endpoint.clone(), stage, received_bytes: 0 }
            }
            _ => FccError::Io { endpoint: self.endpoint.clone(), stage, source },
        })
    }

    /// Reads one response frame; returns its CBOR. A non-success communication status is
    /// [`FccError::CommunicationStatus`].
    pub fn read_response(&mut self) -> Result<Vec<u8>, FccError> {
        let deadline = Instant::now() + self.timeouts.response;
        let mut reader = DeadlineReader { connection: self, deadline, received_bytes: 0 };
        reader.find_token()?;
        let status = FtcdStatus(u32::from_le_bytes(reader.read_array("reading the status")?));
        if status != FtcdStatus::SUCCESS {
            return Err(FccError::CommunicationStatus {
                endpoint: reader.connection.endpoint.clone(),
                status,
            });
        }
        let length_bytes = u32::from_le_bytes(reader.read_array("reading the response length")?);
        if length_bytes > FTCD_RESPONSE_LIMIT_BYTES {
            return Err(FccError::ResponseTooLarge {
                endpoint: reader.connection.endpoint.clone(),
                length_bytes,
                limit_bytes: FTCD_RESPONSE_LIMIT_BYTES,
            });
        }
        let mut response_cbor = vec![0u8; length_bytes as usize];
        reader.read_exact(&mut response_cbor, "reading the response")?;
        let found_hash: [u8; FTCD_HASH_SIZE_BYTES] = reader.read_array("reading the response hash")?;
        let expected_hash = Sha256::digest(&response_cbor);
        if expected_hash.as_slice() != found_hash {
            return Err(FccError::ResponseHashMismatch {
                endpoint: reader.connection.endpoint.clone(),
                expected_hex: hex::encode(expected_hash),
                found_hex: hex::encode(found_hash),
            });
        }
        Ok(response_cbor)
    }
}

/// Reads with one deadline for the whole response.
struct DeadlineReader<'connection, S: FccStream> {
    connection: &'connection mut FccConnection<S>,
    deadline: Instant,
    received_bytes: usize,
}

impl<S: FccStream> DeadlineReader<'_, S> {
    fn find_token(&mut self) -> Result<(), FccError> {
        let mut window = [0u8; FTCD_TOKEN.len()];
        let mut seen_bytes = 0usize;
        loop {
            let mut byte = [0u8; 1];
            self.read_exact(&mut byte, "waiting for the response")?;
            window.copy_within(1.., 0);
            window[FTCD_TOKEN.len() - 1] = byte[0];
            seen_bytes += 1;
            if seen_bytes >= FTCD_TOKEN.len() && window == FTCD_TOKEN {
                return Ok(());
            }
            if seen_bytes > FTCD_TOKEN_SEARCH_LIMIT_BYTES {
                return Err(FccError::MissingResponseToken {
                    endpoint: self.connection.endpoint.clone(),
                    skipped_bytes: seen_bytes,
                });
            }
        }
    }

    fn read_array<const SIZE: usize>(&mut self, stage: &'static str) -> Result<[u8; SIZE], FccError> {
        let mut bytes = [0u8; SIZE];
        self.read_exact(&mut bytes, stage)?;
        Ok(bytes)
    }

    fn read_exact(&mut self, buffer: &mut [u8], stage: &'static str) -> Result<(), FccError> {
        let mut filled = 0;
        while filled < buffer.len() {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.timeout(stage));
            }
            let endpoint = &self.connection.endpoint;
            self.connection.stream.set_read_timeout_for(remaining).map_err(|source| FccError::Io {
                endpoint: endpoint.clone(),
                stage,
                source,
            })?;
            match self.connection.stream.read(&mut buffer[filled..]) {
                Ok(0) => return Err(self.closed(stage)),
                Ok(count) => {
                    filled += count;
                    self.received_bytes += count;
                    self.connection.bytes_read += count as u64;
                }
                Err(error) => match error.kind() {
                    ErrorKind::Interrupted => {}
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => {}
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                        return Err(self.closed(stage));
                    }
                    _ => {
                        return Err(FccError::Io {
                            endpoint: self.connection.endpoint.clone(),
                            stage,
                            source: error,
                        });
                    }
                },
            }
        }
        Ok(())
    }

    fn closed(&self, stage: &'static str) -> FccError {
        FccError::ConnectionClosed {
            endpoint: self.connection.endpoint.clone(),
            stage,
            received_bytes: self.received_bytes,
        }
    }

    fn timeout(&self, stage: &'static str) -> FccError {
        FccError::Timeout {
            endpoint: self.connection.endpoint.clone(),
            stage,
            timeout: self.connection.timeouts.response,
            received_bytes: self.received_bytes,
        }
    }
}
