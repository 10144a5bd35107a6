//! `sim`: the in-process virtual MCU, the embedded default backend.
//!
//! A [`SimFixture`] presents fresh virtual units one after another; each is a [`SimTarget`]
//! wrapping a [`SimDevice`] shaped by the profile's memory map: honest NOR flash
//! ([`flash::NorFlash`]), a RAM mailbox, a unique ID, a debug lock, and the device-side
//! bootloader and update client of `docs/device-contract.md`, and the application's identity
//! commands (make a key and a CSR, sign a challenge). An optional timing model makes
//! operations take the time real probes and flash take, and a [`FaultPlan`] injects the
//! failures of a real line (power cuts, lost probes, unreadable IDs, flipped bits).

mod block_device;
mod bootloader;
mod device;
mod flash;
mod sotp;

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::device::console::SerialConsole;
use crate::device::{ChipDescription, Fixture, Target, TargetError};
use crate::fcc::{FccBundle, FccError, FccResponse, FccTimeouts};
use crate::identity::ChipUid;
use crate::profile::{DeviceHardware, MemoryMap, SimTiming};

pub use device::SimDevice;

/// Length of a simulated unique ID (96 bits, like an STM32 UID).
pub const SIM_UNIQUE_ID_SIZE_BYTES: usize = 12;

/// Failures to inject into one simulated unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Cut power once this many flash operations (sector erases, 256-byte page programs)
    /// have completed; the interrupted operation is left torn.
    pub power_cut_after_flash_operations: Option<u64>,
    /// The probe disappears when the station enters this step (by step name).
    pub probe_lost_at_step: Option<String>,
    /// Reading the unique ID fails.
    pub unique_id_read_fails: bool,
    /// After a program operation covers this address, one bit there flips (a weak cell).
    pub flip_bit_at_address: Option<u64>,
    /// The first this-many debug operations fail with a transient probe error.
    pub transient_errors: u32,
    /// The probe stops answering when the station enters this step: every call then blocks
    /// for the probe's command timeout and fails with a timeout.
    pub hang_at_step: Option<String>,
    /// The backend panics when the station enters this step, as a defective probe driver would:
    /// the station must count the unit as failed and the run as failed, never lose it.
    pub panic_at_step: Option<String>,
    /// The device's CSRs carry a signature that does not verify (a broken key generator or
    /// signer in the firmware): the station must refuse to issue a certificate.
    pub bad_csr_signature: bool,
    /// The device signs identity challenges wrongly (its key does not match its certificate):
    /// the station's identity check must fail.
    pub bad_challenge_signature: bool,
    /// The device has no entropy source: it refuses to make a key (device-made keys need one).
    pub no_entropy_source: bool,
    /// `(n, address)`: one bit at `address` flips just before the `n`-th reset the station asks
    /// for (1-based): a cell disturbed, or tampered with, after the station verified it.
    pub flip_bit_before_reset: Option<(u32, u64)>,
    /// `(n, address)`: one bit at `address` of the block device flips just before the `n`-th
    /// reset (the card tampered with in a reader between two boots).
    pub flip_block_device_bit_before_reset: Option<(u32, u64)>,
}

/// How fast the simulated chip computes a CRC over its own flash (timing model only).
pub const SIM_ON_TARGET_CRC_BYTES_PER_SECOND: f64 = 32_000_000.0;

/// How long the simulated probe waits for an answer before it gives up (a probe driver's
/// command timeout).
pub const SIM_PROBE_COMMAND_TIMEOUT_MS: u64 = 2_000;

/// A simulated unit behind a simulated probe.
pub struct SimTarget {
    device: SimDevice,
    chip_name: String,
    probe_name: String,
    timing: SimTiming,
    faults: FaultPlan,
    is_probe_lost: bool,
    is_hung: bool,
    transient_errors_left: u32,
    resets_asked: u32,
    /// A real serial port beside the simulated chip (`sim,console=PORT`): it carries the FCC
    /// bundles of profiles with `[fcc]` (the simulated chip itself has no FCC).
    serial_console: Option<SerialConsole>,
}

impl SimTarget {
    /// A target for `device`, answering as chip `chip_name`.
    pub fn new(
        device: SimDevice,
        chip_name: &str,
        probe_name: &str,
        timing: SimTiming,
        faults: FaultPlan,
    ) -> SimTarget {
        let mut device = device;
        device.timing = timing;
        if let Some(operations) = faults.power_cut_after_flash_operations {
            device.cut_power_after(operations);
        }
        device.identity_faults = device::IdentityFaults {
            bad_csr_signature: faults.bad_csr_signature,
            bad_challenge_signature: faults.bad_challenge_signature,
            no_entropy_source: faults.no_entropy_source,
        };
        SimTarget {
            device,
            chip_name: chip_name.to_string(),
            probe_name: probe_name.to_string(),
            timing,
            transient_errors_left: faults.transient_errors,
            faults,
            is_probe_lost: false,
            is_hung: false,
            resets_asked: 0,
            serial_console: None,
        }
    }

    /// Gives the unit a real console port (`sim,console=PORT`) for FCC bundles.
    pub fn with_serial_console(mut self, console: SerialConsole) -> SimTarget {
        self.serial_console = Some(console);
        self
    }

    /// The device behind the probe (for tests and fault campaigns).
    pub fn device(&self) -> &SimDevice {
        &self.device
    }

    /// Takes the device back out (to power-cycle it and present it again).
    pub fn into_device(self) -> SimDevice {
        self.device
    }

    /// Every device call starts here: it starts the call's clock of modelled delays, then
    /// checks the link.
    fn check_link(&mut self) -> Result<(), TargetError> {
        self.device.begin_call();
        if self.is_hung {
            std::thread::sleep(Duration::from_millis(SIM_PROBE_COMMAND_TIMEOUT_MS));
            return Err(TargetError::Timeout {
                operation: "probe command",
                timeout_ms: SIM_PROBE_COMMAND_TIMEOUT_MS,
            });
        }
        if self.is_probe_lost {
            return Err(TargetError::ProbeLost { reason: format!("{} stopped answering", self.probe_name) });
        }
        self.device.require_power()?;
        if self.transient_errors_left > 0 {
            self.transient_errors_left -= 1;
            return Err(TargetError::Transient { reason: "simulated SWD wait response".to_string() });
        }
        Ok(())
    }

    fn check_debug_access(&mut self) -> Result<(), TargetError> {
        self.check_link()?;
        if self.device.is_locked { Err(TargetError::Locked) } else { Ok(()) }
    }

    fn spend_transfer_time(&mut self, bytes: usize) {
        if self.timing.probe_bytes_per_second > 0 {
            self.device.spend(bytes as f64 * 1000.0 / self.timing.probe_bytes_per_second as f64);
        }
    }

    /// The time the modelled probe and chip have been busy for this unit.
    pub fn modeled_busy(&self) -> Duration {
        self.device.modeled_busy()
    }
}

impl Target for SimTarget {
    fn backend_name(&self) -> &'static str {
        "sim"
    }

    fn probe_identifier(&self) -> String {
        self.probe_name.clone()
    }

    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        self.check_link()?;
        Ok(ChipDescription { chip_name: self.chip_name.clone() })
    }

    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        self.check_link()?;
        if self.faults.unique_id_read_fails {
            return Err(TargetError::Other("unique ID registers read back as all ones".to_string()));
        }
        ChipUid::new(self.device.unique_id().to_vec()).map_err(|error| TargetError::Other(error.to_string()))
    }

    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.check_debug_access()?;
        self.spend_transfer_time(buffer.len());
        let length = buffer.len() as u64;
        if self.device.flash.contains(address, length) {
            self.device.flash.read(address, buffer);
            return Ok(());
        }
        let ram = self.device.memory.chip_ram;
        if address >= ram.address && address + length <= ram.address + ram.size_bytes {
            let start = (address - ram.address) as usize;
            buffer.copy_from_slice(&self.device.ram[start..start + buffer.len()]);
            return Ok(());
        }
        Err(TargetError::Refused { operation: "read", address, reason: "no memory mapped here".to_string() })
    }

    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        self.check_debug_access()?;
        self.spend_transfer_time(data.len());
        let ram = self.device.memory.chip_ram;
        if address < ram.address || address + data.len() as u64 > ram.address + ram.size_bytes {
            return Err(TargetError::Refused { operation: "write", address, reason: "not RAM".to_string() });
        }
        let start = (address - ram.address) as usize;
        self.device.ram[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn erase_flash(
        &mut self,
        address: u64,
        size_bytes: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.check_debug_access()?;
        self.device.erase(address, size_bytes, progress)
    }

    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.check_debug_access()?;
        self.spend_transfer_time(data.len());
        self.device.program(address, data, progress)?;
        if let Some(weak_address) = self.faults.flip_bit_at_address
            && weak_address >= address
            && weak_address < address + data.len() as u64
        {
            self.device.flash.flip_bit(weak_address, 0);
        }
        Ok(())
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.check_link()?;
        self.resets_asked += 1;
        if let Some((reset, address)) = self.faults.flip_bit_before_reset
            && reset == self.resets_asked
        {
            self.device.flip_flash_bit(address, 0);
        }
        if let Some((reset, address)) = self.faults.flip_block_device_bit_before_reset
            && reset == self.resets_asked
        {
            self.device.flip_block_device_bit(address, 0);
        }
        self.device.boot();
        self.device.require_power()
    }

    fn halt(&mut self) -> Result<(), TargetError> {
        self.check_debug_access()
    }

    fn lock(&mut self) -> Result<(), TargetError> {
        self.check_debug_access()?;
        self.device.is_locked = true;
        Ok(())
    }

    fn is_locked(&mut self) -> Result<bool, TargetError> {
        self.check_link()?;
        Ok(self.device.is_locked)
    }

    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        self.check_link()?;
        self.device.mass_erase()
    }

    fn checksum_crc32(&mut self, address: u64, length: u64) -> Result<Option<u32>, TargetError> {
        self.check_debug_access()?;
        if !self.device.flash.contains(address, length) {
            return Err(TargetError::Refused {
                operation: "checksum",
                address,
                reason: "not flash".to_string(),
            });
        }
        // An on-target CRC loop reads flash at about 32 MB/s on a 64 MHz Cortex-M4.
        self.device.spend(length as f64 * 1000.0 / SIM_ON_TARGET_CRC_BYTES_PER_SECOND);
        Ok(Some(crate::device::crc32_of(self.device.flash.slice(address, length as usize))))
    }

    fn take_console_lines(&mut self) -> Option<Vec<String>> {
        Some(std::mem::take(&mut self.device.console_lines))
    }

    fn fcc_exchange(&mut self, bundle: &FccBundle) -> Option<Result<FccResponse, FccError>> {
        Some(self.serial_console.as_mut()?.fcc_exchange(bundle))
    }

    fn note_step(&mut self, step_name: &str) {
        if self.faults.probe_lost_at_step.as_deref() == Some(step_name) {
            self.is_probe_lost = true;
        }
        if self.faults.hang_at_step.as_deref() == Some(step_name) {
            self.is_hung = true;
        }
        if self.faults.panic_at_step.as_deref() == Some(step_name) {
            panic!("simulated backend defect at step {step_name} (fault panic={step_name})");
        }
    }
}

/// Decides which faults the `n`-th unit of a fixture gets (0-based).
pub type FaultSchedule = Box<dyn Fn(u64) -> FaultPlan + Send>;

/// A simulated fixture: presents a fresh virtual unit whenever the previous one is done.
pub struct SimFixture {
    name: String,
    chip_name: String,
    memory: MemoryMap,
    timing: SimTiming,
    uid_seed: Option<u64>,
    units_presented: u64,
    fault_schedule: Option<FaultSchedule>,
    hardware: DeviceHardware,
    /// `sim,console=PORT[,baud=N]`: the port every unit's FCC bundles go over.
    console_port: Option<SimConsolePort>,
}

/// A real serial port a simulated slot opens for each unit (`sim,console=PORT[,baud=N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConsolePort {
    /// `/dev/ttyUSB0`, `/dev/pts/3`, `COM4`.
    pub port_name: String,
    /// 8N1 at this rate.
    pub baud_rate: u32,
    /// How long the device's FCC may take to answer.
    pub fcc_timeouts: FccTimeouts,
}

impl SimFixture {
    /// A fixture for units shaped by `memory`. With `uid_seed`, unique IDs are derived from the
    /// seed, the fixture name and the unit number (repeatable); without it they are random.
    pub fn new(
        name: &str,
        chip_name: &str,
        memory: &MemoryMap,
        timing: SimTiming,
        uid_seed: Option<u64>,
    ) -> SimFixture {
        SimFixture {
            name: name.to_string(),
            chip_name: chip_name.to_string(),
            memory: memory.clone(),
            timing,
            uid_seed,
            units_presented: 0,
            fault_schedule: None,
            hardware: DeviceHardware::default(),
            console_port: None,
        }
    }

    /// Opens `port` for every unit as its console (the FCC bundles of `[fcc]` profiles).
    pub fn with_console_port(mut self, port: SimConsolePort) -> SimFixture {
        self.console_port = Some(port);
        self
    }

    /// Gives every unit the profile's hardware (bootloader kind, root of trust, TRNG).
    pub fn with_hardware(mut self, hardware: DeviceHardware) -> SimFixture {
        self.hardware = hardware;
        self
    }

    /// Injects faults into chosen units.
    pub fn with_fault_schedule(mut self, schedule: FaultSchedule) -> SimFixture {
        self.fault_schedule = Some(schedule);
        self
    }

    fn fresh_unique_id(&self) -> Vec<u8> {
        match self.uid_seed {
            Some(seed) => {
                let mut hasher = Sha256::new();
                hasher.update(seed.to_le_bytes());
                hasher.update(self.name.as_bytes());
                hasher.update(self.units_presented.to_le_bytes());
                hasher.finalize()[..SIM_UNIQUE_ID_SIZE_BYTES].to_vec()
            }
            None => {
                let mut bytes = vec![0u8; SIM_UNIQUE_ID_SIZE_BYTES];
                // The OS random source failing is not recoverable in any useful way here; fall
                // back to a time-based ID so the fixture still presents distinct units.
                if getrandom::fill(&mut bytes).is_err() {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|duration| duration.as_nanos())
                        .unwrap_or_default();
                    bytes.copy_from_slice(&nanos.to_le_bytes()[..SIM_UNIQUE_ID_SIZE_BYTES]);
                }
                bytes
            }
        }
    }
}

impl Fixture for SimFixture {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_unit(&mut self, keep_waiting: &dyn Fn() -> bool) -> Result<Option<Box<dyn Target>>, TargetError> {
        if !keep_waiting() {
            return Ok(None);
        }
        let device = SimDevice::new(&self.memory, self.fresh_unique_id()).with_hardware(self.hardware);
        let faults =
            self.fault_schedule.as_ref().map(|schedule| schedule(self.units_presented)).unwrap_or_default();
        self.units_presented += 1;
        let target = SimTarget::new(device, &self.chip_name, &self.name, self.timing, faults);
        Ok(Some(Box::new(match &self.console_port {
            Some(port) => target.with_serial_console(
                SerialConsole::open(&port.port_name, port.baud_rate)
                    .map_err(|error| TargetError::Other(format!("device console: {error}")))?
                    .with_fcc_timeouts(port.fcc_timeouts),
            ),
            None => target,
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::profile::Profile;

    /// A call made of many modelled delays (here 256 page programs) lasts the sum of them: never
    /// less, and not that sum plus every sleep's wake-up lateness (each sleep overshoots by the
    /// kernel's timer slack, 50 µs, and more). The quickest of three tries is judged, so a
    /// loaded machine's scheduling delay on one try does not decide.
    #[test]
    fn a_device_call_lasts_its_modelled_time_not_the_sum_of_its_sleeps() {
        let profile =
            Profile::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo.toml"))
                .expect("the demo profile loads");
        let memory = &profile.firmware.as_ref().expect("the demo profile flashes firmware").memory;
        let timing = SimTiming {
            probe_bytes_per_second: 0,
            sector_erase_ms: 0.0,
            page_program_ms: 0.2,
            page_size_bytes: 256,
            boot_ms: 0.0,
        };
        let data = vec![0x5A; 256 * 256];
        let modelled = Duration::from_secs_f64(0.0002) * 256;
        let mut quickest = Duration::MAX;
        for attempt in 0..3u8 {
            let device = SimDevice::new(memory, vec![attempt; SIM_UNIQUE_ID_SIZE_BYTES]);
            let mut target = SimTarget::new(device, "chip", "probe", timing, FaultPlan::default());
            let started = Instant::now();
            target.program_flash(memory.application.address, &data, &mut |_| {}).expect("program");
            let took = started.elapsed();
            assert_eq!(target.modeled_busy(), modelled);
            assert!(took >= modelled, "the call took {took:?}, less than its modelled {modelled:?}");
            quickest = quickest.min(took);
        }
        assert!(
            quickest < modelled * 6 / 5,
            "the quickest call took {quickest:?} for {modelled:?} of modelled delays"
        );
    }
}
