//! A NOR-flash model with honest rules, for the simulated device.
//!
//! Erasing works on whole sectors and sets every byte to the erased value; programming can only
//! move bits away from the erased value (clear them on 0xFF parts, set them on 0x00 parts), so
//! programming over data that is not erased is refused, as a real flash controller with
//! overwrite protection does; addresses and lengths must respect the write alignment.

use crate::device::TargetError;
use crate::profile::{FlashRegion, MemoryMap};

/// The chip's flash: one byte array over the chip's flash span, with sector geometry taken
/// from the profile's regions (erase and program outside them are refused).
#[derive(Clone)]
pub struct NorFlash {
    base_address: u64,
    bytes: Vec<u8>,
    regions: Vec<FlashRegion>,
}

impl NorFlash {
    /// A fully erased flash shaped by `memory`.
    pub fn erased(memory: &MemoryMap) -> NorFlash {
        let regions: Vec<FlashRegion> =
            memory.flash_regions().into_iter().map(|(_, region)| region).collect();
        let fill = memory.application.erased_value;
        let mut bytes = vec![fill; memory.chip_flash.size_bytes as usize];
        for region in &regions {
            let start = (region.address - memory.chip_flash.address) as usize;
            bytes[start..start + region.size_bytes as usize].fill(region.erased_value);
        }
        NorFlash { base_address: memory.chip_flash.address, bytes, regions }
    }

    /// Whether `[address, address + length)` lies inside the chip's flash.
    pub fn contains(&self, address: u64, length: u64) -> bool {
        address >= self.base_address && address + length <= self.base_address + self.bytes.len() as u64
    }

    /// Reads bytes.
    pub fn read(&self, address: u64, buffer: &mut [u8]) {
        let start = (address - self.base_address) as usize;
        buffer.copy_from_slice(&self.bytes[start..start + buffer.len()]);
    }

    /// A view of the bytes at `[address, address + length)`.
    pub fn slice(&self, address: u64, length: usize) -> &[u8] {
        let start = (address - self.base_address) as usize;
        &self.bytes[start..start + length]
    }

    /// The region (geometry) at `address`.
    pub fn region_at(&self, address: u64) -> Option<FlashRegion> {
        self.regions.iter().copied().find(|region| region.contains(address))
    }

    /// Checks an erase request and returns the sector addresses it covers.
    pub fn sectors_to_erase(
        &self,
        address: u64,
        size_bytes: u64,
    ) -> Result<Vec<(u64, FlashRegion)>, TargetError> {
        let refuse = |reason: String| TargetError::Refused { operation: "erase", address, reason };
        let region = self.region_at(address).ok_or_else(|| refuse("no flash region here".to_string()))?;
        if !(address - region.address).is_multiple_of(region.sector_size_bytes)
            || !size_bytes.is_multiple_of(region.sector_size_bytes)
        {
            return Err(refuse(format!("not aligned to the {}-byte sector size", region.sector_size_bytes)));
        }
        if address + size_bytes > region.end_address() {
            return Err(refuse("erase crosses the end of its flash region".to_string()));
        }
        Ok((0..size_bytes / region.sector_size_bytes)
            .map(|index| (address + index * region.sector_size_bytes, region))
            .collect())
    }

    /// Erases one sector (or, when `torn`, only its first half: power failed mid-erase).
    pub fn erase_sector(&mut self, sector_address: u64, region: &FlashRegion, torn: bool) {
        let start = (sector_address - self.base_address) as usize;
        let length = region.sector_size_bytes as usize;
        let erased_length = if torn { length / 2 } else { length };
        self.bytes[start..start + erased_length].fill(region.erased_value);
    }

    /// Checks a program request: inside one region, aligned, and over erased bytes only.
    pub fn check_program(&self, address: u64, data: &[u8]) -> Result<FlashRegion, TargetError> {
        let refuse = |reason: String| TargetError::Refused { operation: "program", address, reason };
        let region = self.region_at(address).ok_or_else(|| refuse("no flash region here".to_string()))?;
        let alignment = region.write_alignment_bytes;
        if !address.is_multiple_of(alignment) || !(data.len() as u64).is_multiple_of(alignment) {
            return Err(refuse(format!("not aligned to the {alignment}-byte write alignment")));
        }
        if address + data.len() as u64 > region.end_address() {
            return Err(refuse("data crosses the end of its flash region".to_string()));
        }
        let current = self.slice(address, data.len());
        if let Some(offset) = current.iter().position(|byte| *byte != region.erased_value) {
            return Err(refuse(format!(
                "flash at {:#010x} is not erased (reads {:#04x}); erase the sector first",
                address + offset as u64,
                current[offset]
            )));
        }
        Ok(region)
    }

    /// Programs already-checked bytes. NOR programming can only move bits away from the erased
    /// state, which is what the AND (0xFF parts) or OR (0x00 parts) models.
    pub fn program(&mut self, address: u64, data: &[u8], region: &FlashRegion) {
        let start = (address - self.base_address) as usize;
        for (cell, value) in self.bytes[start..start + data.len()].iter_mut().zip(data) {
            *cell = if region.erased_value == 0xFF { *cell & value } else { *cell | value };
        }
    }

    /// Flips one bit, modelling a weak cell.
    pub fn flip_bit(&mut self, address: u64, bit: u8) {
        let index = (address - self.base_address) as usize;
        self.bytes[index] ^= 1 << (bit % 8);
    }

    /// Erases everything (mass erase).
    pub fn erase_all(&mut self) {
        for region in self.regions.clone() {
            let start = (region.address - self.base_address) as usize;
            self.bytes[start..start + region.size_bytes as usize].fill(region.erased_value);
        }
    }
}
