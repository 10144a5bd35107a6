//! [`GdbTarget`]: the station's [`Target`] over a [`GdbClient`].
//!
//! Flash comes in two kinds. When the server's memory map marks a range as flash (OpenOCD,
//! J-Link, pyOCD, Black Magic Probe), erase and program go through `vFlashErase`/`vFlashWrite`/
//! `vFlashDone` and the server drives the flash controller. When it does not (QEMU, whose
//! `mps2-an385` code memory is RAM), the backend itself gives the memory NOR rules, so that the
//! station sees the same behaviour as on a real part: erase writes the erased value over whole
//! sectors, programming is refused at misaligned addresses and over bytes that are not erased.
//! Geometry (sector size, write alignment, erased value) comes from the profile.
//!
//! Checking "erased" costs a read. While the core is halted nothing but the station writes
//! memory, so the backend remembers which ranges it erased itself since the core last ran and
//! reads only what it cannot vouch for. For the same reason an erase of RAM-backed memory is
//! deferred: the erased value is written only to the bytes that are still erased when anything
//! could observe them (a read, or the core running), so bytes erased and then programmed cross
//! the link once instead of twice. What the station and the device see is the same.

use super::client::{GdbClient, RunState};
use super::error::GdbError;
use crate::device::console::SerialConsole;
use crate::device::{ChipDescription, Target, TargetError};
use crate::identity::ChipUid;
use crate::profile::{FlashRegion, MemoryMap, Profile, RamSpan};

/// Bytes per erase or program request handed to the client (and per progress report).
const FLASH_CHUNK_BYTES: usize = 64 * 1024;
/// How long dropping a target waits for the server to acknowledge the detach.
const DETACH_TIMEOUT_MS: u64 = 300;

/// What the backend needs to know about the chip (from the profile).
#[derive(Debug, Clone)]
pub struct GdbTargetConfig {
    /// The chip name reported on connect.
    pub chip_name: String,
    /// Flash regions (geometry) and RAM.
    pub memory: MemoryMap,
    /// Where the factory-programmed unique ID is.
    pub unique_id_location: Option<RamSpan>,
}

impl GdbTargetConfig {
    /// The configuration a profile describes; an FCC-only profile describes no chip.
    pub fn from_profile(profile: &Profile) -> Result<GdbTargetConfig, crate::profile::FirmwareMissing> {
        Ok(GdbTargetConfig {
            chip_name: profile.chip_name.clone(),
            memory: profile.require_firmware("a GDB or QEMU slot")?.memory.clone(),
            unique_id_location: profile.unique_id_location,
        })
    }
}

/// Disjoint, sorted address ranges `[start, end)`: what the backend erased itself since the
/// core last ran, and what it has yet to write the erased value to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether no range is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut merged_start, mut merged_end) = (start, end);
        self.ranges.retain(|&(range_start, range_end)| {
            let touches = range_start <= merged_end && merged_start <= range_end;
            if touches {
                merged_start = merged_start.min(range_start);
                merged_end = merged_end.max(range_end);
            }
            !touches
        });
        let position = self.ranges.partition_point(|&(range_start, _)| range_start < merged_start);
        self.ranges.insert(position, (merged_start, merged_end));
    }

    /// Removes `[start, end)` (it was programmed).
    pub fn remove(&mut self, start: u64, end: u64) {
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for &(range_start, range_end) in &self.ranges {
            if range_end <= start || end <= range_start {
                kept.push((range_start, range_end));
                continue;
            }
            if range_start < start {
                kept.push((range_start, start));
            }
            if end < range_end {
                kept.push((end, range_end));
            }
        }
        self.ranges = kept;
    }

    /// The parts of `[start, end)` not known to be erased.
    pub fn uncovered(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut cursor = start;
        for &(range_start, range_end) in &self.ranges {
            if range_end <= cursor {
                continue;
            }
            if range_start >= end {
                break;
            }
            if range_start > cursor {
                gaps.push((cursor, range_start));
            }
            cursor = cursor.max(range_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        gaps
    }
}

/// A device behind a GDB server.
pub struct GdbTarget {
    client: GdbClient,
    config: GdbTargetConfig,
    probe_name: String,
    console: Option<SerialConsole>,
    known_erased: RangeSet,
    /// RAM-backed ranges erased but not yet filled with the erased value.
    pending_erase: RangeSet,
    detach_on_drop: bool,
    /// Resources that must outlive the connection (the QEMU process); dropped last.
    keep_alive: Vec<Box<dyn Send>>,
}

impl std::fmt::Debug for GdbTarget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GdbTarget")
            .field("probe_name", &self.probe_name)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl GdbTarget {
    /// A target over `client`, named `probe_name` in records.
    pub fn new(client: GdbClient, config: GdbTargetConfig, probe_name: &str) -> GdbTarget {
        GdbTarget {
            client,
            config,
            probe_name: probe_name.to_string(),
            console: None,
            known_erased: RangeSet::default(),
            pending_erase: RangeSet::default(),
            detach_on_drop: true,
            keep_alive: Vec::new(),
        }
    }

    /// Attaches the device's console.
    pub fn with_console(mut self, console: SerialConsole) -> GdbTarget {
        self.console = Some(console);
        self
    }

    /// Keeps `resource` alive as long as the target (dropped after the connection closes).
    pub fn keep_alive(mut self, resource: Box<dyn Send>) -> GdbTarget {
        self.keep_alive.push(resource);
        self
    }

    /// Closes the connection on drop without detaching, leaving the core halted (QEMU keeps a
    /// halted VM halted when the client goes away; a detach would let it run whatever memory
    /// holds).
    pub fn without_detach_on_drop(mut self) -> GdbTarget {
        self.detach_on_drop = false;
        self
    }

    /// The client, for operations the [`Target`] trait does not cover (registers,
    /// breakpoints, monitor commands). Deferred erases are written first, so the client sees
    /// memory as the station left it.
    pub fn client(&mut self) -> Result<&mut GdbClient, TargetError> {
        self.flush_pending_erase()?;
        Ok(&mut self.client)
    }

    /// Writes the erased value to every deferred-erase range.
    fn flush_pending_erase(&mut self) -> Result<(), TargetError> {
        if self.pending_erase.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_erase);
        for (_, region) in self.config.memory.flash_regions() {
            for &(start, end) in pending.ranges() {
                let (start, end) = (start.max(region.address), end.min(region.end_address()));
                if start >= end {
                    continue;
                }
                let erased = vec![region.erased_value; (FLASH_CHUNK_BYTES as u64).min(end - start) as usize];
                let mut address = start;
                while address < end {
                    let length = (erased.len() as u64).min(end - address);
                    self.client.write_memory(address, &erased[..length as usize])?;
                    address += length;
                }
            }
        }
        Ok(())
    }

    /// The console, if one is attached.
    pub fn console(&self) -> Option<&SerialConsole> {
        self.console.as_ref()
    }

    /// Runs `operation` with the core halted and leaves it as it was: a running core is
    /// interrupted and continued again afterwards (debug reads of a running device).
    fn peek<T>(
        &mut self,
        operation: impl FnOnce(&mut GdbClient) -> Result<T, GdbError>,
    ) -> Result<T, TargetError> {
        let was_running = self.halt_core()?;
        self.flush_pending_erase()?;
        let result = operation(&mut self.client);
        if was_running {
            self.resume()?;
        }
        result.map_err(TargetError::from)
    }

    /// Halts the core if it runs; returns whether it was running.
    fn halt_core(&mut self) -> Result<bool, TargetError> {
        match self.client.run_state() {
            RunState::Halted(_) => Ok(false),
            RunState::Running => {
                self.client.interrupt()?;
                Ok(true)
            }
            RunState::Gone(stop) => {
                Err(TargetError::ProbeLost { reason: format!("the target is gone ({})", stop.raw) })
            }
        }
    }

    fn resume(&mut self) -> Result<(), TargetError> {
        self.flush_pending_erase()?;
        // Once the core runs, its code may write flash: what we erased is no longer known.
        self.known_erased.clear();
        self.client.continue_execution().map_err(TargetError::from)
    }

    fn flash_region(&self, operation: &'static str, address: u64) -> Result<FlashRegion, TargetError> {
        self.config.memory.flash_region_at(address).ok_or_else(|| TargetError::Refused {
            operation,
            address,
            reason: "no flash region of the profile here".to_string(),
        })
    }

    fn check_erase(&self, address: u64, size_bytes: u64) -> Result<FlashRegion, TargetError> {
        let region = self.flash_region("erase", address)?;
        let refuse = |reason: String| TargetError::Refused { operation: "erase", address, reason };
        if !(address - region.address).is_multiple_of(region.sector_size_bytes)
            || !size_bytes.is_multiple_of(region.sector_size_bytes)
        {
            return Err(refuse(format!("not aligned to the {}-byte sector size", region.sector_size_bytes)));
        }
        if address + size_bytes > region.end_address() {
            return Err(refuse("erase crosses the end of its flash region".to_string()));
        }
        Ok(region)
    }

    fn check_program(&self, address: u64, length: u64) -> Result<FlashRegion, TargetError> {
        let region = self.flash_region("program", address)?;
        let refuse = |reason: String| TargetError::Refused { operation: "program", address, reason };
        let alignment = region.write_alignment_bytes;
        if !address.is_multiple_of(alignment) || !length.is_multiple_of(alignment) {
            return Err(refuse(format!("not aligned to the {alignment}-byte write alignment")));
        }
        if address + length > region.end_address() {
            return Err(refuse("data crosses the end of its flash region".to_string()));
        }
        Ok(region)
    }

    /// Refuses programming over bytes that are not erased, reading only what the backend did
    /// not erase itself.
    fn require_erased(&mut self, region: &FlashRegion, address: u64, length: u64) -> Result<(), TargetError> {
        for (gap_start, gap_end) in self.known_erased.uncovered(address, address + length) {
            let mut current = vec![0u8; (gap_end - gap_start) as usize];
            self.client.read_memory(gap_start, &mut current)?;
            if let Some(offset) = current.iter().position(|byte| *byte != region.erased_value) {
                return Err(TargetError::Refused {
                    operation: "program",
                    address,
                    reason: format!(
                        "flash at {:#010x} is not erased (reads {:#04x}); erase the sector first",
                        gap_start + offset as u64,
                        current[offset]
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Drop for GdbTarget {
    fn drop(&mut self) {
        // The erase the station asked for happened, as far as anyone can tell later.
        if let Err(error) = self.flush_pending_erase() {
            tracing::debug!(probe = %self.probe_name, %error, "writing deferred erases on drop failed");
        }
        // Detaching lets a real board run on; a server that is gone costs a short timeout.
        if self.detach_on_drop && !matches!(self.client.run_state(), RunState::Gone(_)) {
            self.client.set_reply_timeout_ms(DETACH_TIMEOUT_MS);
            if let Err(error) = self.client.detach() {
                tracing::debug!(probe = %self.probe_name, %error, "detach on drop failed");
            }
        }
    }
}

impl Target for GdbTarget {
    fn backend_name(&self) -> &'static str {
        "gdb"
    }

    fn probe_identifier(&self) -> String {
        self.probe_name.clone()
    }

    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        self.halt_core()?;
        Ok(ChipDescription { chip_name: self.config.chip_name.clone() })
    }

    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        let location = self.config.unique_id_location.ok_or_else(|| {
            TargetError::Other(
                "the profile names no chip.unique_id: the gdb backend reads the unique ID from memory there"
                    .to_string(),
            )
        })?;
        let mut bytes = vec![0u8; location.size_bytes as usize];
        self.peek(|client| client.read_memory(location.address, &mut bytes))?;
        if let Some(value) = [0x00u8, 0xFF].into_iter().find(|value| bytes.iter().all(|byte| byte == value)) {
            return Err(TargetError::Other(format!(
                "the unique ID at {:#010x} reads as all {value:#04x}: it was never programmed",
                location.address
            )));
        }
        ChipUid::new(bytes).map_err(|error| TargetError::Other(error.to_string()))
    }

    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.peek(|client| client.read_memory(address, buffer))
    }

    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        let ram = self.config.memory.chip_ram;
        if address < ram.address || address + data.len() as u64 > ram.address + ram.size_bytes {
            return Err(TargetError::Refused { operation: "write", address, reason: "not RAM".to_string() });
        }
        self.peek(|client| client.write_memory(address, data))
    }

    fn erase_flash(
        &mut self,
        address: u64,
        size_bytes: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let region = self.check_erase(address, size_bytes)?;
        // Flash operations leave the core halted, as a probe's flash loader does.
        self.halt_core()?;
        if let Some(server_flash) = self.client.flash_region(address, size_bytes) {
            let block = server_flash.block_size_bytes.unwrap_or(region.sector_size_bytes).max(1);
            if !(address - server_flash.start).is_multiple_of(block) || !size_bytes.is_multiple_of(block) {
                return Err(TargetError::Refused {
                    operation: "erase",
                    address,
                    reason: format!(
                        "the server erases {block}-byte blocks; the profile's {}-byte sectors do not line up",
                        region.sector_size_bytes
                    ),
                });
            }
            self.client.flash_erase(address, size_bytes)?;
            self.client.flash_done()?;
            progress(size_bytes);
        } else {
            // RAM-backed: the erased value is written when it can first be observed.
            self.pending_erase.insert(address, address + size_bytes);
            progress(size_bytes);
        }
        self.known_erased.insert(address, address + size_bytes);
        Ok(())
    }

    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        let region = self.check_program(address, data.len() as u64)?;
        self.halt_core()?;
        self.require_erased(&region, address, data.len() as u64)?;
        let through_server_flash = self.client.flash_region(address, data.len() as u64).is_some();
        let mut done = 0;
        for chunk in data.chunks(FLASH_CHUNK_BYTES) {
            let chunk_address = address + done as u64;
            if through_server_flash {
                self.client.flash_write(chunk_address, chunk)?;
            } else {
                self.client.write_memory(chunk_address, chunk)?;
            }
            done += chunk.len();
            progress(done as u64);
        }
        if through_server_flash {
            self.client.flash_done()?;
        }
        self.known_erased.remove(address, address + data.len() as u64);
        self.pending_erase.remove(address, address + data.len() as u64);
        Ok(())
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.halt_core()?;
        // Before the reset: the core fetches its vector table from memory as it comes out of it.
        self.flush_pending_erase()?;
        self.client.reset_halt()?;
        self.resume()
    }

    fn halt(&mut self) -> Result<(), TargetError> {
        self.halt_core().map(|_| ())
    }

    fn lock(&mut self) -> Result<(), TargetError> {
        Err(TargetError::Other(
            "lock is not supported by the gdb backend: the GDB remote protocol has no debug-lock request, and QEMU's \
             mps2-an385 has no debug lock to set (a profile for such a target skips it: [steps] skip = [\"lock\"])"
                .to_string(),
        ))
    }

    /// The protocol cannot ask for a lock state, so this reports what can be observed: whether
    /// a debug read of the start of flash is refused.
    fn is_locked(&mut self) -> Result<bool, TargetError> {
        let mut probe_bytes = [0u8; 4];
        let flash_start = self.config.memory.chip_flash.address;
        match self.peek(|client| client.read_memory(flash_start, &mut probe_bytes)) {
            Ok(()) => Ok(false),
            Err(TargetError::Refused { .. }) => Ok(true),
            Err(other) => Err(other),
        }
    }

    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        Err(TargetError::Other(
            "mass erase is not supported by the gdb backend: the GDB remote protocol has no such request (use the \
             probe vendor's tool, or the probe-rs backend)"
                .to_string(),
        ))
    }

    fn fcc_exchange(
        &mut self,
        bundle: &crate::fcc::FccBundle,
    ) -> Option<Result<crate::fcc::FccResponse, crate::fcc::FccError>> {
        // A device that runs the Izuma client takes FCC bundles on its console UART.
        Some(self.console.as_mut()?.fcc_exchange(bundle))
    }

    fn take_console_lines(&mut self) -> Option<Vec<String>> {
        let console = self.console.as_ref()?;
        let lines = console.take_lines();
        for line in &lines {
            tracing::info!(target: "imprint::console", probe = %self.probe_name, "{line}");
        }
        Some(lines)
    }

    fn note_step(&mut self, step_name: &str) {
        tracing::debug!(probe = %self.probe_name, step = step_name, "gdb backend step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        operations: &[(&str, u64, u64)],
        query: (u64, u64),
        expected_ranges: &[(u64, u64)],
        expected_gaps: &[(u64, u64)],
    ) {
        let mut known = RangeSet::default();
        for (operation, start, end) in operations {
            match *operation {
                "insert" => known.insert(*start, *end),
                "remove" => known.remove(*start, *end),
                _ => unreachable!(),
            }
        }
        assert_eq!(known.ranges, expected_ranges, "{operations:?}");
        assert_eq!(known.uncovered(query.0, query.1), expected_gaps, "{operations:?} query {query:?}");
    }

    #[test]
    fn known_erased_ranges() {
        check(&[], (0, 10), &[], &[(0, 10)]);
        check(&[("insert", 0, 10)], (2, 8), &[(0, 10)], &[]);
        check(&[("insert", 0, 10), ("insert", 10, 20)], (0, 20), &[(0, 20)], &[]);
        check(&[("insert", 20, 30), ("insert", 0, 10)], (5, 25), &[(0, 10), (20, 30)], &[(10, 20)]);
        check(&[("insert", 0, 10), ("insert", 20, 30), ("insert", 5, 25)], (0, 40), &[(0, 30)], &[(30, 40)]);
        check(&[("insert", 0, 100), ("remove", 10, 20)], (0, 100), &[(0, 10), (20, 100)], &[(10, 20)]);
        check(&[("insert", 0, 100), ("remove", 0, 100)], (0, 4), &[], &[(0, 4)]);
        check(&[("insert", 10, 20), ("remove", 0, 15)], (0, 30), &[(15, 20)], &[(0, 15), (20, 30)]);
        check(&[("insert", 10, 20), ("insert", 30, 40)], (12, 35), &[(10, 20), (30, 40)], &[(20, 30)]);
        check(&[("insert", 5, 5)], (0, 1), &[], &[(0, 1)]);
    }
}
