//! Skip-unchanged flashing: decide, sector by sector, what a write really needs.
//!
//! Before writing a range, the station reads back every flash sector the range touches and
//! compares it with what the sector must hold afterwards (the new bytes, the erased value
//! elsewhere). A sector that already matches is left alone; one that is still erased is only
//! programmed; anything else is erased and programmed. Fresh chips (erased from the factory)
//! then skip the erase, and a rework of an already-flashed unit rewrites only what changed.
//!
//! **Invariant:** pure; the job does the I/O and verifies every programmed byte by read-back.

use std::ops::Range;

use crate::profile::FlashRegion;

/// What one sector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectorAction {
    /// It already holds exactly the expected bytes.
    Unchanged,
    /// It is erased; programming the new bytes is enough.
    Program,
    /// It holds other data: erase, then program (if there is anything to program).
    EraseAndProgram,
}

/// The plan for one sector of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorPlan {
    /// First byte of the sector.
    pub sector_address: u64,
    /// The sector's size.
    pub sector_size_bytes: u64,
    /// The part of the write's data that falls in this sector.
    pub data_range: Range<usize>,
    /// What to do.
    pub action: SectorAction,
}

/// The sectors of `region` that a write of `length` bytes at `address` touches, as
/// `(sector address, data range inside the write)`.
pub fn sectors_touched(region: &FlashRegion, address: u64, length: usize) -> Vec<(u64, Range<usize>)> {
    if length == 0 {
        return Vec::new();
    }
    let (first_sector, span) = region.sectors_covering(address, length as u64);
    (0..span / region.sector_size_bytes)
        .map(|index| {
            let sector_address = first_sector + index * region.sector_size_bytes;
            let start = sector_address.max(address) - address;
            let end = (sector_address + region.sector_size_bytes).min(address + length as u64) - address;
            (sector_address, start as usize..end as usize)
        })
        .collect()
}

/// What a sector must hold after the write: the data where the write covers it, the erased
/// value elsewhere.
pub fn expected_sector(region: &FlashRegion, sector_address: u64, address: u64, data: &[u8]) -> Vec<u8> {
    let mut expected = vec![region.erased_value; region.sector_size_bytes as usize];
    let sector_end = sector_address + region.sector_size_bytes;
    let start = sector_address.max(address);
    let end = sector_end.min(address + data.len() as u64);
    if start < end {
        let source = (start - address) as usize..(end - address) as usize;
        let target = (start - sector_address) as usize;
        expected[target..target + source.len()].copy_from_slice(&data[source]);
    }
    expected
}

/// Decides what a sector needs, given what it holds now.
pub fn decide(actual: &[u8], expected: &[u8], erased_value: u8) -> SectorAction {
    if actual == expected {
        SectorAction::Unchanged
    } else if actual.iter().all(|byte| *byte == erased_value) {
        SectorAction::Program
    } else {
        SectorAction::EraseAndProgram
    }
}

/// Contiguous runs of sectors to erase, as `(address, size)`: fewer, larger erase calls.
pub fn erase_spans(plans: &[SectorPlan]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for plan in plans.iter().filter(|plan| plan.action == SectorAction::EraseAndProgram) {
        match spans.last_mut() {
            Some((start, size)) if *start + *size == plan.sector_address => *size += plan.sector_size_bytes,
            _ => spans.push((plan.sector_address, plan.sector_size_bytes)),
        }
    }
    spans
}

/// Contiguous data ranges to program (inside the write's data), skipping unchanged sectors and
/// trailing erased bytes (programming the erased value changes nothing).
pub fn program_ranges(plans: &[SectorPlan], data: &[u8], region: &FlashRegion) -> Vec<Range<usize>> {
    let alignment = region.write_alignment_bytes.max(1) as usize;
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for plan in plans.iter().filter(|plan| plan.action != SectorAction::Unchanged) {
        let slice = &data[plan.data_range.clone()];
        let Some(last_programmed) = slice.iter().rposition(|byte| *byte != region.erased_value) else {
            continue;
        };
        let end = (plan.data_range.start + last_programmed + 1)
            .next_multiple_of(alignment)
            .min(plan.data_range.end);
        match ranges.last_mut() {
            Some(range) if range.end == plan.data_range.start => range.end = end,
            _ => ranges.push(plan.data_range.start..end),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: FlashRegion = FlashRegion {
        address: 0x1000,
        size_bytes: 0x4000,
        sector_size_bytes: 0x1000,
        write_alignment_bytes: 4,
        erased_value: 0xFF,
    };

    #[test]
    fn touched_sectors_and_ranges() {
        let touched = sectors_touched(&REGION, 0x1800, 0x1000);
        assert_eq!(touched, vec![(0x1000, 0..0x800), (0x2000, 0x800..0x1000)]);
        assert!(sectors_touched(&REGION, 0x1800, 0).is_empty());
    }

    #[test]
    fn expected_sector_fills_erased_outside_the_data() {
        let expected = expected_sector(&REGION, 0x1000, 0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&expected[0xffc..], &[1, 2, 3, 4]);
        assert!(expected[..0xffc].iter().all(|byte| *byte == 0xFF));
    }

    #[test]
    fn decisions() {
        let expected = [1u8, 2, 0xFF, 0xFF];
        assert_eq!(decide(&expected, &expected, 0xFF), SectorAction::Unchanged);
        assert_eq!(decide(&[0xFF; 4], &expected, 0xFF), SectorAction::Program);
        assert_eq!(decide(&[1, 3, 0xFF, 0xFF], &expected, 0xFF), SectorAction::EraseAndProgram);
        // On a 0x00-erased part, "erased" means zeros.
        assert_eq!(decide(&[0; 4], &expected, 0x00), SectorAction::Program);
    }

    #[test]
    fn spans_and_ranges_merge_neighbours_and_skip_unchanged() {
        let plan = |sector_address: u64, data_range: Range<usize>, action| SectorPlan {
            sector_address,
            sector_size_bytes: 0x1000,
            data_range,
            action,
        };
        let plans = [
            plan(0x1000, 0..0x1000, SectorAction::EraseAndProgram),
            plan(0x2000, 0x1000..0x2000, SectorAction::EraseAndProgram),
            plan(0x3000, 0x2000..0x3000, SectorAction::Unchanged),
            plan(0x4000, 0x3000..0x3800, SectorAction::Program),
        ];
        assert_eq!(erase_spans(&plans), vec![(0x1000, 0x2000)]);
        let mut data = vec![0u8; 0x3800];
        data[0x3100..].fill(0xFF);
        assert_eq!(program_ranges(&plans, &data, &REGION), vec![0..0x2000, 0x3000..0x3100]);
    }
}
