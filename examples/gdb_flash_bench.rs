//! Flash throughput of the GDB backend into QEMU, against `gdb-multiarch`'s `load` of the same
//! image on the same QEMU process in the same run.
//!
//!     cargo run --release --example gdb_flash_bench [-- ROUNDS]
//!
//! One `qemu-system-arm -M mps2-an385 -S` is started. Each round, the backend erases (untimed:
//! `load` does not erase) and programs the image through `GdbTarget::program_flash`, then
//! disconnects; then `gdb-multiarch -batch` connects and runs `load IMAGE.elf`, timed by gdb's
//! own Python (`time.perf_counter()` around the command: gdb's "Transfer rate" line counts whole
//! milliseconds, too coarse for a small image, and is printed alongside). Both leave without
//! detaching, so QEMU never runs the loaded bytes. Two images: the reference bootloader
//! (`firmware-blobs/mps2-an385/bootloader.elf`) and a pseudo-random image filling the
//! application slot. Per image: min/median/max of each side over the rounds, the median of the
//! per-round ratios, the ratio of the fastest rounds (on a shared machine the slow rounds
//! measure other processes), and the backend's full write cost (erase + program + read-back
//! verify).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use imprint::device::Target;
use imprint::device::gdb::{GdbClient, GdbTarget, GdbTargetConfig, TcpTransport};
use imprint::device::qemu::{QemuInstance, QemuOptions, qemu_version};
use imprint::image::{FirmwareImage, ImageFormat};
use imprint::profile::{FlashRegion, MemoryMap, RamSpan};

const APPLICATION_SLOT_ADDRESS: u64 = 0x2_0000;
const APPLICATION_SLOT_SIZE_BYTES: usize = 0xE_0000;

fn region(address: u64, size_bytes: u64) -> FlashRegion {
    FlashRegion {
        address,
        size_bytes,
        sector_size_bytes: 0x1000,
        write_alignment_bytes: 4,
        erased_value: 0xFF,
    }
}

/// The reference board (docs/device-contract.md, "Reference board: QEMU mps2-an385").
fn reference_board() -> GdbTargetConfig {
    GdbTargetConfig {
        chip_name: "mps2-an385".to_string(),
        memory: MemoryMap {
            chip_flash: RamSpan { address: 0, size_bytes: 0x40_0000 },
            chip_ram: RamSpan { address: 0x2000_0000, size_bytes: 0x40_0000 },
            bootloader: region(0x0000_0000, 0x2_0000),
            application: region(APPLICATION_SLOT_ADDRESS, APPLICATION_SLOT_SIZE_BYTES as u64),
            candidate: region(0x0010_0000, 0xE_0000),
            config: region(0x001E_0000, 0x1_0000),
            mailbox: RamSpan { address: 0x2000_0000, size_bytes: 0x100 },
        },
        unique_id_location: Some(RamSpan { address: 0x003F_F000, size_bytes: 12 }),
    }
}

/// An image as both sides load it: write-aligned chunks for the backend, an ELF for gdb.
struct BenchImage {
    name: String,
    elf_path: PathBuf,
    chunks: Vec<(u64, Vec<u8>)>,
}

impl BenchImage {
    fn size_bytes(&self) -> usize {
        self.chunks.iter().map(|(_, data)| data.len()).sum()
    }
}

fn chunks_of(image: &FirmwareImage) -> Vec<(u64, Vec<u8>)> {
    image
        .segments
        .iter()
        .map(|segment| {
            let start = segment.address - segment.address % 4;
            let mut data = vec![0xFF; (segment.address - start) as usize];
            data.extend_from_slice(&segment.data);
            data.resize(data.len().next_multiple_of(4), 0xFF);
            (start, data)
        })
        .collect()
}

/// A minimal ELF32 ARM executable with one loadable `.text` section, which gdb's `load`
/// accepts like any linker output.
fn write_elf(path: &Path, address: u32, data: &[u8]) -> std::io::Result<()> {
    const HEADER_SIZE: u32 = 52;
    const PROGRAM_HEADER_SIZE: u32 = 32;
    const SECTION_HEADER_SIZE: u32 = 40;
    let names = b"\0.text\0.shstrtab\0";
    let data_offset = 0x100u32;
    let names_offset = data_offset + data.len() as u32;
    let section_headers_offset = (names_offset + names.len() as u32).next_multiple_of(4);
    let mut elf = Vec::new();
    let word = |elf: &mut Vec<u8>, value: u32| elf.extend_from_slice(&value.to_le_bytes());
    let half = |elf: &mut Vec<u8>, value: u16| elf.extend_from_slice(&value.to_le_bytes());
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    half(&mut elf, 2); // ET_EXEC
    half(&mut elf, 40); // EM_ARM
    word(&mut elf, 1);
    word(&mut elf, address); // entry
    word(&mut elf, HEADER_SIZE); // the program header follows the file header
    word(&mut elf, section_headers_offset);
    word(&mut elf, 0x0500_0000); // EABI version 5
    half(&mut elf, HEADER_SIZE as u16);
    half(&mut elf, PROGRAM_HEADER_SIZE as u16);
    half(&mut elf, 1);
    half(&mut elf, SECTION_HEADER_SIZE as u16);
    half(&mut elf, 3);
    half(&mut elf, 2); // .shstrtab
    for value in [1, data_offset, address, address, data.len() as u32, data.len() as u32, 5, 4] {
        word(&mut elf, value); // PT_LOAD, R+X
    }
    elf.resize(data_offset as usize, 0);
    elf.extend_from_slice(data);
    elf.extend_from_slice(names);
    elf.resize(section_headers_offset as usize, 0);
    elf.extend(std::iter::repeat_n(0u8, SECTION_HEADER_SIZE as usize)); // the null section
    for value in [1, 1, 6, address, data_offset, data.len() as u32, 0, 0, 4, 0] {
        word(&mut elf, value); // .text: PROGBITS, ALLOC + EXECINSTR
    }
    for value in [7, 3, 0, 0, names_offset, names.len() as u32, 0, 0, 1, 0] {
        word(&mut elf, value); // .shstrtab: STRTAB
    }
    std::fs::write(path, elf)
}

fn images(directory: &Path) -> Vec<BenchImage> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bootloader_path = root.join("firmware-blobs/mps2-an385/bootloader.elf");
    let bootloader = FirmwareImage::load(&bootloader_path, ImageFormat::Elf, None)
        .unwrap_or_else(|error| panic!("{}: {error}", bootloader_path.display()));
    // Pseudo-random bytes (xorshift64): no runs for run-length encoding to exploit.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let synthetic: Vec<u8> = (0..APPLICATION_SLOT_SIZE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let synthetic_path = directory.join("random-application-slot.elf");
    write_elf(&synthetic_path, APPLICATION_SLOT_ADDRESS as u32, &synthetic).expect("write the synthetic ELF");
    vec![
        BenchImage {
            name: "bootloader.elf (reference firmware)".to_string(),
            elf_path: bootloader_path,
            chunks: chunks_of(&bootloader),
        },
        BenchImage {
            name: "random bytes filling the application slot".to_string(),
            elf_path: synthetic_path,
            chunks: vec![(APPLICATION_SLOT_ADDRESS, synthetic)],
        },
    ]
}

/// One backend round: erase (untimed), program (timed), read-back verify. Returns (program
/// time, erase + program + verify time).
fn backend_round(instance: &QemuInstance, options: &QemuOptions, image: &BenchImage) -> (Duration, Duration) {
    let transport =
        TcpTransport::connect(&instance.gdb_address(), Duration::from_secs(2)).expect("connect to the stub");
    let client = GdbClient::connect(Box::new(transport), options.gdb.clone()).expect("gdb handshake");
    let config = reference_board();
    // Detaching would let QEMU run the benchmark bytes (and abort on the lockup that follows).
    let mut target = GdbTarget::new(client, config.clone(), "bench").without_detach_on_drop();
    target.connect().expect("connect");
    let all_started = Instant::now();
    for (address, data) in &image.chunks {
        let region = config.memory.flash_region_at(*address).expect("image inside the profile's flash");
        let (erase_address, erase_size) = region.sectors_covering(*address, data.len() as u64);
        target.erase_flash(erase_address, erase_size, &mut |_| {}).expect("erase");
    }
    let program_started = Instant::now();
    for (address, data) in &image.chunks {
        target.program_flash(*address, data, &mut |_| {}).expect("program");
    }
    let program_time = program_started.elapsed();
    for (address, data) in &image.chunks {
        let mut read = vec![0u8; data.len()];
        target.read_memory(*address, &mut read).expect("read back");
        assert!(read == *data, "read-back differs at {address:#x}");
    }
    (program_time, all_started.elapsed())
}

/// One gdb round: returns (seconds `load` took, gdb's own transfer-rate line).
fn gdb_round(instance: &QemuInstance, image: &BenchImage) -> (f64, String) {
    let output = Command::new("gdb-multiarch")
        .args(["-nx", "-batch"])
        .args(["-ex", &format!("target remote {}", instance.gdb_address())])
        .args(["-ex", "python import time; imprint_started = time.perf_counter()"])
        .args(["-ex", &format!("load {}", image.elf_path.display())])
        .args(["-ex", "python print('IMPRINT-LOAD-SECONDS', time.perf_counter() - imprint_started)"])
        // Leave without detaching: a detach would let QEMU run the loaded bytes.
        .args(["-ex", "disconnect"])
        .output()
        .expect("gdb-multiarch runs (apt-get install gdb-multiarch)");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let seconds = text
        .lines()
        .find_map(|line| line.strip_prefix("IMPRINT-LOAD-SECONDS "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("gdb did not time the load:\n{text}"));
    let rate =
        text.lines().find(|line| line.starts_with("Transfer rate:")).unwrap_or("(no rate line)").to_string();
    (seconds, rate)
}

/// (minimum, median, maximum).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[0], values[values.len() / 2], values[values.len() - 1])
}

fn mib(bytes_per_second: f64) -> f64 {
    bytes_per_second / (1024.0 * 1024.0)
}

fn machine_line(options: &QemuOptions) -> String {
    let qemu = qemu_version(&options.executable).expect("qemu-system-arm");
    let gdb = Command::new("gdb-multiarch").arg("--version").output().expect("gdb-multiarch runs");
    let gdb = String::from_utf8_lossy(&gdb.stdout).lines().next().unwrap_or_default().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| text.lines().find(|line| line.starts_with("model name")).map(str::to_string))
        .and_then(|line| line.split_once(':').map(|(_, name)| name.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();
    format!("machine: {cpu}, {cores} cores, load average {load}; {qemu}; {gdb}")
}

fn main() {
    let rounds: usize =
        std::env::args().nth(1).map(|text| text.parse().expect("ROUNDS is a number")).unwrap_or(15);
    let options = QemuOptions::default();
    println!("{}", machine_line(&options));
    println!(
        "{rounds} rounds per image, backend and gdb alternating on one QEMU process; backend pipeline window {}, \
         run-length encoded requests {}",
        options.gdb.pipeline_window, options.gdb.run_length_encode_requests
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let (instance, first_client) = QemuInstance::start(&options).expect("start qemu");
    drop(first_client);
    for image in images(directory.path()) {
        let size = image.size_bytes() as f64;
        let (mut backend, mut gdb, mut ratios, mut full) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut gdb_rate_line = String::new();
        for _ in 0..rounds {
            let (program, everything) = backend_round(&instance, &options, &image);
            let (gdb_seconds, rate_line) = gdb_round(&instance, &image);
            backend.push(size / program.as_secs_f64());
            full.push(size / everything.as_secs_f64());
            gdb.push(size / gdb_seconds);
            ratios.push(gdb_seconds / program.as_secs_f64());
            gdb_rate_line = rate_line;
        }
        let (backend, gdb, ratios, full) = (spread(backend), spread(gdb), spread(ratios), spread(full));
        println!("{} ({} bytes)", image.name, image.size_bytes());
        println!(
            "  backend program     median {:>6.1} MiB/s  (min {:.1}, max {:.1})",
            mib(backend.1),
            mib(backend.0),
            mib(backend.2)
        );
        println!(
            "  gdb-multiarch load  median {:>6.1} MiB/s  (min {:.1}, max {:.1}); gdb says \"{gdb_rate_line}\"",
            mib(gdb.1),
            mib(gdb.0),
            mib(gdb.2)
        );
        println!(
            "  ratio backend/gdb   median {:>6.2}x       (per-round min {:.2}, max {:.2})",
            ratios.1, ratios.0, ratios.2
        );
        println!(
            "  fastest rounds      backend {:.1} MiB/s, gdb {:.1} MiB/s: ratio {:.2}x (the least disturbed by other load)",
            mib(backend.2),
            mib(gdb.2),
            backend.2 / gdb.2
        );
        println!(
            "  backend erase + program + read-back verify: median {:.1} MiB/s, fastest {:.1} MiB/s",
            mib(full.1),
            mib(full.2)
        );
    }
}
