//! The flash steps: `erase` (plans both images sector by sector and erases what holds other
//! data), `program-bootloader` / `program-application` (write only what differs) and
//! `verify-flash` (an independent read-back of every range programmed). The same
//! skip-unchanged writer and read-back verification serve the config store and the self-test
//! candidates.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::super::sectors::{self, SectorAction, SectorPlan};
use super::{StepFailure, StepName, StepResult, UnitJob};
use crate::image::FirmwareImage;
use crate::profile::FlashRegion;

/// Read-back and transfer chunk size.
const TRANSFER_CHUNK_BYTES: usize = 16 * 1024;

/// A write the station planned sector by sector.
#[derive(Clone)]
pub(super) struct PlannedWrite {
    /// The step that programs it.
    step: StepName,
    region: FlashRegion,
    address: u64,
    data: Vec<u8>,
    plans: Vec<SectorPlan>,
}

/// A range programmed and not yet verified.
pub(super) struct WrittenRange {
    address: u64,
    data: Vec<u8>,
    /// The bytes include a private key: mismatch reports must not quote them.
    holds_secret: bool,
}

impl UnitJob<'_> {
    /// Plans both images (reading back every sector they touch) and erases the sectors that
    /// hold other data; the program steps then write only what differs (skip-unchanged).
    pub(super) fn erase(&mut self) -> StepResult {
        let firmware = self.firmware()?;
        let mut planned_images = Vec::new();
        for (step, image, region) in [
            (StepName::ProgramBootloader, &firmware.bootloader_image, firmware.memory.bootloader),
            (StepName::ProgramApplication, &firmware.application_image, firmware.memory.application),
        ] {
            for (address, data) in sector_chunks(image, &region) {
                let plans = self.plan_write(StepName::Erase, region, address, &data)?;
                planned_images.push(PlannedWrite { step, region, address, data, plans });
            }
        }
        if let Some(header_write) = self.plan_application_header()? {
            planned_images.push(header_write);
        }
        let plans: Vec<&SectorPlan> = planned_images.iter().flat_map(|write| write.plans.iter()).collect();
        let unchanged = plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count();
        let erased_bytes =
            self.erase_planned(StepName::Erase, planned_images.iter().flat_map(|write| write.plans.iter()))?;
        let mut detail = json!({
            "sectors_compared": plans.len(),
            "sectors_unchanged": unchanged,
            "erased_bytes": erased_bytes,
        });
        if let Some(storage) = self.wipe_fcc_storage()? {
            detail["fcc_storage"] = storage;
        }
        self.facts.planned_images = Some(planned_images);
        Ok(detail)
    }

    /// With mbed-bootloader: the application's active header (112 bytes describing the
    /// application slot's firmware), planned as part of `program-application` at the address the
    /// profile gives; read back by `verify-flash` like every write.
    fn plan_application_header(&mut self) -> Result<Option<PlannedWrite>, StepFailure> {
        let profile = self.profile();
        let Some(address) = profile.device_hardware.bootloader.application_header_address() else {
            return Ok(None);
        };
        let firmware = self.firmware()?;
        let region = firmware.memory.bootloader;
        let header = crate::profile::application_header(
            &firmware.application_image,
            &firmware.memory.application,
            firmware.application_version,
        );
        let data = crate::contract::pad_to_alignment(
            &header,
            region.write_alignment_bytes as usize,
            region.erased_value,
        );
        let plans = self.plan_write(StepName::Erase, region, address, &data)?;
        Ok(Some(PlannedWrite { step: StepName::ProgramApplication, region, address, data, plans }))
    }

    /// Programs the sectors of an image that the erase step found different.
    pub(super) fn program_image(&mut self, step: StepName, image: FirmwareImage) -> StepResult {
        let writes: Vec<PlannedWrite> =
            self.facts.planned_images()?.iter().filter(|write| write.step == step).cloned().collect();
        let mut programmed_bytes = 0;
        let mut skipped_sectors = 0;
        for write in &writes {
            programmed_bytes += self.program_planned(step, write)?;
            skipped_sectors +=
                write.plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count();
        }
        let mut detail = json!({
            "image": image.path.display().to_string(),
            "image_sha256": hex::encode(image.file_sha256),
            "bytes_written": programmed_bytes,
            "sectors_unchanged": skipped_sectors,
        });
        let profile = self.profile();
        if step == StepName::ProgramApplication
            && let Some(address) = profile.device_hardware.bootloader.application_header_address()
        {
            let settings = self.firmware()?;
            let firmware = crate::profile::application_firmware_bytes(&image, &settings.memory.application);
            let version = crate::profile::header_firmware_version(settings.application_version);
            let details = crate::profile::firmware_details(&firmware, version);
            detail["mbed_application_header"] = json!({
                "address": address,
                "firmware_version": details.version,
                "firmware_size": details.size,
                "firmware_sha256": hex::encode(details.sha256),
            });
        }
        Ok(detail)
    }

    /// Reads back every sector a write of `data` at `address` touches and decides what each needs.
    fn plan_write(
        &mut self,
        step: StepName,
        region: FlashRegion,
        address: u64,
        data: &[u8],
    ) -> Result<Vec<SectorPlan>, StepFailure> {
        let touched = sectors::sectors_touched(&region, address, data.len());
        let sector_size = region.sector_size_bytes;
        let total = touched.len() as u64 * sector_size;
        let mut plans = Vec::with_capacity(touched.len());
        let erased_sector = vec![region.erased_value; sector_size as usize];
        let erased_crc = crate::device::crc32_of(&erased_sector);
        for (index, (sector_address, data_range)) in touched.into_iter().enumerate() {
            let expected = sectors::expected_sector(&region, sector_address, address, data);
            // Compare on the target when it can (no transfer), else read the sector back.
            let action = match self.retry(|target| target.checksum_crc32(sector_address, sector_size))? {
                Some(crc) if crc == crate::device::crc32_of(&expected) => SectorAction::Unchanged,
                Some(crc) if crc == erased_crc => SectorAction::Program,
                Some(_) => SectorAction::EraseAndProgram,
                None => {
                    let actual = self.read_back(
                        step,
                        sector_address,
                        sector_size as usize,
                        index as u64 * sector_size,
                        total,
                    )?;
                    sectors::decide(&actual, &expected, region.erased_value)
                }
            };
            self.progress(step, (index as u64 + 1) * sector_size, total);
            plans.push(SectorPlan { sector_address, sector_size_bytes: sector_size, data_range, action });
        }
        Ok(plans)
    }

    /// Erases the planned sectors that hold other data; returns the bytes erased.
    fn erase_planned<'p>(
        &mut self,
        step: StepName,
        plans: impl Iterator<Item = &'p SectorPlan>,
    ) -> Result<u64, StepFailure> {
        let plans: Vec<SectorPlan> = plans.cloned().collect();
        let spans = sectors::erase_spans(&plans);
        let total: u64 = spans.iter().map(|(_, size)| size).sum();
        let mut done_before = 0;
        for (address, size) in spans {
            let reporter = self.reporter(step);
            self.retry(|target| {
                target.erase_flash(address, size, &mut |bytes| reporter.report(done_before + bytes, total))
            })?;
            done_before += size;
        }
        Ok(total)
    }

    /// Programs what a planned write needs; returns the bytes programmed.
    fn program_planned(&mut self, step: StepName, write: &PlannedWrite) -> Result<u64, StepFailure> {
        let ranges = sectors::program_ranges(&write.plans, &write.data, &write.region);
        let total: u64 = ranges.iter().map(|range| range.len() as u64).sum();
        let mut done_before = 0;
        for range in ranges {
            let address = write.address + range.start as u64;
            self.program_verified_later(step, address, &write.data[range.clone()], done_before, total)?;
            done_before += range.len() as u64;
        }
        Ok(total)
    }

    /// Writes `data` at `address` skipping unchanged sectors: plan, erase, program. The
    /// programmed ranges are verified by the caller's next `verify_written`.
    pub(super) fn write_skipping_unchanged(
        &mut self,
        step: StepName,
        region: FlashRegion,
        address: u64,
        data: Vec<u8>,
    ) -> Result<serde_json::Value, StepFailure> {
        let plans = self.plan_write(step, region, address, &data)?;
        let erased_bytes = self.erase_planned(step, plans.iter())?;
        let write = PlannedWrite { step, region, address, data, plans };
        let programmed_bytes = self.program_planned(step, &write)?;
        Ok(json!({
            "sectors_compared": write.plans.len(),
            "sectors_unchanged": write.plans.iter().filter(|plan| plan.action == SectorAction::Unchanged).count(),
            "erased_bytes": erased_bytes,
            "bytes_written": programmed_bytes,
        }))
    }

    fn program_verified_later(
        &mut self,
        step: StepName,
        address: u64,
        data: &[u8],
        done_before: u64,
        total: u64,
    ) -> Result<(), StepFailure> {
        let reporter = self.reporter(step);
        self.retry(|target| {
            target.program_flash(address, data, &mut |bytes| reporter.report(done_before + bytes, total))
        })?;
        self.written_ranges.push(WrittenRange {
            address,
            data: data.to_vec(),
            holds_secret: self.is_writing_secret,
        });
        Ok(())
    }

    /// Reads `length` bytes back in chunks, reporting progress.
    pub(super) fn read_back(
        &mut self,
        step: StepName,
        address: u64,
        length: usize,
        done_before: u64,
        total: u64,
    ) -> Result<Vec<u8>, StepFailure> {
        let mut bytes = vec![0u8; length];
        let mut offset = 0;
        while offset < length {
            let chunk_length = TRANSFER_CHUNK_BYTES.min(length - offset);
            let chunk_address = address + offset as u64;
            let chunk = &mut bytes[offset..offset + chunk_length];
            self.retry(|target| target.read_memory(chunk_address, chunk))?;
            offset += chunk_length;
            self.progress(step, done_before + offset as u64, total);
        }
        Ok(bytes)
    }

    /// Verifies every range programmed so far (and not yet verified) by an independent read-back.
    ///
    /// The hashes of what was written are computed on a helper thread while the probe reads the
    /// ranges back, so hashing is off the unit's critical path: once a range is read, it is
    /// compared byte for byte with what was written (a read-back that matches has the written
    /// bytes' hash), and hashed here only when it differs, for the failure's reason.
    pub(super) fn verify_written(&mut self, step: StepName) -> StepResult {
        let ranges = std::mem::take(&mut self.written_ranges);
        let total: u64 = ranges.iter().map(|range| range.data.len() as u64).sum();
        std::thread::scope(|scope| {
            let (hashes_sender, hashes) = std::sync::mpsc::channel::<[u8; 32]>();
            let to_hash = &ranges;
            scope.spawn(move || {
                for range in to_hash {
                    // The receiver is gone only when a read-back failed: nothing more to hash.
                    if hashes_sender.send(Sha256::digest(&range.data).into()).is_err() {
                        break;
                    }
                }
            });
            let mut done = 0;
            let mut verified = Vec::new();
            for WrittenRange { address, data: written, holds_secret } in &ranges {
                let read = self.read_back(step, *address, written.len(), done, total)?;
                let expected = hashes.recv().unwrap_or_else(|_| Sha256::digest(written).into());
                if read != *written {
                    let actual: [u8; 32] = Sha256::digest(&read).into();
                    return Err(StepFailure(format!(
                        "read-back of {} bytes at {address:#010x} does not match what was written (sha256 {} expected {}){}",
                        written.len(),
                        hex::encode(actual),
                        hex::encode(expected),
                        first_difference(&read, *address, written, *holds_secret)
                    )));
                }
                done += written.len() as u64;
                verified.push(
                    json!({ "address": address, "size": written.len(), "sha256": hex::encode(expected) }),
                );
            }
            Ok(json!({ "verified_bytes": total, "ranges": verified }))
        })
    }
}

/// The image's segments as writes aligned to the region's write alignment, merged so that no
/// two writes touch the same sector (a gap inside a sector is filled with the erased value).
fn sector_chunks(image: &FirmwareImage, region: &FlashRegion) -> Vec<(u64, Vec<u8>)> {
    let alignment = region.write_alignment_bytes.max(1);
    // One past the end of the sector holding the byte before `chunk_end`.
    let sector_end = |chunk_end: u64| {
        let offset = chunk_end - 1 - region.address;
        region.address + (offset / region.sector_size_bytes + 1) * region.sector_size_bytes
    };
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    for segment in &image.segments {
        let start = segment.address - segment.address % alignment;
        let end = (segment.address + segment.data.len() as u64).next_multiple_of(alignment);
        match chunks.last_mut() {
            Some((chunk_start, chunk_data)) if sector_end(*chunk_start + chunk_data.len() as u64) > start => {
                chunk_data.resize((end - *chunk_start) as usize, region.erased_value);
                let offset = (segment.address - *chunk_start) as usize;
                chunk_data[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
            }
            _ => {
                let mut data = vec![region.erased_value; (end - start) as usize];
                let offset = (segment.address - start) as usize;
                data[offset..offset + segment.data.len()].copy_from_slice(&segment.data);
                chunks.push((start, data));
            }
        }
    }
    chunks
}

fn first_difference(read: &[u8], address: u64, expected: &[u8], holds_secret: bool) -> String {
    read.iter()
        .zip(expected)
        .position(|(actual, wanted)| actual != wanted)
        .map(|offset| {
            if holds_secret {
                // The range holds a private key: name the place, never the bytes.
                return format!("; first difference at {:#010x}", address + offset as u64);
            }
            format!(
                "; first difference at {:#010x}: read {:#04x}, wrote {:#04x}",
                address + offset as u64,
                read[offset],
                expected[offset]
            )
        })
        .unwrap_or_default()
}
