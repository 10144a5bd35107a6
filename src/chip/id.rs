//! The identification-register check: a register whose masked value names the chip, so that a
//! backend that attaches by whatever name it is given (probe-rs does) can refuse the wrong part.

use crate::device::TargetError;

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
