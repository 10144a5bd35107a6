//! Byte streams to a GDB server: TCP (QEMU, OpenOCD, J-Link GDB Server, pyOCD) or a serial
//! port (a Black Magic Probe's GDB port), behind one small [`Transport`] trait.
//!
//! Reads take a timeout per call so the protocol layer can enforce one deadline per reply;
//! both transports remember the timeout they last set so that a steady stream of reads costs
//! one syscall each, not two.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::error::GdbError;

/// A bidirectional byte stream to a GDB server.
pub trait Transport: Send {
    /// Reads what is available (at least one byte), waiting at most `timeout`. `Ok(0)` means
    /// the peer closed the stream; a timeout is an error of kind `TimedOut` or `WouldBlock`.
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> std::io::Result<usize>;
    /// Writes every byte.
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Where this stream goes, for messages and records (`tcp:127.0.0.1:1234`).
    fn describe(&self) -> String;
    /// True for streams that never corrupt or drop bytes (TCP); false for serial lines.
    fn is_reliable(&self) -> bool;
}

/// A GDB server on TCP.
pub struct TcpTransport {
    stream: TcpStream,
    endpoint: String,
    current_timeout: Option<Duration>,
}

impl TcpTransport {
    /// Connects to `host:port`, waiting at most `timeout`.
    pub fn connect(address: &str, timeout: Duration) -> Result<TcpTransport, GdbError> {
        let endpoint = format!("tcp:{address}");
        let io_error =
            |source| GdbError::Io { operation: "connect".to_string(), endpoint: endpoint.clone(), source };
        let mut last_error = None;
        for socket_address in address.to_socket_addrs().map_err(io_error)? {
            match TcpStream::connect_timeout(&socket_address, timeout) {
                Ok(stream) => return TcpTransport::from_stream(stream, endpoint),
                Err(error) => last_error = Some(error),
            }
        }
        Err(io_error(last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolved to nothing")
        })))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream, endpoint: String) -> Result<TcpTransport, GdbError> {
        // Packets are small and latency-bound: Nagle's algorithm would hold each one back
        // waiting for the previous acknowledgement.
        stream.set_nodelay(true).map_err(|source| GdbError::Io {
            operation: "set TCP_NODELAY".to_string(),
            endpoint: endpoint.clone(),
            source,
        })?;
        Ok(TcpTransport { stream, endpoint, current_timeout: None })
    }
}

impl Transport for TcpTransport {
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        // A zero timeout means "block forever" to the socket API; the caller means "now".
        let timeout = timeout.max(Duration::from_micros(100));
        // Round up to milliseconds so small changes of the remaining time do not cost a
        // setsockopt on every read.
        let rounded = Duration::from_millis(timeout.as_millis().max(1) as u64);
        if self.current_timeout != Some(rounded) {
            self.stream.set_read_timeout(Some(rounded))?;
            self.current_timeout = Some(rounded);
        }
        self.stream.read(buffer)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn describe(&self) -> String {
        self.endpoint.clone()
    }

    fn is_reliable(&self) -> bool {
        true
    }
}

/// A GDB server on a serial port (a Black Magic Probe's first CDC-ACM port, for example).
pub struct SerialTransport {
    port: Box<dyn serialport::SerialPort>,
    endpoint: String,
    current_timeout: Option<Duration>,
}

impl SerialTransport {
    /// Opens `port_name` (`/dev/ttyACM0`, `COM3`) at `baud_rate` (USB CDC ports ignore it).
    pub fn open(port_name: &str, baud_rate: u32) -> Result<SerialTransport, GdbError> {
        let endpoint = format!("serial:{port_name}");
        let port = serialport::new(port_name, baud_rate).timeout(Duration::from_millis(100)).open().map_err(
            |error| GdbError::Io {
                operation: "open serial port".to_string(),
                endpoint: endpoint.clone(),
                source: std::io::Error::other(error.to_string()),
            },
        )?;
        Ok(SerialTransport::from_port(port, endpoint))
    }

    /// Wraps an open port (a pty pair end in tests).
    pub fn from_port(port: Box<dyn serialport::SerialPort>, endpoint: String) -> SerialTransport {
        SerialTransport { port, endpoint, current_timeout: None }
    }
}

impl Transport for SerialTransport {
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        let rounded = Duration::from_millis(timeout.as_millis().max(1) as u64);
        if self.current_timeout != Some(rounded) {
            self.port.set_timeout(rounded).map_err(|error| std::io::Error::other(error.to_string()))?;
            self.current_timeout = Some(rounded);
        }
        self.port.read(buffer)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // The port's timeout also bounds writes: a probe that stops reading is an error, not a
        // hang. No flush (tcdrain): the kernel owns the bytes once written, and waiting for the
        // line to drain would cost a round of latency per packet.
        self.port.write_all(bytes)
    }

    fn describe(&self) -> String {
        self.endpoint.clone()
    }

    fn is_reliable(&self) -> bool {
        false
    }
}
