//! The hardware seam: the one [`Target`] trait through which the station reaches a device.
//!
//! Station code knows nothing else about a device. Backends live in submodules: [`sim`] (the
//! in-process virtual MCU, the embedded default), [`gdb`] (the GDB remote serial protocol:
//! QEMU, OpenOCD, J-Link, pyOCD, Black Magic Probe), with [`qemu`] starting emulated units for
//! it; [`probe_rs`] (real debug probes through probe-rs). [`console`] reads a device's UART for
//! any backend. [`factory`] names every backend: it parses slot selectors and opens fixtures.
//! A [`Fixture`] is a place where units arrive (a probe on a bed of nails, a simulated fixture);
//! it hands out one [`Target`] per unit.
//!
//! **Invariant:** the trait talks in addresses and bytes; it knows nothing of profiles, steps'
//! order, manifests or the ledger. Optional capabilities (a console) return `None`.

pub mod console;
pub mod factory;
pub mod fcc;
pub mod gdb;
pub mod probe_rs;
pub mod qemu;
pub mod sim;

use crate::identity::ChipUid;

/// What went wrong talking to a device. [`TargetError::is_transient`] says which errors deserve
/// a bounded retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A glitch on the probe link that a retry may cure (a NACK, a CRC error on the wire).
    #[error("transient probe error: {reason}")]
    Transient { reason: String },
    /// The probe or its connection is gone.
    #[error("probe lost: {reason}")]
    ProbeLost { reason: String },
    /// The target lost power (or was never powered).
    #[error("target lost power")]
    PowerLost,
    /// Debug access is denied because the chip is locked.
    #[error("debug access denied: the chip is locked")]
    Locked,
    /// The operation is not allowed at this address (outside flash, misaligned, not erased).
    #[error("{operation} refused at {address:#010x}: {reason}")]
    Refused { operation: &'static str, address: u64, reason: String },
    /// The chip did not answer in time.
    #[error("{operation} timed out after {timeout_ms} ms")]
    Timeout { operation: &'static str, timeout_ms: u64 },
    /// The attached chip is not the one the profile names.
    #[error("wrong chip: expected {expected}, found {found}")]
    WrongChip { expected: String, found: String },
    /// Anything else the backend reports.
    #[error("{0}")]
    Other(String),
}

impl TargetError {
    /// True when repeating the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TargetError::Transient { .. })
    }
}

/// What a connected device says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipDescription {
    /// The chip name (probe-rs naming), as attached.
    pub chip_name: String,
}

/// One device on a fixture, reached through a probe (or simulated).
///
/// Calls are blocking and bounded in time: a backend that waits on hardware uses timeouts and
/// reports [`TargetError::Timeout`] rather than hanging.
pub trait Target: Send {
    /// The backend's name (`sim`, `gdb`, `probe-rs`), for records.
    fn backend_name(&self) -> &'static str;
    /// Which probe or fixture this is, for records (never a secret).
    fn probe_identifier(&self) -> String;
    /// Attaches to the chip.
    fn connect(&mut self) -> Result<ChipDescription, TargetError>;
    /// Reads the chip's factory-programmed unique ID.
    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError>;
    /// Reads memory (flash or RAM) through the debug port.
    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError>;
    /// Writes RAM (the mailbox) through the debug port.
    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError>;
    /// Erases whole flash sectors covering exactly `[address, address + size_bytes)`;
    /// `progress` receives bytes erased so far.
    fn erase_flash(
        &mut self,
        address: u64,
        size_bytes: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError>;
    /// Programs erased flash; `address` and the length are multiples of the write alignment.
    /// `progress` receives bytes programmed so far.
    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError>;
    /// Resets the chip and lets it run (the bootloader, then the application).
    fn reset_and_run(&mut self) -> Result<(), TargetError>;
    /// Halts the core.
    fn halt(&mut self) -> Result<(), TargetError>;
    /// Enables readout/debug protection.
    fn lock(&mut self) -> Result<(), TargetError>;
    /// Whether the chip reports itself locked.
    fn is_locked(&mut self) -> Result<bool, TargetError>;
    /// Mass-erases a locked chip to regain debug access (destroys all flash contents).
    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError>;
    /// CRC-32 of `[address, address + length)` computed on the target side (as GDB's `qCRC`
    /// and J-Link's compare do), without moving the bytes over the probe; `None` when this target
    /// cannot. The station uses it only to decide what to skip; verification of written bytes
    /// is always a full read-back. The CRC is [`crc32_of`]'s.
    fn checksum_crc32(&mut self, _address: u64, _length: u64) -> Result<Option<u32>, TargetError> {
        Ok(None)
    }
    /// Lines the device printed on its console since the last call; `None` when this target has
    /// no console.
    fn take_console_lines(&mut self) -> Option<Vec<String>> {
        None
    }
    /// Tells the backend which pipeline step is running, for its own logs and for the sim's
    /// fault injection. Backends that do not care ignore it.
    fn note_step(&mut self, _step_name: &str) {}
    /// Whether this target reaches the chip through a debug port (flash, RAM, reset, lock).
    /// An FCC-only device ([`fcc::FccTarget`]) has none: the station skips those steps.
    fn has_debug_port(&self) -> bool {
        true
    }
    /// Sends one bundle to the device's Factory Configurator Client and returns its answer;
    /// `None` when this target has no FCC channel.
    fn fcc_exchange(
        &mut self,
        _bundle: &crate::fcc::FccBundle,
    ) -> Option<Result<crate::fcc::FccResponse, crate::fcc::FccError>> {
        None
    }
}

/// The CRC-32 that [`Target::checksum_crc32`] returns: CRC-32/MPEG-2 (polynomial 0x04C11DB7,
/// initial value 0xFFFFFFFF, not reflected, no final XOR), the one GDB's `qCRC` packet uses.
pub fn crc32_of(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2).checksum(bytes)
}

/// A place where units arrive: one probe on a bed of nails, or a simulated fixture.
pub trait Fixture: Send {
    /// A name for this fixture (the slot's label in the UI and the `probe` field of records).
    fn name(&self) -> String;
    /// Blocks until the next unit is present and returns a target for it, or `None` when the
    /// fixture will present no more units (or `keep_waiting` returned false).
    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError>;
    /// Whether the board this fixture last handed out is still on it, as far as the fixture can
    /// tell: `Some(true)` it answers, `Some(false)` it is gone (nothing answers, or a different
    /// board does), `None` this fixture cannot tell (the default). Asked between units only —
    /// the window asks while a failed slot waits for the operator, so that taking the failed
    /// board off acknowledges it — and never while a unit is being provisioned.
    fn board_present(&mut self) -> Option<bool> {
        None
    }
}
