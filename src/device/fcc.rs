//! FCC-only slots: `--probe fcc:HOST:PORT`, a device that runs the Izuma Device Management
//! Client's Factory Configurator Client and listens on TCP (a Linux device), or
//! `--probe fcc:/dev/ttyUSB0[,baud=N]`, one whose FCC listens on a UART (an Mbed OS device on a
//! USB-UART, 8N1, 115200 baud unless given), with no debug probe. The station reaches it only through FCC bundles ([`Target::fcc_exchange`], all of a
//! unit's messages in one session: the CSR request and the final bundle); every
//! debug-port operation is refused, and the job records those steps as skipped.
//!
//! **One unit per endpoint.** An endpoint is one device: the fixture connects when the line
//! opens (an endpoint that does not answer refuses the start), hands that connection to the
//! first unit, and then presents no more units. The next unit is the next device's endpoint
//! (another `--probe fcc:...`, or another run): the FCC example application ends its process
//! when a session ends, and a device that was provisioned answers "already exists" (17) or,
//! after `Disable`, status 9 — so waiting on the same endpoint would never present a new unit.
//!
//! **The unit's ID.** The FCC protocol has no request for a hardware unique ID, so the fixture
//! draws a random 128-bit ID when the unit arrives and reports it as the unit's "chip UID": the
//! station's name for this device, from which the device ID (and the default endpoint name)
//! derive. It is honest about what it is (the run record's probe field names the endpoint) and
//! never collides, so a device that comes back is not recognised by the ledger; the device
//! itself refuses a second provisioning (17, or 9 after `Disable`).

use super::{ChipDescription, Fixture, Target, TargetError};
use crate::fcc::{
    FccBundle, FccConnection, FccError, FccResponse, FccSession, FccStream, FccTimeouts, connect_tcp,
    open_serial,
};
use crate::identity::ChipUid;

/// Size of the ID the station draws for an FCC unit.
pub const FCC_UNIT_ID_SIZE_BYTES: usize = 16;

/// The baud rate of an FCC serial port when the selector gives none (the FCC's UART default).
pub const FCC_SERIAL_BAUD_DEFAULT: u32 = 115_200;

/// How long a slot waits for the device's FCC: the profile's `fcc.response_timeout_ms` (the
/// default when the profile has no `[fcc]`), for `fcc:` slots and console ports alike.
pub fn fcc_timeouts_for(profile: &crate::profile::Profile) -> FccTimeouts {
    FccTimeouts {
        response: std::time::Duration::from_millis(
            profile
                .fcc
                .as_ref()
                .map_or(FccTimeouts::default().response.as_millis() as u64, |fcc| fcc.response_timeout_ms),
        ),
        ..FccTimeouts::default()
    }
}

/// Where an FCC device is reached: what follows `fcc:` in a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FccEndpoint {
    /// `HOST:PORT`: the device's FCC listens on TCP.
    Tcp { address: String },
    /// `/dev/ttyUSB0[,baud=N]` (or `COM4`): the device's FCC listens on a UART, 8N1.
    Serial { port: String, baud_rate: u32 },
}

impl FccEndpoint {
    /// Parses what follows `fcc:`; the error says what was expected.
    pub fn parse(text: &str) -> Result<FccEndpoint, String> {
        let is_serial = text.starts_with('/') || text.to_ascii_uppercase().starts_with("COM");
        if is_serial {
            let (port, options) = text.split_once(',').unwrap_or((text, ""));
            let baud_rate = match options {
                "" => FCC_SERIAL_BAUD_DEFAULT,
                option => option
                    .strip_prefix("baud=")
                    .and_then(|value| value.parse::<u32>().ok())
                    .filter(|baud| (1..=4_000_000).contains(baud))
                    .ok_or_else(|| {
                        format!("expected fcc:PORT[,baud=N] with N from 1 to 4000000, found \"fcc:{text}\"")
                    })?,
            };
            if port.len() < 2 || port.chars().any(char::is_whitespace) {
                return Err(format!("expected a serial port such as fcc:/dev/ttyUSB0, found \"fcc:{text}\""));
            }
            return Ok(FccEndpoint::Serial { port: port.to_string(), baud_rate });
        }
        let expected = || {
            format!(
                "expected fcc:HOST:PORT (e.g. fcc:127.0.0.1:7000) or fcc:/dev/ttyUSB0[,baud=N], found \"fcc:{text}\""
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        if host.is_empty()
            || host.chars().any(char::is_whitespace)
            || !port.parse::<u16>().is_ok_and(|port| port != 0)
        {
            return Err(expected());
        }
        Ok(FccEndpoint::Tcp { address: text.to_string() })
    }

    /// Connects (TCP) or opens the port (serial).
    pub fn open(&self, timeouts: FccTimeouts) -> Result<FccConnection<Box<dyn FccStream>>, FccError> {
        Ok(match self {
            FccEndpoint::Tcp { address } => connect_tcp(address, timeouts)?.into_boxed(),
            FccEndpoint::Serial { port, baud_rate } => open_serial(port, *baud_rate, timeouts)?.into_boxed(),
        })
    }
}

/// A `fcc:...` slot: one device on the network or on a serial port.
pub struct FccFixture {
    endpoint: String,
    /// The connection opened at start, until the unit takes it.
    connection: Option<FccConnection<Box<dyn FccStream>>>,
}

impl FccFixture {
    /// Connects to the device at `endpoint` (what follows `fcc:`): a device that is not
    /// reachable now (or a serial port that does not open) refuses the line's start.
    pub fn open(endpoint: &str, timeouts: FccTimeouts) -> Result<FccFixture, FccError> {
        let parsed = FccEndpoint::parse(endpoint).map_err(|reason| FccError::Connect {
            endpoint: endpoint.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        })?;
        let connection = parsed.open(timeouts)?;
        Ok(FccFixture { endpoint: endpoint.to_string(), connection: Some(connection) })
    }
}

impl Fixture for FccFixture {
    fn name(&self) -> String {
        format!("fcc:{}", self.endpoint)
    }

    fn next_unit(
        &mut self,
        _keep_waiting: &dyn Fn() -> bool,
    ) -> Result<Option<Box<dyn Target>>, TargetError> {
        let Some(connection) = self.connection.take() else {
            return Ok(None);
        };
        let mut unit_id = [0u8; FCC_UNIT_ID_SIZE_BYTES];
        getrandom::fill(&mut unit_id)
            .map_err(|error| TargetError::Other(format!("no randomness for the FCC unit's ID: {error}")))?;
        let unit_id =
            ChipUid::new(unit_id.to_vec()).map_err(|error| TargetError::Other(error.to_string()))?;
        let session_id = format!("imprint-{}", unit_id.to_hex());
        Ok(Some(Box::new(FccTarget {
            endpoint: self.endpoint.clone(),
            unit_id,
            session: FccSession::new(connection, session_id),
        })))
    }
}

/// One FCC device: its session and the ID the station drew for it.
pub struct FccTarget {
    endpoint: String,
    unit_id: ChipUid,
    session: FccSession<Box<dyn FccStream>>,
}

impl FccTarget {
    fn no_debug_port(&self, operation: &str) -> TargetError {
        TargetError::Other(format!(
            "{operation}: fcc:{} has no debug port (an FCC-only device is reached through FCC bundles only)",
            self.endpoint
        ))
    }
}

impl Target for FccTarget {
    fn backend_name(&self) -> &'static str {
        "fcc"
    }

    fn probe_identifier(&self) -> String {
        format!("fcc:{}", self.endpoint)
    }

    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        Err(self.no_debug_port("connect"))
    }

    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        Ok(self.unit_id.clone())
    }

    fn read_memory(&mut self, _address: u64, _buffer: &mut [u8]) -> Result<(), TargetError> {
        Err(self.no_debug_port("read memory"))
    }

    fn write_ram(&mut self, _address: u64, _data: &[u8]) -> Result<(), TargetError> {
        Err(self.no_debug_port("write RAM"))
    }

    fn erase_flash(
        &mut self,
        _address: u64,
        _size_bytes: u64,
        _progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        Err(self.no_debug_port("erase"))
    }

    fn program_flash(
        &mut self,
        _address: u64,
        _data: &[u8],
        _progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        Err(self.no_debug_port("program"))
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        Err(self.no_debug_port("reset"))
    }

    fn halt(&mut self) -> Result<(), TargetError> {
        Err(self.no_debug_port("halt"))
    }

    fn lock(&mut self) -> Result<(), TargetError> {
        Err(self.no_debug_port("lock"))
    }

    fn is_locked(&mut self) -> Result<bool, TargetError> {
        Err(self.no_debug_port("read the lock state"))
    }

    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        Err(self.no_debug_port("mass erase"))
    }

    fn has_debug_port(&self) -> bool {
        false
    }

    fn fcc_exchange(&mut self, bundle: &FccBundle) -> Option<Result<FccResponse, FccError>> {
        Some(self.session.send(bundle))
    }
}
