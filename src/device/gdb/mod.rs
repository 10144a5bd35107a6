//! `gdb`: the GDB remote serial protocol backend, for anything that speaks it — QEMU's stub
//! (the reference firmware on an emulated Cortex-M), OpenOCD, J-Link GDB Server and pyOCD on
//! TCP, a Black Magic Probe on a serial port.
//!
//! Layers, bottom up: [`transport`] (TCP or serial bytes), [`protocol`] (packets, checksums,
//! acknowledgements, escapes, run-length encoding, pipelining), [`features`] (the XML a server
//! describes its target with), [`client`] (the requests: memory, flash, registers, execution,
//! breakpoints, monitor commands), [`target`] ([`GdbTarget`], the station's `Target`).
//! [`GdbFixture`] serves `--probe gdb:HOST:PORT` and `--probe gdb:/dev/ttyACM0`.
//!
//! **Invariant:** nothing here knows about QEMU beyond [`GdbOptions::qemu`]; the QEMU harness
//! (`device::qemu`) is one user of this backend, not part of it.

pub mod client;
pub mod error;
pub mod features;
pub mod protocol;
pub mod target;
pub mod transport;

use std::time::Duration;

pub use client::{BreakpointKind, GdbClient, GdbOptions, RunState, ServerFeatures, StopReason, StopReply};
pub use error::GdbError;
pub use target::{GdbTarget, GdbTargetConfig};
pub use transport::{SerialTransport, TcpTransport, Transport};

use crate::device::{Fixture, Target, TargetError};
use crate::identity::ChipUid;

/// Baud rate for serial GDB ports (USB CDC ports such as the Black Magic Probe ignore it).
const SERIAL_BAUD_RATE: u32 = 115_200;
/// How often a `gdb:` fixture looks for a different unit on the fixture.
const UNIT_CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Where a GDB server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddress {
    /// `HOST:PORT` on TCP.
    Tcp(String),
    /// A serial port path (`/dev/ttyACM0`, `COM3`).
    Serial(String),
}

impl GdbAddress {
    /// Parses what follows `gdb:` in a selector: `HOST:PORT`, or a serial port (`/dev/...`,
    /// `COMn`).
    pub fn parse(text: &str) -> Result<GdbAddress, String> {
        if text.starts_with('/') || text.to_ascii_uppercase().starts_with("COM") {
            return Ok(GdbAddress::Serial(text.to_string()));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0) => {
                Ok(GdbAddress::Tcp(text.to_string()))
            }
            _ => Err(format!(
                "expected HOST:PORT (e.g. 127.0.0.1:3333) or a serial port (e.g. /dev/ttyACM0), found {text:?}"
            )),
        }
    }

    /// Opens the byte stream.
    pub fn open(&self, timeout: Duration) -> Result<Box<dyn Transport>, GdbError> {
        Ok(match self {
            GdbAddress::Tcp(address) => Box::new(TcpTransport::connect(address, timeout)?),
            GdbAddress::Serial(port_name) => Box::new(SerialTransport::open(port_name, SERIAL_BAUD_RATE)?),
        })
    }
}

impl std::fmt::Display for GdbAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GdbAddress::Tcp(address) => write!(formatter, "gdb:{address}"),
            GdbAddress::Serial(port_name) => write!(formatter, "gdb:{port_name}"),
        }
    }
}

/// A fixture behind one GDB server: a probe on a bed of nails. The server stays the same while
/// units are swapped, so a new unit is recognised by a unique ID different from the last one.
pub struct GdbFixture {
    address: GdbAddress,
    options: GdbOptions,
    config: GdbTargetConfig,
    last_unique_id: Option<ChipUid>,
    /// The device's UART beside the server (`gdb:...,console=PORT[,baud=N]`): port, baud rate,
    /// and how long an FCC on it may take to answer.
    console_port: Option<(String, u32, crate::fcc::FccTimeouts)>,
}

impl GdbFixture {
    /// A fixture for the server at `address`.
    pub fn new(address: GdbAddress, options: GdbOptions, config: GdbTargetConfig) -> GdbFixture {
        GdbFixture { address, options, config, last_unique_id: None, console_port: None }
    }

    /// Opens `port_name` as every unit's console (self-test reports, FCC bundles).
    pub fn with_console_port(
        mut self,
        port_name: String,
        baud_rate: u32,
        fcc_timeouts: crate::fcc::FccTimeouts,
    ) -> GdbFixture {
        self.console_port = Some((port_name, baud_rate, fcc_timeouts));
        self
    }

    /// Opens the server's byte stream once and closes it again: a wrong address, a server that
    /// is not running or a serial port that is not there shows before any unit.
    pub fn check_reachable(&self) -> Result<(), GdbError> {
        self.address.open(Duration::from_millis(self.options.timeout_ms)).map(drop)
    }

    fn connect(&self) -> Result<GdbTarget, GdbError> {
        let transport = self.address.open(Duration::from_millis(self.options.timeout_ms))?;
        let client = GdbClient::connect(transport, self.options.clone())?;
        Ok(GdbTarget::new(client, self.config.clone(), &self.address.to_string()))
    }
}

impl Fixture for GdbFixture {
    fn name(&self) -> String {
        self.address.to_string()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        loop {
            if !keep_waiting() {
                return Ok(None);
            }
            let mut target = self.connect()?;
            let unique_id = target.read_unique_id()?;
            if self.last_unique_id.as_ref() != Some(&unique_id) {
                self.last_unique_id = Some(unique_id);
                if let Some((port_name, baud_rate, fcc_timeouts)) = &self.console_port {
                    let console = crate::device::console::SerialConsole::open(port_name, *baud_rate)
                        .map_err(|error| TargetError::Other(format!("device console: {error}")))?
                        .with_fcc_timeouts(*fcc_timeouts);
                    target = target.with_console(console);
                }
                return Ok(Some(Box::new(target)));
            }
            // Still the unit we provisioned last: let it run and look again shortly.
            drop(target);
            std::thread::sleep(UNIT_CHANGE_POLL_INTERVAL);
        }
    }

    /// The server answers and the unique ID is the last unit's: still there. The server answers
    /// but the target does not, or another unique ID answers: the last unit was taken off. The
    /// server itself does not answer: cannot tell (the server, not the board, is gone).
    fn board_present(&mut self) -> Option<bool> {
        let mut target = self.connect().ok()?;
        match target.read_unique_id() {
            Ok(unique_id) => Some(self.last_unique_id.as_ref() == Some(&unique_id)),
            Err(_) => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<GdbAddress>) {
        assert_eq!(GdbAddress::parse(text).ok(), expected, "{text}");
    }

    #[test]
    fn addresses() {
        check("127.0.0.1:3333", Some(GdbAddress::Tcp("127.0.0.1:3333".into())));
        check("localhost:2331", Some(GdbAddress::Tcp("localhost:2331".into())));
        check("[::1]:3333", Some(GdbAddress::Tcp("[::1]:3333".into())));
        check("/dev/ttyACM0", Some(GdbAddress::Serial("/dev/ttyACM0".into())));
        check("COM7", Some(GdbAddress::Serial("COM7".into())));
        check("localhost", None);
        check("localhost:0", None);
        check(":3333", None);
        check("host:99999", None);
    }
}
