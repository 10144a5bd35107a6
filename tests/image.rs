//! Firmware image loading checked against files made by outside tools (GNU objcopy, srec_cat,
//! arm-none-eabi-gcc, readelf, sha256sum, Python; see tests/data/image/README.md), plus
//! property tests: Intel HEX written by the `ihex` crate round-trips, and no input makes a
//! decoder panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use imprint::image::{FirmwareImage, ImageError, ImageFormat, ImageSegment};
use proptest::prelude::*;

fn fixture_path(name: &str) -> PathBuf {
    common::repo_root().join("tests/data/image").join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("text fixture")
}

/// What loading some bytes should give.
enum Expected<'a> {
    /// These segments exactly, as (address, bytes), in order.
    Segments(Vec<(u64, &'a [u8])>),
    /// An error for which the predicate holds and whose message contains every fragment.
    Error(fn(&ImageError) -> bool, &'a [&'a str]),
}

/// Decodes `bytes` as `format` and compares the outcome with `expected`; returns the image
/// when one was expected so that callers can look further.
fn check(
    name: &str,
    bytes: &[u8],
    format: ImageFormat,
    base_address: Option<u64>,
    expected: Expected,
) -> Option<FirmwareImage> {
    let path = Path::new("fixtures").join(name);
    let result = FirmwareImage::from_bytes(bytes, format, base_address, &path);
    match (result, expected) {
        (Ok(image), Expected::Segments(expected_segments)) => {
            let found: Vec<(u64, usize)> =
                image.segments.iter().map(|segment| (segment.address, segment.data.len())).collect();
            let wanted: Vec<(u64, usize)> =
                expected_segments.iter().map(|(address, data)| (*address, data.len())).collect();
            assert_eq!(found, wanted, "{name}: segment addresses and sizes");
            for (segment, (address, data)) in image.segments.iter().zip(&expected_segments) {
                if let Some(offset) = segment.data.iter().zip(data.iter()).position(|(a, b)| a != b) {
                    panic!(
                        "{name}: segment at {address:#x} differs at {:#x}: found {:#04x}, expected {:#04x}",
                        address + offset as u64,
                        segment.data[offset],
                        data[offset]
                    );
                }
            }
            assert_eq!(image.path, path);
            assert_eq!(image.format, format);
            Some(image)
        }
        (Err(error), Expected::Error(is_expected_variant, fragments)) => {
            let message = error.to_string();
            assert!(is_expected_variant(&error), "{name}: unexpected error {error:?}");
            for fragment in fragments {
                assert!(message.contains(fragment), "{name}: message {message:?} lacks {fragment:?}");
            }
            assert!(
                message.contains(&path.display().to_string()),
                "{name}: message {message:?} does not name the file"
            );
            None
        }
        (Ok(image), Expected::Error(..)) => panic!("{name}: expected an error, loaded {image:?}"),
        (Err(error), Expected::Segments(_)) => panic!("{name}: expected segments, got {error}"),
    }
}

/// `(physical address, file offset, file size)` of each PT_LOAD with file bytes, as readelf
/// printed them.
fn readelf_loads(readelf_output: &str) -> Vec<(u64, usize, usize)> {
    let number = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap();
    readelf_output
        .lines()
        .filter(|line| line.trim_start().starts_with("LOAD "))
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            // Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align
            (number(columns[3]), number(columns[1]) as usize, number(columns[4]) as usize)
        })
        .filter(|&(_, _, file_size)| file_size > 0)
        .collect()
}

#[test]
fn raw_binary_at_base_address() {
    let known = fixture("known.bin");
    check(
        "known.bin",
        &known,
        ImageFormat::Bin,
        Some(0x0800_0000),
        Expected::Segments(vec![(0x0800_0000, &known)]),
    );
}

#[test]
fn intel_hex_from_gnu_objcopy_and_srec_cat_holds_the_binary() {
    let known = fixture("known.bin");
    for (name, address) in [
        // Extended linear address (04) + start linear address (05) records.
        ("known_0x08000000.hex", 0x0800_0000),
        // Crosses a 64 KiB boundary: a second 04 record mid-file; records merge into one.
        ("known_0x0800F800.hex", 0x0800_f800),
        // Extended segment address (02) + start segment address (03) records.
        ("known_segment_0x1F800.hex", 0x1_f800),
    ] {
        check(name, &fixture(name), ImageFormat::IntelHex, None, Expected::Segments(vec![(address, &known)]));
    }
}

#[test]
fn arm_elf_loads_at_physical_addresses_like_objcopy_binary() {
    let elf = fixture("fw.elf");
    let loads = readelf_loads(&fixture_text("fw.readelf.txt"));
    // The fixture is what we think it is: .text and .data stored in flash, .data's virtual
    // address in RAM, and a PT_LOAD without file bytes that must be skipped.
    assert_eq!(loads.len(), 2);
    assert!(fixture_text("fw.readelf.txt").contains("0x20000000 0x08000060"));
    let expected: Vec<(u64, &[u8])> =
        loads.iter().map(|&(address, offset, size)| (address, &elf[offset..offset + size])).collect();
    let image = check("fw.elf", &elf, ImageFormat::Elf, None, Expected::Segments(expected)).unwrap();

    // What arm-none-eabi-objcopy -O binary says flash should hold: our segments at their
    // offsets from the start, and nothing but its zero fill in between.
    let flash = fixture("fw.bin");
    assert_eq!(image.start_address(), 0x0800_0000);
    assert_eq!(image.end_address() - image.start_address(), flash.len() as u64);
    let mut covered = vec![false; flash.len()];
    for segment in &image.segments {
        let offset = (segment.address - image.start_address()) as usize;
        assert_eq!(&flash[offset..offset + segment.data.len()], &segment.data[..]);
        covered[offset..offset + segment.data.len()].fill(true);
    }
    for (offset, byte) in flash.iter().enumerate() {
        assert!(covered[offset] || *byte == 0, "gap byte at offset {offset:#x} is {byte:#04x}");
    }
    assert_eq!(image.size_bytes(), 0x5c + 0x18);
}

#[test]
fn elf64_loads_like_readelf_says() {
    let elf = fixture("host_x86_64.elf");
    let loads = readelf_loads(&fixture_text("host_x86_64.readelf.txt"));
    assert_eq!(loads.len(), 4);
    let expected: Vec<(u64, &[u8])> =
        loads.iter().map(|&(address, offset, size)| (address, &elf[offset..offset + size])).collect();
    check("host_x86_64.elf", &elf, ImageFormat::Elf, None, Expected::Segments(expected));
}

#[test]
fn digests_match_sha256sum_and_python() {
    for line in fixture_text("SHA256SUMS").lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        let format = ImageFormat::from_path(Path::new(name)).unwrap();
        let base_address = (format == ImageFormat::Bin).then_some(0x0800_0000);
        let loaded = FirmwareImage::load(&fixture_path(name), format, base_address);
        if name == "fw_overlap.elf" {
            assert!(matches!(loaded, Err(ImageError::OverlappingSegments { .. })));
            continue;
        }
        let image = loaded.unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(hex::encode(image.file_sha256), digest, "{name}");
        assert_eq!(image.path, fixture_path(name));
    }

    // Independent content digests from tests/data/image/README.md; the HEX holds the same
    // content as the raw binary, so it has the same content digest though not the same file.
    let bin = FirmwareImage::load(&fixture_path("known.bin"), ImageFormat::Bin, Some(0x0800_0000)).unwrap();
    let hex =
        FirmwareImage::load(&fixture_path("known_0x08000000.hex"), ImageFormat::IntelHex, None).unwrap();
    let known_content = "6634722c37290876e16aad0cee01ced1e134709494f0df8fe6c1a7c4c05663c8";
    assert_eq!(hex::encode(bin.content_sha256()), known_content);
    assert_eq!(hex::encode(hex.content_sha256()), known_content);
    assert_ne!(bin.file_sha256, hex.file_sha256);
    let elf = FirmwareImage::load(&fixture_path("fw.elf"), ImageFormat::Elf, None).unwrap();
    assert_eq!(
        hex::encode(elf.content_sha256()),
        "e74e3c79e1f846a2ff26dbb7d3bf8c4fcbd1718f160f46bf6e18f90489a23efb"
    );
}

#[test]
fn truncated_elf_is_an_error_naming_what_is_missing() {
    let elf = fixture("fw.elf");
    // Sizes from fw.readelf.txt: 52-byte header, 3 program headers of 32 bytes at offset 52,
    // .text data at 0x1000..0x105c, .data at 0x2000..0x2018.
    for (cut_length, what, needed_size_bytes) in [
        (2, "elf identification", 16),
        (10, "elf identification", 16),
        (40, "file header", 52),
        (60, "program header table", 52 + 3 * 32),
        (0x1010, "program header 0", 0x105c),
        (0x2010, "program header 1", 0x2018),
    ] {
        let name = format!("fw.elf cut to {cut_length} bytes");
        check(
            &name,
            &elf[..cut_length],
            ImageFormat::Elf,
            None,
            Expected::Error(
                |error| matches!(error, ImageError::TruncatedElf { .. }),
                &[
                    "truncated elf",
                    what,
                    &format!("at least {needed_size_bytes} bytes"),
                    &format!("it is {cut_length} bytes"),
                ],
            ),
        );
    }
}

#[test]
fn not_an_elf_file_is_an_error() {
    check(
        "known.bin",
        &fixture("known.bin"),
        ImageFormat::Elf,
        None,
        Expected::Error(
            |error| matches!(error, ImageError::ElfParse { .. }),
            &["expected the elf magic bytes 7f454c46", "found 030a1118"],
        ),
    );
    let mut bad_class = fixture("fw.elf");
    bad_class[4] = 3;
    check(
        "fw.elf with class 3",
        &bad_class,
        ImageFormat::Elf,
        None,
        Expected::Error(
            |error| matches!(error, ImageError::ElfParse { .. }),
            &["expected elf class 1 (32-bit) or 2 (64-bit), found 3"],
        ),
    );
}

#[test]
fn overlapping_elf_segments_are_an_error() {
    // fw_overlap.readelf.txt: .text at 0x08000000 (0x5c bytes), .data stored at 0x08000040.
    check(
        "fw_overlap.elf",
        &fixture("fw_overlap.elf"),
        ImageFormat::Elf,
        None,
        Expected::Error(
            |error| {
                matches!(
                    error,
                    ImageError::OverlappingSegments {
                        first_address: 0x0800_0000,
                        second_address: 0x0800_0040,
                        ..
                    }
                )
            },
            &["data at 0x08000040 overlaps data that starts at 0x08000000"],
        ),
    );
}

#[test]
fn intel_hex_errors_name_the_line_and_what_was_wrong() {
    let hex = fixture_text("known_0x08000000.hex");
    let lines: Vec<&str> = hex.lines().collect();

    // Line 3 as objcopy wrote it ends in checksum 68; replace it with 00.
    assert!(lines[2].ends_with("68"));
    let mut bad_checksum = lines.clone();
    let corrupted = format!("{}00", &lines[2][..lines[2].len() - 2]);
    bad_checksum[2] = &corrupted;
    check(
        "bad checksum",
        bad_checksum.join("\n").as_bytes(),
        ImageFormat::IntelHex,
        None,
        Expected::Error(
            |error| {
                matches!(
                    error,
                    ImageError::HexChecksum { line: 3, expected_checksum: 0x68, found_checksum: 0x00, .. }
                )
            },
            &["line 3", "expected 0x68", "found 0x00"],
        ),
    );

    // No end-of-file record: a download cut short between records.
    let without_end = lines[..lines.len() - 1].join("\n");
    check(
        "no end-of-file record",
        without_end.as_bytes(),
        ImageFormat::IntelHex,
        None,
        Expected::Error(
            |error| matches!(error, ImageError::HexMissingEndOfFile { line_count: 258, .. }),
            &["truncated intel hex", "expected an end-of-file record"],
        ),
    );

    // Cut in the middle of line 100.
    let cut_inside_record = format!("{}\n{}", lines[..99].join("\n"), &lines[99][..20]);
    check(
        "cut inside a record",
        cut_inside_record.as_bytes(),
        ImageFormat::IntelHex,
        None,
        Expected::Error(
            |error| {
                matches!(
                    error,
                    ImageError::HexRecord { line: 100, .. } | ImageError::HexChecksum { line: 100, .. }
                )
            },
            &["line 100"],
        ),
    );

    // The same record twice: line 5 (offset 0x0030) repeated before the end.
    let mut repeated = lines.clone();
    repeated.insert(lines.len() - 2, lines[4]);
    check(
        "repeated record",
        repeated.join("\n").as_bytes(),
        ImageFormat::IntelHex,
        None,
        Expected::Error(
            |error| {
                matches!(
                    error,
                    ImageError::OverlappingSegments {
                        first_address: 0x0800_0030,
                        second_address: 0x0800_0030,
                        ..
                    }
                )
            },
            &["overlaps"],
        ),
    );

    for (name, text, line, fragment) in [
        ("unknown record type", ":00000006FA\n:00000001FF\n", 1, "expected record type 00 to 05, found 06"),
        ("no start code", "\n\n00000001FF\n", 3, "expected a record starting with ':'"),
        ("not hex", ":0000000GFF\n", 1, "expected only hex digits"),
        ("odd length", ":00000001FF0\n", 1, "even number of hex digits"),
        (
            "record after end",
            ":00000001FF\n:00000001FF\n",
            2,
            "expected nothing after the end-of-file record on line 1",
        ),
        (
            "wrong length for type",
            ":0100000400FB\n:00000001FF\n",
            1,
            "record type 04 must carry 2 data bytes, found 1",
        ),
        (
            "byte count disagrees",
            ":0200000001FD\n:00000001FF\n",
            1,
            "byte count field says 2 data bytes, but the record carries 1",
        ),
        ("non-ascii", ":00000001FF\u{e9}\n", 1, "expected ascii text, found byte 0xc3"),
        // 16 bytes at 0xFFFFFFF8 would run past 4 GiB.
        (
            "past 4 GiB",
            ":02000004FFFFFC\n:10FFF800000102030405060708090A0B0C0D0E0F81\n:00000001FF\n",
            2,
            "run past the 4 GiB intel hex address space",
        ),
    ] {
        check(
            name,
            text.as_bytes(),
            ImageFormat::IntelHex,
            None,
            Expected::Error(
                |error| matches!(error, ImageError::HexRecord { .. }),
                &[&format!("line {line}"), fragment],
            ),
        );
    }
}

#[test]
fn intel_hex_segment_offsets_wrap_inside_the_segment() {
    // Extended segment 0x1000 (base 0x10000); 16 bytes at offset 0xFFF8 wrap to 0x10000 after
    // 8 bytes, as the Intel specification says, rather than continuing at 0x20000.
    let data: Vec<u8> = (0..16).collect();
    let text = ihex::create_object_file_representation(&[
        ihex::Record::ExtendedSegmentAddress(0x1000),
        ihex::Record::Data { offset: 0xfff8, value: data.clone() },
        ihex::Record::EndOfFile,
    ])
    .unwrap();
    check(
        "segment wrap",
        text.as_bytes(),
        ImageFormat::IntelHex,
        None,
        Expected::Segments(vec![(0x1_0000, &data[8..]), (0x1_fff8, &data[..8])]),
    );
}

#[test]
fn base_address_rules_and_empty_images() {
    let known = fixture("known.bin");
    let is_missing_base = |error: &ImageError| matches!(error, ImageError::MissingBaseAddress { .. });
    check(
        "known.bin",
        &known,
        ImageFormat::Bin,
        None,
        Expected::Error(is_missing_base, &["needs a base address"]),
    );
    for (format, bytes) in
        [(ImageFormat::Elf, fixture("fw.elf")), (ImageFormat::IntelHex, fixture("known_0x08000000.hex"))]
    {
        check(
            "with a base address",
            &bytes,
            format,
            Some(0x1000),
            Expected::Error(
                |error| matches!(error, ImageError::UnexpectedBaseAddress { base_address: 0x1000, .. }),
                &["base address (0x00001000) was given", "expected none"],
            ),
        );
    }
    let is_empty = |error: &ImageError| matches!(error, ImageError::Empty { .. });
    check("empty.bin", b"", ImageFormat::Bin, Some(0), Expected::Error(is_empty, &["no loadable data"]));
    check(
        "only-end.hex",
        b":00000001FF\r\n",
        ImageFormat::IntelHex,
        None,
        Expected::Error(is_empty, &["hex file holds no loadable data"]),
    );
    check(
        "past the end.bin",
        &known,
        ImageFormat::Bin,
        Some(u64::MAX - 10),
        Expected::Error(
            |error| matches!(error, ImageError::AddressOverflow { .. }),
            &["4096 bytes at address 0xfffffffffffffff5 run past the end of the address space"],
        ),
    );

    let missing = fixture_path("does-not-exist.bin");
    let error = FirmwareImage::load(&missing, ImageFormat::Bin, Some(0)).unwrap_err();
    assert!(matches!(error, ImageError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
}

#[test]
fn check_inside_names_the_first_byte_outside() {
    let hex =
        FirmwareImage::load(&fixture_path("known_0x08000000.hex"), ImageFormat::IntelHex, None).unwrap();
    let elf = FirmwareImage::load(&fixture_path("fw.elf"), ImageFormat::Elf, None).unwrap();
    assert_eq!((hex.start_address(), hex.end_address(), hex.size_bytes()), (0x0800_0000, 0x0800_1000, 4096));
    for (image, region_start, region_size, first_outside) in [
        (&hex, 0x0800_0000, 0x1000, None),
        (&hex, 0x0700_0000, u64::MAX - 0x0700_0000, None),
        (&hex, 0x0800_0000, 0xfff, Some(0x0800_0fff)),
        (&hex, 0x0800_0001, 0x2000, Some(0x0800_0000)),
        (&hex, 0x0900_0000, 0x1000, Some(0x0800_0000)),
        (&hex, 0x0800_0000, 0, Some(0x0800_0000)),
        // fw.elf: 0x08000000..0x0800005c and 0x08000060..0x08000078.
        (&elf, 0x0800_0000, 0x60, Some(0x0800_0060)),
        (&elf, 0x0800_0000, 0x70, Some(0x0800_0070)),
        (&elf, 0x0800_0000, 0x78, None),
    ] {
        let result = image.check_inside(region_start, region_size);
        match (result, first_outside) {
            (Ok(()), None) => {}
            (
                Err(ImageError::OutsideRegion { address, region_start: start, region_end, .. }),
                Some(expected),
            ) => {
                assert_eq!(address, expected);
                assert_eq!((start, region_end), (region_start, region_start + region_size));
            }
            (result, expected) => panic!(
                "region {region_start:#x}+{region_size:#x}: got {result:?}, expected first outside {expected:?}"
            ),
        }
    }
    let message = hex.check_inside(0x0800_0000, 0x800).unwrap_err().to_string();
    assert!(message.contains("0x08000800 lies outside the region [0x08000000, 0x08000800)"), "{message}");
}

#[test]
fn formats_by_extension_and_by_name() {
    for (name, expected) in [
        ("app.elf", Some(ImageFormat::Elf)),
        ("APP.AXF", Some(ImageFormat::Elf)),
        ("a/b/app.out", Some(ImageFormat::Elf)),
        ("app.hex", Some(ImageFormat::IntelHex)),
        ("app.ihex", Some(ImageFormat::IntelHex)),
        ("app.bin", Some(ImageFormat::Bin)),
        ("app.srec", None),
        ("bin", None),
        ("app", None),
    ] {
        assert_eq!(ImageFormat::from_path(Path::new(name)), expected, "{name}");
    }
    for (format, name) in
        [(ImageFormat::Elf, "\"elf\""), (ImageFormat::IntelHex, "\"hex\""), (ImageFormat::Bin, "\"bin\"")]
    {
        assert_eq!(serde_json::to_string(&format).unwrap(), name);
        assert_eq!(serde_json::from_str::<ImageFormat>(name).unwrap(), format);
    }
    assert!(serde_json::from_str::<ImageFormat>("\"intelhex\"").is_err());
}

/// Writes segments as Intel HEX the way a tool would: records of at most `record_size_bytes`
/// that never cross a 64 KiB boundary, with an extended linear address record whenever the
/// upper 16 address bits change.
fn write_intel_hex(segments: &[(u64, Vec<u8>)], record_size_bytes: usize) -> String {
    let mut records = Vec::new();
    let mut upper_bits = 0u64;
    for (address, data) in segments {
        let mut address = *address;
        let mut remaining = &data[..];
        while !remaining.is_empty() {
            if address >> 16 != upper_bits {
                upper_bits = address >> 16;
                records.push(ihex::Record::ExtendedLinearAddress(upper_bits as u16));
            }
            let room_in_64k = 0x1_0000 - (address & 0xffff) as usize;
            let chunk_length = remaining.len().min(record_size_bytes).min(room_in_64k);
            records.push(ihex::Record::Data {
                offset: (address & 0xffff) as u16,
                value: remaining[..chunk_length].to_vec(),
            });
            address += chunk_length as u64;
            remaining = &remaining[chunk_length..];
        }
    }
    records.push(ihex::Record::EndOfFile);
    ihex::create_object_file_representation(&records).unwrap()
}

/// Non-overlapping segments (gaps may be zero, so some touch) below 4 GiB, in shuffled order.
fn segments_strategy() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    (
        0u64..0xf000_0000,
        prop::collection::vec((0u64..0x3_0000, prop::collection::vec(any::<u8>(), 1..300)), 1..6),
    )
        .prop_map(|(base, gaps_and_data)| {
            let mut address = base;
            gaps_and_data
                .into_iter()
                .map(|(gap, data)| {
                    address += gap;
                    let segment = (address, data);
                    address += segment.1.len() as u64;
                    segment
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// Sorts and merges touching segments: what the loader must return.
fn merged(mut segments: Vec<(u64, Vec<u8>)>) -> Vec<ImageSegment> {
    segments.sort_by_key(|(address, _)| *address);
    let mut result: Vec<ImageSegment> = Vec::new();
    for (address, data) in segments {
        match result.last_mut() {
            Some(last) if last.address + last.data.len() as u64 == address => last.data.extend(data),
            _ => result.push(ImageSegment { address, data }),
        }
    }
    result
}

/// Whatever a decoder returns for garbage, a successful image must keep the promises.
fn assert_well_formed(result: Result<FirmwareImage, ImageError>) {
    if let Ok(image) = result {
        assert!(!image.segments.is_empty());
        for segment in &image.segments {
            assert!(!segment.data.is_empty());
        }
        for pair in image.segments.windows(2) {
            assert!(pair[0].end_address() < pair[1].address, "{pair:?}");
        }
    }
}

static FW_ELF: LazyLock<Vec<u8>> = LazyLock::new(|| fixture("fw.elf"));
static HEX_TEXT: LazyLock<Vec<u8>> = LazyLock::new(|| fixture("known_segment_0x1F800.hex"));

/// Overwrites a few bytes (positions biased to the start, where the headers are) and maybe
/// truncates.
fn mutate(original: &[u8], edits: &[(usize, u8)], keep_length: Option<usize>, head_bytes: usize) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for &(position, value) in edits {
        let limit = if position % 2 == 0 { head_bytes.min(bytes.len()) } else { bytes.len() };
        let index = position % limit;
        bytes[index] = value;
    }
    if let Some(keep_length) = keep_length {
        bytes.truncate(keep_length % (original.len() + 1));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn intel_hex_written_by_ihex_round_trips(
        segments in segments_strategy(),
        record_size_bytes in 1usize..=255,
    ) {
        let text = write_intel_hex(&segments, record_size_bytes);
        let image = FirmwareImage::from_bytes(text.as_bytes(), ImageFormat::IntelHex, None, Path::new("roundtrip.hex"))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(image.segments, merged(segments));
    }

    #[test]
    fn intel_hex_decoder_never_panics(
        arbitrary in prop::collection::vec(any::<u8>(), 0..600),
        record_lines in prop::collection::vec("(:[0-9A-Fa-f]{0,40})?\r?", 0..12),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep_length in prop::option::of(any::<usize>()),
    ) {
        let path = Path::new("fuzz.hex");
        assert_well_formed(FirmwareImage::from_bytes(&arbitrary, ImageFormat::IntelHex, None, path));
        let lines = record_lines.join("\n") + "\n:00000001FF\n";
        assert_well_formed(FirmwareImage::from_bytes(lines.as_bytes(), ImageFormat::IntelHex, None, path));
        let mutated = mutate(&HEX_TEXT, &edits, keep_length, 200);
        assert_well_formed(FirmwareImage::from_bytes(&mutated, ImageFormat::IntelHex, None, path));
    }

    #[test]
    fn elf_decoder_never_panics(
        class in 0u8..4,
        encoding in 0u8..4,
        rest in prop::collection::vec(any::<u8>(), 0..400),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep_length in prop::option::of(any::<usize>()),
    ) {
        let path = Path::new("fuzz.elf");
        let mut arbitrary = vec![0x7f, b'E', b'L', b'F', class, encoding, 1];
        arbitrary.extend_from_slice(&rest);
        assert_well_formed(FirmwareImage::from_bytes(&arbitrary, ImageFormat::Elf, None, path));
        assert_well_formed(FirmwareImage::from_bytes(&rest, ImageFormat::Elf, None, path));
        let mutated = mutate(&FW_ELF, &edits, keep_length, 160);
        assert_well_formed(FirmwareImage::from_bytes(&mutated, ImageFormat::Elf, None, path));
    }
}
