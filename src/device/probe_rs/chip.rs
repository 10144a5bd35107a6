//! Facts about the chip that the probe-rs target checks or reads, as pure functions: that the
//! attached chip is the profile's (an identification register), its unique ID (where the profile
//! says, in 32-bit words where possible), and the name it is reported under.

use crate::device::TargetError;
use crate::identity::ChipUid;
use crate::profile::RamSpan;

/// An identification register the attached chip must match, e.g. an STM32's DBGMCU_IDCODE
/// (`0xE0042000`, DEV_ID in bits 11:0) or an nRF52's FICR INFO.PART (`0x10000100`). probe-rs
/// attaches with whatever chip name it is given, so without this check an STM32F446 on a line
/// set up for an STM32F429 would be flashed with the wrong layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipIdCheck {
    /// The register's address (4-byte aligned).
    pub address: u64,
    /// The bits that identify the chip.
    pub mask: u32,
    /// What those bits must read.
    pub value: u32,
}

impl ChipIdCheck {
    /// Compares a register value; a mismatch is [`TargetError::WrongChip`] naming both values.
    pub fn check(&self, chip_name: &str, register_value: u32) -> Result<(), TargetError> {
        let found = register_value & self.mask;
        if found == self.value {
            return Ok(());
        }
        Err(TargetError::WrongChip {
            expected: format!(
                "{chip_name} (id register {:#010x} & {:#x} = {:#x})",
                self.address, self.mask, self.value
            ),
            found: format!("id register value {found:#x}"),
        })
    }
}

/// How to read a unique ID: whole 32-bit words when the location allows (ID registers are
/// often only word-readable), bytes otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueIdRead {
    /// `count` little-endian words from `address`.
    Words { address: u64, count: usize },
    /// `count` bytes from `address`.
    Bytes { address: u64, count: usize },
}

/// Plans the read of `location`.
pub fn plan_unique_id_read(location: &RamSpan) -> UniqueIdRead {
    let count = location.size_bytes as usize;
    if location.address.is_multiple_of(4) && count.is_multiple_of(4) {
        UniqueIdRead::Words { address: location.address, count: count / 4 }
    } else {
        UniqueIdRead::Bytes { address: location.address, count }
    }
}

/// Lays out words read by [`UniqueIdRead::Words`] as the bytes in memory order (little-endian,
/// as Cortex-M stores them).
pub fn unique_id_bytes_from_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

/// Turns the bytes read at the unique-ID location into a [`ChipUid`], refusing values that are
/// not an ID: all bytes equal (erased flash, unmapped memory reading as zero, a locked chip's
/// bus returning a pattern) means the location is wrong or the read did not reach the chip.
pub fn unique_id_from_bytes(bytes: Vec<u8>, location: &RamSpan) -> Result<ChipUid, TargetError> {
    if let Some(first) = bytes.first()
        && bytes.iter().all(|byte| byte == first)
    {
        return Err(TargetError::Refused {
            operation: "read unique id",
            address: location.address,
            reason: format!(
                "all {} bytes read {first:#04x}: not a unique ID (check chip.unique_id against the chip's reference manual)",
                bytes.len()
            ),
        });
    }
    ChipUid::new(bytes).map_err(|error| TargetError::Refused {
        operation: "read unique id",
        address: location.address,
        reason: error.to_string(),
    })
}

/// The chip name to report as attached: probe-rs looks chip names up without regard to case
/// and reports its own spelling, so a profile's `nrf52840_xxaa` attaches as `nRF52840_xxAA`;
/// report the profile's spelling then, so the station's name check compares like with like.
pub fn reported_chip_name(profile_chip_name: &str, attached_target_name: &str) -> String {
    if profile_chip_name.eq_ignore_ascii_case(attached_target_name) {
        profile_chip_name.to_string()
    } else {
        attached_target_name.to_string()
    }
}
