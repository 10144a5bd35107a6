//! Firmware images: what the station writes to flash, loaded from ELF, Intel HEX or raw BIN.
//!
//! Every later step (flash, verify by read-back, the audit ledger) wants the same thing whatever
//! file the firmware team handed over: a list of address-sorted, non-overlapping segments of
//! bytes, plus digests that identify the file and its content. This module turns the three
//! common formats into that [`FirmwareImage`] and proves it fits a flash region. It is pure: it
//! reads one file (or a byte slice) and never touches a device.
//!
//! Format decisions, each because a factory flash must match what the toolchain meant:
//! - ELF: only `PT_LOAD` program headers with file bytes count, placed at their *physical*
//!   (load) address. Initialised data typically runs in RAM (virtual address) but is stored in
//!   flash (physical address), and flash is what we program. Zero-fill beyond the file size
//!   (`.bss`) is created at run time and is not flashed. 32- and 64-bit, either byte order.
//! - Intel HEX: all six record types; extended segment addresses (type 02) follow the Intel
//!   rule that offsets wrap inside the 64 KiB segment; extended linear addresses (type 04) give
//!   the upper 16 bits; start addresses (03, 05) are entry points, not flash content, and are
//!   accepted and ignored. Every checksum is verified and the end-of-file record is required, so
//!   a truncated download is an error rather than a silently shorter image.
//! - BIN: the whole file at a base address that must be given (a raw binary carries none).
//!
//! Overlapping data is an error (which byte would the device end up with?); adjacent segments
//! are merged so that the segment list does not depend on how a tool split its records.
//! Decoders never panic on arbitrary bytes: the files come from outside.

use std::fmt;
use std::path::{Path, PathBuf};

use object::Endianness;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use sha2::{Digest, Sha256};

/// The file formats a firmware image can be loaded from.
///
/// Serialised as `"elf"`, `"hex"` and `"bin"` (the names a profile uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum ImageFormat {
    /// ELF executable; `PT_LOAD` segments at their physical addresses.
    #[serde(rename = "elf")]
    Elf,
    /// Intel HEX text (I8HEX, I16HEX and I32HEX).
    #[serde(rename = "hex", alias = "ihex")]
    IntelHex,
    /// Raw binary; needs a base address.
    #[serde(rename = "bin")]
    Bin,
}

impl ImageFormat {
    /// Guesses the format from the file extension (case-insensitive): `.elf`, `.axf`, `.out`
    /// are ELF, `.hex`, `.ihex` are Intel HEX, `.bin` is raw binary; anything else is `None`.
    pub fn from_path(path: &Path) -> Option<ImageFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "elf" | "axf" | "out" => Some(ImageFormat::Elf),
            "hex" | "ihex" => Some(ImageFormat::IntelHex),
            "bin" => Some(ImageFormat::Bin),
            _ => None,
        }
    }

    /// The name used in profiles and messages: `elf`, `hex` or `bin`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Elf => "elf",
            ImageFormat::IntelHex => "hex",
            ImageFormat::Bin => "bin",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A run of bytes to be placed at consecutive addresses starting at `address`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageSegment {
    pub address: u64,
    pub data: Vec<u8>,
}

impl ImageSegment {
    /// One past the last address this segment covers.
    pub fn end_address(&self) -> u64 {
        // Construction in this module guarantees `address + len` fits in a u64; saturate for
        // segments built by hand elsewhere rather than panic.
        self.address.saturating_add(self.data.len() as u64)
    }
}

/// Debug shows the address, the size and only the first bytes: images are hundreds of
/// kilobytes and a full dump would drown any log or test failure.
impl fmt::Debug for ImageSegment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_BYTES: usize = 16;
        let shown = &self.data[..self.data.len().min(SHOWN_BYTES)];
        let ellipsis = if self.data.len() > SHOWN_BYTES { " .." } else { "" };
        write!(
            formatter,
            "ImageSegment {{ address: {:#010x}, size_bytes: {}, data: [{}{}] }}",
            self.address,
            self.data.len(),
            hex::encode(shown),
            ellipsis
        )
    }
}

/// A firmware image ready to flash: segments sorted by address, never overlapping, adjacent
/// runs merged.
#[derive(Debug, Clone)]
pub struct FirmwareImage {
    /// The file it came from (for messages and the audit record).
    pub path: PathBuf,
    pub format: ImageFormat,
    pub segments: Vec<ImageSegment>,
    /// SHA-256 of the file exactly as read.
    pub file_sha256: [u8; 32],
}

/// Why a firmware image could not be loaded or does not fit where it should go.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read firmware image {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("firmware image {path} is not a usable elf file: {reason}")]
    ElfParse { path: PathBuf, reason: String },

    #[error(
        "firmware image {path} is a truncated elf file: {what} needs the file to be at least \
         {needed_size_bytes} bytes long, but it is {file_size_bytes} bytes"
    )]
    TruncatedElf { path: PathBuf, what: String, needed_size_bytes: u64, file_size_bytes: u64 },

    #[error("firmware image {path}, line {line}: bad intel hex record: {reason}")]
    HexRecord { path: PathBuf, line: usize, reason: String },

    #[error(
        "firmware image {path}, line {line}: bad intel hex checksum: expected {expected_checksum:#04x} \
         (computed from the record's bytes), found {found_checksum:#04x}"
    )]
    HexChecksum { path: PathBuf, line: usize, expected_checksum: u8, found_checksum: u8 },

    #[error(
        "firmware image {path} is a truncated intel hex file: expected an end-of-file record \
         (type 01), found none in {line_count} lines"
    )]
    HexMissingEndOfFile { path: PathBuf, line_count: usize },

    #[error(
        "firmware image {path}: {size_bytes} bytes at address {address:#010x} run past the end of \
         the address space (expected them to end at or below {address_limit:#x})"
    )]
    AddressOverflow { path: PathBuf, address: u64, size_bytes: u64, address_limit: u64 },

    #[error(
        "firmware image {path}: data at {second_address:#010x} overlaps data that starts at \
         {first_address:#010x}; expected non-overlapping segments"
    )]
    OverlappingSegments { path: PathBuf, first_address: u64, second_address: u64 },

    #[error(
        "firmware image {path}: a raw binary image needs a base address, found none \
         (set `base_address` for this image)"
    )]
    MissingBaseAddress { path: PathBuf },

    #[error(
        "firmware image {path}: a base address ({base_address:#010x}) was given for a {format} \
         image, which carries its own addresses; expected none"
    )]
    UnexpectedBaseAddress { path: PathBuf, format: ImageFormat, base_address: u64 },

    #[error("firmware image {path}: the {format} file holds no loadable data; expected at least one byte")]
    Empty { path: PathBuf, format: ImageFormat },

    #[error(
        "firmware image {path}: the byte at address {address:#010x} lies outside the region \
         [{region_start:#010x}, {region_end:#010x}); expected every byte inside it"
    )]
    OutsideRegion { path: PathBuf, address: u64, region_start: u64, region_end: u64 },
}

impl FirmwareImage {
    /// Reads and decodes the file at `path`.
    ///
    /// `base_address` is required for [`ImageFormat::Bin`] and must be `None` for ELF and Intel
    /// HEX, which carry their own addresses (a given one would be silently ignored otherwise,
    /// which hides a profile mistake).
    pub fn load(
        path: &Path,
        format: ImageFormat,
        base_address: Option<u64>,
    ) -> Result<FirmwareImage, ImageError> {
        let bytes =
            std::fs::read(path).map_err(|source| ImageError::Io { path: path.to_path_buf(), source })?;
        FirmwareImage::from_bytes(&bytes, format, base_address, path)
    }

    /// Decodes an image already in memory; `path_for_errors` is recorded as the image's path
    /// and named in every error.
    pub fn from_bytes(
        bytes: &[u8],
        format: ImageFormat,
        base_address: Option<u64>,
        path_for_errors: &Path,
    ) -> Result<FirmwareImage, ImageError> {
        let path = path_for_errors;
        let pieces = match (format, base_address) {
            (ImageFormat::Bin, None) => {
                return Err(ImageError::MissingBaseAddress { path: path.to_path_buf() });
            }
            (ImageFormat::Bin, Some(base_address)) => decode_bin(bytes, base_address, path)?,
            (ImageFormat::Elf | ImageFormat::IntelHex, Some(base_address)) => {
                return Err(ImageError::UnexpectedBaseAddress {
                    path: path.to_path_buf(),
                    format,
                    base_address,
                });
            }
            (ImageFormat::Elf, None) => decode_elf(bytes, path)?,
            (ImageFormat::IntelHex, None) => decode_intel_hex(bytes, path)?,
        };
        let segments = sort_and_merge(pieces, path)?;
        if segments.is_empty() {
            return Err(ImageError::Empty { path: path.to_path_buf(), format });
        }
        Ok(FirmwareImage {
            path: path.to_path_buf(),
            format,
            segments,
            file_sha256: Sha256::digest(bytes).into(),
        })
    }

    /// The lowest address holding data (0 for an image without segments).
    pub fn start_address(&self) -> u64 {
        self.segments.first().map_or(0, |segment| segment.address)
    }

    /// One past the highest address holding data (0 for an image without segments).
    pub fn end_address(&self) -> u64 {
        self.segments.last().map_or(0, ImageSegment::end_address)
    }

    /// Bytes of data, not counting the gaps between segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.data.len() as u64).sum()
    }

    /// SHA-256 over, for each segment in order: its address (u64 little-endian), its length
    /// (u64 little-endian), its data.
    ///
    /// Unlike `file_sha256` this identifies what ends up in flash: the same firmware as ELF
    /// and as HEX has the same content digest. Addresses and lengths are included so that
    /// moving bytes or changing where a gap falls changes the digest.
    pub fn content_sha256(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for segment in &self.segments {
            hasher.update(segment.address.to_le_bytes());
            hasher.update((segment.data.len() as u64).to_le_bytes());
            hasher.update(&segment.data);
        }
        hasher.finalize().into()
    }

    /// Checks that every byte lies in `[region_start, region_start + region_size)`; the error
    /// names the lowest offending address.
    pub fn check_inside(&self, region_start: u64, region_size: u64) -> Result<(), ImageError> {
        // A region reaching the very top of the address space cannot name its end in a u64;
        // compute in u128 and only saturate for the message.
        let region_end_exclusive = u128::from(region_start) + u128::from(region_size);
        for segment in &self.segments {
            let segment_end = u128::from(segment.address) + segment.data.len() as u128;
            let offending_address = if segment.address < region_start {
                Some(segment.address)
            } else if segment_end > region_end_exclusive {
                // Segments are sorted, so the first byte past the region end is the lowest
                // offender unless an earlier segment already was one.
                Some(u64::try_from(region_end_exclusive).unwrap_or(u64::MAX).max(segment.address))
            } else {
                None
            };
            if let Some(address) = offending_address {
                return Err(ImageError::OutsideRegion {
                    path: self.path.clone(),
                    address,
                    region_start,
                    region_end: u64::try_from(region_end_exclusive).unwrap_or(u64::MAX),
                });
            }
        }
        Ok(())
    }
}

/// Sorts pieces by address, rejects overlaps, and merges pieces that touch.
fn sort_and_merge(mut pieces: Vec<ImageSegment>, path: &Path) -> Result<Vec<ImageSegment>, ImageError> {
    pieces.retain(|piece| !piece.data.is_empty());
    // Stable, so that two pieces at the same address are reported in file order.
    pieces.sort_by_key(|piece| piece.address);
    let mut segments: Vec<ImageSegment> = Vec::new();
    // Start of the piece with the highest end so far: since pieces are sorted by start and no
    // overlap has been found yet, it is the last piece merged.
    let mut last_piece_address = 0;
    for piece in pieces {
        match segments.last_mut() {
            Some(current) if piece.address < current.end_address() => {
                return Err(ImageError::OverlappingSegments {
                    path: path.to_path_buf(),
                    first_address: last_piece_address,
                    second_address: piece.address,
                });
            }
            Some(current) if piece.address == current.end_address() => {
                last_piece_address = piece.address;
                current.data.extend_from_slice(&piece.data);
            }
            _ => {
                last_piece_address = piece.address;
                segments.push(piece);
            }
        }
    }
    Ok(segments)
}

/// Checks that `size_bytes` bytes starting at `address` stay at or below `address_limit`
/// (exclusive end, as a u128 so that the full 64-bit space can be expressed).
fn check_address_range(
    address: u64,
    size_bytes: u64,
    address_limit: u128,
    path: &Path,
) -> Result<(), ImageError> {
    if u128::from(address) + u128::from(size_bytes) > address_limit {
        return Err(ImageError::AddressOverflow {
            path: path.to_path_buf(),
            address,
            size_bytes,
            address_limit: u64::try_from(address_limit).unwrap_or(u64::MAX),
        });
    }
    Ok(())
}

/// The largest end address (exclusive) a u64 address space allows: a segment may not wrap.
const U64_ADDRESS_LIMIT: u128 = u64::MAX as u128;

fn decode_bin(bytes: &[u8], base_address: u64, path: &Path) -> Result<Vec<ImageSegment>, ImageError> {
    check_address_range(base_address, bytes.len() as u64, U64_ADDRESS_LIMIT, path)?;
    Ok(vec![ImageSegment { address: base_address, data: bytes.to_vec() }])
}

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELF_IDENT_SIZE_BYTES: usize = 16;
// Identification bytes as the ELF specification numbers them; `object` wraps these in
// newtypes meant for parsed headers, but here we look at raw bytes before parsing.
const ELF_IDENT_CLASS_INDEX: usize = 4;
const ELF_IDENT_DATA_INDEX: usize = 5;
const ELF_IDENT_VERSION_INDEX: usize = 6;
const ELF_CLASS_32: u8 = 1;
const ELF_CLASS_64: u8 = 2;
const ELF_DATA_LITTLE_ENDIAN: u8 = 1;
const ELF_DATA_BIG_ENDIAN: u8 = 2;
const ELF_VERSION_CURRENT: u8 = 1;

fn decode_elf(bytes: &[u8], path: &Path) -> Result<Vec<ImageSegment>, ImageError> {
    let file_size_bytes = bytes.len() as u64;
    let truncated = |what: &str, needed_size_bytes: u64| ImageError::TruncatedElf {
        path: path.to_path_buf(),
        what: what.to_string(),
        needed_size_bytes,
        file_size_bytes,
    };
    let parse_error = |reason: String| ImageError::ElfParse { path: path.to_path_buf(), reason };

    let magic_length = bytes.len().min(ELF_MAGIC.len());
    if bytes[..magic_length] != ELF_MAGIC[..magic_length] {
        return Err(parse_error(format!(
            "expected the elf magic bytes 7f454c46 at the start, found {}",
            hex::encode(&bytes[..magic_length])
        )));
    }
    if bytes.len() < ELF_IDENT_SIZE_BYTES {
        return Err(truncated("the elf identification", ELF_IDENT_SIZE_BYTES as u64));
    }
    let class = bytes[ELF_IDENT_CLASS_INDEX];
    let data_encoding = bytes[ELF_IDENT_DATA_INDEX];
    let version = bytes[ELF_IDENT_VERSION_INDEX];
    if data_encoding != ELF_DATA_LITTLE_ENDIAN && data_encoding != ELF_DATA_BIG_ENDIAN {
        return Err(parse_error(format!(
            "expected data encoding 1 (little-endian) or 2 (big-endian), found {data_encoding}"
        )));
    }
    if version != ELF_VERSION_CURRENT {
        return Err(parse_error(format!("expected elf identification version 1, found {version}")));
    }
    let header_size_bytes = match class {
        ELF_CLASS_32 => size_of::<elf::FileHeader32<Endianness>>(),
        ELF_CLASS_64 => size_of::<elf::FileHeader64<Endianness>>(),
        other => {
            return Err(parse_error(format!("expected elf class 1 (32-bit) or 2 (64-bit), found {other}")));
        }
    };
    if bytes.len() < header_size_bytes {
        return Err(truncated("the elf file header", header_size_bytes as u64));
    }

    // `object` reads headers in place and insists on their natural alignment (its `unaligned`
    // feature is off), while a caller's slice can start anywhere: work on an 8-byte aligned copy.
    let mut aligned_buffer = vec![0u8; bytes.len() + 8];
    let aligned_start = aligned_buffer.as_ptr().align_offset(8).min(8);
    let aligned = &mut aligned_buffer[aligned_start..aligned_start + bytes.len()];
    aligned.copy_from_slice(bytes);
    let aligned: &[u8] = aligned;

    match class {
        ELF_CLASS_32 => elf_load_segments::<elf::FileHeader32<Endianness>>(aligned, path),
        _ => elf_load_segments::<elf::FileHeader64<Endianness>>(aligned, path),
    }
}

/// Collects the `PT_LOAD` segments with file bytes, at their physical addresses.
fn elf_load_segments<Header>(data: &[u8], path: &Path) -> Result<Vec<ImageSegment>, ImageError>
where
    Header: FileHeader<Endian = Endianness>,
{
    let file_size_bytes = data.len() as u64;
    let truncated = |what: String, needed_size_bytes: u64| ImageError::TruncatedElf {
        path: path.to_path_buf(),
        what,
        needed_size_bytes,
        file_size_bytes,
    };
    let parse_error = |reason: String| ImageError::ElfParse { path: path.to_path_buf(), reason };

    let header = Header::parse(data).map_err(|error| parse_error(error.to_string()))?;
    let endian = header.endian().map_err(|error| parse_error(error.to_string()))?;
    let program_headers = match header.program_headers(endian, data) {
        Ok(program_headers) => program_headers,
        Err(error) => {
            // Tell a cut-off file apart from a malformed one: if the table the header declares
            // runs past the end of the file, the file is truncated.
            let table_offset: u64 = header.e_phoff(endian).into();
            let table_size_bytes = u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian));
            let table_end = u128::from(table_offset) + u128::from(table_size_bytes);
            if header.e_phnum(endian) != elf::PN_XNUM && table_end > u128::from(file_size_bytes) {
                return Err(truncated(
                    "the program header table".to_string(),
                    u64::try_from(table_end).unwrap_or(u64::MAX),
                ));
            }
            return Err(parse_error(format!("cannot read the program headers: {error}")));
        }
    };

    let address_limit = if header.is_class_32() { 1u128 << 32 } else { U64_ADDRESS_LIMIT };
    let mut pieces = Vec::new();
    for (index, program_header) in program_headers.iter().enumerate() {
        if program_header.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let (file_offset, file_size_in_segment) = program_header.file_range(endian);
        if file_size_in_segment == 0 {
            // Pure zero-fill (`.bss`, `NOLOAD`): created at run time, nothing to flash.
            continue;
        }
        let file_end = u128::from(file_offset) + u128::from(file_size_in_segment);
        if file_end > u128::from(file_size_bytes) {
            return Err(truncated(
                format!("the data of program header {index} (PT_LOAD)"),
                u64::try_from(file_end).unwrap_or(u64::MAX),
            ));
        }
        let physical_address: u64 = program_header.p_paddr(endian).into();
        check_address_range(physical_address, file_size_in_segment, address_limit, path)?;
        let segment_data = program_header
            .data(endian, data)
            .map_err(|()| parse_error(format!("cannot read the data of program header {index}")))?;
        pieces.push(ImageSegment { address: physical_address, data: segment_data.to_vec() });
    }
    Ok(pieces)
}

/// How data record offsets become addresses, set by the last type 02 or 04 record.
#[derive(Clone, Copy)]
enum HexAddressing {
    /// Type 04: `upper << 16 | offset`, continuing linearly past 64 KiB within a record.
    Linear { upper_bits: u64 },
    /// Type 02: `segment * 16 + (offset mod 64 KiB)`; offsets wrap inside the segment.
    Segment { segment_base: u64 },
}

/// The 32-bit address space Intel HEX can express.
const INTEL_HEX_ADDRESS_LIMIT: u128 = 1 << 32;

fn decode_intel_hex(bytes: &[u8], path: &Path) -> Result<Vec<ImageSegment>, ImageError> {
    let record_error =
        |line: usize, reason: String| ImageError::HexRecord { path: path.to_path_buf(), line, reason };

    // Until a type 02 or 04 record says otherwise, the upper address bits are zero (I8HEX).
    let mut addressing = HexAddressing::Linear { upper_bits: 0 };
    let mut end_of_file_line: Option<usize> = None;
    let mut pieces = Vec::new();
    let mut line_count = 0;

    for (line_index, raw_line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line = line_index + 1;
        line_count = line;
        // Tolerate CRLF (GNU objcopy writes it) and stray blanks around a record.
        let trimmed = raw_line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(end_line) = end_of_file_line {
            return Err(record_error(
                line,
                format!(
                    "expected nothing after the end-of-file record on line {end_line}, found another record"
                ),
            ));
        }
        if let Some(non_ascii_byte) = trimmed.iter().copied().find(|byte| !byte.is_ascii()) {
            return Err(record_error(line, format!("expected ascii text, found byte {non_ascii_byte:#04x}")));
        }
        let text = std::str::from_utf8(trimmed)
            .map_err(|error| record_error(line, format!("expected ascii text, found {error}")))?;
        let record = ihex::Record::from_record_string(text)
            .map_err(|error| hex_reader_error(error, text, line, path))?;
        match record {
            ihex::Record::Data { offset, value } => {
                push_hex_data(&mut pieces, addressing, offset, value, line, path)?;
            }
            ihex::Record::EndOfFile => end_of_file_line = Some(line),
            ihex::Record::ExtendedSegmentAddress(segment) => {
                addressing = HexAddressing::Segment { segment_base: u64::from(segment) << 4 };
            }
            ihex::Record::ExtendedLinearAddress(upper_bits) => {
                addressing = HexAddressing::Linear { upper_bits: u64::from(upper_bits) };
            }
            // Entry points: meaningful to a loader that jumps, not to flash content.
            ihex::Record::StartSegmentAddress { .. } | ihex::Record::StartLinearAddress(_) => {}
        }
    }

    if end_of_file_line.is_none() {
        return Err(ImageError::HexMissingEndOfFile { path: path.to_path_buf(), line_count });
    }
    Ok(pieces)
}

fn push_hex_data(
    pieces: &mut Vec<ImageSegment>,
    addressing: HexAddressing,
    offset: u16,
    value: Vec<u8>,
    line: usize,
    path: &Path,
) -> Result<(), ImageError> {
    if value.is_empty() {
        return Ok(());
    }
    match addressing {
        HexAddressing::Linear { upper_bits } => {
            let address = (upper_bits << 16) | u64::from(offset);
            if u128::from(address) + value.len() as u128 > INTEL_HEX_ADDRESS_LIMIT {
                return Err(ImageError::HexRecord {
                    path: path.to_path_buf(),
                    line,
                    reason: format!(
                        "{} data bytes at {address:#010x} run past the 4 GiB intel hex address space",
                        value.len()
                    ),
                });
            }
            pieces.push(ImageSegment { address, data: value });
        }
        HexAddressing::Segment { segment_base } => {
            // The Intel specification wraps the offset inside the 64 KiB segment, so a record
            // crossing the segment's end continues at its start.
            let bytes_before_wrap = (0x1_0000 - usize::from(offset)).min(value.len());
            let (before_wrap, after_wrap) = value.split_at(bytes_before_wrap);
            pieces
                .push(ImageSegment { address: segment_base + u64::from(offset), data: before_wrap.to_vec() });
            if !after_wrap.is_empty() {
                pieces.push(ImageSegment { address: segment_base, data: after_wrap.to_vec() });
            }
        }
    }
    Ok(())
}

/// Turns the `ihex` reader's terse error into one that says what was expected and found.
fn hex_reader_error(error: ihex::ReaderError, text: &str, line: usize, path: &Path) -> ImageError {
    use ihex::ReaderError;
    // Both only reached after the reader checked every character is a hex digit and the
    // length is even and in range, so these fields can be read back from the text.
    let byte_at = |index: usize| {
        text.get(1 + 2 * index..3 + 2 * index).and_then(|digits| u8::from_str_radix(digits, 16).ok())
    };
    let carried_payload_bytes = (text.len().saturating_sub(1) / 2).saturating_sub(5);
    let reason = match error {
        ReaderError::ChecksumMismatch(computed_checksum, checksum_in_file) => {
            return ImageError::HexChecksum {
                path: path.to_path_buf(),
                line,
                expected_checksum: computed_checksum,
                found_checksum: checksum_in_file,
            };
        }
        ReaderError::MissingStartCode => {
            format!("expected a record starting with ':', found {:?}", text.chars().next().unwrap_or(' '))
        }
        ReaderError::RecordTooShort => {
            format!("expected at least 11 characters (':' and 5 bytes in hex), found {}", text.len())
        }
        ReaderError::RecordTooLong => {
            format!("expected at most 521 characters (255 data bytes), found {}", text.len())
        }
        ReaderError::RecordNotEvenLength => {
            "expected whole bytes (an even number of hex digits), found an odd number".to_string()
        }
        ReaderError::ContainsInvalidCharacters => {
            "expected only hex digits after ':', found another character".to_string()
        }
        ReaderError::PayloadLengthMismatch => format!(
            "the byte count field says {} data bytes, but the record carries {carried_payload_bytes}",
            byte_at(0).map_or_else(|| "?".to_string(), |count| count.to_string())
        ),
        ReaderError::UnsupportedRecordType(record_type) => {
            format!("expected record type 00 to 05, found {record_type:02x}")
        }
        ReaderError::InvalidLengthForType => {
            let record_type = byte_at(3).unwrap_or(0xff);
            let expected_payload_bytes = match record_type {
                0x01 => "0",
                0x02 | 0x04 => "2",
                0x03 | 0x05 => "4",
                _ => "another number of",
            };
            format!(
                "record type {record_type:02x} must carry {expected_payload_bytes} data bytes, found {carried_payload_bytes}"
            )
        }
    };
    ImageError::HexRecord { path: path.to_path_buf(), line, reason }
}
