//! The reference board's memory map (docs/device-contract.md, "Reference board: QEMU
//! mps2-an385"), for tests that drive QEMU without loading the whole profile.
#![allow(dead_code)]

use imprint::device::gdb::{GdbAddress, GdbClient, GdbOptions, GdbTargetConfig};
use imprint::profile::{FlashRegion, MemoryMap, RamSpan};

/// Where the fixture programs the 12-byte unique ID.
pub const UNIQUE_ID_ADDRESS: u64 = 0x003F_F000;

fn region(address: u64, size_bytes: u64) -> FlashRegion {
    FlashRegion {
        address,
        size_bytes,
        sector_size_bytes: 0x1000,
        write_alignment_bytes: 4,
        erased_value: 0xFF,
    }
}

/// The memory map of `profiles/qemu-mps2-an385.toml`.
pub fn memory_map() -> MemoryMap {
    MemoryMap {
        chip_flash: RamSpan { address: 0, size_bytes: 0x40_0000 },
        chip_ram: RamSpan { address: 0x2000_0000, size_bytes: 0x40_0000 },
        bootloader: region(0x0000_0000, 0x2_0000),
        application: region(0x0002_0000, 0xE_0000),
        candidate: region(0x0010_0000, 0xE_0000),
        config: region(0x001E_0000, 0x1_0000),
        mailbox: RamSpan { address: 0x2000_0000, size_bytes: 0x100 },
    }
}

/// The GDB backend's view of the reference board.
pub fn target_config() -> GdbTargetConfig {
    GdbTargetConfig {
        chip_name: "mps2-an385".to_string(),
        memory: memory_map(),
        unique_id_location: Some(RamSpan { address: UNIQUE_ID_ADDRESS, size_bytes: 12 }),
    }
}

/// Programs `unique_id` into the QEMU board behind `address` "at the factory", through a GDB
/// connection of its own (the stub serves one client at a time: retried while the fixture's
/// own connection is open).
pub fn program_unique_id(address: &str, unique_id: &[u8]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let attempt = GdbAddress::parse(address)
            .unwrap()
            .open(std::time::Duration::from_secs(2))
            .and_then(|transport| GdbClient::connect(transport, GdbOptions::default()))
            .and_then(|mut client| client.write_memory(UNIQUE_ID_ADDRESS, unique_id));
        match attempt {
            Ok(()) => return,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("programming the unique ID: {error}; again");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(error) => panic!("cannot program the unique ID at {address}: {error}"),
        }
    }
}
