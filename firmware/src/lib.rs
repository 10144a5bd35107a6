//! The reference firmware of `docs/device-contract.md` for QEMU `mps2-an385` (Cortex-M3).
//!
//! Two binaries share this library: the bootloader (`src/bin/bootloader.rs`), which runs the
//! update client at every reset and then starts the application, and the application
//! (`src/bin/application.rs`), which writes the self-test report to the RAM mailbox, prints it
//! on UART0 and answers the station's identity requests (`src/identity.rs`). The modules mirror the station's reference implementation (`src/contract.rs`,
//! `src/store.rs`, `src/manifest.rs`, `src/trust/`) closely, with the same RustCrypto crates, so
//! that the simulated device and this firmware give identical verdicts for the same bytes.
//!
//! Everything here reads code memory in place (it is memory-mapped) and writes it with plain
//! stores: on this board code memory is RAM, so "erase" means "fill with 0xFF".
#![no_std]

extern crate alloc;

pub mod board;
pub mod console;
pub mod contract;
pub mod identity;
pub mod manifest;
pub mod manifest_v1;
pub mod store;
pub mod update_client;
pub mod version;
